"""The unpaired histogram mapping as a base that an unpaired generator corrects (issue 19; not in any paper).

Why. On the benchmark the zero-parameter unpaired floor (brain voxels of the source mapped by rank, reversed for
T1 <-> T2, onto the pooled histogram of the target contrast: ``training/floors.py``) scores 20.5 dB T1 -> T2,
and every unpaired model trained for an hour of one core (CycleGAN, DisDiff, HiFi-Syn) 4-7.5 dB below it: they
re-synthesise every intensity from a downsampled code, and at this budget the values drift from where a rank
mapping puts them (docs/results/unpaired-t1-t2.md). A generator that starts *at* the floor and learns what the
mapping cannot do (context: deep nuclei, tumour, the brain's surface) keeps what the histogram already gets right.

What. :class:`HistogramBase` holds, per direction of a two-way translator, ``n`` quantiles of the source's and of
the target's brain intensities (in the models' [-1, 1] space) and maps a source pixel by the rank its value has
among the source quantiles to the target quantile of that rank (reversed when the contrasts order the tissues in
reverse: :func:`~napari_medtrans.core.modality.contrast_sign`). Pixels at the background level
(not above :data:`~napari_medtrans.core.preprocess.FOREGROUND_LEVEL`, the slice datasets' foreground test) map to
the target's background (-1). A generator with
this base outputs ``tanh(z + atanh(base(x)))``, ``z`` its last layer (zero at the start), so it begins as the floor
and its residual lives in the same pre-activation space as before.

Choices where nothing is given (documented, tested):

* The quantiles are estimated during training, not from a separate pass over the data: each step the recipe
  passes the batch's source and target slices with their brain masks (unpaired: different subjects), and the
  base keeps the running mean of the batch quantiles (:meth:`HistogramBase.update`; Vincent averaging, which for
  many batches approaches the quantiles of the pooled voxels the floor uses). They are buffers: saved in the
  checkpoint, fixed at inference, where no mask is needed.
* 64 quantiles (1.6 % steps of rank) with linear interpolation between them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.preprocess import FOREGROUND_LEVEL

__all__ = ["HistogramBase", "N_QUANTILES", "apply_base"]

#: Quantiles kept per contrast and direction.
N_QUANTILES = 64

def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``fp(x)`` through the increasing knots ``xp`` (clamped at both ends), like numpy.interp."""
    idx = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


class HistogramBase(nn.Module):
    """Rank mapping between two contrasts, both ways, estimated from unpaired batches (module notes).

    Parameters
    ----------
    source, target : str
        The contrasts (their names key the directions: ``"T1->T2"`` and ``"T2->T1"``).
    sign : {1, -1}
        -1 when the contrasts order the brain's tissues in reverse (T1 <-> T2).
    n : int
        Quantiles per contrast.
    """

    def __init__(self, source: str, target: str, sign: int, n: int = N_QUANTILES):
        super().__init__()
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ValueError(f'Argument "sign" must be 1 or -1, got {sign!r}.')
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f'Argument "n" must be an integer >= 2, got {n!r}.')
        # sorted: the translator built for the other direction (same state dict) reads the same rows
        self.modalities = tuple(sorted((str(source), str(target))))
        self.sign = int(sign)
        self.register_buffer("levels", torch.linspace(0.0, 1.0, n))
        # quantiles per contrast, in the modalities' order; count = batches averaged (0: not fitted yet)
        self.register_buffer("quantiles", torch.linspace(-1.0, 1.0, n).repeat(2, 1))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def _index(self, modality: str) -> int:
        if modality not in self.modalities:
            from ..core.errors import UnknownChoiceError

            raise UnknownChoiceError("modality of the histogram base", str(modality), self.modalities)
        return self.modalities.index(modality)

    @property
    def fitted(self) -> bool:
        return int(self.count) > 0

    @torch.no_grad()
    def update(self, source: str, x_s: torch.Tensor, mask_s: torch.Tensor | None, x_t: torch.Tensor,
               mask_t: torch.Tensor | None) -> None:
        """Add one unpaired batch: slices ``[B, 1, H, W]`` of contrast ``source`` and of the other contrast in
        [-1, 1] with their brain masks (None: every pixel above the background level). Batches without brain
        pixels in either contrast are skipped."""
        self._index(source)
        pairs = ((x_s, mask_s), (x_t, mask_t)) if source == self.modalities[0] else ((x_t, mask_t), (x_s, mask_s))
        new = []
        for x, m in pairs:
            xf = x.detach().float()
            inside = xf > FOREGROUND_LEVEL
            if m is not None:
                inside &= (m > 0).reshape(xf.shape)
            v = xf[inside]
            if v.numel() < self.levels.numel():
                return
            new.append(torch.quantile(v[:: max(1, v.numel() // 65536)], self.levels.to(v.device)))
        k = int(self.count)
        q = torch.stack(new).to(self.quantiles)
        self.quantiles.mul_(k / (k + 1)).add_(q / (k + 1))
        self.count += 1

    def forward(self, x: torch.Tensor, source: str) -> torch.Tensor:
        """The mapped image of ``x`` (of contrast ``source``) in the other contrast, in [-1, 1]."""
        i = self._index(source)
        qs, qt = self.quantiles[i], self.quantiles[1 - i]
        xf = x.float()
        rank = _interp(xf.flatten(), qs, self.levels)
        if self.sign < 0:
            rank = 1.0 - rank
        out = _interp(rank, self.levels, qt).reshape(xf.shape)
        return torch.where(xf > FOREGROUND_LEVEL, out, torch.full_like(out, -1.0)).to(x.dtype)


def apply_base(pre_activation: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``tanh(z + atanh(base))``: a generator's last layer ``z`` as a residual over the base image."""
    b = base.float().clamp(-0.999, 0.999)
    return torch.tanh(pre_activation.float() + torch.atanh(b)).to(pre_activation.dtype)
