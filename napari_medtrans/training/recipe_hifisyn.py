"""Training recipe of HiFi-Syn (:mod:`napari_medtrans.translators.hifisyn`): unpaired, two optimisers.

One step on an unpaired batch (``"input"`` slices of the source modality, ``"target"`` slices of the target
modality from other subjects; optional ``"labels"`` / ``"target_labels"`` integer maps ``[B, 1, H, W]`` or
``[B, H, W]`` with 0 background, 1 CSF, 2 GM, 3 WM, used only here, never at inference):

1. forward pass of the disentanglement backbone with memory-bank reads (:meth:`HiFiSynTranslator.forward_train`);
2. discriminator step: modality discriminators and content discriminator (Eq. 15-16);
3. encoder/generator step on Eq. 17 (``lambda5 = lambda7 = 1``, ``lambda6 = 2``);
4. momentum update of the Brain Memory Bank (Eq. 4-6).

Without labels in the batch, SGD is zero and every pixel reads the global items. The recipe therefore sets
``needs_labels = True`` and ``unpaired = True``: ``medtrans train`` feeds it an
:class:`~napari_medtrans.training.datasets.UnpairedSliceDataset` with ``labels=True``, so every batch carries both
label maps. Optimisers: Adam, learning rate 1e-4 as in the paper (Sec. 4.2), betas (0.5, 0.999) as in DRIT++.

Mechanisms. :meth:`HiFiSynRecipe.build` settles every mechanism key the model's config leaves unset (None, which
builds what old checkpoints hold) to :data:`TRAINING_MECHANISMS`: the attribute modulates the generator (AdaIN)
and the memory read has the temperature 0.07 (see :mod:`napari_medtrans.translators.hifisyn`). Set a key
(``--config attr_injection=concat read_tau=1``) to train the old, inert mechanisms (ablations).


Contrast prior (not in the paper). For the first ``prior_steps`` steps (400) the generator loss also pulls both
translations towards a rank-mapped pseudo-target, with a weight falling from ``prior_weight`` (10) to 0
(:mod:`.contrast_prior`): without it, which way the translation orders the tissues is a coin toss that most runs
lose (T1's order kept in T2 images). ``--recipe-option prior_steps=0`` trains as the paper does.
Normalisation. One checkpoint translates both ways, so each modality is the input of one direction, and the
engine normalises every input volume from its own robust range. Both modalities must therefore be normalised
per volume in training too: :attr:`TwoOptimizerRecipe.target_norm` is ``"volume"`` (``medtrans train
--target-norm volume``, the default). ``--target-norm dataset`` would train the T2 encoder on another scale than
the engine gives it in the T2 -> T1 direction (the shipped models were trained so).
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from ..translators.base import Translator
from .contrast_prior import ContrastPrior
from .recipes import OptimizerSpec, RecipeParts, register_recipe

__all__ = ["HiFiSynRecipe", "ParameterGroup", "TwoOptimizerRecipe", "TRAINING_MECHANISMS", "TWO_WAY_TARGET_NORM"]

#: What :meth:`HiFiSynRecipe.build` sets where the model's config leaves a mechanism unset.
TRAINING_MECHANISMS = {"attr_injection": "adain", "read_tau": 0.07}

#: How a recipe of a two-way translator wants its targets normalised (see the module notes).
TWO_WAY_TARGET_NORM = "volume"


class ParameterGroup(nn.Module):
    """A module that only groups submodules of a translator so that one optimiser trains exactly them."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.parts = nn.ModuleList(modules)

    def forward(self, *args: Any) -> None:  # pragma: no cover - never called
        raise TypeError("a ParameterGroup only groups parameters for an optimiser; it has no forward pass")


class TwoOptimizerRecipe(abc.ABC):
    """Shared part of the unpaired GAN recipes (HiFi-Syn, DisDiff): a check that the translator is the method the
    recipe trains, the two parameter groups with their Adam optimisers, and the step (forward pass, discriminator
    step, generator step with the contrast prior).

    Subclasses set ``name``, ``title``, ``default_lr``, ``mechanisms`` (what :meth:`build` settles), ``betas``,
    and implement :meth:`parameter_groups` and :meth:`forward_train`; :meth:`after_step` runs after the
    generator step.

    Parameters
    ----------
    d_lr_scale : float
        Discriminator learning rate as a multiple of the run's.
    prior_steps, prior_weight, prior_sign
        The contrast prior (:class:`~.contrast_prior.ContrastPrior`; see the recipes' module notes).
    """

    name = ""
    title = ""
    default_lr = 1e-4
    #: Trained on unpaired slices (input and target from different subjects), as in the papers.
    unpaired = True
    #: Mechanism keys :meth:`build` settles where the model's config leaves them unset.
    mechanisms: dict[str, Any] = {}
    #: Adam's betas, of both optimisers.
    betas = (0.5, 0.999)
    #: Both modalities are inputs of one direction of the two-way checkpoint: normalise targets per volume, as
    #: the engine normalises every input (``medtrans train --target-norm volume``).
    target_norm = TWO_WAY_TARGET_NORM

    def __init__(self, *, d_lr_scale: float = 1.0, prior_steps: int = 400, prior_weight: float = 10.0,
                 prior_sign: int | None = None):
        if not float(d_lr_scale) > 0:
            raise ValueError(f'Argument "d_lr_scale" must be > 0, got {d_lr_scale!r}.')
        self.d_lr_scale = float(d_lr_scale)
        self.prior = ContrastPrior(prior_steps, prior_weight, prior_sign)
        self.config: dict[str, Any] = {"d_lr_scale": self.d_lr_scale, **self.prior.config()}

    def add_prior(self, batch, model, out, losses: dict, step: int) -> None:
        """Add the contrast prior of :mod:`.contrast_prior` to ``losses["total"]`` (as ``losses["prior"]``).

        ``out["fake_j"]`` translates the batch's inputs (modality i) into j, ``out["fake_i"]`` the targets into i.
        """
        weighted, losses["prior"] = self.prior.loss(batch, model.source, model.target, out["fake_j"], out["fake_i"],
                                                    step)
        losses["total"] = losses["total"] + weighted

    def _check(self, model: Translator) -> None:
        if getattr(getattr(model, "spec", None), "method", None) != self.name:
            method = getattr(getattr(model, "spec", None), "method", type(model).__name__)
            raise TypeError(f"the {self.name} recipe trains a {self.title} translator, not {method!r}")

    @abc.abstractmethod
    def parameter_groups(self, model: Translator) -> tuple[tuple[nn.Module, ...], tuple[nn.Module, ...]]:
        """The modules the generator optimiser trains and those the discriminator optimiser trains."""

    @abc.abstractmethod
    def forward_train(self, model, batch) -> dict:
        """The model's training forward pass on ``batch``."""

    def after_step(self, model, out) -> None:
        """Runs after the generator step (nothing by default)."""

    def build(self, model: Translator) -> RecipeParts:
        """Settle the model's unset mechanisms (:attr:`mechanisms`), then group its parameters."""
        self._check(model)
        model.settle(self.mechanisms)
        generator, discriminator = self.parameter_groups(model)
        betas = self.betas
        return RecipeParts(
            {"generator": ParameterGroup(*generator),
             "discriminator": ParameterGroup(*discriminator)},
            {"generator": OptimizerSpec(("generator",), betas=betas),
             "discriminator": OptimizerSpec(("discriminator",), lr_scale=self.d_lr_scale, betas=betas)},
        )

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        m = getattr(model, "module", model)
        with ctx.autocast():
            out = self.forward_train(m, batch)
            d = m.discriminator_losses(out)
        ctx.optimise("discriminator", d["total"].float())
        with ctx.autocast():
            g = m.generator_losses(out)
            self.add_prior(batch, m, out, g, ctx.step)
        ctx.optimise("generator", g["total"].float())
        self.after_step(m, out)
        losses = {f"g_{k}": v.detach() for k, v in g.items() if k != "total"}
        losses.update({f"d_{k}": v.detach() for k, v in d.items() if k != "total"})
        losses["d_loss"] = d["total"].detach()
        losses["loss"] = g["total"].detach()
        return losses


def _labels(batch, key):
    lab = batch.get(key)
    return None if lab is None else torch.as_tensor(lab)


@register_recipe("hifi-syn")
class HiFiSynRecipe(TwoOptimizerRecipe):
    """HiFi-Syn's unpaired training step (parameters as for :class:`TwoOptimizerRecipe`)."""

    name = "hifi-syn"
    title = "HiFi-Syn"
    default_lr = 1e-4
    #: The SGD term (Eq. 8-11) and the structure-wise memory items need the tissue labels of both slices.
    needs_labels = True
    mechanisms = TRAINING_MECHANISMS
    betas = (0.5, 0.999)

    def parameter_groups(self, model):
        net = model.net
        return (net.enc_c, net.enc_a, net.gen), (net.dis, net.dis_c)

    def forward_train(self, model, batch) -> dict:
        return model.forward_train(batch["input"], batch["target"], _labels(batch, "labels"),
                                   _labels(batch, "target_labels"))

    def after_step(self, model, out) -> None:
        model.update_memory(out)  # Eq. 4-6, after the generator step
