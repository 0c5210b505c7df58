"""How the engine feeds a network: the batch size (probed on CUDA, sized by pixels on the CPU), one batch of
normalised slices as a tensor, the check of what a translator returned, and the CPU inference copy of a translator
(batch norms folded into their convolutions, channels-last). Used by :mod:`.engine`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .errors import TranslatorError, UnknownChoiceError
from .preprocess import IntensityRange, normalise

#: On the CPU a batch holds about this many pixels (4 slices of 256 x 256). Larger batches were no faster on a
#: 2-core machine (the activations leave the cache; and, measured before core/allocator.py, tensors above glibc's
#: 32 MB mmap threshold were paged in afresh on every call, which the engine now avoids); smaller ones keep the
#: threads less busy.
_CPU_BATCH_PIXELS = 4 * 256 * 256
_MAX_AUTO_BATCH = 64


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
    """Normalised ``[B, C, H, W]`` float32 for slices ``start:stop`` (:func:`~.preprocess.normalise` per input)."""
    return torch.from_numpy(np.stack([normalise(s[start:stop], rng) for s, rng in zip(inputs, ranges)], axis=1))


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
