"""Recipes: per method, what one training step is. The generic :class:`~napari_medtrans.training.trainer.Trainer`
does everything else (devices, AMP, DDP, schedule, clipping, checkpoints, logs).

A recipe has

* ``name`` (the method it trains), ``default_lr`` and ``config`` (its keyword arguments, recorded in the
  checkpoint);
* ``build(model) -> RecipeParts``: the extra trainable modules it needs (a discriminator, ...) and which
  modules each optimiser trains (:class:`OptimizerSpec`; the trainer builds AdamW optimisers from these);
* ``training_step(batch, model, modules, ctx) -> dict``: computes the losses on one batch and calls
  ``ctx.optimise(name, loss)`` once per optimiser. ``model`` and ``modules`` are what to call for forward passes
  (wrapped in DistributedDataParallel under torchrun); ``ctx`` is a :class:`StepContext`. The returned dict maps
  loss names to scalar tensors; ``"loss"`` is the headline number shown in the progress bar.

Recipes register by method name with :func:`register_recipe`. A method's recipe lives in
``napari_medtrans/training/recipe_<method>.py`` (found and imported by :func:`list_recipes` / :func:`get_recipe`),
e.g. ``@register_recipe("edts-trans") class EdtsTransRecipe: ...``. A recipe may set ``default_min_lr`` (the
final learning rate of the cosine schedule when the run names none), ``needs_labels = True`` (batches must carry
the tissue labels ``"labels"`` / ``"target_labels"``) and ``unpaired = True`` (train on unpaired slices); the
train CLI builds its training dataset from these two.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

import os

from ..core.errors import ConfigMismatchError, UnknownChoiceError
from ..translators.base import Translator
from ..translators.blocks import PatchGANDiscriminator, init_normal

__all__ = [
    "OptimizerSpec",
    "RecipeParts",
    "StepContext",
    "Recipe",
    "register_recipe",
    "get_recipe",
    "list_recipes",
    "RegressionRecipe",
    "Pix2PixRecipe",
    "gan_loss",
    "GAN_LOSSES",
    "load_init",
]

GAN_LOSSES = ("vanilla", "lsgan")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimiser: the modules it trains (``"model"`` is the translator, other names come from
    :attr:`RecipeParts.modules`), its learning rate as a multiple of the run's ``lr``, Adam betas, weight decay."""

    modules: tuple[str, ...] = ("model",)
    lr_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


@dataclasses.dataclass
class RecipeParts:
    """What :meth:`Recipe.build` returns: extra modules by name and optimisers by name."""

    modules: dict[str, nn.Module] = dataclasses.field(default_factory=dict)
    optimizers: dict[str, OptimizerSpec] = dataclasses.field(default_factory=lambda: {"model": OptimizerSpec()})


@runtime_checkable
class StepContext(Protocol):
    """What the trainer offers a recipe during one step."""

    device: torch.device
    step: int

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op without AMP)."""

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        """Zero the grads of optimiser ``name``, backpropagate ``loss`` (scaled under fp16), clip, step."""

    def frozen(self, name: str) -> contextlib.AbstractContextManager:
        """Context yielding the unwrapped module ``name`` with ``requires_grad`` off (e.g. D during the G step)."""


@runtime_checkable
class Recipe(Protocol):
    """Per-method training step. See the module documentation."""

    name: str
    default_lr: float
    config: dict

    def build(self, model: Translator) -> RecipeParts: ...

    def training_step(self, batch: Mapping[str, Any], model: nn.Module, modules: Mapping[str, nn.Module],
                      ctx: StepContext) -> dict[str, torch.Tensor]: ...


_RECIPES: dict[str, Callable[..., Recipe]] = {}


def register_recipe(name: str) -> Callable:
    """Class decorator: register a recipe (a class or factory taking keyword options) under a method name."""
    if not isinstance(name, str) or not name:
        raise TypeError('Argument "name" must be a non-empty string.')

    def deco(cls):
        _RECIPES[name] = cls
        return cls

    return deco


def _load_builtin_recipes() -> None:
    """Import the recipe modules of this package (``training/recipe_<method>.py``) so that they register."""
    import importlib
    import pkgutil

    from .. import training

    for info in pkgutil.iter_modules(training.__path__):
        if info.name.startswith("recipe_"):
            importlib.import_module(f"{training.__name__}.{info.name}")


def list_recipes() -> list[str]:
    """Names of the methods that have a training recipe, sorted."""
    _load_builtin_recipes()
    return sorted(_RECIPES)


def get_recipe(name: str, **options: Any) -> Recipe:
    """Instantiate the recipe of method ``name`` with its options (e.g. ``lambda_l1=100``)."""
    if name not in _RECIPES:
        _load_builtin_recipes()
    if name not in _RECIPES:
        raise UnknownChoiceError("training recipe", name, list_recipes())
    try:
        return _RECIPES[name](**options)
    except TypeError as exc:
        raise TypeError(f"recipe {name!r} does not take these options {sorted(options)}: {exc}") from None


def load_init(model: Translator, path: str | os.PathLike, method: str):
    """Load the weights of checkpoint ``path`` (a ``method`` model of the same inputs, outputs and architecture)
    into ``model``, for a run that starts from them; returns the checkpoint's
    :class:`~napari_medtrans.translators.checkpoint.CheckpointInfo`. Clear errors name the file: another
    method, other modalities, or weights that do not fit the model's configuration."""
    from ..translators.checkpoint import load_translator

    src = load_translator(path, method=method)  # another method: MethodMismatchError naming the file
    for field in ("inputs", "outputs"):
        if tuple(getattr(src.spec, field)) != tuple(getattr(model.spec, field)):
            raise ConfigMismatchError(
                f"holds a {method} model with {field} {list(getattr(src.spec, field))}; this run's model has "
                f"{list(getattr(model.spec, field))}", path)
    try:
        model.load_state_dict(src.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ConfigMismatchError(
            f"holds a {method} model of config {src.config}, which does not fit this run's model {model.config}: "
            f"build the model with the same options ({str(exc).splitlines()[0]})", path) from None
    return src.checkpoint_info


def _paired(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch["input"], batch["target"]


REGRESSION_LOSSES = ("l1", "mse", "l1+mse", "l1+ssim")


@register_recipe("unet")
class RegressionRecipe:
    """Supervised regression (the plain U-Net baseline; any paired one-shot translator): an L1 loss by default.

    Parameters
    ----------
    loss : {"l1", "mse", "l1+mse", "l1+ssim"}
        Pixel loss: mean absolute error (the baseline's), mean squared error (what PSNR measures; it predicts
        the conditional mean where the input is ambiguous), their sum, or L1 + 0.5 (1 - SSIM): EDTS-Trans's loss
        on one output (its Eq. 17 with alpha = 0.5), for a baseline trained with the same loss.
    weight_decay : float
        AdamW weight decay.
    init : path-like, optional
        Start from the weights of this checkpoint (a U-Net of the same configuration; fine-tuning); its SHA-256
        is recorded in the new checkpoint.
    """

    name = "unet"
    default_lr = 1e-3

    def __init__(self, *, loss: str = "l1", weight_decay: float = 1e-4, init: str | os.PathLike | None = None):
        if loss not in REGRESSION_LOSSES:
            raise UnknownChoiceError("regression loss", loss, REGRESSION_LOSSES)
        self.loss = loss
        self.weight_decay = float(weight_decay)
        self.init = init
        self.config = {"loss": loss, "weight_decay": self.weight_decay}
        if init is not None:
            self.config.update(init=str(init), init_sha256=None)

    def build(self, model: Translator) -> RecipeParts:
        if self.init is not None:
            self.config["init_sha256"] = load_init(model, self.init, self.name).sha256
        return RecipeParts({}, {"model": OptimizerSpec(("model",), weight_decay=self.weight_decay)})

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        x, y = _paired(batch)
        with ctx.autocast():
            out = model(x)
        out = out.float()
        terms = {}
        if "l1" in self.loss:
            terms["l1"] = F.l1_loss(out, y)
        if "mse" in self.loss:
            terms["mse"] = F.mse_loss(out, y)
        if "ssim" in self.loss:
            from .losses import ssim_torch

            terms["ssim"] = 0.5 * (1 - ssim_torch(out, y))
        loss = sum(terms.values())
        ctx.optimise("model", loss)
        losses = {"loss": loss.detach()}
        if len(terms) > 1:
            losses.update({k: v.detach() for k, v in terms.items()})
        return losses


def gan_loss(logits: torch.Tensor, real: bool, kind: str = "vanilla") -> torch.Tensor:
    """Adversarial loss of discriminator logits against the label "real" or "fake".

    ``"vanilla"``: binary cross-entropy on the logits (Goodfellow et al.; the generator uses the
    non-saturating form, i.e. the "real" label for its fakes), as in pix2pix. ``"lsgan"``: least squares towards
    1 (real) or 0 (fake), Mao et al. 2017.
    """
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    raise UnknownChoiceError("GAN loss", kind, GAN_LOSSES)


@register_recipe("pix2pix")
class Pix2PixRecipe:
    """pix2pix (Isola et al. 2017): conditional GAN with a PatchGAN discriminator plus ``lambda_l1`` * L1.

    Discriminator step: ``0.5 * (BCE(D(x, y), real) + BCE(D(x, G(x)), fake))`` (the paper halves D's objective).
    Generator step: ``BCE(D(x, G(x)), real) + lambda_l1 * |G(x) - y|_1`` with ``lambda_l1 = 100``. Both use Adam
    betas (0.5, 0.999) as in the paper (the trainer's AdamW with weight decay 0 is Adam), and the same learning
    rate (2e-4 by default). ``gan_loss="lsgan"`` swaps BCE for least squares.

    The discriminator sees real and synthetic pairs in one forward pass (one batch of twice the size). With the
    default instance normalisation that equals two separate passes; it also keeps DistributedDataParallel to one
    forward per backward.

    Parameters
    ----------
    lambda_l1 : float
        Weight of the L1 term (100 in the paper).
    gan_loss : {"vanilla", "lsgan"}
        Adversarial loss; "vanilla" (binary cross-entropy) is the paper's.
    d_layers : int
        Stride-2 layers of the PatchGAN (3 = the 70x70 discriminator).
    d_width : int or None
        Discriminator base channels (ndf); None uses the generator's width (64 = paper).
    d_norm : str
        Discriminator normalisation ("instance" equals the paper's batch norm at batch size 1).
    d_lr_scale : float
        Discriminator learning rate as a multiple of the generator's.
    """

    name = "pix2pix"
    default_lr = 2e-4

    def __init__(self, *, lambda_l1: float = 100.0, gan_loss: str = "vanilla", d_layers: int = 3,
                 d_width: int | None = None, d_norm: str = "instance", d_lr_scale: float = 1.0):
        if gan_loss not in GAN_LOSSES:
            raise UnknownChoiceError("GAN loss", gan_loss, GAN_LOSSES)
        if float(lambda_l1) < 0:
            raise ValueError(f'Argument "lambda_l1" must be >= 0, got {lambda_l1!r}.')
        self.lambda_l1 = float(lambda_l1)
        self.gan_loss = gan_loss
        self.d_layers = int(d_layers)
        self.d_width = None if d_width is None else int(d_width)
        self.d_norm = str(d_norm)
        self.d_lr_scale = float(d_lr_scale)
        self.config = {"lambda_l1": self.lambda_l1, "gan_loss": gan_loss, "d_layers": self.d_layers,
                       "d_width": self.d_width, "d_norm": self.d_norm, "d_lr_scale": self.d_lr_scale}

    def build(self, model: Translator) -> RecipeParts:
        channels = len(model.spec.inputs) + len(model.spec.outputs)
        width = self.d_width or int(model.config.get("width", 64))
        disc = PatchGANDiscriminator(channels, width=width, n_layers=self.d_layers, norm=self.d_norm)
        init_normal(disc)
        betas = (0.5, 0.999)
        return RecipeParts(
            {"discriminator": disc},
            {
                "generator": OptimizerSpec(("model",), betas=betas),
                "discriminator": OptimizerSpec(("discriminator",), lr_scale=self.d_lr_scale, betas=betas),
            },
        )

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        x, y = _paired(batch)
        disc = modules["discriminator"]
        with ctx.autocast():
            fake = model(x)
            logits = disc(torch.cat([torch.cat([x, y], 1), torch.cat([x, fake.detach()], 1)], 0))
        real_logits, fake_logits = logits.chunk(2)
        loss_d = 0.5 * (gan_loss(real_logits, True, self.gan_loss) + gan_loss(fake_logits, False, self.gan_loss))
        ctx.optimise("discriminator", loss_d)

        with ctx.frozen("discriminator") as d_raw, ctx.autocast():
            pred = d_raw(torch.cat([x, fake], 1))
        adv = gan_loss(pred, True, self.gan_loss)
        l1 = F.l1_loss(fake.float(), y)
        loss_g = adv + self.lambda_l1 * l1
        ctx.optimise("generator", loss_g)
        return {"loss": loss_g.detach(), "l1": l1.detach(), "g_adv": adv.detach(), "d": loss_d.detach()}
