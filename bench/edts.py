"""Benchmark: EDTS-Trans time and peak memory per 256x256 slice, regression alone and the whole pipeline.

Builds the model with random weights (``--preset paper`` = the paper's size, 4 levels, 33 M parameters;
``--preset cpu`` = the small model) and prints, for a batch of ``--batch`` slices of ``--size`` pixels:

* the parameter count and FLOPs beside the paper's Table II (33.15 M, 102.4 G);
* the time per slice of the regression network alone (Eq. 1), of the TSM map (Eq. 2, analytic backbone unless
  ``--tsm vgg16-imagenet``) and of the whole pipeline (regression, TSM, ``steps`` DDIM steps, fusion) for each
  ``--steps`` value (default 10 and 50), best of ``--repeat`` after one warm-up run;
* achieved GFLOP/s of each measurement, and of a plain U-Net (the demo model's size, width 16, depth 4) timed in
  the same process on the same batch: issue 20 asks EDTS's speed per FLOP to come close to the U-Net's;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` for each measurement; on the CPU the process's peak
  resident set size (a high-water mark: it only grows across measurements, so read each line as "at most").

    python bench/edts.py [--preset paper] [--model FILE] [--size 256] [--batch 1] [--steps 10 50]
                         [--device auto] [--repeat 2] [--threads N] [--precision fp32|bf16|fp16]

``--model resources/models/edts-t1-t2.safetensors`` times the shipped model instead of a random one.

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
    p.add_argument("--model", default=None, help="an EDTS-Trans checkpoint to time instead of a random --preset")
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
    from napari_medtrans.translators.complexity import count_flops, meta_slice
    from napari_medtrans.translators.edts import format_complexity, model_complexity

    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_medtrans.core.allocator import keep_large_buffers

    # as the engine does before it translates (MEDTRANS_MALLOC=system measures glibc's defaults instead)
    print(f"large buffers kept in the heap (core/allocator.py): {keep_large_buffers()}")
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if args.model:
        from napari_medtrans.translators.checkpoint import load_translator

        model = load_translator(args.model).eval().to(device)
    else:
        model = create_translator("edts-trans", preset=args.preset, tsm_backbone=args.tsm).eval().to(device)
    cx = model_complexity(model, size=args.size)
    print(format_complexity(cx, steps=args.steps))
    unet = create_translator("unet", width=16, depth=4).eval().to(device)
    unet_flops = count_flops(lambda m, t: m(t), *meta_slice(unet, args.size))
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

    def row(label, fn, flops=None):
        t, mem = _measure(fn, device, args.repeat)
        rate = f"{flops * args.batch / t / 1e9:7.2f} GFLOP/s" if flops else " " * 15
        print(f"  {label:<28s} {t / args.batch * 1000:10.1f} ms/slice  {rate}   {mem_label} {mem:8.0f} MB",
              flush=True)
        return flops * args.batch / t if flops else None

    def unet_forward():
        with amp():
            return unet(x)

    with torch.inference_mode():
        reg = regress().float().clamp(-1, 1)
        base = row("U-Net (width 16, depth 4)", unet_forward, unet_flops)
        row("regression alone", regress, cx["flops_regression"])
        row(f"TSM map ({args.tsm})", lambda: model.tsm(reg))
        for steps in args.steps:
            rate = row(f"whole pipeline, {steps} steps", lambda s=steps: translate(s),
                       cx["flops_regression"] + steps * cx["flops_diffusion_step"])
            print(f"  {'':<28s} speed per FLOP: {rate / base:.2f} of the U-Net's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
