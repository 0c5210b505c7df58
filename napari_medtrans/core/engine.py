"""Run a translator over a whole volume: slicing, batching, device, precision, progress, cancel, sampling.

``translate_volume`` is the one way volumes go through a translator (CLI, GUIs, evaluation). What it does:

1. Collects the inputs in the order of ``spec.inputs`` and checks that they share one grid (shape and affine),
   that each is the contrast the model takes (a volume whose own evidence names another contrast is refused
   unless ``override_modality=True``, which the provenance records; a dict key or a position is not evidence),
   that no file is given for two inputs, and that no input is constant.
2. Normalises each input volume to [-1, 1] from its own robust range (:mod:`~napari_medtrans.core.preprocess`,
   with the percentiles of the translator's ``normalisation`` record when it has one).
3. Cuts the volumes into 2D slices along the acquisition axis, and feeds batches of slices, padded to what the
   network accepts, to ``translator.translate`` under ``torch.inference_mode`` and autocast.
4. Removes the padding, clips the output to [-1, 1] and maps it into the target contrast's intensity range: the
   range stored for that modality in ``translator.normalisation["outputs"]``, else the (first) input's own range.
5. Returns the synthetic volume(s) on the input grid (same affine), marked ``synthetic=True``, with provenance,
   plus every map the translator declares (``spec.maps``) on the same grid. An output with a NaN or infinite
   voxel (a broken checkpoint) raises :class:`~napari_medtrans.core.errors.TranslatorError` instead.

Background. Nothing is masked: every voxel, background included, is what the network produced. Input
background (0) maps to -1, and a trained network maps -1 back to the target's background, so no special case
is needed; the padding added to fit the network is always removed.

Cancellation. ``should_cancel()`` is asked before every call to the network; when it returns True,
:class:`~napari_medtrans.core.errors.TranslationCancelled` is raised and nothing is returned. Slices handed out
through ``on_partial`` before that are previews only; a GUI drops them on cancel.

Reproducibility. With a ``seed``, every call gets ``torch.Generator`` seeded once per sample (``seed + i`` for
sample ``i``) on the compute device, so the same seed, batch size and device give the same output. A stochastic
translator run without a seed gets a fresh random seed, which is recorded in the provenance so the run can be
repeated.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .cancel import cancel_scope
from .errors import (
    DeviceUnavailableError,
    GeometryMismatchError,
    InputModalityError,
    InvalidVolumeError,
    TranslationCancelled,
    TranslatorError,
    UnknownChoiceError,
)
from .device import PRECISIONS, _autocast, cpu_has_native_bf16, resolve_device, resolve_precision
from .modality import EVIDENCE
from .preprocess import (
    IntensityRange,
    acquisition_axis,
    fit_to_model,
    intensity_spec_from,
    to_slices,
    unfit,
)
from .volume import MODALITIES, SourceInfo, Volume, normalise_modality, patient_id_sha256

__all__ = ["TranslationResult", "translate_volume", "resolve_device", "resolve_precision", "cpu_has_native_bf16",
           "PRECISIONS"]

#: Map names resized back with nearest-neighbour instead of bilinear interpolation (labels, not intensities).
_LABEL_MAPS = frozenset({"masks", "mask", "labels", "label", "seg", "segmentation"})
#: On the CPU a batch holds about this many pixels (4 slices of 256 x 256). Larger batches were no faster on a
#: 2-core machine (the activations leave the cache, and tensors above glibc's 32 MB mmap threshold are paged in
#: afresh on every call); smaller ones keep the threads less busy.
_CPU_BATCH_PIXELS = 4 * 256 * 256
_MAX_AUTO_BATCH = 64


@dataclasses.dataclass
class TranslationResult:
    """What :func:`translate_volume` returns.

    Attributes
    ----------
    volume : Volume
        The synthetic image of ``spec.outputs[0]``: ``synthetic=True``, the input's affine, provenance filled in.
    maps : dict of str to Volume
        Every map in ``spec.maps`` on the volume's grid (a map with several channels becomes ``name_0``,
        ``name_1``, ...), and ``"std"`` (the per-voxel standard deviation across samples, in output intensity
        units) when ``samples > 1`` (``"std_<modality>"`` for further outputs).
    outputs : dict of str to Volume
        One synthetic Volume per output modality (``volume`` is ``outputs[spec.outputs[0]]``).
    seconds : float
        Wall time of the whole call.
    device : str
        Where it ran, e.g. "cpu" or "cuda:0".
    precision : str
        "fp32", "bf16" or "fp16".
    batch_size : int
        Largest batch of slices used.
    seed : int or None
        The seed used (drawn at random for a stochastic translator when none was given).
    """

    volume: Volume
    maps: dict[str, Volume]
    outputs: dict[str, Volume]
    seconds: float
    device: str
    precision: str = "fp32"
    batch_size: int = 0
    seed: int | None = None


# -- inputs ----------------------------------------------------------------------------------------
def _as_volume(v: Any, modality: str | None) -> Volume:
    if isinstance(v, Volume):
        if v.data.ndim != 3:
            raise InvalidVolumeError(f"expected a 3D volume, got {v.data.ndim}D data of shape {v.data.shape}", v.path)
        return v
    if isinstance(v, (np.ndarray, torch.Tensor)):
        arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        if arr.ndim != 3:
            raise InvalidVolumeError(
                f"expected a 3D volume, got a {arr.ndim}D array of shape {arr.shape}; translate a 2D slice as a "
                "volume of one slice (add an axis)"
            )
        return Volume(arr, np.eye(4), modality=modality)
    raise TypeError(f'Argument "volume" must be a Volume (or a dict/sequence of them), got {type(v).__name__}.')


def _gather_inputs(volume: Any, spec: Any) -> list[Volume]:
    """The input Volumes in ``spec.inputs`` order (their modalities are checked by :func:`_check_modalities`)."""
    wanted = [normalise_modality(m) for m in spec.inputs]
    if isinstance(volume, Mapping):
        given = {normalise_modality(k): v for k, v in volume.items()}
        missing = [m for m in wanted if m not in given]
        if missing:
            raise TranslatorError(
                f"translator {spec.method!r} needs inputs {', '.join(wanted)}; missing {', '.join(missing)} "
                f"(given: {', '.join(str(k) for k in given) or 'none'})"
            )
        return [_as_volume(given[m], m) for m in wanted]
    if isinstance(volume, Sequence) and not isinstance(volume, (str, bytes)):
        items = list(volume)
        if len(items) != len(wanted):
            raise TranslatorError(
                f"translator {spec.method!r} needs {len(wanted)} input volume(s) ({', '.join(wanted)}), got {len(items)}"
            )
        return [_as_volume(v, m) for v, m in zip(items, wanted)]
    if len(wanted) != 1:
        raise TranslatorError(
            f"translator {spec.method!r} needs {len(wanted)} inputs ({', '.join(wanted)}); pass a dict "
            "{modality: volume}"
        )
    return [_as_volume(volume, wanted[0])]


def _check_modalities(inputs: list[Volume], wanted: list[str], spec: Any, override: bool) -> list[dict]:
    """Refuse an input whose own modality is another contrast than the model's (unless ``override``), and one
    file given for two inputs. Returns the overrides made, for the provenance."""
    overrides = []
    for v, m in zip(inputs, wanted):
        if v.modality in MODALITIES and v.modality != m:
            if override:
                overrides.append({"input": m, "labelled": v.modality, "evidence": v.modality_evidence})
                continue
            how = EVIDENCE.get(v.modality_evidence or "", "its label")
            raise InputModalityError(
                f"is {v.modality} (from {how}) but translator {spec.method!r} expects {m} there "
                f"(inputs: {', '.join(wanted)}); give a {m} volume, or --override-modality "
                "(override_modality=True) if the label is wrong",
                v.path,
                found=v.modality,
                expected=m,
                evidence=v.modality_evidence,
            )
    seen: dict[str, str] = {}
    for v, m in zip(inputs, wanted):
        if v.path is None or not os.path.exists(v.path):
            continue
        key = os.path.realpath(v.path)
        if key in seen:
            raise InputModalityError(
                f"is given as both {seen[key]} and {m}: one acquisition cannot be two contrasts",
                v.path,
                found=seen[key],
                expected=m,
            )
        seen[key] = m
    return overrides


def _check_not_constant(v: Volume, name: str) -> None:
    """A constant volume (all zero, or one value everywhere) has no anatomy to translate."""
    data = v.data
    if data.size == 0:
        raise InvalidVolumeError(f"{name} input has no voxels (shape {v.shape})", v.path)
    lo, hi = float(data.min()), float(data.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        raise InvalidVolumeError(
            f"{name} input is constant (every voxel is {lo:g}): there is no image to translate", v.path
        )


def _check_geometry(vols: list[Volume], names: list[str]) -> None:
    first = vols[0]
    for v, name in zip(vols[1:], names[1:]):
        if not first.same_grid(v):
            raise GeometryMismatchError(
                f"inputs must share one grid: {names[0]} {first.path or '(array)'} has shape {first.shape}, "
                f"{name} {v.path or '(array)'} has shape {v.shape}"
                + ("" if first.shape != v.shape else " and a different affine")
                + "; register/resample them onto one grid first",
                first.path,
                other=v.path,
            )


def _checkpoint_sha(translator: Any) -> str | None:
    info = getattr(translator, "checkpoint_info", None)
    if info is None:
        return None
    if isinstance(info, Mapping):
        return info.get("sha256")
    return getattr(info, "sha256", None)


def _checkpoint_name(translator: Any) -> str | None:
    info = getattr(translator, "checkpoint_info", None)
    path = info.get("path") if isinstance(info, Mapping) else getattr(info, "path", None)
    return os.path.basename(os.fspath(path)) if path else None


def _input_identity(inputs: list[Volume]) -> dict:
    """Which acquisitions went in: series and study UIDs, and a sha256 of the patient ID (never the ID itself),
    so that an export can check that the synthetic goes back to the same patient's study."""
    series, study, patient = [], None, None
    for v in inputs:
        src = v.source
        series.append(getattr(src, "series_instance_uid", None))
        study = study or getattr(src, "study_instance_uid", None)
        datasets = getattr(src, "dicom_datasets", None) or []
        if patient is None and datasets:
            patient = patient_id_sha256(datasets[0].get("PatientID", None))
    return {"input_series_uids": series, "input_study_uid": study, "input_patient_sha256": patient}


def _check_finite_output(data: np.ndarray, modality: str, spec: Any, translator: Any) -> None:
    """A NaN or infinite output voxel means a broken model: raise rather than hand out a plausible image."""
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        info = getattr(translator, "checkpoint_info", None)
        path = info.get("path") if isinstance(info, Mapping) else getattr(info, "path", None)
        raise TranslatorError(
            f"translator {spec.method!r} produced {bad} non-finite (NaN/inf) voxels of {data.size} in its {modality} "
            "output; the model is broken (check its weights), nothing was written",
            path,
        )


# -- batching --------------------------------------------------------------------------------------
def _initial_batch_size(batch_size: Any, device: torch.device, hw: tuple[int, int],
                        stochastic: bool = False) -> tuple[int, bool]:
    """(first batch size, adaptive?) for ``batch_size`` = "auto" or an int.

    On the CPU a stochastic (sampling) translator runs one slice per call: a slice of EDTS-Trans or a diffusion
    model takes a second or so, so progress moves, finished slices show and Cancel acts slice by slice, and it
    was no slower (EDTS-Trans, 16 slices of 128 x 128: 14.3-15.7 s one by one against 17.4-17.8 s in one call).
    The schedule depends on nothing but the volume, so a seed gives the same image on every run.
    """
    if isinstance(batch_size, str):
        if batch_size != "auto":
            raise UnknownChoiceError("batch size", batch_size, ("auto", "<positive int>"))
        if device.type == "cuda":
            return 1, True  # probe one slice, then size batches from the memory it took
        if stochastic:
            return 1, False
        return max(1, min(_MAX_AUTO_BATCH, _CPU_BATCH_PIXELS // max(1, hw[0] * hw[1]))), False
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f'Argument "batch_size" must be "auto" or a positive integer, got {batch_size!r}.')
    return int(batch_size), False


def _cuda_batch_from_probe(device: torch.device, base: int, n: int) -> int:
    """Batch size that uses about half the free GPU memory, given the peak of a probe batch of ``n`` slices."""
    per_slice = max((torch.cuda.max_memory_allocated(device) - base) / max(n, 1), 1.0)
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(1, min(_MAX_AUTO_BATCH, (0.5 * free) // per_slice)))


def _load_batch(inputs: list[np.ndarray], ranges: list[IntensityRange], start: int, stop: int) -> torch.Tensor:
    """Normalised ``[B, C, H, W]`` float32 for slices ``start:stop`` (one copy, in place arithmetic)."""
    x = torch.from_numpy(np.stack([s[start:stop] for s in inputs], axis=1).astype(np.float32, copy=False))
    for c, rng in enumerate(ranges):
        x[:, c].sub_(rng.lo).mul_(2.0 / (rng.hi - rng.lo)).sub_(1.0).clamp_(-1.0, 1.0)
    return x


def _check_output(out: Any, spec: Any, x: torch.Tensor) -> None:
    image = getattr(out, "image", None)
    if not isinstance(image, torch.Tensor):
        raise TranslatorError(f"translator {spec.method!r} returned {type(out).__name__}, not a TranslationOutput")
    want = (x.shape[0], len(spec.outputs), x.shape[2], x.shape[3])
    if tuple(image.shape) != want:
        raise TranslatorError(
            f"translator {spec.method!r} returned an image of shape {tuple(image.shape)} for input "
            f"{tuple(x.shape)}; its spec promises {want}"
        )
    for name in spec.maps:
        m = out.maps.get(name) if isinstance(out.maps, Mapping) else None
        if m is None:
            raise TranslatorError(f"translator {spec.method!r} declares map {name!r} in its spec but did not return it")
        if m.ndim != 4 or m.shape[0] != x.shape[0] or tuple(m.shape[2:]) != tuple(x.shape[2:]):
            raise TranslatorError(
                f"translator {spec.method!r} returned map {name!r} of shape {tuple(m.shape)}; expected "
                f"[{x.shape[0]}, C, {x.shape[2]}, {x.shape[3]}]"
            )


def _cpu_inference_copy(translator: Any) -> Any | None:
    """A copy of ``translator`` tuned for CPU inference, or None when it cannot be made.

    In the copy every ``Conv2d``/``ConvTranspose2d`` directly followed by an eval-mode ``BatchNorm2d`` in the
    same ``nn.Sequential`` has the normalisation folded into its weights (one pass over the activations fewer),
    and the weights are in channels-last layout (oneDNN convolutions then skip a layout conversion before and
    after every layer). Both leave the mathematics unchanged (differences at float rounding level). The
    caller's module is not modified (so state a translator keeps on itself, such as call counters, is not
    updated on the CPU). Models without 2D convolutions are run as they are.
    """
    if not isinstance(translator, torch.nn.Module) or not any(
        isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in translator.modules()
    ):
        return None
    try:
        fast = copy.deepcopy(translator)
    except Exception:  # modules holding foreign handles (ONNX sessions, ...) cannot be copied: run as is
        return None
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in fast.modules():
        if not isinstance(seq, torch.nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (
                isinstance(conv, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
                and isinstance(bn, torch.nn.BatchNorm2d)
                and not bn.training
                and bn.track_running_stats
                and bn.running_mean is not None
            ):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, torch.nn.ConvTranspose2d))
                seq._modules[b] = torch.nn.Identity()
    return fast.to(memory_format=torch.channels_last)


# -- the engine ------------------------------------------------------------------------------------
def translate_volume(
    volume: Any,
    translator: Any,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch_size: int | str = "auto",
    steps: int | None = None,
    samples: int = 1,
    seed: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    axis: int | None = None,
    on_partial: Callable[[int, int, np.ndarray], Any] | None = None,
    override_modality: bool = False,
) -> TranslationResult:
    """Translate a volume slice by slice with ``translator``.

    Parameters
    ----------
    volume : Volume, dict of str to Volume, or sequence of Volume
        The input(s). A dict is matched to ``spec.inputs`` by modality name; a sequence is taken in
        ``spec.inputs`` order. All inputs must have the same shape and affine. A bare 3D array is accepted
        (identity affine).
    translator : Translator
        Anything with ``spec`` and ``translate(x, *, steps, generator)``. It is put in eval mode and moved to
        the device (it stays there; its train/eval mode is restored afterwards). Its optional
        ``normalisation`` attribute (a checkpoint's intensity statistics) sets the percentiles and the output
        intensity range.
    device : str or torch.device
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N", "mps".
    precision : {"auto", "fp32", "bf16", "fp16"}
        Autocast precision. "auto": bf16 on CUDA when supported, else fp16; fp16 on MPS; on the CPU bf16 where
        the CPU has native bf16 (AVX512-BF16, AMX), else fp32 (:func:`resolve_precision`).
    batch_size : int or "auto"
        Slices per network call. "auto": on CUDA, probed from the memory one slice takes (about half the free
        memory, at most 64; halved and retried on out-of-memory); on the CPU, one slice for a stochastic
        (sampling) translator, else 4 slices of 256x256 (more for smaller slices, fewer for larger ones).
    steps : int, optional
        Sampling steps for iterative translators (None: the translator's default).
    samples : int
        Number of runs of a stochastic translator (seeds ``seed + i``). The image is their mean and
        ``maps["std"]`` their per-voxel standard deviation (ddof=1). Must be 1 for deterministic translators.
    seed : int, optional
        Seed for the generator passed to the translator.
    progress : callable, optional
        ``progress(done, total)`` after every network call; ``total`` = slices x samples and the last call
        has ``done == total``.
    should_cancel : callable, optional
        Asked before every network call; returning True raises ``TranslationCancelled``.
    axis : int, optional
        Slice axis; default :func:`~napari_medtrans.core.preprocess.acquisition_axis` of the first input.
    on_partial : callable, optional
        ``on_partial(start, stop, block)`` when slices ``start:stop`` are finished: ``block`` is the first
        output in its final intensities, shaped like the volume with ``stop - start`` entries along ``axis``
        (assign it to ``data[(slice(None),) * axis + (slice(start, stop),)]``).
    override_modality : bool
        Take each input as the contrast the model expects even when its own evidence names another one (the
        label is wrong). Recorded in the provenance as ``modality_override``.

    Returns
    -------
    TranslationResult

    Raises
    ------
    TranslationCancelled
        When ``should_cancel()`` returned True.
    GeometryMismatchError
        When the inputs are not on one grid.
    InputModalityError
        An input whose modality is known and differs from the model's (without ``override_modality``), or one
        file given for two inputs.
    TranslatorError
        Missing or misordered inputs, or a translator output that breaks its spec.
    InvalidVolumeError
        Input that is not 3D or holds NaN/inf.
    ValueError
        ``samples > 1`` for a deterministic translator, or bad argument values.
    """
    t0 = time.perf_counter()
    spec = getattr(translator, "spec", None)
    if spec is None or not callable(getattr(translator, "translate", None)):
        raise TypeError(f'Argument "translator" must be a Translator (with .spec and .translate), got {type(translator).__name__}.')
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f'Argument "samples" must be a positive integer, got {samples!r}.')
    samples = int(samples)
    if samples > 1 and not spec.stochastic:
        raise ValueError(
            f'Argument "samples"={samples} asks for repeated sampling, but translator {spec.method!r} is deterministic '
            "(spec.stochastic is False): every run gives the same image, so there is no spread to measure. Use samples=1."
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ValueError(f'Argument "steps" must be a positive integer or None, got {steps!r}.')

    inputs = _gather_inputs(volume, spec)
    names = [normalise_modality(m) for m in spec.inputs]
    overrides = _check_modalities(inputs, names, spec, bool(override_modality))
    _check_geometry(inputs, names)
    for v, name in zip(inputs, names):
        v.check_finite()
        _check_not_constant(v, name)
    ref = inputs[0]

    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if axis is None:
        axis = acquisition_axis(ref)
    elif isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f'Argument "axis" must be 0, 1 or 2 (or None for the acquisition axis), got {axis!r}.')
    axis = int(axis) % 3
    if seed is None and spec.stochastic:
        seed = int.from_bytes(os.urandom(4), "little") >> 1
    if seed is not None:
        seed = int(seed)

    norm = intensity_spec_from(getattr(translator, "normalisation", None))
    in_ranges = [norm.input_range(v.data) for v in inputs]
    out_names = [normalise_modality(m) for m in spec.outputs]
    out_ranges = []
    for m in out_names:
        same = [r for n, r in zip(names, in_ranges) if n == m]
        out_ranges.append(norm.output_range(m, same[0] if same else in_ranges[0]))

    in_slices = [to_slices(v.data, axis) for v in inputs]  # views, no copy
    n_slices, h, w = (int(s) for s in in_slices[0].shape)
    vshape = ref.shape
    outs = [np.empty(vshape, dtype=np.float32) for _ in out_names]
    out_slices = [to_slices(o, axis) for o in outs]  # writable views into the output volumes
    maps_np: dict[str, np.ndarray] = {}
    std_np: list[np.ndarray] = [np.empty(vshape, dtype=np.float32) for _ in out_names] if samples > 1 else []

    bs, adaptive = _initial_batch_size(batch_size, dev, (h, w), bool(getattr(spec, "stochastic", False)))
    probing = adaptive and dev.type == "cuda"
    max_bs = 0
    total = n_slices * samples
    done = 0
    was_training = bool(getattr(translator, "training", False))
    if hasattr(translator, "eval"):
        translator.eval()
    if hasattr(translator, "to"):
        translator.to(dev)
    # On the CPU run a tuned copy (folded normalisations, channels-last); fall back to the translator as given
    # if the copy fails on its first call (e.g. a translator that .view()s its activations).
    fast = _cpu_inference_copy(translator) if dev.type == "cpu" else None
    runner = fast if fast is not None else translator
    first_call = True

    def call(model: Any, xin: torch.Tensor, gen: torch.Generator | None) -> Any:
        with _autocast(dev, prec):
            out = model.translate(xin, steps=steps, generator=gen)
        _check_output(out, spec, xin)
        return out

    gens: list[torch.Generator | None] = [None] * samples
    if seed is not None:
        gens = [torch.Generator(device=dev).manual_seed(seed + i) for i in range(samples)]
    try:
        with torch.inference_mode(), cancel_scope(should_cancel):
            start = 0
            while start < n_slices:
                stop = min(start + bs, n_slices)
                states = [g.get_state() if g is not None else None for g in gens]
                done_before = done
                probe_base = None
                if probing:
                    torch.cuda.reset_peak_memory_stats(dev)
                    probe_base = torch.cuda.memory_allocated(dev)
                try:
                    x = _load_batch(in_slices, in_ranges, start, stop).to(dev, non_blocking=True)
                    x, fit = fit_to_model(x, spec)
                    images, maps_acc = [], {}
                    for s in range(samples):
                        if should_cancel is not None and should_cancel():
                            raise TranslationCancelled(done, total)
                        if runner is fast:
                            try:
                                out = call(fast, x.contiguous(memory_format=torch.channels_last), gens[s])
                            except TranslationCancelled:
                                raise
                            except Exception:
                                if not first_call:
                                    raise
                                runner = translator
                                fast = None
                                if gens[s] is not None:
                                    gens[s].set_state(states[s])
                                out = call(translator, x, gens[s])
                        else:
                            out = call(translator, x, gens[s])
                        first_call = False
                        images.append(out.image.float().clamp(-1.0, 1.0))
                        for name in spec.maps:
                            m = out.maps[name].float()
                            maps_acc[name] = m if s == 0 else maps_acc[name].add_(m)
                        done += stop - start
                        if progress is not None:
                            progress(done, total)
                except TranslationCancelled as exc:
                    if exc.total:
                        raise
                    raise TranslationCancelled(done, total) from None  # asked at a sampling step (core.cancel)
                except torch.cuda.OutOfMemoryError:
                    if not adaptive or bs == 1:
                        raise
                    # Retry this batch at half the size, generators rewound so that no random numbers are skipped.
                    done = done_before
                    for g, st in zip(gens, states):
                        if g is not None:
                            g.set_state(st)
                    x = images = maps_acc = None
                    torch.cuda.empty_cache()
                    bs = max(1, bs // 2)
                    continue
                if samples > 1:
                    stack = torch.stack(images)
                    mean = stack.mean(dim=0)
                    std = stack.std(dim=0, correction=1)
                    del stack
                else:
                    mean, std = images[0], None
                mean = unfit(mean, fit).cpu().numpy()
                for c, rng in enumerate(out_ranges):
                    scale = np.float32((rng.hi - rng.lo) / 2.0)
                    out_slices[c][start:stop] = (mean[:, c] + np.float32(1.0)) * scale + np.float32(rng.lo)
                    if std is not None:
                        to_slices(std_np[c], axis)[start:stop] = unfit(std, fit)[:, c].cpu().numpy() * scale
                for name, m in maps_acc.items():
                    m = m / samples if samples > 1 else m
                    m = unfit(m, fit, mode="nearest" if name in _LABEL_MAPS else "bilinear").cpu().numpy()
                    for c in range(m.shape[1]):
                        key = name if m.shape[1] == 1 else f"{name}_{c}"
                        if key not in maps_np:
                            maps_np[key] = np.zeros(vshape, dtype=np.float32)
                        to_slices(maps_np[key], axis)[start:stop] = m[:, c]
                if on_partial is not None:
                    index = [slice(None)] * 3
                    index[axis] = slice(start, stop)
                    on_partial(start, stop, outs[0][tuple(index)].copy())
                if probe_base is not None:
                    bs = _cuda_batch_from_probe(dev, probe_base, stop - start)
                    probing = False
                max_bs = max(max_bs, stop - start)
                start = stop
    finally:
        if hasattr(translator, "train"):
            translator.train(was_training)

    for c, m in enumerate(out_names):
        _check_finite_output(outs[c], m, spec, translator)
    seconds = time.perf_counter() - t0
    eff_steps = steps if steps is not None else getattr(spec, "default_steps", None)
    prov = {
        "method": spec.method,
        "checkpoint_sha256": _checkpoint_sha(translator),
        "checkpoint_name": _checkpoint_name(translator),
        "steps": eff_steps,
        "seed": seed,
        "samples": samples,
        "device": str(dev),
        "precision": prec,
        "batch_size": max_bs,
        "axis": axis,
        "inputs": [v.path for v in inputs],
        "input_modalities": names,
        "input_modality_evidence": [v.modality_evidence for v in inputs],
        **_input_identity(inputs),
        "input_ranges": [r.to_dict() for r in in_ranges],
        "intensity_scheme": norm.scheme,
        "seconds": seconds,
    }
    if overrides:
        prov["modality_override"] = overrides

    def make(data: np.ndarray, modality: str | None, extra: dict) -> Volume:
        return Volume(
            data,
            ref.affine.copy(),
            modality=modality,
            source=ref.source if ref.source is not None else SourceInfo(),
            synthetic=True,
            provenance={**prov, **extra},
        )

    outputs = {
        m: make(outs[c], m, {"output_range": out_ranges[c].to_dict(), "output_modality": m})
        for c, m in enumerate(out_names)
    }
    maps = {k: make(v, k, {"map": k}) for k, v in maps_np.items()}
    for c, m in enumerate(out_names[: len(std_np)]):
        key = "std" if c == 0 else f"std_{m}"
        maps[key] = make(std_np[c], key, {"map": key, "of": m})
    return TranslationResult(
        volume=outputs[out_names[0]],
        maps=maps,
        outputs=outputs,
        seconds=seconds,
        device=str(dev),
        precision=prec,
        batch_size=max_bs,
        seed=seed,
    )
