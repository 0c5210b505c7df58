"""EDTS-Trans (Xiao et al., "Learning MRI Translation with Explicit Dynamic Texture and Structure Priors").

Three stages (Fig. 2), equation numbers of the paper:

A) Regression (Eq. 1, 9-13): a U-Net whose levels are Transformer blocks gives an initial translation
   ``T2_bar = RegN(T1)``: ``x_0 = Conv(T1)`` (Eq. 9); ``x_i = DS(TB_e(x_{i-1}))`` for ``i = 1 ... N`` (Eq. 10);
   a latent module of Transformer blocks on ``x_N``; ``x_bar_{i-1} = TB_d(Conv(US(x_bar_i) || x_{i-1}))`` (Eq. 11);
   ``T2_bar = T1 + Conv(RM(x_bar_0))`` with a refinement module RM of Transformer blocks (Eq. 12); each block is
   ``FFN(LN(x + ATTN(LN(x)))) + x`` (Eq. 13, :class:`~napari_medtrans.translators.attention.TransformerBlock`).
B) Refinement (Eq. 2-3, 14-15): the TSM probability map ``M = TSM(T2_bar)`` (:mod:`napari_medtrans.core.tsm`,
   Eq. 5-8) and ``T2_bar`` condition a diffusion model, ``T2_tilde = DIFF(T2_bar || M)``, whose denoiser
   ("DiffUNet") has the regression network's structure plus a time embedding.
C) Dynamic fusion (Eq. 4): ``T2_o = M * T2_tilde + (1 - M) * T2_bar``.

:meth:`EdtsTranslator.translate` returns ``T2_o`` and the maps ``"regression"`` (``T2_bar``), ``"diffusion"``
(``T2_tilde``) and ``"tsm"`` (``M``). Training (Eq. 16-17) is the recipe ``"edts-trans"`` in
:mod:`napari_medtrans.training.recipe_edts`; it calls ``model(x, target=y)``, which returns the three outputs of
one training pass (:meth:`EdtsTranslator.training_outputs`).

Choices where the paper is open
-------------------------------
* **Attention.** Full spatial self-attention at 256 x 256 is out of reach of Table II's 102.4 GFLOPs, so the
  Transformer blocks attend across channels (linear in pixels, Restormer-style); see
  :mod:`~napari_medtrans.translators.attention`. Down/upsampling: 3x3 conv with pixel-(un)shuffle (channels
  double per level); the Conv of Eq. 11 is 1x1; the Convs of Eq. 9 and 12 are 3x3.
* **Skips.** Eq. 11 concatenates ``x_{i-1}`` literally: the input of encoder level ``i`` (for ``i = 1`` the
  stem output ``x_0``).
* **Depth.** ``depth`` = N of Eq. 10-11 (4 in the paper): N downsamplings, slices must be multiples of ``2**N``.
* **Diffusion.** DDPM forward process (Eq. 14) with T = 1000 and the linear schedule of Ho et al.; the DiffUNet
  predicts ``x_0`` (so that the fidelity and SSIM losses of Eq. 16 apply to its output directly and stay bounded
  at every noise level; DDPM's objective in ``x_0`` form) and adds ``T2_bar`` to its output
  (``diff_residual=True``, the residual habit of Eq. 12: the refiner starts from the regression). During training
  the diffusion output is that one-step prediction ``x0_hat(x_t, t)`` at a uniform random ``t``; at inference it
  is the end of the reverse chain, sampled with DDIM (default, ``eta = 0``) or DDPM ancestral sampling in
  ``steps`` network evaluations chosen per call. The reverse variance of Eq. 15 is DDPM's fixed posterior variance.
* **Time embedding.** Sinusoidal, Linear-SiLU-Linear, added per channel before every Transformer block of the
  DiffUNet.
* **The mask.** ``M`` is computed without gradients from ``T2_bar`` clipped to [-1, 1] (a prior; the TSM has no
  trainable parameters), one map per output channel. The TSM backbone is part of the config: ``"analytic"``
  (default, works offline) or ``"vgg16-imagenet"`` (the paper's; needs the VGG16 weights in the weights store).
  VGG weights are never part of the checkpoint.
* **TSM calibration (``tsm_gain``, issue 20).** The analytic backbone's gain is part of the config. New models
  get :data:`~napari_medtrans.core.tsm.ANALYTIC_GAIN` (7, calibrated on the benchmark so that the map marks
  20-60 % of the brain and is higher at edges and on tumours than on flat white matter; see
  :mod:`napari_medtrans.core.tsm`). Before, the gain was 12 and not recorded, and on the benchmark the map
  saturated (0.68 on average in the brain, 95 % above 0.4), making Eq. 4 a near-constant blend. A checkpoint's
  network was trained with the map it had, so a checkpoint whose config lacks the key keeps the old calibration
  (:data:`~napari_medtrans.core.tsm.LEGACY_ANALYTIC_GAIN`) and gives the outputs it always gave: the factory's
  ``legacy_config`` names the value, and the checkpoint loader fills it in for a saved config that lacks the key
  (``translators.checkpoint``). The shipped ``edts-t1-t2`` was such a checkpoint until it was retrained on the
  benchmark with gain 7 (its model card). The VGG16 backbone ignores the gain.
* **Ablations (Table IV).** ``mask="none"``: the diffusion model is conditioned on ``T2_bar`` alone and its output
  is the result (no fusion); ``mask="hard"``: ``M`` is replaced by ``M > 0.4`` (``hard_threshold``) in the
  conditioning and the fusion; ``mask="dynamic"``: the method. ``ssim_loss`` is a recipe option.
* **Sizes.** ``create_translator("edts-trans")`` is the paper-sized model (4 levels); ``preset="cpu"`` is a small
  model for CPUs and tests. :func:`model_complexity` counts parameters and FLOPs per 256 x 256 slice next to the
  paper's 33.15 M and 102.4 G.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..core import tsm as _tsm
from ..core.errors import UnknownChoiceError
from .attention import Downsample, TransformerBlock, Upsample
from .base import TranslationOutput, Translator, TranslatorSpec, meta_device, register_translator
from .blocks import _as_tuple, check_batch
from .complexity import count_flops, meta_slice
from .diffusion import SAMPLERS, SCHEDULES, GaussianDiffusion, TimeEmbedding, TrainingForward

__all__ = [
    "EdtsUNet",
    "EdtsTranslator",
    "edts_trans",
    "MASK_MODES",
    "PRESETS",
    "PAPER_PARAMS_M",
    "PAPER_GFLOPS",
    "model_complexity",
    "format_complexity",
]

MASK_MODES = ("dynamic", "none", "hard")
PAPER_PARAMS_M = 33.15
PAPER_GFLOPS = 102.4

#: Named sizes. "paper": 4 U-Net levels (the paper's N); the paper gives no block counts or widths, these were
#: chosen so that regression + one DiffUNet evaluation have Table II's size: 33.18 M parameters and 102.4 GFLOPs
#: (FlopCounterMode) per 256 x 256 slice. "cpu": a small model that trains on a CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(width=32, depth=4, blocks=[2, 2, 3, 1], latent_blocks=2, refine_blocks=2, heads=1,
                  max_heads=8, expansion=2.66, default_steps=50),
    "cpu": dict(width=8, depth=2, blocks=[1, 1], latent_blocks=1, refine_blocks=1, heads=1, max_heads=2,
                expansion=2.0, default_steps=10),
}


def _per_level(value: int | Sequence[int], n: int, what: str) -> list[int]:
    if isinstance(value, bool):
        raise TypeError(f'Argument "{what}" must be an integer or a list of {n} integers, got {value!r}.')
    if isinstance(value, int):
        out = [value] * n
    else:
        out = [int(v) for v in value]
        if len(out) != n:
            raise ValueError(f'Argument "{what}" must have one entry per level ({n}), got {list(value)}.')
    if any(v < 0 for v in out):
        raise ValueError(f'Argument "{what}" must be >= 0, got {out}.')
    return out


class _Stage(nn.Module):
    """A stack of Transformer blocks (a U-Net level, the latent module or the refinement module)."""

    def __init__(self, channels: int, n: int, heads: int, expansion: float, time_dim: int | None):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(channels, heads, expansion, time_dim) for _ in range(n))

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        for b in self.blocks:
            x = b(x, temb)
        return x


class EdtsUNet(nn.Module):
    """The U-Net with Transformer blocks of Eq. 9-12 (without the input residual, which the caller adds).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input image(s) and of the output.
    width : int
        Channels at full resolution (even); level ``i`` has ``width * 2**i``.
    depth : int
        N: downsamplings (Eq. 10) and upsamplings (Eq. 11).
    blocks : int or list of int
        Transformer blocks per encoder level (the decoder level at the same resolution has as many).
    latent_blocks, refine_blocks : int
        Blocks of the latent and of the refinement module.
    heads, max_heads : int
        Attention heads at full resolution, doubled per level up to ``max_heads``.
    expansion : float
        FFN hidden width multiple.
    time_dim : int or None
        Time embedding size (the DiffUNet); None for the regression network.
    """

    def __init__(self, in_channels: int, out_channels: int, *, width: int, depth: int, blocks, latent_blocks: int,
                 refine_blocks: int, heads: int, max_heads: int, expansion: float, time_dim: int | None = None):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f'Argument "width" must be an even integer >= 2, got {width!r}.')
        if depth < 1:
            raise ValueError(f'Argument "depth" must be >= 1, got {depth!r}.')
        nb = _per_level(blocks, depth, "blocks")
        chans = [width * 2**i for i in range(depth + 1)]
        nheads = [max(1, min(heads * 2**i, max_heads)) for i in range(depth + 1)]
        for c, h in zip(chans, nheads):
            if c % h:
                raise ValueError(f"{h} attention heads do not divide {c} channels; lower heads/max_heads or "
                                 "raise the width")
        self.depth = depth
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)  # Eq. 9
        self.encoder = nn.ModuleList(_Stage(chans[i], nb[i], nheads[i], expansion, time_dim) for i in range(depth))
        self.down = nn.ModuleList(Downsample(chans[i]) for i in range(depth))
        self.latent = _Stage(chans[depth], latent_blocks, nheads[depth], expansion, time_dim)
        self.up = nn.ModuleList(Upsample(chans[i + 1]) for i in range(depth))
        self.reduce = nn.ModuleList(nn.Conv2d(2 * chans[i], chans[i], 1) for i in range(depth))
        self.decoder = nn.ModuleList(_Stage(chans[i], nb[i], nheads[i], expansion, time_dim) for i in range(depth))
        self.refine = _Stage(width, refine_blocks, nheads[0], expansion, time_dim)
        self.head = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.stem(x)  # Eq. 9: x_0 = Conv(T1)
        skips = [h]
        for i in range(self.depth):  # Eq. 10: x_i = DS(TB_e(x_{i-1}))
            h = self.down[i](self.encoder[i](h, temb))
            skips.append(h)
        h = self.latent(h, temb)  # latent module: x_bar_N
        for i in reversed(range(self.depth)):  # Eq. 11: x_bar_i = TB_d(Conv(US(x_bar_{i+1}) || x_i))
            h = self.decoder[i](self.reduce[i](torch.cat([self.up[i](h), skips[i]], dim=1)), temb)
        return self.head(self.refine(h, temb))  # Eq. 12 without "T1 +": Conv(RM(x_bar_0))


class EdtsTranslator(TrainingForward, Translator):
    """EDTS-Trans behind the Translator protocol: regression, TSM, conditional diffusion, dynamic fusion."""

    def __init__(self, spec: TranslatorSpec, config: Mapping[str, Any]):
        super().__init__(spec, config)
        c = self.config
        n_in, n_out = len(spec.inputs), len(spec.outputs)
        unet = dict(depth=c["depth"], blocks=c["blocks"], latent_blocks=c["latent_blocks"],
                    refine_blocks=c["refine_blocks"], heads=c["heads"], max_heads=c["max_heads"],
                    expansion=c["expansion"])
        self.mask_mode = c["mask"]
        self.regression = EdtsUNet(n_in, n_out, width=c["width"], **unet)
        # Eq. 12 adds T1 to the output; with other channel counts a 1x1 convolution maps the inputs first.
        self.input_proj = None if n_in == n_out else nn.Conv2d(n_in, n_out, 1)
        dw = c["diff_width"] or c["width"]
        self.time_embed = TimeEmbedding(dw, 4 * dw)
        cond = n_out if self.mask_mode == "none" else 2 * n_out
        self.denoiser = EdtsUNet(n_out + cond, n_out, width=dw, time_dim=4 * dw, **unet)
        self.diffusion = GaussianDiffusion(c["timesteps"], c["schedule"], prediction="x0", clip_x0=True)

    # -- the three stages --------------------------------------------------------------------------------
    def regress(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1 and 12: ``T2_bar = T1 + Conv(RM(x_bar_0))``."""
        skip = x if self.input_proj is None else self.input_proj(x)
        return skip + self.regression(x)

    def tsm(self, image: torch.Tensor) -> torch.Tensor:
        """Eq. 2: ``M = TSM(T2_bar)``, one map per channel of ``image``, ``[B, C, H, W]`` in [0, 1], no gradients."""
        b, ch, h, w = image.shape
        backbone = self.config["tsm_backbone"]
        res = _tsm.compute_tsm(image.detach().float().reshape(b * ch, 1, h, w), backbone=backbone,
                               layers=self.config["tsm_layers"], threshold=self.config["tsm_threshold"],
                               window=self.config["tsm_window"],
                               gain=self.config["tsm_gain"] if backbone == "analytic" else None)
        return res.map.reshape(b, ch, h, w).to(image.dtype)

    def fusion_mask(self, m: torch.Tensor) -> torch.Tensor | None:
        """The mask used to condition and fuse: ``M`` ("dynamic"), ``M > hard_threshold`` ("hard"), None ("none")."""
        if self.mask_mode == "dynamic":
            return m
        if self.mask_mode == "hard":
            return (m > self.config["hard_threshold"]).to(m.dtype)
        return None

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, reg: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The DiffUNet's prediction of ``x_0`` from ``x_t`` given ``T2_bar || M`` (Eq. 3)."""
        cond = [reg] if mask is None else [reg, mask]
        out = self.denoiser(torch.cat([x_t, *cond], dim=1), self.time_embed(t))
        return out + reg if self.config["diff_residual"] else out

    @staticmethod
    def fuse(reg: torch.Tensor, diff: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Eq. 4: ``T2_o = M * T2_tilde + (1 - M) * T2_bar`` (the diffusion output alone when ``mask`` is None)."""
        if mask is None:
            return diff
        return mask * diff + (1 - mask) * reg

    # -- training pass -----------------------------------------------------------------------------------
    def training_outputs(self, x: torch.Tensor, target: torch.Tensor, *, t: torch.Tensor | None = None,
                         noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One training pass: regression, TSM, one noisy diffusion step at random ``t`` and the fusion.

        Returns ``{"regression", "diffusion", "fused", "tsm", "t"}``; ``"diffusion"`` is the DiffUNet's ``x_0``
        prediction from ``x_t = q_sample(target, t, noise)`` (Eq. 14 in closed form).
        """
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        if target.shape[0] != x.shape[0] or target.shape[1] != len(self.spec.outputs) or \
                target.shape[-2:] != x.shape[-2:]:
            raise ValueError(f'Argument "target" must have shape [{x.shape[0]}, {len(self.spec.outputs)}, '
                             f"{x.shape[2]}, {x.shape[3]}], got {list(target.shape)}.")
        reg = self.regress(x)
        m = self.tsm(reg.clamp(-1, 1))
        mask = self.fusion_mask(m)
        if t is None:
            t = self.diffusion.sample_t(x.shape[0], x.device)
        if noise is None:
            noise = torch.randn_like(target)
        x_t = self.diffusion.q_sample(target.to(reg.dtype), t, noise.to(reg.dtype))
        diff = self.denoise(x_t, t, reg, mask)
        return {"regression": reg, "diffusion": diff, "fused": self.fuse(reg, diff, mask), "tsm": m, "t": t}

    # -- inference ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, *, steps: int | None = None,
                  generator: torch.Generator | None = None) -> TranslationOutput:
        """Translate ``[B, C_in, H, W]`` in [-1, 1]: regression, TSM, ``steps`` sampling steps, fusion (Eq. 1-4).

        Parameters
        ----------
        x : torch.Tensor
            Input batch; H and W multiples of ``spec.size_multiple``.
        steps : int, optional
            Network evaluations of the sampler (1 ... ``timesteps``); default ``spec.default_steps``.
        generator : torch.Generator, optional
            Source of the starting noise (and of DDPM's noise); on ``x``'s device. Same seed, same output.
        """
        check_batch(x, len(self.spec.inputs), self.spec.size_multiple)
        steps = self.spec.default_steps if steps is None else steps
        reg = self.regress(x)
        m = self.tsm(reg.clamp(-1, 1))
        mask = self.fusion_mask(m)
        shape = (x.shape[0], len(self.spec.outputs), x.shape[2], x.shape[3])

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.denoise(x_t, t, reg, mask)

        diff = self.diffusion.sample(model_fn, shape, steps=int(steps), sampler=self.config["sampler"],
                                     eta=self.config["eta"], generator=generator, device=x.device, dtype=reg.dtype)
        fused = self.fuse(reg, diff, mask)
        return TranslationOutput(
            image=fused.clamp(-1, 1),
            maps={"regression": reg.clamp(-1, 1), "diffusion": diff.clamp(-1, 1), "tsm": m},
        )


def _preset_size(preset: str | None, **given: Any) -> dict[str, Any]:
    """Size arguments of :func:`edts_trans`: the ones given, the preset's for the others (None: "paper"); with
    another depth than the preset's and no ``blocks``, the preset's block list cut or extended with its last
    entry."""
    if preset is not None and preset not in PRESETS:
        raise UnknownChoiceError("EDTS-Trans preset", str(preset), list(PRESETS))
    base = PRESETS[preset or "paper"]
    size = {k: (base[k] if v is None else v) for k, v in given.items()}
    if given["blocks"] is None and not isinstance(size["blocks"], int) and len(size["blocks"]) != int(size["depth"]):
        # another depth than the preset's (e.g. `medtrans train --depth 3`): cut or extend its block list
        pb = list(size["blocks"])
        size["blocks"] = (pb + [pb[-1]] * int(size["depth"]))[: int(size["depth"])]
    return size


def _check_choices(mask: str, tsm_backbone: str, schedule: str, sampler: str, hard_threshold: float,
                   eta: float) -> None:
    """Refuse an unknown mask mode, TSM backbone, noise schedule or sampler, and a threshold or eta out of range."""
    if mask not in MASK_MODES:
        raise UnknownChoiceError("EDTS-Trans mask mode", str(mask), MASK_MODES)
    if tsm_backbone not in _tsm.BACKBONES:
        raise UnknownChoiceError("TSM backbone", str(tsm_backbone), _tsm.BACKBONES)
    if schedule not in SCHEDULES:
        raise UnknownChoiceError("noise schedule", str(schedule), SCHEDULES)
    if sampler not in SAMPLERS:
        raise UnknownChoiceError("sampler", str(sampler), SAMPLERS)
    if not 0.0 <= float(hard_threshold) <= 1.0:
        raise ValueError(f'Argument "hard_threshold" must be in [0, 1], got {hard_threshold!r}.')
    if float(eta) < 0:
        raise ValueError(f'Argument "eta" must be >= 0, got {eta!r}.')


@register_translator("edts-trans")
def edts_trans(
    *,
    preset: str | None = None,
    inputs: Sequence[str] | str = ("T1",),
    outputs: Sequence[str] | str = ("T2",),
    width: int | None = None,
    depth: int | None = None,
    blocks: int | Sequence[int] | None = None,
    latent_blocks: int | None = None,
    refine_blocks: int | None = None,
    heads: int | None = None,
    max_heads: int | None = None,
    expansion: float | None = None,
    diff_width: int | None = None,
    mask: str = "dynamic",
    hard_threshold: float = 0.4,
    tsm_backbone: str = "analytic",
    tsm_layers: Sequence[int] = _tsm.DEFAULT_LAYERS,
    tsm_window: int | None = _tsm.DEFAULT_WINDOW,
    tsm_threshold: float = _tsm.DEFAULT_THRESHOLD,
    tsm_gain: float | None = None,
    timesteps: int = 1000,
    schedule: str = "linear",
    sampler: str = "ddim",
    eta: float = 0.0,
    default_steps: int | None = None,
    diff_residual: bool = True,
) -> EdtsTranslator:
    """Build an EDTS-Trans translator with random weights.

    Parameters
    ----------
    preset : {"paper", "cpu"} or None
        Size defaults (see :data:`PRESETS`); None is "paper". Explicit arguments override the preset; with
        another ``depth`` and no ``blocks``, the preset's block list is cut or extended with its last entry.
    inputs, outputs : sequence of str
        Input and output modalities, one channel each.
    width : int
        Channels at full resolution (even).
    depth : int
        U-Net levels N (Eq. 10-11; 4 in the paper); slices must be multiples of ``2**depth``.
    blocks : int or list of int
        Transformer blocks per level (encoder and decoder alike).
    latent_blocks, refine_blocks : int
        Blocks of the latent and the refinement module (Eq. 12's RM).
    heads, max_heads : int
        Attention heads at full resolution, doubled per level up to ``max_heads``.
    expansion : float
        FFN hidden width multiple.
    diff_width : int or None
        Width of the DiffUNet (default: ``width``).
    mask : {"dynamic", "none", "hard"}
        Fusion: Eq. 4 with the TSM map; no mask (Table IV "w/o M"); the map thresholded at ``hard_threshold``
        (Table IV "Th-0.4").
    hard_threshold : float
        Threshold of ``mask="hard"``.
    tsm_backbone : {"analytic", "vgg16-imagenet"}
        Features of the TSM (:func:`napari_medtrans.core.tsm.compute_tsm`).
    tsm_layers, tsm_window, tsm_threshold
        TSM layers, local window and the ``t`` of Eq. 8.
    tsm_gain : float or None
        Gain of the analytic TSM backbone. None: :data:`~napari_medtrans.core.tsm.ANALYTIC_GAIN`. A checkpoint
        saved before the key existed is loaded with :data:`~napari_medtrans.core.tsm.LEGACY_ANALYTIC_GAIN`
        (``edts_trans.legacy_config``, applied by the checkpoint loader; module notes).
    timesteps : int
        T of the diffusion process.
    schedule : {"linear", "cosine"}
        Noise schedule.
    sampler : {"ddim", "ddpm"}
        Sampler used by :meth:`~EdtsTranslator.translate`.
    eta : float
        DDIM's eta (0: deterministic given the starting noise).
    default_steps : int
        Sampling steps when ``translate`` gets none (spec.default_steps).
    diff_residual : bool
        The DiffUNet adds ``T2_bar`` to its output.
    """
    size = _preset_size(preset, width=width, depth=depth, blocks=blocks, latent_blocks=latent_blocks,
                        refine_blocks=refine_blocks, heads=heads, max_heads=max_heads, expansion=expansion,
                        default_steps=default_steps)
    _check_choices(mask, tsm_backbone, schedule, sampler, hard_threshold, eta)
    if tsm_gain is None:
        tsm_gain = _tsm.ANALYTIC_GAIN
    if isinstance(tsm_gain, bool) or not 0.0 < float(tsm_gain) < float("inf"):
        raise ValueError(f'Argument "tsm_gain" must be a positive finite number, got {tsm_gain!r}.')
    steps = int(size["default_steps"])
    if not 1 <= steps <= int(timesteps):
        raise ValueError(f'Argument "default_steps" must be in [1, timesteps={timesteps}], got {steps!r}.')
    inputs = _as_tuple(inputs, "inputs")
    outputs = _as_tuple(outputs, "outputs")
    depth_i = int(size["depth"])
    blocks_v = size["blocks"]
    config = dict(
        inputs=list(inputs), outputs=list(outputs), width=int(size["width"]), depth=depth_i,
        blocks=int(blocks_v) if isinstance(blocks_v, int) else [int(b) for b in blocks_v],
        latent_blocks=int(size["latent_blocks"]), refine_blocks=int(size["refine_blocks"]),
        heads=int(size["heads"]), max_heads=int(size["max_heads"]), expansion=float(size["expansion"]),
        diff_width=None if diff_width is None else int(diff_width), mask=str(mask),
        hard_threshold=float(hard_threshold), tsm_backbone=str(tsm_backbone),
        tsm_layers=[int(i) for i in tsm_layers], tsm_window=None if tsm_window is None else int(tsm_window),
        tsm_threshold=float(tsm_threshold), tsm_gain=float(tsm_gain), timesteps=int(timesteps),
        schedule=str(schedule),
        sampler=str(sampler), eta=float(eta), default_steps=steps, diff_residual=bool(diff_residual),
    )
    _tsm.check_layers(config["tsm_layers"])
    spec = TranslatorSpec(method="edts-trans", inputs=inputs, outputs=outputs, size_multiple=2**depth_i,
                          paired=True, stochastic=True, default_steps=steps,
                          maps=("regression", "diffusion", "tsm"))
    return EdtsTranslator(spec, config)


# -- size ----------------------------------------------------------------------------------------------
def model_complexity(model: EdtsTranslator | None = None, *, size: int = 256, **config: Any) -> dict[str, Any]:
    """Parameters and FLOPs per ``size`` x ``size`` slice, next to the paper's Table II figures.

    The networks run once on meta tensors (no memory, no arithmetic) under
    :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per multiply-add of convolutions
    and matrix products (element-wise operations and the TSM are not counted). Papers often report
    multiply-adds as "FLOPs", so ``macs`` (FLOPs / 2) is given too.

    Parameters
    ----------
    model : EdtsTranslator, optional
        The model to measure; default ``edts_trans(**config)`` (the paper's size).
    size : int
        Slice side in pixels.

    Returns
    -------
    dict
        ``params``, ``params_regression``, ``params_diffusion``, ``flops_regression``, ``flops_diffusion_step``
        (one DiffUNet evaluation), ``flops_one_pass`` (regression + one diffusion step), ``macs_one_pass``,
        ``paper_params_m``, ``paper_gflops``, ``size``, ``config``.
    """
    if model is None:
        with meta_device():
            model = edts_trans(**config)
    cfg = model.config
    meta, x = meta_slice(model, size)
    side, dev, n_out = x.shape[-1], x.device, len(model.spec.outputs)
    flops_reg = count_flops(meta.regression, x)
    c_cond = n_out if cfg["mask"] == "none" else 2 * n_out
    xd = torch.zeros(1, n_out + c_cond, side, side, device=dev)
    t = torch.zeros(1, device=dev)
    flops_diff = count_flops(lambda a, b: meta.denoiser(a, meta.time_embed(b)), xd, t)
    p_reg = sum(p.numel() for p in model.regression.parameters())
    p_reg += sum(p.numel() for p in model.input_proj.parameters()) if model.input_proj is not None else 0
    p_all = sum(p.numel() for p in model.parameters())
    return {
        "params": p_all,
        "params_regression": p_reg,
        "params_diffusion": p_all - p_reg,
        "flops_regression": flops_reg,
        "flops_diffusion_step": flops_diff,
        "flops_one_pass": flops_reg + flops_diff,
        "macs_one_pass": (flops_reg + flops_diff) // 2,
        "paper_params_m": PAPER_PARAMS_M,
        "paper_gflops": PAPER_GFLOPS,
        "size": side,
        "config": dict(cfg),
    }


def format_complexity(c: Mapping[str, Any], steps: Sequence[int] = (10, 50)) -> str:
    """Lines for people: parameters and FLOPs of :func:`model_complexity` beside the paper's 33.15 M / 102.4 G."""
    g = 1e9
    lines = [
        f"EDTS-Trans at {c['size']}x{c['size']}: {c['params'] / 1e6:.2f} M parameters "
        f"(regression {c['params_regression'] / 1e6:.2f} M, diffusion {c['params_diffusion'] / 1e6:.2f} M); "
        f"paper: {c['paper_params_m']:.2f} M",
        f"  FLOPs: regression {c['flops_regression'] / g:.4g} G + one diffusion step "
        f"{c['flops_diffusion_step'] / g:.4g} G"
        f" = {c['flops_one_pass'] / g:.4g} G ({c['macs_one_pass'] / g:.4g} G multiply-adds); "
        f"paper: {c['paper_gflops']:.1f} G",
    ]
    for s in steps:
        total = c["flops_regression"] + s * c["flops_diffusion_step"]
        lines.append(f"  whole pipeline with {s} sampling steps: {total / g:.4g} GFLOPs per slice")
    return "\n".join(lines)


#: Values a checkpoint saved before a config key existed was made with; the loader fills them in (issue 20).
edts_trans.legacy_config = {"tsm_gain": _tsm.LEGACY_ANALYTIC_GAIN}
