"""Training recipe of EDTS-Trans (Xiao et al., Sec. IV-A, Eq. 16-17).

One step on a paired batch ``(T1, T2)``:

1. ``model(x, target=y)`` (:meth:`~napari_medtrans.translators.edts.EdtsTranslator.training_outputs`) gives the
   regression output ``T2_bar``, the diffusion output ``T2_tilde`` (the DiffUNet's ``x_0`` prediction from
   ``x_t``, ``t`` uniform in ``0 ... T-1``) and the fused output ``T2_o`` (Eq. 4).
2. Eq. 16: ``L_fid = |T2_bar - T2| + |T2_tilde - T2| + |T2_o - T2|`` (mean absolute errors) and
   ``L_ssim = (1 - SSIM(T2_bar, T2)) + (1 - SSIM(T2_tilde, T2)) + (1 - SSIM(T2_o, T2))``.
3. Eq. 17: ``L_total = L_fid + alpha L_ssim`` with ``alpha = 0.5``; ``ssim_loss=False`` (Table IV "w/o L_ssim")
   sets the weight to 0 (SSIM is still logged).

Both networks are trained together by one optimiser (the paper trains one model with one loss); gradients of the
diffusion and fusion terms reach the regression network through the conditioning and Eq. 4 (the TSM map itself
is a fixed prior). Optimiser: Adam (AdamW with weight decay 0; the paper names no optimiser); learning rate 2e-4
decaying to 1e-6 along a cosine (``default_lr`` / ``default_min_lr``: the trainer's cosine schedule;
``medtrans train --lr 2e-4 --min-lr 1e-6``). Augmentation (horizontal and vertical flips, 90-degree rotations and
their combinations) is the slice dataset's ``augment=True``. The paper trains 25,000 iterations at batch size 1.

SSIM here is the differentiable Gaussian-window SSIM of Wang et al. (11 taps, sigma 1.5, K1 = 0.01, K2 = 0.03)
on [-1, 1] images (data range 2), averaged over the valid region: the same numbers as
:func:`napari_medtrans.core.metrics.ssim`. Slices narrower than 11 pixels use the largest odd window that fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..translators.base import Translator
from .losses import ssim_torch
from .recipes import OptimizerSpec, RecipeParts, register_recipe

__all__ = ["EdtsTransRecipe", "ssim_torch", "edts_losses"]


def edts_losses(outputs: Mapping[str, torch.Tensor], target: torch.Tensor, *, alpha: float = 0.5,
                ssim_weight_on: bool = True) -> dict[str, torch.Tensor]:
    """Eq. 16-17 on the outputs of one training pass.

    Parameters
    ----------
    outputs : mapping
        ``"regression"``, ``"diffusion"`` and ``"fused"`` batches like ``target``.
    target : torch.Tensor
        Ground truth ``T2``.
    alpha : float
        Weight of ``L_ssim`` (0.5 in the paper).
    ssim_weight_on : bool
        False drops ``L_ssim`` from the total (it is still reported).

    Returns
    -------
    dict
        ``loss`` (Eq. 17), ``l_fid``, ``l_ssim`` and per output ``l1_*`` and ``ssim_*``.
    """
    y = target.float()
    out: dict[str, torch.Tensor] = {}
    l_fid = y.new_zeros(())
    l_ssim = y.new_zeros(())
    for key, short in (("regression", "reg"), ("diffusion", "diff"), ("fused", "fused")):
        pred = outputs[key].float()
        l1 = (pred - y).abs().mean()
        if ssim_weight_on:
            s = ssim_torch(pred, y)
        else:
            with torch.no_grad():
                s = ssim_torch(pred, y)
        l_fid = l_fid + l1  # Eq. 16, fidelity term
        l_ssim = l_ssim + (1 - s)  # Eq. 16, SSIM term
        out[f"l1_{short}"] = l1.detach()
        out[f"ssim_{short}"] = s.detach()
    total = l_fid + (alpha * l_ssim if ssim_weight_on else 0.0)  # Eq. 17
    out.update(loss=total, l_fid=l_fid.detach(), l_ssim=l_ssim.detach())
    return out


@register_recipe("edts-trans")
class EdtsTransRecipe:
    """EDTS-Trans: L1 + alpha * (1 - SSIM) on the regression, diffusion and fused outputs (Eq. 16-17).

    Parameters
    ----------
    alpha : float
        Weight of the SSIM loss (0.5 in the paper).
    ssim_loss : bool
        False removes the SSIM term (Table IV, "w/o L_ssim").
    weight_decay : float
        AdamW weight decay (0: Adam).
    """

    name = "edts-trans"
    default_lr = 2e-4
    #: The paper's final learning rate of the cosine schedule (pass it as the trainer's ``min_lr``).
    default_min_lr = 1e-6

    def __init__(self, *, alpha: float = 0.5, ssim_loss: bool = True, weight_decay: float = 0.0):
        if float(alpha) < 0:
            raise ValueError(f'Argument "alpha" must be >= 0, got {alpha!r}.')
        if float(weight_decay) < 0:
            raise ValueError(f'Argument "weight_decay" must be >= 0, got {weight_decay!r}.')
        self.alpha = float(alpha)
        self.ssim_loss = bool(ssim_loss)
        self.weight_decay = float(weight_decay)
        self.config: dict[str, Any] = {"alpha": self.alpha, "ssim_loss": self.ssim_loss,
                                       "weight_decay": self.weight_decay, "min_lr": self.default_min_lr}

    def build(self, model: Translator) -> RecipeParts:
        if getattr(model, "spec", None) is None or model.spec.method != "edts-trans":
            method = getattr(getattr(model, "spec", None), "method", type(model).__name__)
            raise TypeError(f"the edts-trans recipe trains an EDTS-Trans translator, not {method!r}")
        return RecipeParts({}, {"model": OptimizerSpec(("model",), weight_decay=self.weight_decay)})

    def training_step(self, batch, model, modules, ctx) -> dict[str, torch.Tensor]:
        x, y = batch["input"], batch["target"]
        with ctx.autocast():
            outputs = model(x, target=y)
        losses = edts_losses(outputs, y, alpha=self.alpha, ssim_weight_on=self.ssim_loss)
        ctx.optimise("model", losses["loss"])
        losses["loss"] = losses["loss"].detach()
        return losses
