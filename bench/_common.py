"""Helpers the benchmark scripts share (imported as ``_common``: a script's own folder is on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeat: int,
              after_warmup: Callable[[], object] | None = None) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeat`` runs after one warm-up run; ``after_warmup()``, when
    given, runs between the warm-up and the timed runs."""
    fn()
    sync(device)
    if after_warmup is not None:
        after_warmup()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best
