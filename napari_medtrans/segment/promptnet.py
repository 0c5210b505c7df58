"""The project's own promptable segmenter: a compact U-Net that takes the prompts as input channels.

SAM2 and MedSAM2 need weights this project cannot ship. ``promptunet-phantom`` is what a new user segments with
until they import them (issue 23): a small network trained from scratch on the benchmark phantom's tumours
(:mod:`.train`), behind the same interface as :class:`~.segmenter.Segmenter`
(point and box prompts, 2D slices, propagation through the volume). It is named for what it is, not "SAM".

Design (a choice: no paper describes it)
---------------------------------------
* **Input**: five channels at frame resolution (:data:`CHANNELS`): the slice windowed exactly as SAM2's frames
  are (:func:`~.frames.resolve_window`, 0.5-99.5th percentile of the non-zero voxels, then 0..255 and back to
  [0, 1]); the prompt box as a filled rectangle; positive and negative clicks as Gaussian spots (sigma 2 pixels,
  the maximum over clicks); the mask of the neighbouring slice ("prior", propagation only, else zeros).
  Prompts enter at the first layer, so there is no image embedding to cache: :meth:`PromptSegmenter.precompute`
  computes nothing and says so (0).
* **Network**: a U-Net (:class:`PromptUNet`): two 3 x 3 convolutions with group norm and SiLU per level, width
  16 doubling over 4 levels, bilinear upsampling, 0.47 M parameters. The frame is padded (edge values) to a
  multiple of 8 and the mask logits cropped back, so any slice size works at native resolution.
* **Propagation**: MedSAM2's order (forward from the first prompted slice to the last, then backward from it to
  the first). Each next slice is prompted with the previous slice's mask as the prior and its box grown by
  :data:`PROPAGATION_MARGIN` pixels; a user prompt on that slice is used as well. Propagation stops in a
  direction at the first empty mask (the object has ended), leaving the rest of that side empty.
* **Output**: logits > the file's decision threshold: 0, or the value ``medtrans segmenter calibrate`` chose on
  validation subjects (:mod:`.calibrate`), stored in the file's metadata (``threshold``).

Limits (stated on the model card): trained on the phantom's tumour compartments only (whole tumour, tumour
core, enhancing rim; boxes, clicks and propagation priors); on real scans and other structures its masks are
untested.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigMismatchError, InvalidVolumeError
from ..core.volume import Volume
from .frames import FrameGeometry, resolve_window, window_to_uint8
from .prompts import SlicePrompt, as_prompt_list, box_of_mask
from .prompts import largest_component as _largest_component

__all__ = ["CHANNELS", "FORMAT", "PromptUNet", "PromptSegmenter", "encode_prompts", "frames01",
           "load_promptunet", "save_promptunet", "PROPAGATION_MARGIN"]

#: Input channels of the network, in order.
CHANNELS = ("image", "box", "positive", "negative", "prior")
#: Format tag in the safetensors metadata.
FORMAT = "medtrans-promptunet/1"
#: Pixels added around the previous slice's mask box when propagating.
PROPAGATION_MARGIN = 3.0
_SIGMA = 2.0
_MULTIPLE = 8


def _build_unet(width: int, depth: int, in_channels: int):
    import torch
    from torch import nn
    from torch.nn import functional as F

    def block(cin, cout):
        groups = max(1, min(8, cout // 4))
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        )

    class PromptUNet(nn.Module):
        """U-Net from ``in_channels`` (image + prompt channels) to one channel of mask logits."""

        def __init__(self):
            super().__init__()
            chans = [width * 2 ** i for i in range(depth)]
            self.width, self.depth, self.in_channels = width, depth, in_channels
            #: A pixel is in the mask where its logit exceeds this (0 unless the file was calibrated).
            self.decision_threshold = 0.0
            self.down = nn.ModuleList()
            c = in_channels
            for ch in chans:
                self.down.append(block(c, ch))
                c = ch
            self.up = nn.ModuleList()
            for ch in reversed(chans[:-1]):
                self.up.append(block(c + ch, ch))
                c = ch
            self.head = nn.Conv2d(c, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, blk in enumerate(self.down):
                if i:
                    x = F.max_pool2d(x, 2)
                x = blk(x)
                skips.append(x)
            for blk, skip in zip(self.up, reversed(skips[:-1])):
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = blk(torch.cat([x, skip], dim=1))
            return self.head(x)

    return PromptUNet()


def PromptUNet(width: int = 16, depth: int = 4, in_channels: int = len(CHANNELS)):  # noqa: N802 (a factory)
    """The segmenter's network (a ``torch.nn.Module``; torch loads only when one is built)."""
    if width < 4 or depth < 2:
        raise ValueError(f'Arguments "width" >= 4 and "depth" >= 2 are required, got {width}, {depth}.')
    return _build_unet(int(width), int(depth), int(in_channels))


def frames01(volume: Volume, geom: FrameGeometry, window=None) -> tuple[np.ndarray, Any]:
    """The volume's frames windowed as SAM2's are, in [0, 1] (float32 ``[slice, row, column]``), and the window."""
    win = resolve_window(volume, window)
    return window_to_uint8(geom.to_frames(volume.data), win).astype(np.float32) / 255.0, win


def _spots(points: Sequence[tuple[float, float]], shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    out = np.zeros((h, w), np.float32)
    if not points:
        return out
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    for x, y in points:
        out = np.maximum(out, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * _SIGMA ** 2)))
    return out


def encode_prompts(image: np.ndarray, prompt: SlicePrompt | None = None, prior: np.ndarray | None = None,
                   *, extra_box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The network's input for one slice: ``[5, H, W]`` float32 in the order of :data:`CHANNELS`.

    ``image`` is the windowed slice in [0, 1]; ``prompt`` the user's (frame pixels), ``prior`` a neighbouring
    slice's mask (propagation), ``extra_box`` a box used when the prompt has none (the prior's, grown).
    """
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    box = prompt.box if prompt is not None and prompt.box is not None else extra_box
    box_ch = np.zeros((h, w), np.float32)
    if box is not None:
        x0, y0, x1, y1 = box
        r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)) + 1)
        c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)) + 1)
        box_ch[r0:r1, c0:c1] = 1.0
    pos = [p for p, lab in zip(prompt.points, prompt.labels) if lab == 1] if prompt is not None else []
    neg = [p for p, lab in zip(prompt.points, prompt.labels) if lab == 0] if prompt is not None else []
    prior_ch = np.zeros((h, w), np.float32) if prior is None else np.asarray(prior, dtype=np.float32)
    return np.stack([image, box_ch, _spots(pos, (h, w)), _spots(neg, (h, w)), prior_ch])


def save_promptunet(model, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write the network's weights and configuration as safetensors (metadata: format, width, depth, ...)."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "config": json.dumps({"width": model.width, "depth": model.depth,
                                                     "in_channels": model.in_channels})}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_promptunet(path: str | os.PathLike, device: Any = "cpu"):
    """Read a file written by :func:`save_promptunet` (safetensors: no code runs). Returns ``(model, metadata)``.

    Raises :class:`~napari_medtrans.core.errors.ConfigMismatchError` naming the file when it holds another
    kind of model or tensors that do not fit.
    """
    from safetensors import SafetensorError, safe_open

    from ..core.weights import load_state_dict

    path = Path(path)
    state = load_state_dict(path)  # missing, truncated or foreign files: CheckpointError naming the file
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise ConfigMismatchError(f"not a safetensors file ({exc})", path) from None
    if meta.get("format") != FORMAT:
        raise ConfigMismatchError(
            f"not a promptunet segmenter (format {meta.get('format')!r}, expected {FORMAT!r})", path)
    cfg = json.loads(meta.get("config", "{}"))
    model = PromptUNet(**cfg)
    model.decision_threshold = _threshold(meta, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ConfigMismatchError(f"the tensors do not fit the network: {lines[1].strip() if len(lines) > 1 else lines[0]}",
                                  path) from None
    return model.to(device).eval(), meta


def _threshold(meta: dict[str, str], path: Path) -> float:
    """The decision threshold in a file's metadata (0 where it has none; see :mod:`.calibrate`)."""
    raw = meta.get("threshold")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise ConfigMismatchError(f"the decision threshold {raw!r} in the file's metadata is not a finite number",
                                  path)
    return value


class PromptSegmenter:
    """The promptable U-Net behind the :class:`~.segmenter.Segmenter` interface.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`load_promptunet` (or :func:`PromptUNet` in tests).
    name : str
        Shown in results and GUI titles.
    weights : path-like, optional
        The file the weights came from (recorded in :attr:`model_key`).
    batch : int
        Slices per forward pass in :meth:`segment_slices`.
    """

    def __init__(self, model, *, name: str = "promptunet-phantom", weights: str | os.PathLike | None = None,
                 batch: int = 8):
        self.model = model.eval()
        self.name = name
        self.device = next(model.parameters()).device
        self.image_size = None  # native resolution
        self.precision = "fp32"
        self.embeddings_computed = 0
        self.weights = None if weights is None else str(weights)
        self.model_key = (name, self.weights or id(model))
        self.batch = max(1, int(batch))
        #: The mask is logits > threshold: the file's calibrated value (:mod:`.calibrate`), else 0.
        self.threshold = float(getattr(model, "decision_threshold", 0.0))
        self._lock = threading.Lock()

    # -- the Segmenter interface ---------------------------------------------------------------------------
    def geometry(self, volume: Volume) -> FrameGeometry:
        return FrameGeometry.of(volume)

    def segment_slices(self, volume: Volume, prompts, *, window=None, largest_component: bool = False,
                       progress=None, should_cancel=None):
        """Each prompted slice on its own (2D), as :meth:`Segmenter.segment_slices`."""
        items = as_prompt_list(prompts)
        t0 = time.perf_counter()
        geom, frames, win = self._prepare(volume, items, window)
        out = np.zeros(geom.shape, dtype=bool)
        order: list[int] = []
        with self._lock:
            for chunk, logits in self._chunk_logits(items, frames, should_cancel):
                for p, lg in zip(chunk, logits):
                    m = lg > self.threshold
                    out[p.slice] = _largest_component(m) if largest_component else m
                    order.append(p.slice)
                if progress is not None:
                    progress(len(order), len(items))
        return self._result(out, geom, order, items, win, t0, largest_component)

    def propagate(self, volume: Volume, prompts, *, direction: str = "both", window=None,
                  largest_component: bool = False, progress=None, should_cancel=None):
        """Segment the first prompted slice and carry the mask slice by slice (see the module notes)."""
        from .result import DIRECTIONS

        if direction not in DIRECTIONS:
            from ..core.errors import UnknownChoiceError

            raise UnknownChoiceError("propagation direction", direction, DIRECTIONS)
        items = as_prompt_list(prompts)
        t0 = time.perf_counter()
        geom, frames, win = self._prepare(volume, items, window)
        n = geom.n_slices
        by_slice = {p.slice: p for p in items}
        start = min(by_slice)
        total = {"forward": n - start, "backward": start + 1, "both": n}[direction]
        out = np.zeros(geom.shape, dtype=bool)
        order: list[int] = []
        with self._lock:
            key = self._predict(encode_prompts(frames[start], by_slice[start])[None])[0]
            out[start] = key
            order.append(start)
            if progress is not None:
                progress(1, total)
            steps = [s for s, d in ((1, "forward"), (-1, "backward")) if direction in (d, "both")]
            for step in steps:
                prev = key
                s = start + step
                while 0 <= s < n:
                    _check_cancel(should_cancel, len(order), total)
                    user = by_slice.get(s)
                    if not prev.any() and user is None:
                        break  # the object has ended on this side
                    box = box_of_mask(prev, PROPAGATION_MARGIN)
                    m = self._predict(encode_prompts(frames[s], user, prev, extra_box=box)[None])[0]
                    out[s] = m
                    order.append(s)
                    if progress is not None:
                        progress(len(order), total)
                    prev = m
                    s += step
        if largest_component:
            out = _largest_component(out)
        if progress is not None and len(order) < total:
            progress(total, total)  # the slices past the object's end are empty: done
        return self._result(out, geom, order, items, win, t0, largest_component)

    def precompute(self, volume: Volume, slices=None, *, window=None, progress=None, should_cancel=None) -> int:
        """Nothing to precompute (prompts enter at the first layer): returns 0 after checking the volume."""
        self._prepare(volume, [], window)
        return 0

    def release(self) -> None:
        """Move the network off the GPU."""
        with self._lock:
            if self.device.type != "cpu":
                self.model.to("cpu")
                self.device = next(self.model.parameters()).device

    # -- internals -----------------------------------------------------------------------------------------
    def _prepare(self, volume: Volume, items: list[SlicePrompt], window):
        if not isinstance(volume, Volume):
            raise TypeError(f'Argument "volume" must be a Volume, got {type(volume).__name__}.')
        volume.check_finite()
        geom = FrameGeometry.of(volume)
        if min(geom.shape[1:]) < 2:
            raise InvalidVolumeError(f"slices of {geom.shape[1]} x {geom.shape[2]} pixels are too small to segment",
                                     volume.path)
        for p in items:
            p.check_fits(*geom.shape)
        frames, win = frames01(volume, geom, window)
        return geom, frames, win

    def logits_slices(self, volume: Volume, prompts, *, window=None) -> tuple[FrameGeometry, np.ndarray]:
        """The mask logits of each prompted slice on its own, as :meth:`segment_slices` computes them: the frame
        geometry and float32 logits ``[slice, row, column]`` in frame order, ``-inf`` on slices without a prompt.
        (Used to choose the decision threshold, :mod:`.calibrate`.)"""
        items = as_prompt_list(prompts)
        geom, frames, _win = self._prepare(volume, items, window)
        out = np.full(geom.shape, -np.inf, dtype=np.float32)
        with self._lock:
            for chunk, logits in self._chunk_logits(items, frames):
                for p, lg in zip(chunk, logits):
                    out[p.slice] = lg
        return geom, out

    def _chunk_logits(self, items: list[SlicePrompt], frames: np.ndarray, should_cancel=None):
        """``(prompts, logits [B, H, W])`` for the prompted slices, :attr:`batch` at a time (each on its own)."""
        for start in range(0, len(items), self.batch):
            _check_cancel(should_cancel, start, len(items))
            chunk = items[start:start + self.batch]
            yield chunk, self._logits(np.stack([encode_prompts(frames[p.slice], p) for p in chunk]))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """Masks (bool ``[B, H, W]``) for inputs ``[B, 5, H, W]``: logits above :attr:`threshold`."""
        return self._logits(x) > self.threshold

    def _logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32 ``[B, H, W]``) for inputs ``[B, 5, H, W]``, padded to a multiple of 8 and cropped back."""
        import torch
        from torch.nn import functional as F

        _, _, h, w = x.shape
        ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        if ph or pw:
            t = F.pad(t, (0, pw, 0, ph), mode="replicate")
        with torch.inference_mode():
            logits = self.model(t)[:, 0, :h, :w]
        return logits.float().cpu().numpy()

    def _result(self, frames_mask, geom, order, prompts, win, t0, largest_component):
        from .result import SegmentationResult

        return SegmentationResult(
            mask=np.ascontiguousarray(geom.to_volume(frames_mask)), slices=order, prompts=list(prompts),
            model=self.name, window=win, seconds=time.perf_counter() - t0, embeddings_computed=0,
            embeddings_reused=0, largest_component=largest_component,
        )


def _check_cancel(should_cancel, done: int, total: int) -> None:
    from ..core.errors import SegmentationCancelled

    if should_cancel is not None and should_cancel():
        raise SegmentationCancelled(done, total)
