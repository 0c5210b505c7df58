"""Benchmark: CDM slices per second at N_sampling 10/20/30/40 against the EDTS-Trans diffusion refiner.

The paper's efficiency claim (Fig. 1, Fig. 5a): CDM runs its diffusion on a vector (the MDN over ``y_0``) and the
image network once, where a conventional diffusion translator runs an image-sized denoiser at every step. This
script times both in one run, with random weights, on the same batch:

* CDM (``create_translator("cdm", preset=...)``): MDN sampling in N steps, then one C-UNet pass;
* EDTS-Trans (``create_translator("edts-trans", preset=...)``): regression, TSM, N DiffUNet steps, fusion. It is
  built with CDM's inputs and outputs (T1 + T2 -> T1c + FLAIR by default) so that both produce the same slices.

For each step count it prints slices per second (best of ``--repeat`` after one warm-up) and the ratio, plus the
parameters and FLOPs of both models.

    python bench/cdm.py [--preset cpu] [--edts-preset cpu] [--size 128] [--batch 4] [--steps 10 20 30 40]
                        [--device auto] [--repeat 2] [--threads N] [--json results.json]

Run it with nothing else busy on the machine; timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from _common import best_time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", choices=["paper", "cpu"], help="CDM size (default cpu)")
    p.add_argument("--edts-preset", default="cpu", choices=["paper", "cpu"], help="EDTS-Trans size (default cpu)")
    p.add_argument("--size", type=int, default=128, help="slice side in pixels (default 128)")
    p.add_argument("--batch", type=int, default=4, help="slices per call (default 4)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30, 40])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    from napari_medtrans.core.engine import resolve_device
    from napari_medtrans.translators import create_translator
    from napari_medtrans.translators import cdm as cdm_mod
    from napari_medtrans.translators import edts as edts_mod

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    cdm = create_translator("cdm", preset=args.preset).eval().to(device)
    edts = create_translator("edts-trans", preset=args.edts_preset, inputs=list(cdm.spec.inputs),
                             outputs=list(cdm.spec.outputs)).eval().to(device)
    multiple = max(cdm.spec.size_multiple, edts.spec.size_multiple)
    side = -(-args.size // multiple) * multiple
    print(cdm_mod.format_complexity(cdm_mod.model_complexity(cdm, size=side), steps=args.steps))
    print(edts_mod.format_complexity(edts_mod.model_complexity(edts, size=side), steps=args.steps))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); batch {args.batch} x {len(cdm.spec.inputs)} x {side}x{side} "
          f"({'+'.join(cdm.spec.inputs)} -> {'+'.join(cdm.spec.outputs)}); best of {args.repeat} after a warm-up")
    x = torch.rand(args.batch, len(cdm.spec.inputs), side, side, device=device) * 2 - 1

    def run(model, steps):
        return model.translate(x, steps=steps, generator=torch.Generator(device=device).manual_seed(0))

    rows = []
    print(f"{'N_sampling':>10s} {'CDM slices/s':>14s} {'EDTS-Trans slices/s':>20s} {'CDM / EDTS':>11s}", flush=True)
    with torch.inference_mode():
        for steps in args.steps:
            t_cdm = best_time(lambda: run(cdm, steps), device, args.repeat)
            t_edts = best_time(lambda: run(edts, steps), device, args.repeat)
            row = {"steps": steps, "cdm_slices_per_s": args.batch / t_cdm, "edts_slices_per_s": args.batch / t_edts}
            row["ratio"] = row["cdm_slices_per_s"] / row["edts_slices_per_s"]
            rows.append(row)
            print(f"{steps:>10d} {row['cdm_slices_per_s']:>14.2f} {row['edts_slices_per_s']:>20.2f} "
                  f"{row['ratio']:>10.1f}x", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "device_name": name, "size": side, "batch": args.batch,
                       "cdm_preset": args.preset, "edts_preset": args.edts_preset, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
