"""Training recipe of CycleGAN (:mod:`napari_medtrans.translators.cyclegan`, Zhu et al. 2017): unpaired.

One step on an unpaired batch (``"input"`` slices of the source modality, ``"target"`` slices of the target
modality from other subjects):

1. generator step (both generators, discriminators frozen): least-squares adversarial loss of each translation
   against the discriminator of its modality, cycle loss ``lambda_cyc * (|G_ts(G_st(x_s)) - x_s|_1 +
   |G_st(G_ts(x_t)) - x_t|_1)`` and identity loss ``lambda_id * lambda_cyc * (|G_st(x_t) - x_t|_1 +
   |G_ts(x_s) - x_s|_1)``;
2. discriminator step: for each modality, ``0.5 * (|D(real) - 1|^2 + |D(fake)|^2)``, the fakes drawn from a
   history of the last ``pool_size`` translations (:class:`ImagePool`; Shrivastava et al. 2017, as in the paper).

The paper's settings are the defaults: ``lambda_cyc = 10``, ``lambda_id = 0.5``, LSGAN, 70x70 PatchGANs
(:class:`~napari_medtrans.translators.blocks.PatchGANDiscriminator`, instance norm), a pool of 50, Adam with
betas (0.5, 0.999) and learning rate 2e-4 (the trainer's cosine schedule stands in for the paper's linear decay).

Two options not in the paper, shared with the other unpaired recipes: the contrast prior's warm start
(``prior_steps=400``, on by default; :mod:`.contrast_prior`: without it most runs keep the source's tissue order)
and ``other_negatives`` (off by default: real images of the other modality as extra "fake" examples for each
discriminator). ``--recipe-option prior_steps=0`` trains the paper's CycleGAN.

The discriminators and the pools are the recipe's modules: the checkpoint holds the generators only; the
training state holds everything, the pools included (they are buffers), so a resumed run continues exactly.

With ``--config base=histogram`` (:mod:`napari_medtrans.translators.histogram_base`) each step first adds the
batch's brain intensities (the dataset's brain masks) to the base's running quantiles, then trains the
generators' residual over it. ``anchor_weight`` (not in the paper; 0 by default) adds ``anchor_weight *
(|G_st(x_s) - base(x_s)|_1 + |G_ts(x_t) - base(x_t)|_1)``: the translations stay near the histogram mapping
except where the other losses pay for moving. Without it the residual leaves the floor within a few hundred steps
(measured, T1 -> T2 on the 6 validation subjects: 20.0 dB at step 250, 16.1 at step 400; the floor 20.2).

Normalisation: one checkpoint translates both ways, so both modalities are normalised per volume in training,
as the engine normalises every input (``target_norm = "volume"``; see :mod:`.recipe_hifisyn`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from ..translators.base import Translator
from ..translators.blocks import PatchGANDiscriminator, init_normal
from .contrast_prior import ContrastPrior
from .recipe_hifisyn import TWO_WAY_TARGET_NORM
from .recipes import GAN_LOSSES, OptimizerSpec, RecipeParts, gan_loss, register_recipe

__all__ = ["CycleGANRecipe", "CycleDiscriminators", "ImagePool"]


class CycleDiscriminators(nn.Module):
    """One PatchGAN per modality; ``forward(x_s, x_t)`` returns the logits of both (one call, for DDP)."""

    def __init__(self, modalities: tuple[str, str], *, width: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        self.modalities = tuple(modalities)
        self.d = nn.ModuleDict({m: PatchGANDiscriminator(1, width=width, n_layers=n_layers, norm=norm)
                                for m in self.modalities})

    def forward(self, x_s: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.modalities
        return self.d[s](x_s), self.d[t](x_t)


class ImagePool(nn.Module):
    """A history of ``size`` translated images per modality for the discriminators (CycleGAN Sec. 4).

    :meth:`query` returns, for each new image, with probability 1/2 a stored one (which the new image replaces),
    else the new image; until the history is full it stores and returns the new images. ``size=0`` passes images
    through. The history is a buffer (saved in the training state), sized by the first images it sees.
    """

    def __init__(self, modalities: tuple[str, str], size: int = 50):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f'Argument "pool_size" must be an integer >= 0, got {size!r}.')
        self.modalities = tuple(modalities)
        self.size = int(size)
        for m in self.modalities:
            self.register_buffer(f"images_{m}", torch.zeros(0))
            self.register_buffer(f"count_{m}", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the buffers take the saved history's shape before it is copied in
        for m in self.modalities:
            saved = state_dict.get(f"{prefix}images_{m}")
            if isinstance(saved, torch.Tensor):
                setattr(self, f"images_{m}", torch.zeros_like(saved, device=getattr(self, f"images_{m}").device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def query(self, modality: str, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` for the discriminator of ``modality`` (see the class notes)."""
        if modality not in self.modalities:
            raise UnknownChoiceError("modality", str(modality), self.modalities)
        images = images.detach()
        if self.size == 0:
            return images
        store = getattr(self, f"images_{modality}")
        count = getattr(self, f"count_{modality}")
        if tuple(store.shape[1:]) != tuple(images.shape[1:]) or store.shape[0] != self.size:
            store = torch.zeros((self.size, *images.shape[1:]), dtype=torch.float32, device=images.device)
            setattr(self, f"images_{modality}", store)
            count.zero_()
        out = []
        for img in images:
            n = int(count)
            if n < self.size:
                store[n] = img.float()
                count += 1
                out.append(img)
            elif float(torch.rand(())) < 0.5:
                k = int(torch.randint(0, self.size, ()))
                out.append(store[k].to(img.dtype).clone())
                store[k] = img.float()
            else:
                out.append(img)
        return torch.stack(out)


@register_recipe("cyclegan")
class CycleGANRecipe:
    """CycleGAN's unpaired training step (see the module notes).

    Parameters
    ----------
    lambda_cyc : float
        Weight of the cycle loss (10 in the paper).
    lambda_id : float
        Weight of the identity loss as a fraction of ``lambda_cyc`` (0.5 in the paper; 0 switches it off).
    gan_loss : {"lsgan", "vanilla"}
        Adversarial loss; least squares is the paper's.
    pool_size : int
        Translated images kept per modality for the discriminators (50 in the paper; 0: none).
    d_layers : int
        Stride-2 layers of each PatchGAN (3: 70x70).
    d_width : int or None
        Discriminator base channels; None uses the generators' width (64 in the paper).
    d_norm : str
        Discriminator normalisation.
    d_lr_scale : float
        Discriminator learning rate as a multiple of the generators'.
    other_negatives : bool
        Each discriminator also learns real images of the other modality as "fake" (not in the paper; see the
        module notes). False trains the paper's discriminators.
    prior_steps, prior_weight, prior_sign
        The contrast prior's warm start (:mod:`.contrast_prior`; not in the paper); ``prior_steps=0`` is off.
    anchor_weight : float
        With a histogram base (``--config base=histogram``): weight of the L1 between each translation and its
        base image (module notes; not in the paper). 0: none.
    """

    name = "cyclegan"
    title = "CycleGAN"
    default_lr = 2e-4
    #: Trained on unpaired slices (input and target from different subjects).
    unpaired = True
    #: Both modalities are inputs of one direction of the checkpoint: normalise targets per volume.
    target_norm = TWO_WAY_TARGET_NORM

    def __init__(self, *, lambda_cyc: float = 10.0, lambda_id: float = 0.5, gan_loss: str = "lsgan",
                 pool_size: int = 50, d_layers: int = 3, d_width: int | None = None, d_norm: str = "instance",
                 d_lr_scale: float = 1.0, other_negatives: bool = False, prior_steps: int = 400,
                 prior_weight: float = 10.0, prior_sign: int | None = None, anchor_weight: float = 0.0):
        if gan_loss not in GAN_LOSSES:
            raise UnknownChoiceError("GAN loss", str(gan_loss), GAN_LOSSES)
        for key, value in (("lambda_cyc", lambda_cyc), ("lambda_id", lambda_id)):
            if not float(value) >= 0:
                raise ValueError(f'Argument "{key}" must be >= 0, got {value!r}.')
        if isinstance(anchor_weight, bool) or not float(anchor_weight) >= 0:
            raise ValueError(f'Argument "anchor_weight" must be >= 0, got {anchor_weight!r}.')
        self.anchor_weight = float(anchor_weight)
        if not float(d_lr_scale) > 0:
            raise ValueError(f'Argument "d_lr_scale" must be > 0, got {d_lr_scale!r}.')
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
            raise ValueError(f'Argument "pool_size" must be an integer >= 0, got {pool_size!r}.')
        self.lambda_cyc, self.lambda_id = float(lambda_cyc), float(lambda_id)
        self.gan_loss = gan_loss
        self.pool_size = int(pool_size)
        self.d_layers = int(d_layers)
        self.d_width = None if d_width is None else int(d_width)
        self.d_norm = str(d_norm)
        self.d_lr_scale = float(d_lr_scale)
        if not isinstance(other_negatives, bool):
            raise ValueError(f'Argument "other_negatives" must be true or false, got {other_negatives!r}.')
        self.other_negatives = other_negatives
        self.prior = ContrastPrior(prior_steps, prior_weight, prior_sign)
        self.config: dict[str, Any] = {"lambda_cyc": self.lambda_cyc, "lambda_id": self.lambda_id,
                                       "gan_loss": gan_loss, "pool_size": self.pool_size, "d_layers": self.d_layers,
                                       "d_width": self.d_width, "d_norm": self.d_norm, "d_lr_scale": self.d_lr_scale,
                                       "other_negatives": self.other_negatives, "anchor_weight": self.anchor_weight,
                                       **self.prior.config()}

    def build(self, model: Translator) -> RecipeParts:
        if getattr(getattr(model, "spec", None), "method", None) != self.name:
            method = getattr(getattr(model, "spec", None), "method", type(model).__name__)
            raise TypeError(f"the cyclegan recipe trains a CycleGAN translator, not {method!r}")
        mods = (model.source, model.target)
        width = self.d_width or int(model.config.get("width", 64))
        disc = init_normal(CycleDiscriminators(mods, width=width, n_layers=self.d_layers, norm=self.d_norm))
        betas = (0.5, 0.999)
        return RecipeParts(
            {"discriminator": disc, "pool": ImagePool(mods, self.pool_size)},
            {"generator": OptimizerSpec(("model",), betas=betas),
             "discriminator": OptimizerSpec(("discriminator",), lr_scale=self.d_lr_scale, betas=betas)},
        )

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        m = getattr(model, "module", model)
        x_s, x_t = batch["input"], batch["target"]
        identity = self.lambda_id > 0
        if getattr(m, "base", None) is not None:
            m.base.update(m.source, x_s, batch.get("mask"), x_t, batch.get("target_mask"))
        with ctx.autocast():
            out = m.forward_train(x_s, x_t, identity=identity)
        with ctx.frozen("discriminator") as d_raw, ctx.autocast():
            logits_s, logits_t = d_raw(out["fake_s"], out["fake_t"])
        adv = gan_loss(logits_t, True, self.gan_loss) + gan_loss(logits_s, True, self.gan_loss)
        cyc = F.l1_loss(out["rec_s"].float(), x_s) + F.l1_loss(out["rec_t"].float(), x_t)
        idt = (F.l1_loss(out["idt_t"].float(), x_t) + F.l1_loss(out["idt_s"].float(), x_s)) if identity \
            else cyc.new_zeros(())
        loss_g = adv + self.lambda_cyc * cyc + self.lambda_id * self.lambda_cyc * idt
        weighted, prior = self.prior.loss(batch, m.source, m.target, out["fake_t"], out["fake_s"], ctx.step)
        loss_g = loss_g + weighted
        anchor = cyc.new_zeros(())
        if self.anchor_weight > 0:
            if "base_t" not in out:
                raise ValueError("anchor_weight needs a histogram base: train with --config base=histogram")
            anchor = F.l1_loss(out["fake_t"].float(), out["base_t"].float()) + \
                F.l1_loss(out["fake_s"].float(), out["base_s"].float())
            loss_g = loss_g + self.anchor_weight * anchor
        ctx.optimise("generator", loss_g)

        pool = modules["pool"]
        fake_s = pool.query(m.source, out["fake_s"])
        fake_t = pool.query(m.target, out["fake_t"])
        neg = self.other_negatives
        with ctx.autocast():
            d_s, d_t = modules["discriminator"](torch.cat([x_s, fake_s.to(x_s.dtype), *([x_t] if neg else [])]),
                                                torch.cat([x_t, fake_t.to(x_t.dtype), *([x_s] if neg else [])]))
        parts_s = d_s.chunk(3 if neg else 2)
        parts_t = d_t.chunk(3 if neg else 2)
        loss_d = sum(0.5 * (gan_loss(p[0], True, self.gan_loss)
                            + sum(gan_loss(q, False, self.gan_loss) for q in p[1:]))
                     for p in (parts_s, parts_t))
        ctx.optimise("discriminator", loss_d)
        return {"loss": loss_g.detach(), "g_adv": adv.detach(), "g_cyc": cyc.detach(), "g_idt": idt.detach(),
                "g_prior": prior.detach(), "g_anchor": anchor.detach(), "d_loss": loss_d.detach()}
