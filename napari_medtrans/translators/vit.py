"""A ViT image encoder in the architecture of the Segment Anything Model's (SAM v1) image encoder.

Layout (Kirillov et al. 2023, the ViT-B/L/H encoders): a ``patch x patch`` stride-``patch`` convolution embeds
the image into a ``[B, H/p, W/p, C]`` token grid; an absolute position embedding is added; a stack of
pre-norm Transformer blocks follows, most attending inside non-overlapping ``window x window`` windows and a few
(``global_attn_indexes``) over the whole grid, all with decomposed relative position biases on the height and
width axes; a "neck" (1x1 conv, channel LayerNorm, 3x3 conv, channel LayerNorm) maps to ``out_chans`` feature
maps ``[B, out_chans, H/p, W/p]``.

The module and parameter names follow SAM's ``image_encoder`` state dict (``patch_embed.proj``, ``pos_embed``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.attn.rel_pos_h/w``,
``blocks.N.norm2``, ``blocks.N.mlp.lin1/lin2``, ``neck.0 ... neck.3``), so that :func:`load_sam_encoder_weights`
only strips the ``image_encoder.`` prefix of a SAM checkpoint. :data:`VIT_CONFIGS` holds ViT-B's sizes
(``"sam_vit_b"``) and a reduced encoder for CPUs and tests (``"tiny"``).

Input sizes other than ``img_size`` work: the position embedding is resized bilinearly to the token grid, and
the relative position tables are resized linearly when a window or the global grid has another size than the
one they were made for (both as SAM does for its own resizing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import CheckpointError, UnknownChoiceError

__all__ = ["VIT_CONFIGS", "SamViT", "build_sam_vit", "load_sam_encoder_weights", "LayerNorm2d"]

#: Encoder sizes. "sam_vit_b": SAM's ViT-B (86 M parameters; 1024 x 1024 input, 16 x 16 patches, 12 blocks of
#: width 768 and 12 heads, 14 x 14 windows, global attention in blocks 2, 5, 8, 11, 256 output channels).
#: "tiny": a reduced encoder of the same layout (64 x 64 input, 8 x 8 patches, 2 blocks of width 64).
VIT_CONFIGS: dict[str, dict[str, Any]] = {
    "sam_vit_b": dict(img_size=1024, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                      window_size=14, global_attn_indexes=[2, 5, 8, 11], out_chans=256),
    "tiny": dict(img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0,
                 window_size=4, global_attn_indexes=[1], out_chans=32),
}


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (each pixel on its own), with affine parameters."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding; returns channels-last tokens ``[B, H/p, W/p, C]``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MLPBlock(nn.Module):
    """Linear, GELU, linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


def _resize_rel_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """A relative position table ``[L, d]`` resized linearly to ``length`` rows when needed."""
    if table.shape[0] == length:
        return table
    t = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return t.squeeze(0).t()


def _rel_pos(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings ``[q_size, k_size, d]`` for every query/key offset along one axis."""
    length = 2 * max(q_size, k_size) - 1
    table = _resize_rel_table(table, length)
    q = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    idx = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[idx.long()]


class Attention(nn.Module):
    """Multi-head self-attention over a ``[B, H, W, C]`` token grid with decomposed relative position biases."""

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not a multiple of the number of heads {num_heads}")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * nh, h * w, c // nh).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [b*nh, hw, hw]
        rh = _rel_pos(h, h, self.rel_pos_h)  # [h, h, d]
        rw = _rel_pos(w, w, self.rel_pos_w)  # [w, w, d]
        rq = q.reshape(b * nh, h, w, -1)
        bias_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        bias_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        attn = attn.view(b * nh, h, w, h, w) + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]
        attn = attn.view(b * nh, h * w, h * w).softmax(dim=-1)
        out = (attn @ v).view(b, nh, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.proj(out)


def _window_partition(x: torch.Tensor, win: int) -> tuple[torch.Tensor, tuple[int, int]]:
    b, h, w, c = x.shape
    ph, pw = (win - h % win) % win, (win - w % win) % win
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, win, win, c), (hp, wp)


def _window_unpartition(x: torch.Tensor, win: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    h, w = size
    b = x.shape[0] // ((hp // win) * (wp // win))
    x = x.view(b, hp // win, wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous()


class Block(nn.Module):
    """Pre-norm Transformer block; windowed attention when ``window_size > 0``, global attention otherwise."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, grid: tuple[int, int]):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.window_size = int(window_size)
        size = (window_size, window_size) if window_size > 0 else grid
        self.attn = Attention(dim, num_heads, size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1:3]
            x, padded = _window_partition(x, self.window_size)
            x = _window_unpartition(self.attn(x), self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class SamViT(nn.Module):
    """SAM-style ViT image encoder: ``[B, in_chans, H, W]`` to ``[B, out_chans, H/patch, W/patch]``.

    Parameters
    ----------
    img_size : int
        Side the position embedding is made for (other sizes are resized to, see the module notes).
    patch_size : int
        Patch side (16 in SAM).
    in_chans : int
        Image channels (3 in SAM).
    embed_dim, depth, num_heads, mlp_ratio : int, int, int, float
        Transformer width, number of blocks, heads per block, MLP hidden width multiple.
    window_size : int
        Side of the attention windows of the non-global blocks.
    global_attn_indexes : sequence of int
        Blocks that attend over the whole grid.
    out_chans : int
        Channels of the neck's output.
    """

    def __init__(self, *, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11), out_chans: int = 256):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = int(img_size)
        self.patch_size = int(patch_size)
        self.out_chans = int(out_chans)
        grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0], grid[1], embed_dim))
        glob = {int(i) for i in global_attn_indexes}
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, 0 if i in glob else window_size, grid) for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        pos = self.pos_embed
        if pos.shape[1:3] != x.shape[1:3]:
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bilinear",
                                align_corners=False).permute(0, 2, 3, 1)
        x = x + pos
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


def build_sam_vit(name: str = "tiny", **overrides: Any) -> SamViT:
    """A :class:`SamViT` of the named size in :data:`VIT_CONFIGS`, with keyword overrides."""
    if name not in VIT_CONFIGS:
        raise UnknownChoiceError("ViT encoder size", str(name), list(VIT_CONFIGS))
    cfg = {**VIT_CONFIGS[name], **overrides}
    return SamViT(**cfg)


def load_sam_encoder_weights(encoder: SamViT, path: str | os.PathLike) -> SamViT:
    """Load the image encoder of a SAM (v1) checkpoint into ``encoder`` (in place) and return it.

    Keys ``image_encoder.*`` are taken with the prefix stripped (a bare encoder state dict works too); the
    prompt encoder and mask decoder are ignored. The encoder must have the checkpoint's sizes (for example
    ``build_sam_vit("sam_vit_b")`` for ``sam_vit_b_01ec64.pth``).

    Parameters
    ----------
    encoder : SamViT
        Destination.
    path : path-like
        ``.pth`` (read with ``torch.load(weights_only=True)``) or ``.safetensors``, or the name of a file in
        the weights store (``medtrans weights import sam_vit_b_01ec64.pth``).

    Raises
    ------
    CheckpointError
        The file is missing or unreadable, has no encoder weights, or its shapes differ from ``encoder``'s.
    WeightsError
        A bare file name that is not in the weights store.
    """
    from ..core.weights import load_state_dict, weights_path

    p = Path(path)
    if not p.is_file():
        if p.name == str(path) and p.suffix:  # a bare file name: look in the weights store
            p = weights_path(str(path))
        else:
            raise CheckpointError("SAM weights file not found", p)
    state = load_state_dict(p)
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise CheckpointError(f"no SAM image-encoder weights for {len(missing)} parameters, e.g. {missing[:3]}", p)
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"SAM encoder of another size: {k} is {list(state[k].shape)} here {list(own[k].shape)} "
            f"({len(wrong)} parameters differ)", p)
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
    return encoder
