"""What else could make CPU inference faster than ``translate_volume``, and what each would cost in accuracy.

``bench/engine.py`` compares the engine with the naive per-slice loop. This script asks the follow-up question:
on this CPU, which further changes to the arithmetic would speed up the demo model, and do they still compute
the same image? Every variant runs on the same normalised slices of the bench volume (256 x 256), in one
process, in interleaved rounds (best round reported), and its output is compared with the engine's:

* ``naive``: batch of 1, NCHW, autograd on (the baseline of ``bench/engine.py``).
* ``engine``: what ``translate_volume`` runs on a CPU: the tuned copy (batch norm folded, channels-last) under
  ``inference_mode``, batches of ``--batch`` slices.
* ``inductor``: ``torch.compile`` with weight freezing (oneDNN prepacked convolutions, fused activations); the
  compile time is printed separately. Needs a C++ compiler; skipped with the reason if compiling fails.
* ``winograd``: the 3 x 3 convolutions through NNPACK's Winograd kernels (``torch._nnpack_spatial_convolution``).
* ``crop``: each batch cut to the bounding box of its non-background pixels plus ``--margin`` pixels, padded
  with background; the rest of the slice is filled from the full-slice run (so only the crop's own error shows).

Static int8 quantisation (FX graph mode, x86 backend) was tried too and ran no faster than the engine on this
model here (its 16-32 channel convolutions gain nothing from fbgemm); it is left out.

It also prints the engine's arithmetic rate (convolution FLOPs per second), which says how close the plain
fp32 path already is to what the CPU can do.

    python bench/engine_options.py                  # 16 slices, 2 threads
    python bench/engine_options.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import glob
import importlib.util
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench_volume(size: int, slices: int):
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._volume(argparse.Namespace(size=size, slices=slices))


def _conv_flops(model, x) -> float:
    """Multiply-adds x 2 of every convolution for one pass over ``x``."""
    import torch

    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            total[0] += 2.0 * out.numel() * mod.weight[0].numel()
        elif isinstance(mod, torch.nn.ConvTranspose2d):
            total[0] += 2.0 * inp[0].numel() * mod.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.inference_mode():
        model.translate(x)
    for h in handles:
        h.remove()
    return total[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--margin", type=int, default=16, help="crop margin in pixels")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from napari_medtrans.core.engine import _cpu_inference_copy
    from napari_medtrans.core.preprocess import intensity_spec_from
    from napari_medtrans.translators.checkpoint import load_translator

    torch.set_num_threads(args.threads)
    path = sorted(glob.glob(str(ROOT / "resources" / "models" / "demo-t1-t2.safetensors")))[0]
    model = load_translator(path, device="cpu").eval()
    vol = _bench_volume(args.size, args.slices)
    rng = intensity_spec_from(model.normalisation).input_range(vol.data)
    x = torch.from_numpy(np.ascontiguousarray(vol.data.transpose(2, 0, 1)[:, None]))
    x = ((x - rng.lo) * (2.0 / (rng.hi - rng.lo)) - 1.0).clamp(-1, 1)
    fast = _cpu_inference_copy(model)
    chunks = list(x.split(args.batch))

    def naive(t):
        return torch.cat([model.translate(t[i:i + 1]).image.detach() for i in range(t.shape[0])])

    def engine(t):
        with torch.inference_mode():
            return torch.cat([fast.translate(c.contiguous(memory_format=torch.channels_last)).image
                              for c in t.split(args.batch)])

    class Net(torch.nn.Module):  # the translator's image as a plain module, for compile and quantisation
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, t):
            return self.m.translate(t).image

    variants = {"naive": naive, "engine": engine}
    notes: dict[str, str] = {}

    try:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(Net(fast).eval())
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(chunks[0].contiguous(memory_format=torch.channels_last))
        notes["inductor"] = f"compile {time.perf_counter() - t0:.1f} s"

        def inductor(t):
            with torch.no_grad():
                return torch.cat([compiled(c.contiguous(memory_format=torch.channels_last))
                                  for c in t.split(args.batch)])

        variants["inductor"] = inductor
    except Exception as exc:  # no compiler, unsupported op: say so and go on
        notes["inductor"] = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"

    if torch._nnpack_available():
        wino = copy.deepcopy(fast).to(memory_format=torch.contiguous_format)

        class WinogradConv(torch.nn.Conv2d):
            def forward(self, t):
                return torch._nnpack_spatial_convolution(t.contiguous(), self.weight.contiguous(), self.bias,
                                                         self.padding, self.stride)

        n = 0
        for mod in wino.modules():
            if type(mod) is torch.nn.Conv2d and mod.kernel_size == (3, 3) and mod.stride == (1, 1) \
                    and mod.dilation == (1, 1) and mod.groups == 1:
                mod.__class__ = WinogradConv
                n += 1
        notes["winograd"] = f"{n} convolutions"

        def winograd(t):
            with torch.inference_mode():
                return torch.cat([wino.translate(c).image for c in t.split(args.batch)])

        variants["winograd"] = winograd
    else:
        notes["winograd"] = "skipped: NNPACK not available"

    fg = x > -0.999
    rows = torch.where(fg.any(0)[0].any(1))[0]
    cols = torch.where(fg.any(0)[0].any(0))[0]
    mult = int(model.spec.size_multiple or 1)
    r0, c0 = max(0, int(rows[0]) - args.margin), max(0, int(cols[0]) - args.margin)
    r1, c1 = min(args.size, int(rows[-1]) + 1 + args.margin), min(args.size, int(cols[-1]) + 1 + args.margin)
    ch, cw = -(-(r1 - r0) // mult) * mult, -(-(c1 - c0) // mult) * mult
    notes["crop"] = f"box {r1 - r0} x {c1 - c0} px (run as {ch} x {cw}) of {args.size} x {args.size}"
    full_ref: dict[str, torch.Tensor] = {}

    def crop(t):
        with torch.inference_mode():
            parts = []
            for c in t.split(args.batch):
                box = torch.full((c.shape[0], c.shape[1], ch, cw), -1.0)
                box[:, :, :r1 - r0, :c1 - c0] = c[:, :, r0:r1, c0:c1]
                parts.append(fast.translate(box.contiguous(memory_format=torch.channels_last)).image)
            y = full_ref["engine"].clone()
            y[:, :, r0:r1, c0:c1] = torch.cat(parts)[:, :, :r1 - r0, :c1 - c0]
            return y

    variants["crop"] = crop

    best = {k: float("inf") for k in variants}
    outputs: dict[str, torch.Tensor] = {}
    full_ref["engine"] = engine(x)
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            y = fn(x)
            best[name] = min(best[name], time.perf_counter() - t0)
            outputs[name] = y.float()

    ref = outputs["engine"]
    brain = fg.expand_as(ref)
    flops = _conv_flops(fast, chunks[0].contiguous(memory_format=torch.channels_last)) * len(x) / len(chunks[0])
    print(f"model {Path(path).relative_to(ROOT)}, {len(x)} slices of {args.size} x {args.size}, "
          f"batch {args.batch}, {torch.get_num_threads()} threads, best of {args.rounds} rounds")
    print(f"engine arithmetic: {flops / 1e9 / len(x):.2f} GFLOP per slice, "
          f"{flops / best['engine'] / 1e9:.1f} GFLOP/s")
    print(f"{'variant':<10}{'slices/s':>10}{'x naive':>9}{'x engine':>10}{'max |diff|':>12}{'brain max':>11}"
          f"{'mean |diff|':>13}  note")
    for name in variants:
        d = (outputs[name] - ref).abs()
        print(f"{name:<10}{len(x) / best[name]:>10.2f}{best['naive'] / best[name]:>9.2f}"
              f"{best['engine'] / best[name]:>10.2f}{float(d.max()):>12.2e}{float(d[brain].max()):>11.2e}"
              f"{float(d.mean()):>13.2e}  {notes.get(name, '')}")
    for name, note in notes.items():
        if name not in variants:
            print(f"{name:<10}{note}")
    print("(differences are in the model's output units, [-1, 1]; 2.0 is the full intensity range)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
