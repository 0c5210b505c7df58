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

Cancellation. ``should_cancel()`` is asked before every call to the network, and by diffusion samplers at every
sampling step inside a call (:mod:`~napari_medtrans.core.cancel`); when it returns True,
:class:`~napari_medtrans.core.errors.TranslationCancelled` is raised and nothing is returned. Slices handed out
through ``on_partial`` before that are previews only; a GUI may keep them, marked partial.

Layout. Device and precision come from :mod:`.device`, the input checks from :mod:`.engine_inputs`, batch sizing
and the CPU inference copy from :mod:`.batching`; this module runs the batches and builds the result.

Reproducibility. With a ``seed``, every call gets ``torch.Generator`` seeded once per sample (``seed + i`` for
sample ``i``) on the compute device, so the same seed, batch size and device give the same output. A stochastic
translator run without a seed gets a fresh random seed, which is recorded in the provenance so the run can be
repeated.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .allocator import keep_large_buffers
from .batching import (
    _check_output,
    _cpu_inference_copy,
    _cuda_batch_from_probe,
    _initial_batch_size,
    _load_batch,
)
from .cancel import cancel_scope
from .device import PRECISIONS, _autocast, cpu_has_native_bf16, resolve_device, resolve_precision
from .engine_inputs import _check_geometry, _check_modalities, _check_not_constant, _gather_inputs, _input_identity
from .errors import TranslationCancelled, TranslatorError
from .preprocess import (
    IntensityRange,
    acquisition_axis,
    denormalise,
    fit_to_model,
    intensity_spec_from,
    to_slices,
    unfit,
)
from .volume import Volume, normalise_modality

__all__ = ["TranslationResult", "translate_volume", "resolve_device", "resolve_precision", "cpu_has_native_bf16",
           "PRECISIONS"]

#: Map names resized back with nearest-neighbour instead of bilinear interpolation (labels, not intensities).
_LABEL_MAPS = frozenset({"masks", "mask", "labels", "label", "seg", "segmentation"})


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
    keep_large_buffers()  # large activations without page faults (core/allocator.py)
    run = _prepare_run(volume, translator, device=device, precision=precision, steps=steps, samples=samples,
                       seed=seed, axis=axis, override_modality=override_modality)
    was_training = bool(getattr(translator, "training", False))
    if hasattr(translator, "eval"):
        translator.eval()
    if hasattr(translator, "to"):
        translator.to(run.dev)
    try:
        with torch.inference_mode(), cancel_scope(should_cancel):
            max_bs = _run_batches(run, translator, batch_size, progress, should_cancel, on_partial)
    finally:
        if hasattr(translator, "train"):
            translator.train(was_training)
    for c, m in enumerate(run.out_names):
        _check_finite_output(run.outs[c], m, run.spec, translator)
    return _make_result(run, translator, time.perf_counter() - t0, max_bs)


@dataclasses.dataclass
class _Run:
    """Everything one :func:`translate_volume` call has checked and prepared before the first network call."""

    spec: Any
    inputs: list[Volume]
    names: list[str]
    overrides: list[dict]
    dev: torch.device
    prec: str
    axis: int
    seed: int | None
    steps: int | None
    samples: int
    norm: Any
    in_ranges: list[IntensityRange]
    out_names: list[str]
    out_ranges: list[IntensityRange]
    in_slices: list[np.ndarray]  # views of the inputs, one slice per entry along the slice axis
    outs: list[np.ndarray]  # the output volumes, filled batch by batch
    out_slices: list[np.ndarray]  # writable views into ``outs``
    std_np: list[np.ndarray]  # per-output spread across samples (samples > 1)
    maps_np: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _check_run_arguments(translator: Any, samples: Any, steps: Any) -> tuple[Any, int]:
    """The translator's spec and the sample count, after checking ``translator``, ``samples`` and ``steps``."""
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
    return spec, samples


def _prepare_run(volume: Any, translator: Any, *, device, precision, steps, samples, seed, axis,
                 override_modality) -> _Run:
    """Check the arguments and inputs (each check once, where the data enters) and set up the output buffers."""
    spec, samples = _check_run_arguments(translator, samples, steps)
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

    vshape = ref.shape
    outs = [np.empty(vshape, dtype=np.float32) for _ in out_names]
    return _Run(
        spec=spec, inputs=inputs, names=names, overrides=overrides, dev=dev, prec=prec, axis=axis, seed=seed,
        steps=steps, samples=samples, norm=norm, in_ranges=in_ranges, out_names=out_names, out_ranges=out_ranges,
        in_slices=[to_slices(v.data, axis) for v in inputs],  # views, no copy
        outs=outs, out_slices=[to_slices(o, axis) for o in outs],
        std_np=[np.empty(vshape, dtype=np.float32) for _ in out_names] if samples > 1 else [],
    )


def _run_batches(run: _Run, translator: Any, batch_size, progress, should_cancel, on_partial) -> int:
    """Translate every slice, batch by batch, into ``run``'s buffers; returns the largest batch used.

    On the CPU a tuned copy of the translator runs (folded normalisations, channels-last), falling back to the
    translator as given if the copy fails on its first call. On CUDA the batch size is probed from the memory
    one batch takes, and a batch that runs out of memory is retried at half the size with the generators rewound.
    """
    spec, dev, samples = run.spec, run.dev, run.samples
    n_slices, h, w = (int(s) for s in run.in_slices[0].shape)
    bs, adaptive = _initial_batch_size(batch_size, dev, (h, w), bool(getattr(spec, "stochastic", False)))
    probing = adaptive and dev.type == "cuda"
    max_bs = 0
    total = n_slices * samples
    done = 0
    fast = _cpu_inference_copy(translator) if dev.type == "cpu" else None
    runner = fast if fast is not None else translator
    first_call = True

    def call(model: Any, xin: torch.Tensor, gen: torch.Generator | None) -> Any:
        with _autocast(dev, run.prec):
            out = model.translate(xin, steps=run.steps, generator=gen)
        _check_output(out, spec, xin)
        return out

    gens: list[torch.Generator | None] = [None] * samples
    if run.seed is not None:
        gens = [torch.Generator(device=dev).manual_seed(run.seed + i) for i in range(samples)]
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
            x = _load_batch(run.in_slices, run.in_ranges, start, stop).to(dev, non_blocking=True)
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
        _store_batch(run, start, stop, images, maps_acc, fit, on_partial)
        if probe_base is not None:
            bs = _cuda_batch_from_probe(dev, probe_base, stop - start)
            probing = False
        max_bs = max(max_bs, stop - start)
        start = stop
    return max_bs


def _store_batch(run: _Run, start: int, stop: int, images: list, maps_acc: dict, fit, on_partial) -> None:
    """Write slices ``start:stop`` (the mean over samples, their spread, every map) into ``run``'s buffers in
    output intensities, and hand the finished block to ``on_partial``."""
    samples, axis = run.samples, run.axis
    if samples > 1:
        stack = torch.stack(images)
        mean = stack.mean(dim=0)
        std = stack.std(dim=0, correction=1)
        del stack
    else:
        mean, std = images[0], None
    mean = unfit(mean, fit).cpu().numpy()
    for c, rng in enumerate(run.out_ranges):
        run.out_slices[c][start:stop] = denormalise(mean[:, c], rng)
        if std is not None:  # a spread scales by the range's half-width
            to_slices(run.std_np[c], axis)[start:stop] = (unfit(std, fit)[:, c].cpu().numpy()
                                                          * np.float32((rng.hi - rng.lo) / 2.0))
    for name, m in maps_acc.items():
        m = m / samples if samples > 1 else m
        m = unfit(m, fit, mode="nearest" if name in _LABEL_MAPS else "bilinear").cpu().numpy()
        for c in range(m.shape[1]):
            key = name if m.shape[1] == 1 else f"{name}_{c}"
            if key not in run.maps_np:
                run.maps_np[key] = np.zeros(run.outs[0].shape, dtype=np.float32)
            to_slices(run.maps_np[key], axis)[start:stop] = m[:, c]
    if on_partial is not None:
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        on_partial(start, stop, run.outs[0][tuple(index)].copy())


def _make_result(run: _Run, translator: Any, seconds: float, max_bs: int) -> TranslationResult:
    """The synthetic volumes and maps on the first input's grid, each with the run's provenance."""
    spec, ref = run.spec, run.inputs[0]
    eff_steps = run.steps if run.steps is not None else getattr(spec, "default_steps", None)
    prov = {
        "method": spec.method,
        "checkpoint_sha256": _checkpoint_sha(translator),
        "checkpoint_name": _checkpoint_name(translator),
        "steps": eff_steps,
        "seed": run.seed,
        "samples": run.samples,
        "device": str(run.dev),
        "precision": run.prec,
        "batch_size": max_bs,
        "axis": run.axis,
        "inputs": [v.path for v in run.inputs],
        "input_modalities": run.names,
        "input_modality_evidence": [v.modality_evidence for v in run.inputs],
        **_input_identity(run.inputs),
        "input_ranges": [r.to_dict() for r in run.in_ranges],
        "intensity_scheme": run.norm.scheme,
        "seconds": seconds,
    }
    if run.overrides:
        prov["modality_override"] = run.overrides

    def make(data: np.ndarray, modality: str | None, extra: dict) -> Volume:
        return ref.derive(data, modality=modality, synthetic=True, provenance={**prov, **extra},
                          inherit_provenance=False)

    out_names = run.out_names
    outputs = {
        m: make(run.outs[c], m, {"output_range": run.out_ranges[c].to_dict(), "output_modality": m})
        for c, m in enumerate(out_names)
    }
    maps = {k: make(v, k, {"map": k}) for k, v in run.maps_np.items()}
    for c, m in enumerate(out_names[: len(run.std_np)]):
        key = "std" if c == 0 else f"std_{m}"
        maps[key] = make(run.std_np[c], key, {"map": key, "of": m})
    return TranslationResult(
        volume=outputs[out_names[0]],
        maps=maps,
        outputs=outputs,
        seconds=seconds,
        device=str(run.dev),
        precision=run.prec,
        batch_size=max_bs,
        seed=run.seed,
    )
