"""Segment a Volume with a SAM2 / MedSAM2 model: prompts on slices, and propagation through the volume.

The volume is handed to the sam2 video predictor as a "video" whose frames are its axial slices, taken from
memory (no JPEG folder): :class:`_Frames` prepares each slice when the model first needs it and serves its
image embedding from an :class:`~.cache.EmbeddingCache`, so prompting the same volume again (another click,
another box, propagating after a 2D preview) does not run the image encoder again.

Propagation follows MedSAM2: the prompts are added, the masks are propagated forward from the first prompted
slice to the last slice, the state is reset, the prompts are added again and the masks are propagated
backward from that slice to the first one.

Every method takes ``progress(done, total)`` and ``should_cancel()`` callables (no Qt here); a cancelled job
raises :class:`~napari_medtrans.core.errors.SegmentationCancelled`. The predictor's per-job state is freed
(and the CUDA cache emptied) when a job ends, however it ends; embeddings stay in the CPU cache.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.errors import InvalidVolumeError, SegmentationCancelled
from ..core.volume import Volume
from .cache import DEFAULT_MAX_BYTES, EmbeddingCache
from .frames import FrameGeometry, Window, frame_tensor, resolve_window, volume_digest, window_to_uint8
from .prompts import SlicePrompt, as_prompt_list
from .prompts import largest_component as _largest_component
from .result import DIRECTIONS, SegmentationResult

__all__ = ["Segmenter", "SegmentationResult", "DIRECTIONS"]

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

#: Propagation directions.
_OBJ_ID = 1


class _Frames:
    """The slices of one volume as model inputs, with their embeddings served from the cache.

    The sam2 predictor reads ``state["images"][i]`` and ``state["cached_features"].get(i, ...)``; this object
    answers both, computing a slice's input and embedding only when needed.
    """

    def __init__(self, seg: "Segmenter", frames: np.ndarray, window: Window, volume_key: tuple):
        self.seg = seg
        self.frames = frames
        self.window = window
        self.volume_key = volume_key
        self._computed: set[int] = set()
        self._reused: set[int] = set()
        self.t0 = time.perf_counter()

    @property
    def computed(self) -> int:
        """Slices embedded by the image encoder in this job."""
        return len(self._computed)

    @property
    def reused(self) -> int:
        """Slices whose embedding came from the cache (computed by an earlier job)."""
        return len(self._reused)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, idx: int):
        return frame_tensor(window_to_uint8(self.frames[int(idx)], self.window), self.seg.image_size)

    def __contains__(self, idx) -> bool:
        return 0 <= int(idx) < len(self)

    def get(self, idx, default=None):
        """``(image [1, 3, S, S], {"backbone_fpn": [...], "vision_pos_enc": [...]})`` of slice ``idx``."""
        seg = self.seg
        dev = seg.device
        key = (self.volume_key, int(idx))
        cached = seg.cache.get(key)
        pos = seg.cache.get((seg.model_key, "vision_pos_enc"))
        if cached is not None and pos is not None:
            if int(idx) not in self._computed:
                self._reused.add(int(idx))
            image = _placeholder_frame(dev, seg.image_size)
            return image, {
                "backbone_fpn": [t.to(dev, non_blocking=True) for t in cached],
                "vision_pos_enc": [t.to(dev, non_blocking=True) for t in pos],
            }
        image = self[idx].to(dev).unsqueeze(0)
        out = seg.model.forward_image(image)
        self._computed.add(int(idx))
        seg.embeddings_computed += 1
        fpn = list(out["backbone_fpn"])
        pe = list(out["vision_pos_enc"])
        seg.cache.put(key, [t.detach().to("cpu") for t in fpn])
        if pos is None:
            seg.cache.put((seg.model_key, "vision_pos_enc"), [t.detach().to("cpu") for t in pe])
        return image, {"backbone_fpn": fpn, "vision_pos_enc": pe}


def _placeholder_frame(device, size: int):
    """A [1, 3, S, S] stand-in for a frame whose embedding is cached (the predictor only reads its shape)."""
    import torch

    return torch.zeros((1, 1, 1, 1), device=device).expand(1, 3, size, size)


class Segmenter:
    """A SAM2 / MedSAM2 model ready to segment volumes, with an embedding cache.

    Parameters
    ----------
    model : sam2.sam2_video_predictor.SAM2VideoPredictor
        From :func:`~.models.build_model`, or built by hand (tests use a tiny random one).
    name : str, optional
        Shown in results and used in cache keys (default: the name :func:`build_model` recorded).
    precision : {"auto", "fp32", "bf16", "fp16"}
        "auto": bfloat16 autocast on CUDA (as SAM2 and MedSAM2 run), float32 elsewhere.
    cache : EmbeddingCache, optional
        Share one cache between segmenters; by default each has its own of ``cache_bytes``.
    cache_bytes : int
        Size limit of the segmenter's own cache.

    Attributes
    ----------
    embeddings_computed : int
        Slices the image encoder has run on since creation.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str | None = None,
        precision: str = "auto",
        cache: EmbeddingCache | None = None,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ):
        from ..core.engine import resolve_precision

        self.model = model
        self.name = name or getattr(model, "medtrans_name", None) or type(model).__name__
        self.device = next(model.parameters()).device
        self.image_size = int(model.image_size)
        # "auto" stays fp32 on the CPU here: SAM2's bf16 path on the CPU is not measured, and masks are thresholded
        # logits, where rounding can move a boundary
        self.precision = resolve_precision(precision, self.device, cpu_bf16=False)
        self.cache = cache if cache is not None else EmbeddingCache(cache_bytes)
        self.embeddings_computed = 0
        weights = getattr(model, "medtrans_weights", None)
        ident: Any = id(model)
        if weights:
            try:
                st = os.stat(weights)
                ident = (os.path.abspath(weights), st.st_size, st.st_mtime_ns)
            except OSError:
                ident = weights
        self.model_key = (self.name, self.image_size, ident)
        self._lock = threading.Lock()

    @classmethod
    def from_name(
        cls,
        name: str = "medsam2",
        *,
        device: Any = "auto",
        weights_file: str | os.PathLike | None = None,
        precision: str = "auto",
        image_size: int | None = None,
        random_init: bool = False,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ) -> "Segmenter":
        """Build a known model (see :mod:`.models`) with its weights from the store and wrap it.

        The shipped ``promptunet-phantom`` gives a :class:`~.promptnet.PromptSegmenter`, which has the same
        methods (its prompts enter the network directly, so it has no embeddings to cache).
        """
        from .models import build_model, get_spec

        if get_spec(name).kind == "promptunet":
            from .promptnet import PromptSegmenter

            net = build_model(name, device=device, weights_file=weights_file, random_init=random_init)
            return PromptSegmenter(net, name=name, weights=net.medtrans_weights)  # type: ignore[return-value]
        model = build_model(name, device=device, weights_file=weights_file, random_init=random_init,
                            image_size=image_size)
        return cls(model, name=name, precision=precision, cache_bytes=cache_bytes)

    # -- public jobs ---------------------------------------------------------------------------------------
    def geometry(self, volume: Volume) -> FrameGeometry:
        """How ``volume``'s slices become frames (see :class:`~.frames.FrameGeometry`)."""
        return FrameGeometry.of(volume)

    def segment_slices(
        self,
        volume: Volume,
        prompts: SlicePrompt | Sequence[SlicePrompt],
        *,
        window=None,
        largest_component: bool = False,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> SegmentationResult:
        """Segment each prompted slice on its own (2D, no memory between slices).

        Parameters
        ----------
        volume : Volume
        prompts : SlicePrompt or sequence of SlicePrompt
            At most one per slice, frame coordinates.
        window : see :func:`~.frames.resolve_window`
        largest_component : bool
            Keep only the largest connected component of each slice's mask.
        progress : callable, optional
            ``progress(done, total)`` after each slice.
        should_cancel : callable, optional
            Polled before each slice; True stops the job with :class:`SegmentationCancelled`.

        Returns
        -------
        SegmentationResult
            The mask is empty on slices without a prompt.
        """
        items = as_prompt_list(prompts)
        with self._job(volume, items, window) as (state, frames, geom):
            out = np.zeros(geom.shape, dtype=bool)
            order: list[int] = []
            total = len(items)
            for n, p in enumerate(items):
                _check_cancel(should_cancel, n, total)
                self.model.reset_state(state)
                logits = self._add_prompt(state, p)
                m = (logits[0, 0] > 0).cpu().numpy()
                out[p.slice] = _largest_component(m) if largest_component else m
                order.append(p.slice)
                if progress is not None:
                    progress(n + 1, total)
            return self._result(out, geom, order, items, frames, largest_component=largest_component)

    def propagate(
        self,
        volume: Volume,
        prompts: SlicePrompt | Sequence[SlicePrompt],
        *,
        direction: str = "both",
        window=None,
        largest_component: bool = False,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> SegmentationResult:
        """Segment the prompted slice(s) and propagate the mask through the volume as through a video.

        Parameters
        ----------
        volume : Volume
        prompts : SlicePrompt or sequence of SlicePrompt
            Prompts on one key slice or several; the first prompted slice is where propagation starts.
        direction : {"both", "forward", "backward"}
            Forward runs to the last slice, backward to the first, both does forward then backward.
        window, largest_component, progress, should_cancel
            As in :meth:`segment_slices` (the largest component is taken in 3D).

        Returns
        -------
        SegmentationResult
            ``slices`` lists the frames in the order they were produced: the key slice, the following ones
            forward, then the preceding ones backward.
        """
        if direction not in DIRECTIONS:
            from ..core.errors import UnknownChoiceError

            raise UnknownChoiceError("propagation direction", direction, DIRECTIONS)
        items = as_prompt_list(prompts)
        with self._job(volume, items, window) as (state, frames, geom):
            n = geom.n_slices
            start = min(p.slice for p in items)
            passes = [r for r, d in ((False, "forward"), (True, "backward")) if direction in (d, "both")]
            # forward: start .. n-1; backward: start .. 0; both: every slice once
            total = {"forward": n - start, "backward": start + 1, "both": n}[direction]
            out = np.zeros(geom.shape, dtype=bool)
            order: list[int] = []
            done: set[int] = set()
            for reverse in passes:
                self.model.reset_state(state)
                for p in items:
                    self._add_prompt(state, p)
                _check_cancel(should_cancel, len(order), total)
                gen = self.model.propagate_in_video(state, start_frame_idx=start, reverse=reverse)
                try:
                    for frame_idx, _obj_ids, masks in gen:
                        if frame_idx in done:  # the key slice, already produced by the forward pass
                            continue
                        out[frame_idx] = (masks[0, 0] > 0).cpu().numpy()
                        order.append(int(frame_idx))
                        done.add(int(frame_idx))
                        if progress is not None:
                            progress(len(order), total)
                        _check_cancel(should_cancel, len(order), total)
                finally:
                    gen.close()
            if largest_component:
                out = _largest_component(out)
            return self._result(out, geom, order, items, frames, largest_component=largest_component)

    def precompute(
        self,
        volume: Volume,
        slices: Sequence[int] | None = None,
        *,
        window=None,
        progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> int:
        """Compute (and cache) the embeddings of some or all slices ahead of prompting.

        Returns
        -------
        int
            How many embeddings were computed (slices already cached are skipped).
        """
        import torch

        geom = FrameGeometry.of(volume)
        todo = list(range(geom.n_slices)) if slices is None else [int(s) for s in slices]
        for s in todo:
            if not 0 <= s < geom.n_slices:
                raise ValueError(f"slice {s} is outside the volume's {geom.n_slices} slices.")
        with self._lock:
            frames = self._frames(volume, geom, window)
            try:
                with torch.inference_mode(), self._autocast():
                    for n, s in enumerate(todo):
                        _check_cancel(should_cancel, n, len(todo))
                        frames.get(s)
                        if progress is not None:
                            progress(n + 1, len(todo))
                return frames.computed
            finally:
                del frames
                self._free()

    def release(self) -> None:
        """Drop the cached embeddings and move the model off the GPU (call when the model is no longer needed)."""
        self.cache.clear()
        with self._lock:
            if self.device.type != "cpu":
                self.model.to("cpu")
                self.device = next(self.model.parameters()).device
            self._free()

    # -- internals -----------------------------------------------------------------------------------------
    def _autocast(self):
        import torch

        if self.precision == "fp32" or self.device.type not in ("cuda", "cpu"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _frames(self, volume: Volume, geom: FrameGeometry, window) -> _Frames:
        if not isinstance(volume, Volume):
            raise TypeError(f'Argument "volume" must be a Volume, got {type(volume).__name__}.')
        volume.check_finite()
        if min(geom.shape[1:]) < 2:
            raise InvalidVolumeError(f"slices of {geom.shape[1]} x {geom.shape[2]} pixels are too small to segment",
                                     volume.path)
        win = resolve_window(volume, window)
        key = (volume_digest(volume.data), geom.perm, geom.flip, win.key(), self.model_key)
        return _Frames(self, geom.to_frames(volume.data), win, key)

    @contextlib.contextmanager
    def _job(self, volume: Volume, prompts: list[SlicePrompt], window):
        import torch

        geom = FrameGeometry.of(volume)
        for p in prompts:
            p.check_fits(*geom.shape)
        with self._lock:
            frames = self._frames(volume, geom, window)
            state = self._new_state(frames, geom)
            try:
                with torch.inference_mode(), self._autocast():
                    yield state, frames, geom
            finally:
                state.clear()
                del state, frames
                self._free()

    def _free(self) -> None:
        # The state holds no reference cycles once cleared, so its tensors are freed here; only the CUDA
        # allocator's cached blocks need handing back.
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _new_state(self, frames: _Frames, geom: FrameGeometry) -> dict:
        """The predictor's inference state (the fields of ``SAM2VideoPredictor.init_state``) over ``frames``."""
        from collections import OrderedDict

        _, height, width = geom.shape
        return {
            "images": frames,
            "num_frames": len(frames),
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": height,
            "video_width": width,
            "device": self.device,
            "storage_device": self.device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": frames,
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }

    def _add_prompt(self, state: dict, p: SlicePrompt):
        """Add one slice's prompt; returns the mask logits on that slice at frame resolution [1, 1, H, W]."""
        kwargs: dict[str, Any] = {}
        if p.points:
            kwargs["points"] = np.asarray(p.points, dtype=np.float32)
            kwargs["labels"] = np.asarray(p.labels, dtype=np.int32)
        if p.box is not None:
            kwargs["box"] = np.asarray(p.box, dtype=np.float32)
        _, _, masks = self.model.add_new_points_or_box(state, frame_idx=p.slice, obj_id=_OBJ_ID, **kwargs)
        return masks.float()

    def _result(self, frames_mask, geom, order, prompts, frames: _Frames, *, largest_component: bool):
        return SegmentationResult(
            mask=np.ascontiguousarray(geom.to_volume(frames_mask)),
            slices=order,
            prompts=list(prompts),
            model=self.name,
            window=frames.window,
            seconds=time.perf_counter() - frames.t0,
            embeddings_computed=frames.computed,
            embeddings_reused=frames.reused,
            largest_component=largest_component,
        )


def _check_cancel(should_cancel: CancelFn | None, done: int, total: int) -> None:
    if should_cancel is not None and should_cancel():
        raise SegmentationCancelled(done, total)
