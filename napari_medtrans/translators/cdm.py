"""CDM (Xing et al., "Cross-conditioned Diffusion Model for Medical Image to Image Translation", MICCAI 2024).

The source modalities (T1, T2) are translated into several target modalities at once (T1c, T2-FLAIR) by a U-Net
that is guided by a sampled *target distribution* ``y_0``, a vector that summarises the targets. Three networks,
trained one after the other (the recipe ``"cdm"`` in :mod:`napari_medtrans.training.recipe_cdm`):

1. **MRM** (Sec. 2.1, Fig. 2a, Eq. 1): the modality-specific representation model. Random patches of each target
   modality are masked separately (:func:`random_patch_mask`), the masked targets are concatenated along the
   channels, the feature encoder FE maps them to ``y_0`` and the decoder FD restores the targets; the L2 loss is
   taken on the masked patches only (Eq. 1, SimMIM-style). After this stage FE on the *unmasked* targets
   defines the target distribution ``y_0 = FE(Y)`` (:meth:`CdmTranslator.represent`).
2. **MDN** (Sec. 2.1, Fig. 3a, Eq. 2-3): the light modality-decoupled diffusion network over ``y_0``. Two (one per
   target modality) separate linear layers decouple the noised ``y_t`` into modality streams; residual blocks, each
   an input layer, a timestep-embedding layer and an output layer of LayerNorm, SiLU and Linear, remove the noise;
   an output layer maps the streams back to ``y_0``. Training noises ``y_0`` with the closed form of Eq. 2 and
   regresses ``y_0`` under an L2 loss; inference runs the DDIM reverse chain of Eq. 3 from Gaussian noise in
   ``N_sampling`` steps (:meth:`CdmTranslator.sample_distribution`).
3. **C-UNet** (Sec. 2.2, Fig. 3b, Eq. 4): a U-Net over the source modalities with a Condition Embedding module at
   every scale: a convolution block (LayerNorm, SiLU, 1x1 convolution) gives the feature representation of the
   source features, an MLP (Linear, SiLU, Linear) the distribution representation of ``y_0``; the two are fused
   and then downsampled. Eq. 4 is the synthesis loss on its output.

:meth:`CdmTranslator.translate` samples ``y_0`` with the MDN (``steps`` = ``N_sampling``, 30 by default, Table 4)
and runs the C-UNet once: the diffusion runs on a vector, not on the image, which is where the paper's speed
comes from (Fig. 1, Fig. 5a; ``bench/cdm.py`` measures it against the EDTS-Trans diffusion refiner).

Choices where the paper is open
-------------------------------
* **What ``y_0`` is.** The paper calls FE's output "the target distribution" and processes it with Linear layers
  and LayerNorms (MDN) and an MLP (Condition Embedding), as RCG does with its image representation: ``y_0`` is one
  vector of ``rep_dim`` numbers per slice. FE = a patch-embedding convolution (stride ``mrm_patch``), residual
  conv blocks, average pooling to a ``mrm_grid x mrm_grid`` grid (so the vector keeps a coarse layout), a Linear
  layer, and a LayerNorm without scale and bias, so that ``y_0`` has zero mean and unit variance per slice, the
  scale of the diffusion noise. FD is FE mirrored: Linear to the grid, bilinear resize to the patch grid, residual
  blocks, a 1x1 convolution to ``C_out * p^2`` values and a pixel shuffle (SimMIM's light decoder). FD sees only
  ``y_0``, so Eq. 1 trains ``y_0`` itself to carry the targets.
* **Masking.** ``mask_ratio`` (0.6, SimMIM's) of the ``mrm_patch``-sized patches of every target modality are
  masked, drawn independently per modality and slice; masked pixels take a learned value per modality (SimMIM's
  mask token, here in pixel space because the masks differ between the concatenated channels).
* **Eq. 1 and Eq. 4.** The paper writes ``||.||_2`` in both and states for Eq. 4 that it is the mean square
  error; Eq. 1 is read the same way: the mean over the masked patches ``R`` of each patch's mean squared error
  (:func:`napari_medtrans.training.recipe_cdm.masked_patch_loss`). The "cross-entropy loss" of the
  implementation details contradicts both equations and is not used.
* **MDN details.** The residual blocks are shared by the modality streams (a light network; the decoupling layers
  make the streams differ) and their timestep-embedding layer adds per stream: ``h + out(in(h) + emb(e))``. The
  output layer (LayerNorm, SiLU, Linear) reads the concatenated streams. The network predicts ``y_0`` ("learns to
  restore y_0 ... supervised by L2"), so :class:`~napari_medtrans.translators.diffusion.GaussianDiffusion` runs
  with ``prediction="x0"`` and no clipping (``y_0`` is not an image). T = 1000 steps with DDPM's linear schedule.
* **Source conditioning of the MDN** (``mdn_condition``). Eq. 3 as printed is unconditional: a sample would then be
  the distribution of *some* patient's targets, not of the patient being translated, and a C-UNet trained with
  ``FE(Y)`` of its own slice would be guided by a stranger's targets at inference. The default
  ``mdn_condition="source"`` makes the reverse chain ``p_theta(y_{t-1} | y_t, x)``: a small convolutional encoder of
  the source slice (stride-2 conv blocks, pooling to the grid, Linear) adds its vector to the timestep embedding
  of every residual block (RCG's route for class labels). ``mdn_condition="none"`` is Eq. 3 as printed.
* **C-UNet details.** Each encoder scale: ``res_blocks`` residual blocks (GroupNorm, SiLU, 3x3 conv, twice), the
  Condition Embedding module (fusion = the distribution representation added per channel to the feature
  representation), which is also the skip to the decoder, then a stride-2 3x3 convolution. The bottleneck has one
  more Condition Embedding between two residual blocks. Decoder: nearest upsampling and a 3x3 conv, concatenation
  with the skip, residual blocks. Head: GroupNorm, SiLU, 3x3 conv to one channel per target (no tanh; Eq. 4 is
  an MSE, outputs are clamped to [-1, 1] at inference).
* **What conditions the C-UNet during training** is a recipe option: ``y_0 = FE(Y)`` ("encoder", the paper's
  Fig. 2c, as in RCG) or MDN samples ("sampled").
* **Ablations (Table 3).** ``ablation="M1"`` (``condition=False``): the conventional U-Net, no MRM and no MDN; the
  Condition Embedding keeps its convolution branch only; deterministic. ``ablation="M2"`` (``decouple=False``):
  the condition is used but the diffusion network has one input layer instead of the modality-decoupling ones
  (Table 3's columns are "Condition" and "Decouple": M2 has the first, not the second).
* **Sizes.** ``preset="paper"`` (the default) is a 256 x 256 model (the paper gives no widths; these are chosen);
  ``preset="cpu"`` is small enough to train on a CPU. :func:`model_complexity` counts parameters and FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UnknownChoiceError
from .attention import LayerNorm2d
from .base import TranslationOutput, Translator, TranslatorSpec, meta_device, register_translator
from .blocks import _as_tuple, _int_arg, check_batch, make_norm
from .complexity import count_flops, meta_slice
from .diffusion import SAMPLERS, SCHEDULES, GaussianDiffusion, TimeEmbedding, TrainingForward

__all__ = [
    "PRESETS",
    "STAGES",
    "ABLATIONS",
    "MDN_CONDITIONS",
    "TRAIN_CONDITIONS",
    "random_patch_mask",
    "ResBlock",
    "ConditionEmbedding",
    "CUNet",
    "MRM",
    "MDNResBlock",
    "SourceEncoder",
    "MDN",
    "CdmTranslator",
    "cdm",
    "model_complexity",
    "format_complexity",
]

STAGES = ("mrm", "mdn", "cunet")
ABLATIONS = ("M1", "M2")
MDN_CONDITIONS = ("source", "none")
TRAIN_CONDITIONS = ("encoder", "sampled")

#: Named sizes (the paper gives none). "paper": a 256 x 256 model with a 4-level C-UNet; "cpu": a small model.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=32, depth=4, max_mult=8, res_blocks=2, rep_dim=256, mrm_patch=16, mrm_width=128,
                  mrm_blocks=2, mrm_grid=4, mdn_width=256, mdn_blocks=6, src_width=32, src_levels=4,
                  default_steps=30),
    "cpu": dict(width=16, depth=3, max_mult=4, res_blocks=1, rep_dim=64, mrm_patch=8, mrm_width=32, mrm_blocks=1,
                mrm_grid=4, mdn_width=128, mdn_blocks=3, src_width=8, src_levels=3, default_steps=30),
}


def random_patch_mask(batch: int, channels: int, grid: tuple[int, int], ratio: float, *,
                      generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Which patches the MRM masks: ``[batch, channels, gh, gw]`` booleans, drawn per slice and per modality.

    Exactly ``max(1, round(ratio * gh * gw))`` patches of every (slice, modality) are True ("each target modality
    separately", Sec. 2.1).

    Parameters
    ----------
    batch, channels : int
        Slices and target modalities.
    grid : (int, int)
        Patches along H and W.
    ratio : float
        Fraction of masked patches, in (0, 1).
    generator : torch.Generator, optional
        Source of randomness (on ``device``).
    """
    if not 0.0 < float(ratio) < 1.0:
        raise ValueError(f'Argument "ratio" must be in (0, 1), got {ratio!r}.')
    gh, gw = int(grid[0]), int(grid[1])
    n = gh * gw
    if n < 1:
        raise ValueError(f'Argument "grid" must hold at least one patch, got {tuple(grid)}.')
    k = min(max(1, int(round(float(ratio) * n))), n)
    scores = torch.rand(batch, channels, n, generator=generator, device=device)
    order = scores.argsort(dim=-1)
    mask = torch.zeros(batch, channels, n, dtype=torch.bool, device=order.device)
    mask.scatter_(-1, order[..., :k], True)
    return mask.reshape(batch, channels, gh, gw)


# -- building blocks -------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """Residual block: (GroupNorm, SiLU, 3x3 conv) twice, plus the input (1x1-projected when channels change)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            make_norm("group", in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            make_norm("group", out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class ConditionEmbedding(nn.Module):
    """The Condition Embedding module of one C-UNet scale (Fig. 3b).

    ``feature(h) = Conv1x1(SiLU(LN(h)))`` (the feature representation of the source features) and
    ``distribution(y) = Linear(SiLU(Linear(y)))`` (the distribution representation of ``y_0``) are fused by adding
    the latter per channel; the caller downsamples the result. Without a condition (ablation M1) only the
    convolution branch exists. The MLP's hidden width is ``max(channels, rep_dim)``.

    Parameters
    ----------
    channels : int
        Feature maps of the scale.
    rep_dim : int or None
        Size of ``y_0``; None builds no distribution branch.
    """

    def __init__(self, channels: int, rep_dim: int | None):
        super().__init__()
        self.feature = nn.Sequential(LayerNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, channels, 1))
        self.distribution = None
        if rep_dim:
            hidden = max(channels, int(rep_dim))
            self.distribution = nn.Sequential(nn.Linear(rep_dim, hidden), nn.SiLU(), nn.Linear(hidden, channels))

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        f = self.feature(h)
        if self.distribution is None:
            return f
        if y is None:
            raise ValueError("this C-UNet is conditioned: pass the target distribution y_0")
        return f + self.distribution(y.to(f.dtype))[:, :, None, None].to(f.dtype)  # fusion


class CUNet(nn.Module):
    """The cross-conditioned U-Net (Sec. 2.2): source slices in, target slices out, guided by ``y_0``.

    Parameters
    ----------
    in_channels, out_channels : int
        Source and target modalities.
    width : int
        Channels at full resolution; scale ``i`` has ``width * min(2**i, max_mult)``.
    depth : int
        Downsamplings; slices must be multiples of ``2**depth``.
    max_mult : int
        Channel multiplier cap.
    res_blocks : int
        Residual blocks per scale (encoder and decoder).
    rep_dim : int or None
        Size of ``y_0``; None is the unconditioned U-Net of ablation M1.
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int, depth: int, max_mult: int,
                 res_blocks: int, rep_dim: int | None):
        super().__init__()
        ch = [width * min(2**i, max_mult) for i in range(depth + 1)]
        self.depth = depth
        self.stem = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.encoder = nn.ModuleList(nn.Sequential(*(ResBlock(ch[i], ch[i]) for _ in range(res_blocks)))
                                     for i in range(depth))
        self.embed = nn.ModuleList(ConditionEmbedding(ch[i], rep_dim) for i in range(depth + 1))
        self.down = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 3, stride=2, padding=1) for i in range(depth))
        self.mid1 = ResBlock(ch[depth], ch[depth])
        self.mid2 = ResBlock(ch[depth], ch[depth])
        self.up = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(ch[i + 1], ch[i], 3, padding=1)) for i in range(depth))
        self.decoder = nn.ModuleList(
            nn.Sequential(ResBlock(2 * ch[i], ch[i]), *(ResBlock(ch[i], ch[i]) for _ in range(res_blocks - 1)))
            for i in range(depth)
        )
        self.head = nn.Sequential(make_norm("group", ch[0]), nn.SiLU(), nn.Conv2d(ch[0], out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(x)
        skips = []
        for i in range(self.depth):
            h = self.embed[i](self.encoder[i](h), y)  # Condition Embedding: feature + distribution, fused
            skips.append(h)
            h = self.down[i](h)  # "... then a down-sampling layer"
        h = self.mid2(self.embed[self.depth](self.mid1(h), y))
        for i in reversed(range(self.depth)):
            h = self.decoder[i](torch.cat([self.up[i](h), skips[i]], dim=1))
        return self.head(h)


class MRM(nn.Module):
    """The modality-specific representation model (Sec. 2.1, Fig. 2a): encoder FE and decoder FD.

    Parameters
    ----------
    channels : int
        Target modalities (concatenated along the channels).
    patch : int
        Side of the masked patches and stride of FE's patch embedding.
    width : int
        Feature channels of FE and FD.
    blocks : int
        Residual blocks in FE and in FD.
    grid : int
        FE pools its features to ``grid x grid`` before the Linear layer to ``y_0``.
    rep_dim : int
        Size of ``y_0``.
    """

    def __init__(self, channels: int, *, patch: int, width: int, blocks: int, grid: int, rep_dim: int):
        super().__init__()
        self.channels, self.patch, self.width, self.grid = channels, patch, width, grid
        self.mask_token = nn.Parameter(torch.zeros(channels))
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        self.fe_blocks = nn.Sequential(*(ResBlock(width, width) for _ in range(blocks)))
        self.fe_pool = nn.AdaptiveAvgPool2d(grid)
        self.fe_out = nn.Linear(width * grid * grid, rep_dim)
        self.fe_norm = nn.LayerNorm(rep_dim, elementwise_affine=False)
        self.fd_in = nn.Linear(rep_dim, width * grid * grid)
        self.fd_blocks = nn.Sequential(*(ResBlock(width, width) for _ in range(blocks)))
        self.fd_out = nn.Sequential(make_norm("group", width), nn.SiLU(),
                                    nn.Conv2d(width, channels * patch * patch, 1), nn.PixelShuffle(patch))

    def apply_mask(self, y: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """Replace the masked patches of each modality by its learned mask value."""
        m = patch_mask.to(y.dtype).repeat_interleave(self.patch, -2).repeat_interleave(self.patch, -1)
        return y * (1 - m) + self.mask_token.to(y.dtype)[None, :, None, None] * m

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """FE: targets ``[B, C, H, W]`` -> ``y_0`` ``[B, rep_dim]`` (zero mean, unit variance per slice)."""
        h = self.fe_pool(self.fe_blocks(self.embed(y)))
        return self.fe_norm(self.fe_out(h.flatten(1)))

    def decode(self, y0: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """FD: ``y_0`` -> restored targets ``[B, C, H, W]`` (H and W multiples of the patch)."""
        gh, gw = size[0] // self.patch, size[1] // self.patch
        h = self.fd_in(y0).reshape(y0.shape[0], self.width, self.grid, self.grid)
        if (gh, gw) != (self.grid, self.grid):
            h = F.interpolate(h, size=(gh, gw), mode="bilinear", align_corners=False)
        return self.fd_out(self.fd_blocks(h))

    def forward(self, y: torch.Tensor, patch_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask, encode, decode: returns ``(restored targets, y_0 of the masked targets)``."""
        y0 = self.encode(self.apply_mask(y, patch_mask))  # FE on the masked, concatenated targets
        return self.decode(y0, (y.shape[-2], y.shape[-1])), y0  # FD restores them (Eq. 1 compares the masked patches)


class MDNResBlock(nn.Module):
    """A residual block of the MDN (Fig. 3a): input, timestep-embedding and output layers, each LN, SiLU, Linear.

    ``h [B, S, W]`` (S modality streams) and ``emb [B, E]``: ``h + out(in(h) + emb_layer(emb))``.
    """

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.in_layer = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))
        self.emb_layer = nn.Sequential(nn.LayerNorm(emb_dim), nn.SiLU(), nn.Linear(emb_dim, width))
        self.out_layer = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.out_layer(self.in_layer(h) + self.emb_layer(emb)[:, None, :].to(h.dtype))


class SourceEncoder(nn.Module):
    """The source slice as one vector for the MDN's condition: stride-2 conv blocks, pooling to a grid, Linear."""

    def __init__(self, in_channels: int, *, width: int, levels: int, grid: int, out_dim: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1)]
        c = width
        for i in range(levels):
            c_next = width * 2 ** (i + 1)
            layers += [make_norm("group", c), nn.SiLU(), nn.Conv2d(c, c_next, 3, stride=2, padding=1)]
            c = c_next
        layers += [make_norm("group", c), nn.SiLU(), nn.AdaptiveAvgPool2d(grid)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * grid * grid, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).flatten(1))


class MDN(nn.Module):
    """The modality-decoupled diffusion network (Sec. 2.1, Fig. 3a): predicts ``y_0`` from ``y_t`` and ``t``.

    Parameters
    ----------
    rep_dim : int
        Size of ``y_0``.
    streams : int
        Modality streams: one decoupling Linear layer per target modality (1 for ablation M2).
    width : int
        Width of a stream.
    blocks : int
        Residual blocks.
    source_channels : int or None
        Source modalities of the condition encoder (``mdn_condition="source"``); None for Eq. 3 as printed.
    src_width, src_levels, grid : int
        Size of the source encoder.
    """

    def __init__(self, rep_dim: int, streams: int, *, width: int, blocks: int, source_channels: int | None,
                 src_width: int, src_levels: int, grid: int):
        super().__init__()
        self.decouple = nn.ModuleList(nn.Linear(rep_dim, width) for _ in range(streams))
        self.time_embed = TimeEmbedding(width, width)
        self.source = None
        if source_channels:
            self.source = SourceEncoder(source_channels, width=src_width, levels=src_levels, grid=grid, out_dim=width)
        self.blocks = nn.ModuleList(MDNResBlock(width, width) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(streams * width), nn.SiLU(), nn.Linear(streams * width, rep_dim))

    def encode_source(self, x: torch.Tensor) -> torch.Tensor | None:
        """The source condition vector ``[B, width]`` (None for an unconditional MDN)."""
        return None if self.source is None else self.source(x)

    def forward(self, y_t: torch.Tensor, t: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.stack([layer(y_t) for layer in self.decouple], dim=1)  # Fig. 3a: decouple y_t per modality
        emb = self.time_embed(t)
        if self.source is not None:
            if source is None:
                raise ValueError("this MDN is conditioned on the source: pass encode_source(x)")
            emb = emb + source.to(emb.dtype)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h.flatten(1))


# -- the translator --------------------------------------------------------------------------------------
class CdmTranslator(TrainingForward, Translator):
    """CDM behind the Translator protocol: MDN sampling of ``y_0`` (Eq. 3), then the C-UNet (Sec. 2.2)."""

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any]):
        super().__init__(spec, config)
        c = self.config
        n_in, n_out = len(spec.inputs), len(spec.outputs)
        self.condition = bool(c["condition"])
        rep = int(c["rep_dim"]) if self.condition else None
        self.cunet = CUNet(n_in, n_out, width=c["width"], depth=c["depth"], max_mult=c["max_mult"],
                           res_blocks=c["res_blocks"], rep_dim=rep)
        self.mrm: MRM | None = None
        self.mdn: MDN | None = None
        self.diffusion: GaussianDiffusion | None = None
        if self.condition:
            self.mrm = MRM(n_out, patch=c["mrm_patch"], width=c["mrm_width"], blocks=c["mrm_blocks"],
                           grid=c["mrm_grid"], rep_dim=rep)
            self.mdn = MDN(rep, n_out if c["decouple"] else 1, width=c["mdn_width"], blocks=c["mdn_blocks"],
                           source_channels=n_in if c["mdn_condition"] == "source" else None,
                           src_width=c["src_width"], src_levels=c["src_levels"], grid=c["mrm_grid"])
            self.diffusion = GaussianDiffusion(c["timesteps"], c["schedule"], prediction="x0", clip_x0=False)

    def stage_module(self, stage: str) -> nn.Module:
        """The network a training stage trains: ``"mrm"``, ``"mdn"`` or ``"cunet"``."""
        if stage not in STAGES:
            raise UnknownChoiceError("CDM training stage", str(stage), STAGES)
        if stage != "cunet" and not self.condition:
            raise ValueError(f"stage {stage!r} does not exist in ablation M1 (condition=False): train 'cunet' only")
        return {"mrm": self.mrm, "mdn": self.mdn, "cunet": self.cunet}[stage]

    def _need_condition(self, what: str) -> None:
        if not self.condition:
            raise ValueError(f"{what} needs the MRM and MDN, which ablation M1 (condition=False) does not have")

    def _check_target(self, x: torch.Tensor, target: torch.Tensor) -> None:
        want = (x.shape[0], len(self.spec.outputs), x.shape[2], x.shape[3])
        if not isinstance(target, torch.Tensor) or tuple(target.shape) != want:
            got = list(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
            raise ValueError(f'Argument "target" must have shape {list(want)} (one channel per output '
                             f"{', '.join(self.spec.outputs)}), got {got}.")

    # -- the three networks ------------------------------------------------------------------------------
    def represent(self, target: torch.Tensor) -> torch.Tensor:
        """The target distribution ``y_0 = FE(Y)`` of unmasked targets ``[B, C_out, H, W]`` -> ``[B, rep_dim]``."""
        self._need_condition("represent()")
        return self.mrm.encode(target)

    def sample_distribution(self, x: torch.Tensor, *, steps: int, generator: torch.Generator | None = None,
                            x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 3: ``y_0`` sampled by the MDN from Gaussian noise in ``steps`` DDIM (or DDPM) steps.

        Parameters
        ----------
        x : torch.Tensor
            Source batch ``[B, C_in, H, W]`` (the condition when ``mdn_condition="source"``).
        steps : int
            ``N_sampling``: network evaluations, 1 ... ``timesteps``.
        generator : torch.Generator, optional
            Source of the starting noise (on ``x``'s device).
        x_T : torch.Tensor, optional
            The starting noise ``[B, rep_dim]`` instead of a draw.
        """
        self._need_condition("sample_distribution()")
        src = self.mdn.encode_source(x)
        shape = (x.shape[0], int(self.config["rep_dim"]))

        def model_fn(y_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.mdn(y_t, t, src)

        # Eq. 3: p_theta(y_{0:T}) = p(y_T) prod_t p_theta(y_{t-1} | y_t), y_T ~ N(0, I), on the DDIM schedule
        return self.diffusion.sample(model_fn, shape, steps=int(steps), sampler=self.config["sampler"],
                                     eta=self.config["eta"], generator=generator, device=x.device,
                                     dtype=torch.float32, x_T=x_T)

    def synthesize(self, x: torch.Tensor, y0: torch.Tensor | None) -> torch.Tensor:
        """The C-UNet: source ``[B, C_in, H, W]`` and ``y_0`` (None for M1) -> targets ``[B, C_out, H, W]``."""
        return self.cunet(x, y0)

    # -- training passes ---------------------------------------------------------------------------------
    def training_outputs(self, x: torch.Tensor, target: torch.Tensor, *, stage: str = "cunet",
                         mask_ratio: float = 0.6, condition: str = "encoder", steps: int | None = None,
                         t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                         patch_mask: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One training pass of ``stage``; the recipe turns the outputs into the losses.

        * ``"mrm"``: ``{"pred": FD(FE(masked Y)), "mask": patch mask [B, C_out, H/p, W/p], "y0"}`` (Eq. 1).
        * ``"mdn"``: ``{"pred": MDN(y_t, t), "y0": FE(Y), "t"}`` with ``y_t`` from Eq. 2 (FE without gradients).
        * ``"cunet"``: ``{"pred": C-UNet(x, y0), "y0"}`` (Eq. 4); ``y0`` is ``FE(Y)`` (``condition="encoder"``) or
          an MDN sample in ``steps`` steps (``"sampled"``), both without gradients; absent for M1.

        ``t``, ``noise`` and ``patch_mask`` may be given (tests); otherwise they are drawn from ``generator``
        (or torch's global generator).
        """
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        self._check_target(x, target)
        self.stage_module(stage)
        target = target.to(x.dtype)
        if stage == "mrm":
            p = self.mrm.patch
            if patch_mask is None:
                patch_mask = random_patch_mask(x.shape[0], target.shape[1], (x.shape[2] // p, x.shape[3] // p),
                                               mask_ratio, generator=generator, device=x.device)
            pred, y0 = self.mrm(target, patch_mask)
            return {"pred": pred, "mask": patch_mask, "y0": y0}
        if stage == "mdn":
            with torch.no_grad():
                y0 = self.represent(target).float()
            if t is None:
                t = torch.randint(0, self.diffusion.timesteps, (x.shape[0],), device=x.device, generator=generator)
            if noise is None:
                noise = torch.randn(y0.shape, device=x.device, generator=generator)
            y_t = self.diffusion.q_sample(y0, t, noise.to(y0.dtype))  # Eq. 2
            pred = self.mdn(y_t, t, self.mdn.encode_source(x))
            return {"pred": pred, "y0": y0, "t": t}
        # stage == "cunet"
        if condition not in TRAIN_CONDITIONS:
            raise UnknownChoiceError("C-UNet training condition", str(condition), TRAIN_CONDITIONS)
        y0 = None
        if self.condition:
            with torch.no_grad():
                if condition == "encoder":
                    y0 = self.represent(target)
                else:
                    n = self.spec.default_steps if steps is None else steps
                    y0 = self.sample_distribution(x, steps=int(n), generator=generator)
        out = {"pred": self.synthesize(x, y0)}  # Y_hat of Eq. 4
        if y0 is not None:
            out["y0"] = y0
        return out

    # -- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate ``[B, C_in, H, W]`` in [-1, 1] into ``[B, C_out, H, W]``: sample ``y_0`` (Eq. 3), run the C-UNet.

        Parameters
        ----------
        x : torch.Tensor
            Source batch, channels in ``spec.inputs`` order; H and W multiples of ``spec.size_multiple``.
        steps : int, optional
            ``N_sampling`` (default ``spec.default_steps``, 30); ignored by ablation M1, which samples nothing.
        generator : torch.Generator, optional
            Source of the MDN's starting noise; same seed, same output.
        """
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        y0 = None
        if self.condition:
            n = self.spec.default_steps if steps is None else steps
            y0 = self.sample_distribution(x, steps=n, generator=generator)
        return TranslationOutput(image=self.synthesize(x, y0).float().clamp(-1, 1))


@register_translator("cdm")
def cdm(
    *,
    preset: str | None = None,
    inputs: Sequence[str] | str = ("T1", "T2"),
    outputs: Sequence[str] | str = ("T1c", "FLAIR"),
    width: int | None = None,
    depth: int | None = None,
    max_mult: int | None = None,
    res_blocks: int | None = None,
    rep_dim: int | None = None,
    mrm_patch: int | None = None,
    mrm_width: int | None = None,
    mrm_blocks: int | None = None,
    mrm_grid: int | None = None,
    mdn_width: int | None = None,
    mdn_blocks: int | None = None,
    src_width: int | None = None,
    src_levels: int | None = None,
    condition: bool = True,
    decouple: bool = True,
    ablation: str | None = None,
    mdn_condition: str = "source",
    timesteps: int = 1000,
    schedule: str = "linear",
    sampler: str = "ddim",
    eta: float = 0.0,
    default_steps: int | None = None,
) -> CdmTranslator:
    """Build a CDM translator with random weights.

    Parameters
    ----------
    preset : {"paper", "cpu"} or None
        Size defaults (:data:`PRESETS`); None is "paper". Explicit arguments override the preset.
    inputs, outputs : sequence of str
        Source and target modalities, one channel each (T1 + T2 -> T1c + FLAIR in the paper).
    width, depth, max_mult, res_blocks : int
        C-UNet: channels at full resolution, downsamplings, channel multiplier cap, residual blocks per scale.
    rep_dim : int
        Size of the target distribution ``y_0``.
    mrm_patch, mrm_width, mrm_blocks, mrm_grid : int
        MRM: masked patch side (FE's patch stride), feature channels, residual blocks of FE and FD, pooled grid.
    mdn_width, mdn_blocks : int
        MDN: stream width and residual blocks.
    src_width, src_levels : int
        The MDN's source encoder (``mdn_condition="source"``).
    condition : bool
        False is ablation M1: the C-UNet alone, no MRM, no MDN.
    decouple : bool
        False is ablation M2: one input layer in the diffusion network instead of one per target modality.
    ablation : {"M1", "M2"} or None
        Shortcut for ``condition=False`` / ``decouple=False`` (Table 3).
    mdn_condition : {"source", "none"}
        The MDN sees the source slice (default) or only noise (Eq. 3 as printed); see the module notes.
    timesteps : int
        T of the diffusion process (Eq. 2).
    schedule : {"linear", "cosine"}
        Noise schedule.
    sampler : {"ddim", "ddpm"}
        Reverse process of Eq. 3 (DDIM in the paper).
    eta : float
        DDIM's eta (0: deterministic given the starting noise).
    default_steps : int
        ``N_sampling`` when ``translate`` gets none (30 in the paper, Table 4).
    """
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("CDM preset", str(preset), list(PRESETS))
    base = PRESETS[preset or "paper"]
    given = dict(width=width, depth=depth, max_mult=max_mult, res_blocks=res_blocks, rep_dim=rep_dim,
                 mrm_patch=mrm_patch, mrm_width=mrm_width, mrm_blocks=mrm_blocks, mrm_grid=mrm_grid,
                 mdn_width=mdn_width, mdn_blocks=mdn_blocks, src_width=src_width, src_levels=src_levels,
                 default_steps=default_steps)
    size = {k: _int_arg(k, base[k] if v is None else v, 0 if k == "src_levels" else 1) for k, v in given.items()}
    if ablation is not None:
        key = str(ablation).upper()
        if key not in ABLATIONS:
            raise UnknownChoiceError("CDM ablation", str(ablation), ABLATIONS)
        if key == "M1":
            condition = False
        else:
            decouple = False
    if mdn_condition not in MDN_CONDITIONS:
        raise UnknownChoiceError("MDN condition", str(mdn_condition), MDN_CONDITIONS)
    if schedule not in SCHEDULES:
        raise UnknownChoiceError("noise schedule", str(schedule), SCHEDULES)
    if sampler not in SAMPLERS:
        raise UnknownChoiceError("sampler", str(sampler), SAMPLERS)
    if float(eta) < 0:
        raise ValueError(f'Argument "eta" must be >= 0, got {eta!r}.')
    timesteps = _int_arg("timesteps", timesteps)
    if size["default_steps"] > timesteps:
        raise ValueError(f'Argument "default_steps" must be in [1, timesteps={timesteps}], '
                         f"got {size['default_steps']!r}.")
    inputs = _as_tuple(inputs, "inputs")
    outputs = _as_tuple(outputs, "outputs")
    config = dict(inputs=list(inputs), outputs=list(outputs), **{k: v for k, v in size.items()},
                  condition=bool(condition), decouple=bool(decouple), mdn_condition=str(mdn_condition),
                  timesteps=timesteps, schedule=str(schedule), sampler=str(sampler), eta=float(eta))
    multiple = 2 ** size["depth"]
    if config["condition"]:
        multiple = multiple * size["mrm_patch"] // math.gcd(multiple, size["mrm_patch"])
    spec = TranslatorSpec(method="cdm", inputs=inputs, outputs=outputs, size_multiple=multiple, paired=True,
                          stochastic=config["condition"],
                          default_steps=size["default_steps"] if config["condition"] else None)
    return CdmTranslator(spec, config)


# -- size ----------------------------------------------------------------------------------------------
def model_complexity(model: CdmTranslator | None = None, *, size: int = 256, **config: Any) -> dict[str, Any]:
    """Parameters per network and FLOPs per ``size`` x ``size`` slice (counted on meta tensors).

    Returns
    -------
    dict
        ``params`` and ``params_mrm``, ``params_mdn``, ``params_cunet``; ``flops_cunet`` (one C-UNet pass),
        ``flops_source`` (the MDN's source encoder, once per slice), ``flops_mdn_step`` (one MDN evaluation),
        ``flops_fe`` (FE on the targets, training only), ``size``, ``config``. FLOPs count 2 per multiply-add of
        convolutions and matrix products.
    """
    if model is None:
        with meta_device():
            model = cdm(**config)
    meta, x = meta_slice(model, size)
    side, dev, n_out = x.shape[-1], x.device, len(model.spec.outputs)
    rep = int(model.config["rep_dim"])
    y0 = torch.zeros(1, rep, device=dev) if model.condition else None
    out = {
        "params": sum(p.numel() for p in model.parameters()),
        "params_cunet": sum(p.numel() for p in model.cunet.parameters()),
        "params_mrm": sum(p.numel() for p in model.mrm.parameters()) if model.mrm is not None else 0,
        "params_mdn": sum(p.numel() for p in model.mdn.parameters()) if model.mdn is not None else 0,
        "flops_cunet": count_flops(meta.cunet, x, y0),
        "flops_source": 0,
        "flops_mdn_step": 0,
        "flops_fe": 0,
        "size": side,
        "config": dict(model.config),
    }
    if model.condition:
        src = meta.mdn.encode_source(x) if meta.mdn.source is not None else None
        if meta.mdn.source is not None:
            out["flops_source"] = count_flops(meta.mdn.encode_source, x)
        t = torch.zeros(1, dtype=torch.long, device=dev)
        out["flops_mdn_step"] = count_flops(lambda a, b: meta.mdn(a, b, src), y0, t)
        out["flops_fe"] = count_flops(meta.mrm.encode, torch.zeros(1, n_out, side, side, device=dev))
    return out


def format_complexity(c: Mapping[str, Any], steps: Sequence[int] = (10, 20, 30, 40)) -> str:
    """Lines for people: the parameters and FLOPs of :func:`model_complexity`, per sampling-step count."""
    g = 1e9
    lines = [
        f"CDM at {c['size']}x{c['size']}: {c['params'] / 1e6:.2f} M parameters "
        f"(C-UNet {c['params_cunet'] / 1e6:.2f} M, MRM {c['params_mrm'] / 1e6:.2f} M, "
        f"MDN {c['params_mdn'] / 1e6:.2f} M)",
        f"  FLOPs: C-UNet {c['flops_cunet'] / g:.4g} G, source encoder {c['flops_source'] / g:.4g} G, one MDN step "
        f"{c['flops_mdn_step'] / g:.4g} G",
    ]
    for s in steps:
        total = c["flops_cunet"] + c["flops_source"] + s * c["flops_mdn_step"]
        lines.append(f"  whole pipeline with {s} sampling steps: {total / g:.4g} GFLOPs per slice")
    return "\n".join(lines)
