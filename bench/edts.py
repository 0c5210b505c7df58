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
  resident set size (a high-water mark: it only grows across measurements, so read each line as "at most");
* with ``--workers N`` (CPU): the U-Net and the whole pipeline again with N Python threads that each translate
  their own slices on one intra-op thread (slice-parallel inference, which the engine does not do: it gives a
  sampling model one slice per call on all threads), as an upper estimate of what the cores can give;
* with ``--compile``: the same after ``torch.compile`` of the U-Net and of EDTS's two networks (inductor; needs a
  C++ compiler), with the compile time of the first call;
* with ``--volume SLICES``: the time a volume of that many slices of ``--size`` would take at each measured rate,
  and the rate (GFLOP/s) the whole pipeline would need to translate it in ``--target`` seconds (default 15, issue
  20's goal for the demo volume: 88 slices of 120 x 144).

    python bench/edts.py [--preset paper] [--model FILE] [--size 256 [W]] [--batch 1] [--steps 10 50]
                         [--device auto] [--repeat 2] [--threads N] [--precision fp32|bf16|fp16]
                         [--workers N] [--compile] [--volume SLICES] [--target SECONDS]

``--model resources/models/edts-t1-t2.safetensors`` times the shipped model instead of a random one.

Run it with nothing else busy on the machine; timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import threading
import time

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
    p.add_argument("--size", type=int, nargs="+", default=[256], help="slice side, or height and width")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 50])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tsm", default="analytic", choices=["analytic", "vgg16-imagenet"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--workers", type=int, default=0, help="CPU: also time N slice-parallel single-thread workers")
    p.add_argument("--compile", action="store_true", help="also time the networks after torch.compile")
    p.add_argument("--volume", type=int, default=0, help="slices of a volume to print its implied time for")
    p.add_argument("--target", type=float, default=15.0, help="seconds the volume should take (default 15)")
    args = p.parse_args(argv)
    if len(args.size) > 2:
        p.error("--size takes one side or a height and a width")
    height, width = args.size[0], args.size[-1]

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
    cx = model_complexity(model, size=height)
    print(format_complexity(cx, steps=args.steps))
    scale = width / height  # FLOPs per slice grow with its pixels
    if width != height:
        print(f"  scaled to {height}x{width} slices: {scale:.3f} times the FLOPs above")
    unet = create_translator("unet", width=16, depth=4).eval().to(device)
    # the U-Net takes sides in multiples of 16: its slices are padded as the engine pads them
    um = unet.spec.size_multiple
    uh, uw = -(-height // um) * um, -(-width // um) * um
    unet_flops = count_flops(lambda m, t: m(t), *meta_slice(unet, uh)) * uw / uh
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); batch {args.batch} x {height}x{width}; precision {args.precision}; "
          f"best of {args.repeat} after a warm-up")
    x = torch.rand(args.batch, 1, height, width, device=device) * 2 - 1
    ux = torch.nn.functional.pad(x, (0, uw - width, 0, uh - height), value=-1.0)
    flops_reg = cx["flops_regression"] * scale
    flops_step = cx["flops_diffusion_step"] * scale
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

    def report(label, t, flops, mem):
        rate = f"{flops * args.batch / t / 1e9:7.2f} GFLOP/s" if flops else " " * 15
        print(f"  {label:<30s} {t / args.batch * 1000:10.1f} ms/slice  {rate}   {mem_label} {mem:8.0f} MB",
              flush=True)
        if flops and args.volume:
            print(f"  {'':<30s} a volume of {args.volume} slices: {args.volume * t / args.batch:.1f} s")
        return flops * args.batch / t if flops else None

    def row(label, fn, flops=None):
        t, mem = _measure(fn, device, args.repeat)
        return report(label, t, flops, mem)

    def parallel_row(label, fn, flops):
        """``fn`` (one batch) run by ``--workers`` threads at once, each on one intra-op thread."""
        n = args.workers
        per_worker = max(args.repeat, 2)

        def work():
            with torch.inference_mode():
                for _ in range(per_worker):
                    fn()

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            work()  # warm-up on this thread
            pool = [threading.Thread(target=work) for _ in range(n)]
            t0 = time.perf_counter()
            for th in pool:
                th.start()
            for th in pool:
                th.join()
            t = (time.perf_counter() - t0) / (n * per_worker)
        finally:
            torch.set_num_threads(threads)
        return report(f"{label}, {n} workers", t, flops, _rss_mb())

    def unet_forward():
        with amp():
            return unet(ux)

    pipeline = {steps: flops_reg + steps * flops_step for steps in args.steps}  # FLOPs per slice
    if args.volume:
        for steps, f in pipeline.items():
            need = args.volume * f / args.target / 1e9
            print(f"a volume of {args.volume} slices in {args.target:g} s with {steps} steps needs {need:.1f} GFLOP/s "
                  f"({args.volume * f / 1e12:.2f} TFLOPs)")

    def measure_all(tag):
        with torch.inference_mode():
            reg = regress().float().clamp(-1, 1)
            base = row(f"U-Net (width 16, depth 4){tag}", unet_forward, unet_flops)
            row(f"regression alone{tag}", regress, flops_reg)
            row(f"TSM map ({args.tsm}){tag}", lambda: model.tsm(reg))
            for steps, f in pipeline.items():
                rate = row(f"whole pipeline, {steps} steps{tag}", lambda s=steps: translate(s), f)
                print(f"  {'':<30s} speed per FLOP: {rate / base:.2f} of the U-Net's")
        if args.workers and device.type == "cpu":
            base = parallel_row(f"U-Net{tag}", unet_forward, unet_flops)
            for steps, f in pipeline.items():
                rate = parallel_row(f"pipeline, {steps} steps{tag}", lambda s=steps: translate(s), f)
                print(f"  {'':<30s} speed per FLOP: {rate / base:.2f} of the U-Net's")

    measure_all("")
    if args.compile:
        t0 = time.perf_counter()
        unet = torch.compile(unet)
        model.regression = torch.compile(model.regression)
        model.denoiser = torch.compile(model.denoiser)
        with torch.inference_mode():
            unet_forward()
            translate(args.steps[0])
        print(f"torch.compile: first calls took {time.perf_counter() - t0:.1f} s", flush=True)
        measure_all(", compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
