"""A warm start for unpaired translators: which way the contrast runs, and a rank-mapped pseudo-target.

Why. Unpaired training (cycle and self-reconstruction losses, discriminators) is symmetric in the sign of the
contrast: a T1 -> T2 generator that keeps T1's tissue order (white matter bright, CSF dark), squeezed into the T2
intensity range, is as cycle-consistent as one that reverses it. Which of the two a run lands in is settled in its
first hundred or so steps, before the discriminators have learned anything, and afterwards the cycle loss holds it
there. Measured on the benchmark phantom (issue 19; cpu presets, 96 x 96 crops, T1 -> T2 tissue means on 24
validation slices): of 9 starts without the prior, 7 kept T1's order in their T2 images (DisDiff and HiFi-Syn
after 3250 and 4850 steps; CycleGAN with the paper's settings, DisDiff's backbone with least squares GAN loss
and wider discriminators, with real images of the other modality as extra negatives, with the discriminators'
learning rate x4: at 250-400 steps), one reversed it (DisDiff's backbone, seed 0) and one was still flat at 300
steps. None of the papers discusses this; on real scans the discriminators have more to go on (skull, fat,
vessels) than on the phantom's brain. With the prior (400 steps, weight 10) DisDiff's backbone, both seeds tried, reversed the order
by step 300 and kept it at step 600, 200 steps after the prior had gone.

What. The one bit a radiologist knows without seeing a paired image: how the contrasts order the brain's tissues
(:data:`TISSUE_ORDER`, textbook values: T1 CSF < GM < WM, T2 and PD WM < GM < CSF, FLAIR CSF < WM < GM). When two
contrasts order them in the same or in reversed order, :func:`contrast_sign` gives +1 or -1 (T1 <-> T2: -1); else
None, and no prior is possible (FLAIR). :func:`rank_prior` turns a batch of input slices into a pseudo-target by
unpaired histogram matching: the input's foreground pixels, ranked (reversed when the sign is -1), receive the
quantiles of the foreground pixels of the *unpaired* target batch; the background gets the target's background
value. It is the project's histogram floor computed on the batch: it sees no pairing, only the sign.

How it is used. The unpaired recipes (CycleGAN, DisDiff, HiFi-Syn) add ``w(step) * L1(translation,
pseudo-target)`` for both directions, with ``w`` falling linearly from ``prior_weight`` to 0 over the first
``prior_steps`` steps (:func:`prior_weight`); after that the paper's losses alone train the model. It chooses the
side of the symmetric minimum; it does not stay in the objective. ``prior_steps=0`` trains without it (the
papers' setting, and the ablation).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..core.modality import TISSUE_ORDER, contrast_sign

__all__ = ["TISSUE_ORDER", "ContrastPrior", "contrast_sign", "rank_prior", "prior_weight", "resolve_sign"]


def resolve_sign(source: str, target: str, sign: int | None, steps: int) -> int | None:
    """The sign a recipe uses: ``sign`` when given (+1 or -1), else :func:`contrast_sign`.

    Raises
    ------
    ValueError
        ``sign`` is not None, +1 or -1; or a prior is asked for (``steps > 0``) and the pair has no known sign.
    """
    if sign is not None:
        if isinstance(sign, bool) or sign not in (1, -1):
            raise ValueError(f'Argument "prior_sign" must be 1, -1 or None, got {sign!r}.')
        return int(sign)
    if steps <= 0:
        return None
    found = contrast_sign(source, target)
    if found is None:
        raise ValueError(
            f"no known tissue order relates {source} and {target}, so the contrast prior cannot choose a sign: "
            f"set --recipe-option prior_sign=1 (same order) or prior_sign=-1 (reversed), or prior_steps=0")
    return found


def prior_weight(step: int, steps: int, weight: float) -> float:
    """``weight`` at step 0, falling linearly to 0 at ``steps`` (0 from then on, and always when ``steps <= 0``)."""
    if steps <= 0 or step >= steps:
        return 0.0
    return float(weight) * (1.0 - step / steps)


@torch.no_grad()
def rank_prior(x: torch.Tensor, x_mask: torch.Tensor | None, y: torch.Tensor, y_mask: torch.Tensor | None,
               sign: int) -> torch.Tensor:
    """Pseudo-target for translations of ``x`` into the modality of the unpaired batch ``y`` (see module notes).

    Parameters
    ----------
    x, y : tensors [B, 1, H, W]
        Input slices and target-modality slices from other subjects, both in [-1, 1].
    x_mask, y_mask : tensors or None
        Foreground masks (nonzero inside); None takes pixels above the slice minimum.
    sign : {1, -1}
        -1 gives the brightest input pixel the darkest target value.
    """
    xf = x.detach().float()
    yf = y.detach().float()
    inside_x = (x_mask > 0) if x_mask is not None else xf > xf.amin()
    inside_y = (y_mask > 0) if y_mask is not None else yf > yf.amin()
    inside_x = inside_x.reshape(xf.shape)
    inside_y = inside_y.reshape(yf.shape)
    background = float(yf[~inside_y].median()) if (~inside_y).any() else -1.0
    out = torch.full_like(xf, background)
    xv = xf[inside_x]
    yv = yf[inside_y]
    if xv.numel() == 0 or yv.numel() == 0:
        return out.to(x.dtype)
    order = torch.argsort(xv, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device)
    q = ranks.float() / max(order.numel() - 1, 1)
    if sign < 0:
        q = 1.0 - q
    ys = torch.sort(yv).values
    pos = q * (ys.numel() - 1)
    lo = pos.floor().long().clamp(0, ys.numel() - 1)
    hi = (lo + 1).clamp(max=ys.numel() - 1)
    frac = pos - lo.float()
    out[inside_x] = ys[lo] * (1 - frac) + ys[hi] * frac
    return out.to(x.dtype)


@dataclasses.dataclass(frozen=True)
class ContrastPrior:
    """The warm start as the unpaired recipes use it (recipe options ``prior_steps``, ``prior_weight``,
    ``prior_sign``; see the module notes)."""

    steps: int = 400
    weight: float = 10.0
    sign: int | None = None

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f'Argument "prior_steps" must be an integer >= 0, got {self.steps!r}.')
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not float(self.weight) >= 0:
            raise ValueError(f'Argument "prior_weight" must be a number >= 0, got {self.weight!r}.')
        if self.sign is not None and (isinstance(self.sign, bool) or self.sign not in (1, -1)):
            raise ValueError(f'Argument "prior_sign" must be 1, -1 or None, got {self.sign!r}.')

    def config(self) -> dict:
        return {"prior_steps": self.steps, "prior_weight": float(self.weight), "prior_sign": self.sign}

    def loss(self, batch, source: str, target: str, to_target: torch.Tensor, to_source: torch.Tensor,
             step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weighted, raw)``: the L1 of both translations (``to_target`` of the batch's inputs, ``to_source`` of
        its targets) to their rank-mapped pseudo-targets; zeros once the warm start is over."""
        w = prior_weight(step, self.steps, self.weight)
        raw = to_target.new_zeros((), dtype=torch.float32)
        if w <= 0:
            return raw, raw
        sign = resolve_sign(source, target, self.sign, self.steps)
        x, y = batch["input"], batch["target"]
        xm, ym = batch.get("mask"), batch.get("target_mask")
        raw = F.l1_loss(to_target.float(), rank_prior(x, xm, y, ym, sign).float()) + \
            F.l1_loss(to_source.float(), rank_prior(y, ym, x, xm, sign).float())
        return w * raw, raw
