"""Transformer blocks for image-to-image networks, shared by the translators.

Full spatial self-attention costs ``(H W)^2``: at 256 x 256 that is 4.3e9 entries per head and layer, far beyond
what a translator of about 100 GFLOPs per slice (EDTS-Trans, Table II) can afford. The attention here is therefore
computed **across channels** ("transposed" attention, as in Restormer, Zamir et al. 2022): queries, keys and
values come from a 1x1 convolution followed by a 3x3 depth-wise convolution (so each carries local spatial
context), the ``C/h x C/h`` attention matrix of each head is the softmax of the cosine similarities of the
channel maps times a learned temperature, and the cost is linear in the number of pixels. The feed-forward
network is gated (GELU gate) with a 3x3 depth-wise convolution between its two 1x1 projections.

:class:`TransformerBlock` follows EDTS-Trans Eq. 13 exactly as printed:
``x_out = FFN(LN(x_in + ATTN(LN(x_in)))) + x_in``. An optional time embedding (diffusion networks) is added to
``x_in`` per channel before the block, the way DDPM injects it into its residual blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d", "ChannelAttention", "GatedFFN", "TransformerBlock", "Downsample", "Upsample"]


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of every pixel of ``[B, C, H, W]`` (with scale and bias)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        var = (x - mu).pow(2).mean(dim=1, keepdim=True)
        x = (x - mu) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ChannelAttention(nn.Module):
    """Multi-head attention across channels (cost linear in pixels); see the module notes.

    Parameters
    ----------
    channels : int
        Feature maps in and out.
    heads : int
        Attention heads; must divide ``channels``.
    """

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f'Argument "heads"={heads} must divide the channels ({channels}).')
        self.heads = int(heads)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.qkv_dw = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.heads, c // self.heads, h * w), dim=-1)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GatedFFN(nn.Module):
    """Feed-forward network: 1x1 expand to two branches, 3x3 depth-wise, ``GELU(a) * b``, 1x1 project back."""

    def __init__(self, channels: int, expansion: float = 2.66):
        super().__init__()
        hidden = max(int(round(channels * expansion)), 1)
        self.expand = nn.Conv2d(channels, hidden * 2, 1)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.project(F.gelu(a) * g)


class TransformerBlock(nn.Module):
    """EDTS-Trans Eq. 13: ``x_out = FFN(LN(x_in + ATTN(LN(x_in)))) + x_in``.

    Parameters
    ----------
    channels : int
        Feature maps.
    heads : int
        Attention heads.
    expansion : float
        Hidden width of the FFN as a multiple of ``channels``.
    time_dim : int or None
        Size of a time embedding added per channel to ``x_in`` (diffusion networks); None for none.
    """

    def __init__(self, channels: int, heads: int, expansion: float = 2.66, time_dim: int | None = None):
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.attn = ChannelAttention(channels, heads)
        self.norm2 = LayerNorm2d(channels)
        self.ffn = GatedFFN(channels, expansion)
        self.time = nn.Linear(time_dim, channels) if time_dim else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if self.time is not None:
            if temb is None:
                raise ValueError("this block takes a time embedding; pass temb")
            x = x + self.time(F.silu(temb))[:, :, None, None].to(x.dtype)
        return self.ffn(self.norm2(x + self.attn(self.norm1(x)))) + x  # Eq. 13


class Downsample(nn.Module):
    """Halve the resolution and double the channels: 3x3 conv to ``C/2``, then pixel-unshuffle by 2."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"Downsample needs an even number of channels, got {channels}.")
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution and halve the channels: 3x3 conv to ``2C``, then pixel-shuffle by 2."""

    def __init__(self, channels: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"Upsample needs an even number of channels, got {channels}.")
        self.body = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
