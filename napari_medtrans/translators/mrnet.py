"""MRNet (Lee et al., "MRNet: Multifaceted Resilient Networks for Medical Image-to-Image Translation").

Generator G (Sec. III, Fig. 1), equation numbers of the paper:

* **Hierarchical SAM-based encoder (Eq. 1-2).** A U-Net-like encoder of ``depth`` stages (8 in the paper, for
  256 x 256 slices). Stage ``i`` computes the plain encoder features ``e_i`` (a 4 x 4 stride-2 convolution of the
  previous stage's output ``E_{i-1}``, ``E_0 = x``) and fuses them with the SAM image-encoder features ``F``:
  ``E_i = T_i(e_i (+) A_i(F))`` (Eq. 1; ``(+)`` channel concatenation) with the adaptor
  ``A_i(F) = C_i(B(F, s_i))`` (Eq. 2; ``B`` bilinear resizing to the stage's size ``s_i``, ``C_i`` a convolution).
  ``T_i`` is InstanceNorm + LeakyReLU(0.2).
* **SoftClamp (Eq. 3)** on the bottleneck ``E_depth``: ``v = min(1, max(0, z))``,
  ``S(z) = v + alpha (min(0, z) + max(0, z - 1))`` with ``alpha = 0.001`` (:func:`soft_clamp`).
* **Light decoder.** Per stage: transposed convolution (4 x 4, stride 2) of the decoder features concatenated
  with the mirrored ``E_i``, InstanceNorm, ReLU; the last stage maps to the output channels and applies tanh,
  giving ``y_hat_0``.
* **Multi-mask correction (Eq. 4-5).** ``M_i = sigmoid(psi_i(y_hat_{i-1}))`` (Eq. 4) and
  ``y_hat_k = y_hat_{k-1} * prod_{i=1..k} M_i`` (Eq. 5), for ``k = 1 ... n`` (``n_masks``; 2 = the paper's dual
  mask, 1-7 for Table IV). ``psi_i``: two 3 x 3 conv-InstanceNorm-ReLU layers and a 1 x 1 convolution
  (:func:`apply_masks`). The translator's image is ``y_hat_n``; the masks are returned as the map ``"masks"``
  ``[B, n * C_out, H, W]`` (mask ``i`` of output channel ``c`` at channel ``i * C_out + c``), values in [0, 1].

Training (PatchGAN discriminator, Eq. 6-11) is the recipe ``"mrnet"`` in
:mod:`napari_medtrans.training.recipe_mrnet`; it calls ``model(x, details=True)``
(:meth:`MRNetTranslator.training_outputs`) for ``y_hat_0 ... y_hat_n`` and ``M_1 ... M_n``.

Choices where the paper is open
-------------------------------
* **Eq. 4 with Eq. 5.** Eq. 5 writes the product with every ``psi_i`` applied to ``y_hat_{k-1}``, Eq. 4 defines
  ``M_i`` from ``y_hat_{i-1}`` and the text says the masks are "sequentially applied": each mask ``M_i`` is computed
  once from ``y_hat_{i-1}`` (Eq. 4) and step ``k`` multiplies by the running product ``M_1 ... M_k`` (Eq. 5).
  So ``y_hat_2 = y_hat_0 M_1^2 M_2`` for two masks.
* **Eq. 2's adaptor order.** ``C_i`` is a 1 x 1 convolution. A 1 x 1 convolution (with bias) and bilinear resizing
  (weights summing to 1) commute exactly, so ``C_i`` runs on the SAM grid first and its output is resized
  (cheaper, identical result). Adaptor ``i`` has ``round(adaptor_ratio * c_i)`` channels, ``c_i`` being the
  stage's own channels.
* **Stage channels.** pix2pix's ``width * min(2**i, max_mult)`` (64 ... 512 for the paper preset). The bottleneck
  stage has no norm (its map is 1 x 1 at the paper's size) and no activation: SoftClamp is its nonlinearity.
* **SAM input.** The ``C_in`` input channels are averaged to one grey image, repeated to RGB, mapped from [-1, 1]
  to [0, 255], normalised with SAM's pixel mean and std and resized bilinearly to ``sam_image_size`` (SAM pads the
  longer side to 1024 instead; slices here are square or nearly so).
* **SAM weights.** ``preset="paper"`` is SAM's ViT-B encoder (:mod:`~napari_medtrans.translators.vit`), frozen
  (no gradients, as the paper uses it pretrained). Its weights come from ``sam_weights`` (a SAM v1 checkpoint
  such as ``sam_vit_b_01ec64.pth``, a path or a file name in the weights store); they cannot be fetched here, and
  without them the frozen encoder is random (a warning says so). ``preset="cpu"`` (the default, so that a model
  builds and runs on a CPU) uses a reduced encoder of the same layout (``"tiny"``) trained from scratch with the
  rest of the network (``freeze_encoder=False``). The encoder's weights are part of the translator's state, so
  a checkpoint restores them without the SAM file.
* **Mask initialisation.** The last convolution of every ``psi_i`` starts with bias 3 (weights N(0, 0.02) as
  everywhere else), so the masks start near sigmoid(3) = 0.95 and the untrained correction is close to the
  identity; with zero bias the masks start at 0.5 and ``y_hat_2 = y_hat_0 M_1^2 M_2`` would shrink the
  output eightfold, which slows the start of training. ``L_mask`` (Eq. 10) pulls the masks towards 1 anyway.
* **Where the masks act (``mask_space``, a departure when not "signed").** The paper multiplies ``y_hat_0``, the
  tanh output in [-1, 1], by masks in [0, 1] (``"signed"``, the default, literal). There a mask below 1 pulls a
  pixel towards 0, mid-grey, not towards background (-1): with the cpu preset on the phantom the literal form left
  the background ~8 % of the range too bright and CSF ~10 % too dark. ``mask_space="unit"`` applies Eq. 4-5 to
  ``u_0 = (y_hat_0 + 1) / 2`` in [0, 1] instead, where a closed mask discards towards black (background), as in
  StegoGAN whose masks MRNet adopts; the image is ``2 u_n - 1`` and Eq. 9 penalises ``u_i * M_bar_i``. Both forms
  are the same network and losses; the config records which one a checkpoint was trained with.
* **Field of view (``tile``, issue 20).** The generator always works on square views of ``tile`` x ``tile``
  pixels of the slice, in training and at inference alike, and its encoder sees each view resized to
  ``sam_image_size``: one scale, ``sam_image_size / tile`` encoder pixels per image pixel, whatever the slice size.
  A batch of exactly ``tile`` x ``tile`` (the training crops) is one view and runs as it is. A larger slice is cut
  into views every ``tile / 2`` pixels (the last flush with the far edge), all run as one batch and blended with a
  tent window (weight ``min(i + 1/2, tile - i - 1/2)`` along each axis, positive everywhere, normalised by the
  sum of the weights; a pixel covered by one view only gets that view's value). A side shorter than ``tile`` is
  padded with background (-1, as the engine pads) around the slice and cut back afterwards. The masks and every
  ``y_hat_k`` are blended the same way (Eq. 4-5 are per pixel). Before this, inference resized the whole slice
  to the encoder's input (on the phantom's 128 x 128 slices, half the scale of the 64 x 64 training crops the
  cpu preset's model was trained on); ``tile=0`` still does that, for old figures. Defaults: 64 for the cpu
  preset (its training crops; the encoder at native scale), 256 for the paper's (a whole 256 x 256 slice into
  SAM's 1024, as the paper). A checkpoint saved before the key existed gets its preset's tile (the cpu preset's
  64 for every one made so far). Train on crops of ``tile`` x ``tile``: other crops work, but are tiled or
  padded the same way.
* **No ground-truth masks.** The text mentions masks "compared against their respective ground truth masks";
  Eq. 6-11 contain no such term and none is given, so the recipe implements Eq. 6-11 only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from .base import TranslationOutput, Translator, TranslatorSpec, register_translator
from .blocks import _as_tuple, _int_arg, check_batch, init_normal, level_channels, make_norm
from .vit import VIT_CONFIGS, SamViT, build_sam_vit, load_sam_encoder_weights

__all__ = [
    "soft_clamp",
    "SoftClamp",
    "apply_masks",
    "masked_image",
    "run_tiled",
    "tile_starts",
    "MASK_SPACES",
    "MaskHead",
    "SamAdaptor",
    "MRNetGenerator",
    "MRNetTranslator",
    "mrnet",
    "PRESETS",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "count_parameters",
]

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
MAX_MASKS = 7
#: Where Eq. 4-5 act: on the tanh output (the paper) or on it mapped to [0, 1] (module notes).
MASK_SPACES = ("signed", "unit")
#: Initial bias of each mask network's last convolution: the masks start at about sigmoid(3) = 0.95.
MASK_BIAS_INIT = 3.0

#: Named sizes. "paper": 8 stages from 64 to 512 channels (pix2pix's generator, 256 x 256 slices) and SAM's
#: ViT-B, frozen, at its native 1024 x 1024 input. "cpu": 5 stages of 16 ... 128 channels and the reduced "tiny"
#: encoder on 64 x 64 views of the slice at their native scale, trained with the rest. ``tile``: the view's side
#: (module notes).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=64, depth=8, max_mult=8, encoder="sam_vit_b", sam_image_size=1024, freeze_encoder=True,
                  adaptor_ratio=0.5, mask_width=32, tile=256),
    "cpu": dict(width=16, depth=5, max_mult=8, encoder="tiny", sam_image_size=64, freeze_encoder=False,
                adaptor_ratio=0.5, mask_width=8, tile=64),
}
#: Largest view side: a slice smaller than the view is padded up to it, so a checkpoint must not ask for more.
MAX_TILE = 4096
#: Padding of views beyond the slice: background, as the engine pads (core.preprocess.PAD_VALUE).
TILE_PAD_VALUE = -1.0


# -- Eq. 3 -----------------------------------------------------------------------------------------------
def soft_clamp(z: torch.Tensor, alpha: float = 0.001) -> torch.Tensor:
    """SoftClamp of Eq. 3: ``min(1, max(0, z)) + alpha * (min(0, z) + max(0, z - 1))``.

    Values in [0, 1] pass unchanged; outside, the slope is ``alpha`` instead of 0, so gradients never vanish.
    """
    v = z.clamp(0.0, 1.0)  # Eq. 3, v
    return v + alpha * (z.clamp(max=0.0) + (z - 1.0).clamp(min=0.0))  # Eq. 3, S(z)


class SoftClamp(nn.Module):
    """:func:`soft_clamp` as a module (Eq. 3)."""

    def __init__(self, alpha: float = 0.001):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return soft_clamp(z, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


# -- Eq. 4-5 ---------------------------------------------------------------------------------------------
class MaskHead(nn.Module):
    """``psi_i`` of Eq. 4: two 3 x 3 conv-InstanceNorm-ReLU layers and a 1 x 1 convolution (logits)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, bias=False), make_norm("instance", hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), make_norm("instance", hidden), nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def apply_masks(y0: torch.Tensor, heads: Sequence[nn.Module], *, space: str = "signed",
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The multi-mask correction of Eq. 4-5.

    Parameters
    ----------
    y0 : torch.Tensor
        ``y_hat_0``, the decoder's output after tanh, in [-1, 1].
    heads : sequence of callables
        ``psi_1 ... psi_n`` (mask logits).
    space : {"signed", "unit"}
        Where the masks act: on ``y_hat_0`` itself (the paper) or on ``(y_hat_0 + 1) / 2`` (see the module notes).

    Returns
    -------
    ys : list of torch.Tensor
        ``[y_hat_0, y_hat_1, ..., y_hat_n]`` in the space the masks act on (for ``"unit"`` the image is
        ``2 * ys[-1] - 1``; :func:`masked_image`).
    masks : list of torch.Tensor
        ``[M_1, ..., M_n]`` with ``M_i = sigmoid(psi_i(y_hat_{i-1}))`` (Eq. 4).
    """
    if space not in MASK_SPACES:
        raise UnknownChoiceError("MRNet mask space", str(space), MASK_SPACES)
    if space == "unit":
        y0 = (y0 + 1.0) * 0.5
    ys = [y0]
    masks: list[torch.Tensor] = []
    running = None
    for psi in heads:
        m = torch.sigmoid(psi(ys[-1]))  # Eq. 4: M_k from y_hat_{k-1}
        masks.append(m)
        running = m if running is None else running * m  # prod_{i=1..k} M_i
        ys.append(ys[-1] * running)  # Eq. 5
    return ys, masks


def masked_image(y: torch.Tensor, space: str) -> torch.Tensor:
    """The image in [-1, 1] from a ``y_hat`` of :func:`apply_masks` computed in ``space``."""
    return y * 2.0 - 1.0 if space == "unit" else y


# -- Eq. 1-2 ---------------------------------------------------------------------------------------------
class SamAdaptor(nn.Module):
    """``A_i(F) = C_i(B(F, s_i))`` (Eq. 2), with ``C_i`` a 1 x 1 convolution (applied first; it commutes with B)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        a = self.conv(feat)
        if tuple(a.shape[-2:]) != tuple(size):
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
        return a


class MRNetGenerator(nn.Module):
    """Generator G: SAM-fused U-Net encoder (Eq. 1-2), SoftClamp (Eq. 3), light decoder, masks (Eq. 4-5).

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels in and out.
    encoder : SamViT
        The SAM-style image encoder giving ``F``.
    width, depth, max_mult : int
        Stage channels ``width * min(2**i, max_mult)`` for ``depth`` stages.
    adaptor_ratio : float
        Adaptor channels as a fraction of the stage's channels.
    n_masks, mask_width : int
        Number of masks (Eq. 4-5) and hidden channels of each ``psi_i``.
    sam_image_size : int
        Side of the square image the encoder sees.
    freeze_encoder : bool
        No gradients through the encoder, which stays in eval mode.
    alpha : float
        SoftClamp slope (Eq. 3).
    mask_space : {"signed", "unit"}
        Where the masks act (:func:`apply_masks`).
    """

    def __init__(self, in_channels: int, out_channels: int, encoder: SamViT, *, width: int, depth: int,
                 max_mult: int, adaptor_ratio: float, n_masks: int, mask_width: int, sam_image_size: int,
                 freeze_encoder: bool, alpha: float = 0.001, mask_space: str = "signed"):
        super().__init__()
        if mask_space not in MASK_SPACES:
            raise UnknownChoiceError("MRNet mask space", str(mask_space), MASK_SPACES)
        self.mask_space = mask_space
        self.encoder = encoder
        self.freeze_encoder = bool(freeze_encoder)
        self.sam_image_size = int(sam_image_size)
        if self.freeze_encoder:
            encoder.requires_grad_(False)
        self.register_buffer("pixel_mean", torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        ch = level_channels(width, depth, max_mult)
        ad = [max(1, round(adaptor_ratio * c)) for c in ch]
        fused = [c + a for c, a in zip(ch, ad)]
        self.depth = depth
        self.downs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else fused[i - 1], ch[i], 4, 2, 1) for i in range(depth)
        )
        self.adaptors = nn.ModuleList(SamAdaptor(encoder.out_chans, a) for a in ad)
        # T_i of Eq. 1: InstanceNorm + LeakyReLU; the bottleneck's nonlinearity is SoftClamp (Eq. 3) alone.
        self.transforms = nn.ModuleList(
            nn.Sequential(make_norm("instance", fused[i]), nn.LeakyReLU(0.2)) if i < depth - 1 else nn.Identity()
            for i in range(depth)
        )
        self.clamp = SoftClamp(alpha)
        ups: list[nn.Module] = []
        for i in reversed(range(1, depth)):
            n_in = fused[i] if i == depth - 1 else ch[i] + fused[i]
            ups.append(nn.Sequential(nn.ConvTranspose2d(n_in, ch[i - 1], 4, 2, 1, bias=False),
                                     make_norm("instance", ch[i - 1]), nn.ReLU()))
        n_in = fused[0] if depth == 1 else ch[0] + fused[0]
        ups.append(nn.Sequential(nn.ConvTranspose2d(n_in, out_channels, 4, 2, 1), nn.Tanh()))
        self.ups = nn.ModuleList(ups)
        self.mask_heads = nn.ModuleList(MaskHead(out_channels, mask_width) for _ in range(n_masks))

    def train(self, mode: bool = True) -> "MRNetGenerator":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def sam_input(self, x: torch.Tensor) -> torch.Tensor:
        """The image SAM sees: grey (mean of the inputs) as RGB in [0, 255], normalised, resized."""
        grey = x.mean(1, keepdim=True)
        rgb = (grey + 1.0) * 127.5
        rgb = (rgb - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        s = self.sam_image_size
        if tuple(rgb.shape[-2:]) != (s, s):
            rgb = F.interpolate(rgb, size=(s, s), mode="bilinear", align_corners=False)
        return rgb

    def sam_features(self, x: torch.Tensor) -> torch.Tensor:
        """``featureSAM(x)``: the encoder's output ``[B, C_sam, g, g]``."""
        if self.freeze_encoder:
            with torch.no_grad():
                return self.encoder(self.sam_input(x))
        return self.encoder(self.sam_input(x))

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``y_hat_0``: encoder with SAM fusion (Eq. 1-2), SoftClamp (Eq. 3), decoder with tanh."""
        feat = self.sam_features(x)
        skips = []
        h = x
        for i in range(self.depth):
            e = self.downs[i](h)  # e_i
            a = self.adaptors[i](feat, tuple(e.shape[-2:]))  # Eq. 2
            h = self.transforms[i](torch.cat([e, a], 1))  # Eq. 1
            skips.append(h)
        h = self.clamp(skips.pop())  # Eq. 3 at the bottleneck
        for up in self.ups[:-1]:
            h = torch.cat([up(h), skips.pop()], 1)
        return self.ups[-1](h)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(ys, masks)`` of :func:`apply_masks` (``ys`` in the mask space)."""
        return apply_masks(self.decode(x), self.mask_heads, space=self.mask_space)


# -- field of view ---------------------------------------------------------------------------------------
def tile_starts(size: int, tile: int) -> list[int]:
    """Starts of the views along one side: every ``tile // 2`` pixels, the last flush with the end (``[0]`` when
    ``size <= tile``)."""
    if size <= tile:
        return [0]
    step = max(1, tile // 2)
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def _tent(tile: int, device, dtype) -> torch.Tensor:
    """The blending window: ``min(i + 1/2, tile - i - 1/2)`` along each axis, positive everywhere."""
    i = torch.arange(tile, device=device, dtype=torch.float32) + 0.5
    w = torch.minimum(i, tile - i)
    return (w[:, None] * w[None, :]).to(dtype)


def run_tiled(net, x: torch.Tensor, tile: int, *, pad_value: float = TILE_PAD_VALUE,
              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``net(x)`` on ``tile`` x ``tile`` views of ``x``, blended (the module notes' field of view).

    Parameters
    ----------
    net : callable
        Takes ``[N, C, tile, tile]`` and returns ``(ys, masks)``, two lists of ``[N, C_k, tile, tile]`` tensors
        (:class:`MRNetGenerator`).
    x : torch.Tensor
        ``[B, C, H, W]``; a side shorter than ``tile`` is padded with ``pad_value`` around the slice.
    tile : int
        Side of the views.

    Returns
    -------
    (ys, masks)
        As ``net`` returns them, ``[B, C_k, H, W]`` each. With one view (``H = W = tile``) exactly ``net(x)``.
    """
    _, _, h, w = x.shape
    ph, pw = max(tile - h, 0), max(tile - w, 0)
    top, left = ph // 2, pw // 2
    if ph or pw:
        x = F.pad(x, (left, pw - left, top, ph - top), value=pad_value)
    hh, ww = x.shape[-2:]
    places = [(r, c) for r in tile_starts(hh, tile) for c in tile_starts(ww, tile)]
    if len(places) == 1:
        ys, masks = net(x)
    else:
        b = x.shape[0]
        views = torch.cat([x[..., r:r + tile, c:c + tile] for r, c in places], 0)
        ys_v, masks_v = net(views)
        win = _tent(tile, x.device, torch.float32)  # blended in float32 whatever the autocast
        total = x.new_zeros((1, 1, hh, ww), dtype=torch.float32)
        for r, c in places:
            total[..., r:r + tile, c:c + tile] += win

        def blend(v: torch.Tensor) -> torch.Tensor:
            out = v.new_zeros((b, v.shape[1], hh, ww), dtype=torch.float32)
            for k, (r, c) in enumerate(places):
                out[..., r:r + tile, c:c + tile] += v[k * b:(k + 1) * b] * win
            return out / total

        ys, masks = [blend(v) for v in ys_v], [blend(m) for m in masks_v]
    if ph or pw:
        ys = [v[..., top:top + h, left:left + w] for v in ys]
        masks = [m[..., top:top + h, left:left + w] for m in masks]
    return ys, masks


class MRNetTranslator(Translator):
    """MRNet's generator behind the Translator protocol (the discriminator lives in the recipe)."""

    def __init__(self, spec: TranslatorSpec, config: dict, net: MRNetGenerator):
        super().__init__(spec, config)
        self.net = net

    def training_outputs(self, x: torch.Tensor) -> dict[str, Any]:
        """One pass for the losses: ``image`` (``y_hat_n`` in [-1, 1]), ``ys`` (``y_hat_0 ... y_hat_n`` in the
        space the masks act on, what Eq. 9 penalises), ``masks``."""
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        tile = int(self.config.get("tile") or 0)
        ys, masks = run_tiled(self.net, x, tile) if tile else self.net(x)  # the same views in training and use
        return {"image": masked_image(ys[-1], self.net.mask_space), "ys": ys, "masks": masks}

    def forward(self, x: torch.Tensor, *, details: bool = False):
        """The translated image, or with ``details=True`` the dict of :meth:`training_outputs`."""
        out = self.training_outputs(x)
        return out if details else out["image"]

    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate ``[B, C_in, H, W]`` in [-1, 1]; ``maps["masks"]`` holds ``M_1 ... M_n`` (``steps``,
        ``generator`` are ignored: MRNet is deterministic)."""
        out = self.training_outputs(x)
        return TranslationOutput(image=out["image"].clamp(-1, 1), maps={"masks": torch.cat(out["masks"], 1)})


@register_translator("mrnet")
def mrnet(
    *,
    preset: str | None = None,
    inputs: Sequence[str] | str = ("T1",),
    outputs: Sequence[str] | str = ("T2",),
    width: int | None = None,
    depth: int | None = None,
    max_mult: int | None = None,
    encoder: str | None = None,
    sam_image_size: int | None = None,
    freeze_encoder: bool | None = None,
    adaptor_ratio: float | None = None,
    mask_width: int | None = None,
    tile: int | None = None,
    n_masks: int = 2,
    alpha: float = 0.001,
    mask_space: str = "signed",
    sam_weights: str | None = None,
    sam_pretrained: str | None = None,
) -> MRNetTranslator:
    """Build an MRNet generator with random weights (and SAM weights when ``sam_weights`` is given).

    Parameters
    ----------
    preset : {"cpu", "paper"} or None
        Size defaults (:data:`PRESETS`); None is "cpu". Explicit arguments override the preset.
    inputs, outputs : sequence of str
        Input and output modalities, one channel each.
    width, depth, max_mult : int
        Stage channels ``width * min(2**i, max_mult)``; ``depth`` stages, slices must be multiples of ``2**depth``.
    encoder : {"sam_vit_b", "tiny"}
        SAM-style image encoder size (:data:`~napari_medtrans.translators.vit.VIT_CONFIGS`).
    sam_image_size : int
        Side of the image given to the encoder (a multiple of its patch size).
    freeze_encoder : bool
        Keep the encoder fixed (pretrained SAM) or train it with the rest.
    adaptor_ratio : float
        SAM adaptor channels per stage as a fraction of the stage's channels (Eq. 2).
    mask_width : int
        Hidden channels of each mask network ``psi_i`` (Eq. 4).
    tile : int
        Side of the square views of the slice the generator works on, in training and at inference; the encoder
        sees each view resized to ``sam_image_size`` (module notes). A multiple of ``2**depth``; 0: the whole
        slice at once, resized to the encoder's input (the behaviour before issue 20). Default: the preset's
        (cpu 64, paper 256).
    n_masks : int
        Number of masks (Eq. 4-5): 2 in the paper, 1-7 (Table IV).
    alpha : float
        SoftClamp slope outside [0, 1] (Eq. 3; 0.001 in the paper).
    mask_space : {"signed", "unit"}
        Where the masks of Eq. 4-5 act: "signed" on the tanh output as the paper writes, "unit" on it mapped to
        [0, 1] (a departure; see the module notes).
    sam_weights : str or None
        SAM v1 checkpoint whose image encoder is loaded (path, or a file name in the weights store). The
        config records ``sam_weights=None`` and the file's name as ``sam_pretrained``: the encoder weights travel
        in the translator's state, so a checkpoint loads without the SAM file.
    sam_pretrained : str or None
        Where the encoder weights came from (a record only; nothing is loaded).
    """
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("MRNet preset", str(preset), list(PRESETS))
    base = PRESETS[preset or "cpu"]
    given = dict(width=width, depth=depth, max_mult=max_mult, encoder=encoder, sam_image_size=sam_image_size,
                 freeze_encoder=freeze_encoder, adaptor_ratio=adaptor_ratio, mask_width=mask_width, tile=tile)
    size = {k: (base[k] if v is None else v) for k, v in given.items()}
    if size["encoder"] not in VIT_CONFIGS:
        raise UnknownChoiceError("SAM encoder", str(size["encoder"]), list(VIT_CONFIGS))
    width_i = _int_arg("width", size["width"])
    depth_i = _int_arg("depth", size["depth"])
    max_mult_i = _int_arg("max_mult", size["max_mult"])
    mask_width_i = _int_arg("mask_width", size["mask_width"])
    tile_i = size["tile"]
    if isinstance(tile_i, bool) or not isinstance(tile_i, int) or not 0 <= tile_i <= MAX_TILE \
            or tile_i % 2**depth_i:
        raise ValueError(f'Argument "tile" must be 0 or a multiple of 2**depth = {2**depth_i} up to {MAX_TILE}, '
                         f"got {tile_i!r}.")
    n_masks_i = _int_arg("n_masks", n_masks)
    if n_masks_i > MAX_MASKS:
        raise ValueError(f'Argument "n_masks" must be between 1 and {MAX_MASKS} (Table IV), got {n_masks!r}.')
    patch = VIT_CONFIGS[size["encoder"]]["patch_size"]
    img = _int_arg("sam_image_size", size["sam_image_size"])
    if img % patch:
        raise ValueError(f'Argument "sam_image_size" must be a multiple of the encoder\'s patch size {patch}, '
                         f"got {img}.")
    ratio = float(size["adaptor_ratio"])
    if not 0.0 < ratio <= 4.0:
        raise ValueError(f'Argument "adaptor_ratio" must be in (0, 4], got {ratio!r}.')
    if mask_space not in MASK_SPACES:
        raise UnknownChoiceError("MRNet mask space", str(mask_space), MASK_SPACES)
    if not 0.0 <= float(alpha) < 1.0:
        raise ValueError(f'Argument "alpha" must be in [0, 1), got {alpha!r}.')
    inputs = _as_tuple(inputs, "inputs")
    outputs = _as_tuple(outputs, "outputs")
    config = dict(inputs=list(inputs), outputs=list(outputs), width=width_i, depth=depth_i, max_mult=max_mult_i,
                  encoder=str(size["encoder"]), sam_image_size=img, freeze_encoder=bool(size["freeze_encoder"]),
                  adaptor_ratio=ratio, mask_width=mask_width_i, tile=tile_i, n_masks=n_masks_i, alpha=float(alpha),
                  mask_space=str(mask_space), sam_weights=None,
                  sam_pretrained=None if sam_pretrained is None else str(sam_pretrained))
    vit = build_sam_vit(config["encoder"], img_size=img)
    if sam_weights is not None:
        load_sam_encoder_weights(vit, sam_weights)
        config["sam_pretrained"] = Path(str(sam_weights)).name
    elif config["freeze_encoder"] and sam_pretrained is None:
        warnings.warn("MRNet: the SAM encoder is frozen but no sam_weights were given, so it keeps random "
                      "weights; pass sam_weights=<SAM ViT-B checkpoint> or freeze_encoder=False", stacklevel=2)
    net = MRNetGenerator(len(inputs), len(outputs), vit, width=width_i, depth=depth_i, max_mult=max_mult_i,
                         adaptor_ratio=ratio, n_masks=n_masks_i, mask_width=mask_width_i, sam_image_size=img,
                         freeze_encoder=config["freeze_encoder"], alpha=float(alpha), mask_space=str(mask_space))
    for part in (net.downs, net.adaptors, net.transforms, net.ups, net.mask_heads):
        init_normal(part)
    for head in net.mask_heads:  # masks start nearly open: sigmoid(3) = 0.95 (a choice, see the module notes)
        nn.init.constant_(head.net[-1].bias, MASK_BIAS_INIT)
    spec = TranslatorSpec(method="mrnet", inputs=inputs, outputs=outputs, size_multiple=2**depth_i, paired=True,
                          stochastic=False, maps=("masks",))
    return MRNetTranslator(spec, config, net)


def count_parameters(model: MRNetTranslator) -> dict[str, int]:
    """Parameters of an MRNet translator: ``total``, ``encoder`` (SAM), ``trainable`` and ``frozen``."""
    ps = list(model.parameters())
    enc = sum(p.numel() for p in model.net.encoder.parameters())
    train = sum(p.numel() for p in ps if p.requires_grad)
    total = sum(p.numel() for p in ps)
    return {"total": total, "encoder": enc, "trainable": train, "frozen": total - train}
