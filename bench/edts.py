"""Benchmark: EDTS-Trans time and peak memory per 256x256 slice, regression alone and the whole pipeline.

Builds the model with random weights (``--preset paper`` = the paper's size, 4 levels, 33 M parameters;
``--preset cpu`` = the small model) and prints, for a batch of ``--batch`` slices of ``--size`` pixels:

* the parameter count and FLOPs beside the paper's Table II (33.15 M, 102.4 G);
* the time per slice of the regression network alone (Eq. 1), of the TSM map (Eq. 2, analytic backbone unless
  ``--tsm vgg16-imagenet``) and of the whole pipeline (regression, TSM, ``steps`` DDIM steps, fusion) for each
  ``--steps`` value (default 10 and 50), best of ``--repeat`` after one warm-up run;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` for each measurement; on the CPU the process's peak
  resident set size (a high-water mark: it only grows across measurements, so read each line as "at most").

    python bench/edts.py [--preset paper] [--size 256] [--batch 1] [--steps 10 50] [--device auto]
                         [--repeat 2] [--threads N] [--precision fp32|bf16|fp16]

Run it with nothing else busy on the machine; timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys

import torch
from _common import best_time


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def _measure(fn, device: torch.device, repeat: int) -> tuple[float, float]:
    """Best wall time of ``fn()`` over ``repeat`` runs after a warm-up, and peak memory in MB."""
    reset = (lambda: torch.cuda.reset_peak_memory_stats(device)) if device.type == "cuda" else None
    best = best_time(fn, device, repeat, after_warmup=reset)
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else _rss_mb()
    return best, mem


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=["paper", "cpu"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tsm", default="analytic", choices=["analytic", "vgg16-imagenet"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = p.parse_args(argv)

    from napari_medtrans.core.engine import resolve_device
    from napari_medtrans.translators import create_translator
    from napari_medtrans.translators.edts import format_complexity, model_complexity

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_translator("edts-trans", preset=args.preset, tsm_backbone=args.tsm).eval().to(device)
    print(format_complexity(model_complexity(model, size=args.size), steps=args.steps))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); batch {args.batch} x {args.size}x{args.size}; precision {args.precision}; "
          f"best of {args.repeat} after a warm-up")
    x = torch.rand(args.batch, 1, args.size, args.size, device=device) * 2 - 1
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)

    def amp():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def regress():
        with amp():
            return model.regress(x)

    def translate(steps):
        with amp():
            return model.translate(x, steps=steps, generator=torch.Generator(device=device).manual_seed(0))

    print(f"peak RSS with the model loaded: {_rss_mb():.0f} MB" if device.type != "cuda" else
          f"CUDA memory with the model loaded: {torch.cuda.memory_allocated(device) / 2**20:.0f} MB", flush=True)
    mem_label = "peak CUDA memory" if device.type == "cuda" else "peak RSS so far"

    def row(label, fn):
        t, mem = _measure(fn, device, args.repeat)
        print(f"  {label:<28s} {t / args.batch * 1000:10.1f} ms/slice   {mem_label} {mem:8.0f} MB", flush=True)

    with torch.inference_mode():
        reg = regress().float().clamp(-1, 1)
        row("regression alone", regress)
        row(f"TSM map ({args.tsm})", lambda: model.tsm(reg))
        for steps in args.steps:
            row(f"whole pipeline, {steps} steps", lambda s=steps: translate(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
