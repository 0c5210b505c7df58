"""Training recipe of MRNet (Lee et al., Sec. III-C, Eq. 6-11).

One step on a paired batch ``(x, y)``:

1. ``model(x, details=True)`` gives the masked output ``G(x) = y_hat_n``, every ``y_hat_k`` and the masks
   ``M_1 ... M_n`` (Eq. 4-5, :mod:`napari_medtrans.translators.mrnet`).
2. Discriminator step (least squares, as the MSE adversarial loss of Eq. 6 implies):
   ``0.5 * (mean((D(x, y) - 1)^2) + mean(D(x, G(x))^2))``.
3. Generator step, Eq. 11: ``L = L_GAN + lambda_pixel L_pixel + lambda_feature L_feature + lambda_mask L_mask``
   with ``L_GAN = mean((D(x, G(x)) - 1)^2)`` (Eq. 6), ``L_pixel = mean|y - G(x)|`` (Eq. 7),
   ``M_bar_i = 1 - M_i`` (Eq. 8), ``L_feature = sum_i mean|y_hat_i * M_bar_i|`` (Eq. 9),
   ``L_mask = sum_i mean|M_bar_i|`` (Eq. 10); ``lambda_pixel = 100``, ``lambda_feature = 0.1``,
   ``lambda_mask = 0.05`` (:func:`mrnet_losses`).

Choices where the paper is open: the norms of Eq. 7, 9, 10 are means over pixels (the pix2pix habit; a sum
would tie the weights to the slice size); the sums of Eq. 9-10 run over all ``n`` masks (the paper writes 2, its
default). The discriminator is the pix2pix PatchGAN (:class:`~napari_medtrans.translators.blocks.PatchGANDiscriminator`)
conditioned on the input; the paper's "patch size 30" is closest to ``d_layers=2`` (34 x 34 receptive field,
the default; ``d_layers=1`` gives 16). Optimiser: Adam, learning rate 1e-4, betas (0.5, 0.999) (Sec. IV-B;
the trainer's AdamW with weight decay 0 is Adam), for both networks. The paper trains 40 epochs at batch size 4.

Field of view. The generator works on ``tile`` x ``tile`` views of a slice in training and at inference alike
(:mod:`napari_medtrans.translators.mrnet`, module notes), so its encoder sees one scale in both. Crops of
``tile`` x ``tile`` (``--size 64 64`` for the cpu preset) are one view each and cost nothing extra; other crop
sizes are tiled or padded the same way, and the recipe warns once, since a crop smaller than the tile trains
on background padding and a larger one costs several views per crop.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..translators.base import Translator
from ..translators.blocks import PatchGANDiscriminator, init_normal
from .recipes import OptimizerSpec, RecipeParts, register_recipe

__all__ = ["MRNetRecipe", "mrnet_losses", "discriminator_loss"]


def mrnet_losses(d_fake: torch.Tensor, fake: torch.Tensor, target: torch.Tensor, ys: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor], *, lambda_pixel: float = 100.0, lambda_feature: float = 0.1,
                 lambda_mask: float = 0.05) -> dict[str, torch.Tensor]:
    """The generator loss of Eq. 6-11.

    Parameters
    ----------
    d_fake : torch.Tensor
        Discriminator outputs (patch logits) on the synthetic pair ``D(G(x), x)``.
    fake, target : torch.Tensor
        ``G(x)`` (the final masked output) and ``y``.
    ys : sequence of torch.Tensor
        ``y_hat_0 ... y_hat_n`` (``y_hat_0`` is not used by Eq. 9) or ``y_hat_1 ... y_hat_n``.
    masks : sequence of torch.Tensor
        ``M_1 ... M_n``.
    lambda_pixel, lambda_feature, lambda_mask : float
        Weights of Eq. 11 (100, 0.1, 0.05 in the paper).

    Returns
    -------
    dict
        ``loss`` (Eq. 11, with gradients) and the detached terms ``gan``, ``pixel``, ``feature``, ``mask``.
    """
    ys = list(ys)
    masks = list(masks)
    if len(ys) == len(masks) + 1:
        ys = ys[1:]
    if len(ys) != len(masks):
        raise ValueError(f"mrnet_losses needs one y_hat per mask, got {len(ys)} outputs and {len(masks)} masks.")
    gan = (d_fake.float() - 1.0).pow(2).mean()  # Eq. 6
    pixel = (target.float() - fake.float()).abs().mean()  # Eq. 7
    feature = fake.new_zeros((), dtype=torch.float32)
    mask = fake.new_zeros((), dtype=torch.float32)
    for y_i, m_i in zip(ys, masks):
        inv = 1.0 - m_i.float()  # Eq. 8
        feature = feature + (y_i.float() * inv).abs().mean()  # Eq. 9
        mask = mask + inv.abs().mean()  # Eq. 10
    loss = gan + lambda_pixel * pixel + lambda_feature * feature + lambda_mask * mask  # Eq. 11
    return {"loss": loss, "gan": gan.detach(), "pixel": pixel.detach(), "feature": feature.detach(),
            "mask": mask.detach()}


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares discriminator loss ``0.5 * (mean((D_real - 1)^2) + mean(D_fake^2))``."""
    return 0.5 * ((d_real.float() - 1.0).pow(2).mean() + d_fake.float().pow(2).mean())


@register_recipe("mrnet")
class MRNetRecipe:
    """MRNet: PatchGAN with least-squares adversarial loss plus pixel, feature-discarding and mask losses.

    Parameters
    ----------
    lambda_pixel, lambda_feature, lambda_mask : float
        Weights of Eq. 11 (100, 0.1, 0.05 in the paper). ``lambda_feature=0, lambda_mask=0`` is Table V's
        baseline "GAN loss" (with the pixel term).
    d_layers : int
        Stride-2 layers of the PatchGAN (2: 34 x 34 patches, nearest to the paper's 30).
    d_width : int or None
        Discriminator base channels; None uses the generator's ``width``.
    d_norm : str
        Discriminator normalisation.
    d_lr_scale : float
        Discriminator learning rate as a multiple of the generator's.
    """

    name = "mrnet"
    default_lr = 1e-4

    def __init__(self, *, lambda_pixel: float = 100.0, lambda_feature: float = 0.1, lambda_mask: float = 0.05,
                 d_layers: int = 2, d_width: int | None = None, d_norm: str = "instance", d_lr_scale: float = 1.0):
        for name, v in (("lambda_pixel", lambda_pixel), ("lambda_feature", lambda_feature),
                        ("lambda_mask", lambda_mask), ("d_lr_scale", d_lr_scale)):
            if float(v) < 0:
                raise ValueError(f'Argument "{name}" must be >= 0, got {v!r}.')
        if isinstance(d_layers, bool) or int(d_layers) != d_layers or int(d_layers) < 1:
            raise ValueError(f'Argument "d_layers" must be a positive integer, got {d_layers!r}.')
        self.lambda_pixel = float(lambda_pixel)
        self.lambda_feature = float(lambda_feature)
        self.lambda_mask = float(lambda_mask)
        self.d_layers = int(d_layers)
        self.d_width = None if d_width is None else int(d_width)
        self.d_norm = str(d_norm)
        self.d_lr_scale = float(d_lr_scale)
        self.config: dict[str, Any] = {
            "lambda_pixel": self.lambda_pixel, "lambda_feature": self.lambda_feature,
            "lambda_mask": self.lambda_mask, "d_layers": self.d_layers, "d_width": self.d_width,
            "d_norm": self.d_norm, "d_lr_scale": self.d_lr_scale,
        }
        self._warned_tile = False

    def build(self, model: Translator) -> RecipeParts:
        if getattr(getattr(model, "spec", None), "method", None) != "mrnet":
            method = getattr(getattr(model, "spec", None), "method", type(model).__name__)
            raise TypeError(f"the mrnet recipe trains an MRNet translator, not {method!r}")
        channels = len(model.spec.inputs) + len(model.spec.outputs)
        width = self.d_width or int(model.config.get("width", 64))
        disc = init_normal(PatchGANDiscriminator(channels, width=width, n_layers=self.d_layers, norm=self.d_norm))
        betas = (0.5, 0.999)
        return RecipeParts(
            {"discriminator": disc},
            {
                "generator": OptimizerSpec(("model",), betas=betas),
                "discriminator": OptimizerSpec(("discriminator",), lr_scale=self.d_lr_scale, betas=betas),
            },
        )

    def _check_crop(self, model, x: torch.Tensor) -> None:
        """Warn once when the training crops are not one view of the generator (module notes)."""
        tile = int(getattr(model, "config", {}).get("tile") or 0)
        if self._warned_tile or not tile or tuple(x.shape[-2:]) == (tile, tile):
            return
        self._warned_tile = True
        warnings.warn(f"MRNet works on {tile} x {tile} views (config 'tile'); training crops of "
                      f"{x.shape[-2]} x {x.shape[-1]} are {'padded' if max(x.shape[-2:]) < tile else 'tiled'} "
                      f"to them. Train with --size {tile} {tile} to give it one view per crop", stacklevel=2)

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        x, y = batch["input"], batch["target"]
        self._check_crop(model, x)
        disc = modules["discriminator"]
        with ctx.autocast():
            out = model(x, details=True)
            fake = out["image"]
            logits = disc(torch.cat([torch.cat([x, y], 1), torch.cat([x, fake.detach()], 1)], 0))
        real_logits, fake_logits = logits.chunk(2)
        loss_d = discriminator_loss(real_logits, fake_logits)
        ctx.optimise("discriminator", loss_d)

        with ctx.frozen("discriminator") as d_raw, ctx.autocast():
            pred = d_raw(torch.cat([x, fake], 1))
        losses = mrnet_losses(pred, fake, y, out["ys"], out["masks"], lambda_pixel=self.lambda_pixel,
                              lambda_feature=self.lambda_feature, lambda_mask=self.lambda_mask)
        ctx.optimise("generator", losses["loss"])
        losses["loss"] = losses["loss"].detach()
        losses["d"] = loss_d.detach()
        return losses
