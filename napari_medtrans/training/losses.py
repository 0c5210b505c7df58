"""Differentiable image losses shared by the training recipes: the SSIM term of EDTS-Trans's loss (Eq. 16-17),
also offered to the U-Net (``--loss l1+ssim``) so that its baseline trains with the same loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssim_torch"]


def _window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = (size - 1) // 2
    xs = torch.arange(-r, r + 1, device=device, dtype=dtype)
    w = torch.exp(-0.5 * (xs / sigma) ** 2)
    return w / w.sum()


def ssim_torch(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 2.0, win_size: int = 11,
               win_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of two batches ``[B, C, H, W]`` (differentiable), over the valid region of the window.

    Parameters
    ----------
    x, y : torch.Tensor
        Same shape.
    data_range : float
        Intensity span (2 for [-1, 1]).
    win_size, win_sigma : int, float
        Gaussian window; shrunk to the largest odd size that fits a smaller image.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim_torch needs two [B, C, H, W] tensors of one shape, got {list(x.shape)} and "
                         f"{list(y.shape)}.")
    b, c, h, w = x.shape
    size = min(int(win_size), h if h % 2 else h - 1, w if w % 2 else w - 1)
    if size < 1:
        raise ValueError(f"image of size {h}x{w} is too small for SSIM.")
    sigma = float(win_sigma) * size / int(win_size)
    g = _window(size, sigma, x.device, x.dtype)
    kh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean()
