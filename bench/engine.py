"""Engine throughput: ``translate_volume`` versus the naive per-slice loop of published test scripts.

The naive loop is what most papers' ``test.py`` does: for each slice, ``model(x)`` at batch size 1, in fp32,
with autograd enabled (no ``no_grad``/``inference_mode``), then ``.detach().cpu().numpy()``. Both sides get the
same volume (256 x 256 x 155, sliced along k), the same per-volume intensity normalisation and the same model.

Each side runs in its own worker process, so that peak RSS (``resource.getrusage``) and the tracemalloc peak
(numpy and other Python allocations; torch's own buffers are not traced) are per side. The two workers take
turns (engine, naive, engine, naive, ... for ``--rounds`` rounds) and the best round of each is reported: on a
shared machine, interleaving keeps the comparison fair when the load changes. The outputs are compared too:
in fp32 the engine must compute the same image as the naive loop; in bf16 the difference is what bf16 costs.

Three workers: the engine at its default precision (``"auto"``: bf16 autocast on a CPU that computes bf16 in
hardware, AVX512-BF16 or AMX, else fp32), the engine forced to fp32, and the naive loop. The ratio that counts is
the engine as a user runs it (default precision) against the naive loop; the fp32 line shows how much of the gain
is batching, folded normalisation and channels-last alone, and the output comparison shows what bf16 costs.

Model: ``resources/models/demo-t1-t2.safetensors`` (the shipped demo model) when there is one, loaded with
``napari_medtrans.translators.checkpoint.load_translator``; else ``create_translator("unet", width=16)`` with
random weights (seeded). The choice is printed.

In fp32 the ratio is bounded by how close the naive loop's fp32 convolutions already are to the CPU's
arithmetic rate (batching, channels-last and folded batch norm leave the arithmetic unchanged); bf16 halves the
bytes and doubles the multiply rate of the CPU's vector units. ``bench/engine_options.py`` measures what
compilation, Winograd convolutions and foreground cropping would add and how far each moves the output.

    python bench/engine.py                 # full run
    python bench/engine.py --slices 40     # quicker, fewer slices
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("engine", "engine-fp32", "naive")


def _model(args):
    import torch

    from napari_medtrans.translators import create_translator

    shipped = sorted(glob.glob(str(ROOT / "resources" / "models" / "demo-t1-t2.safetensors")))
    if args.model or shipped:
        from napari_medtrans.translators.checkpoint import load_translator

        path = args.model or shipped[0]
        return load_translator(path, device="cpu"), f"checkpoint {os.path.relpath(path, ROOT)}"
    torch.manual_seed(0)
    model = create_translator("unet", width=args.width)
    n = sum(p.numel() for p in model.parameters())
    return model, f"create_translator('unet', width={args.width}) with random weights ({n / 1e6:.2f} M parameters)"


def _volume(args):
    """A head-like test volume: an ellipsoid of smooth texture in a zero background, 1 mm isotropic."""
    import numpy as np

    from napari_medtrans.core.volume import Volume

    n = args.size
    rng = np.random.default_rng(0)
    i, j, k = np.meshgrid(
        np.linspace(-1, 1, n, dtype=np.float32),
        np.linspace(-1, 1, n, dtype=np.float32),
        np.linspace(-1, 1, args.slices, dtype=np.float32),
        indexing="ij",
    )
    inside = (i / 0.8) ** 2 + (j / 0.9) ** 2 + (k / 1.1) ** 2 < 1
    data = (400 + 200 * np.sin(7 * i) * np.cos(5 * j) + 150 * np.cos(9 * k)) * inside
    data += rng.normal(0, 15, data.shape).astype(np.float32) * inside
    return Volume(np.clip(data, 0, None), np.eye(4), modality="T1")


def _worker(args) -> int:
    """Build the model and volume, then run a pass per "run" line on stdin; report memory on "quit"."""
    import resource
    import tracemalloc

    import numpy as np
    import torch

    from napari_medtrans.core.engine import translate_volume
    from napari_medtrans.core.preprocess import denormalise, intensity_spec_from, normalise

    if args.threads:
        torch.set_num_threads(args.threads)
    tracemalloc.start()
    model, description = _model(args)
    vol = _volume(args)
    out = None

    precision = {"engine": "auto", "engine-fp32": "fp32"}.get(args.worker, "fp32")
    used = {}

    def engine_pass():
        bs = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
        res = translate_volume(vol, model, device="cpu", batch_size=bs, precision=precision)
        used["precision"] = res.precision
        return res.volume.data

    def naive_pass():
        model.eval()
        # the same intensity mapping as the engine: the checkpoint's input percentiles, and its stored output
        # range for the target contrast (else the input's own range), so that both compute the same image
        norm = intensity_spec_from(getattr(model, "normalisation", None))
        rng = norm.input_range(vol.data)
        out_rng = norm.output_range(model.spec.outputs[0], rng)
        result = np.empty_like(vol.data)
        for k in range(vol.shape[2]):
            x = torch.from_numpy(normalise(vol.data[:, :, k], rng)[None, None])
            y = model(x)  # autograd on, batch of one, fp32
            result[:, :, k] = denormalise(y[0, 0].detach().cpu().numpy().clip(-1, 1), out_rng)
        return result

    run = naive_pass if args.worker == "naive" else engine_pass
    # Warm-up on a few slices (first-call allocations, oneDNN kernel selection), outside the timing.
    with torch.inference_mode():
        model.translate(torch.zeros(1, len(model.spec.inputs), args.size, args.size))
    print(json.dumps({"ready": True, "model": description}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            t0 = time.perf_counter()
            out = run()
            dt = time.perf_counter() - t0
            print(json.dumps({"seconds": dt, "load": os.getloadavg()[0],
                              "precision": used.get("precision", "fp32")}), flush=True)
        elif cmd.startswith("quit"):
            path = cmd.split(" ", 1)[1]
            np.save(path, out)
            _, peak = tracemalloc.get_traced_memory()
            rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
            print(json.dumps({"peak_rss_mb": rss_kb / 1024, "tracemalloc_peak_mb": peak / 2**20,
                              "threads": torch.get_num_threads()}), flush=True)
            return 0
    return 1


def _spawn(kind: str, args) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", kind, "--width", str(args.width), "--slices", str(args.slices),
           "--size", str(args.size), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _ask(proc: subprocess.Popen, line: str | None = None) -> dict:
    if line is not None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
    reply = proc.stdout.readline()
    if not reply:
        raise RuntimeError(f"benchmark worker exited (code {proc.wait()})")
    return json.loads(reply)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="checkpoint to load (default: the shipped demo model, else a random U-Net)")
    p.add_argument("--width", type=int, default=16, help="U-Net width when no checkpoint is used (default 16)")
    p.add_argument("--slices", type=int, default=155, help="slices in the volume (default 155)")
    p.add_argument("--size", type=int, default=256, help="in-plane size (default 256)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per side; the best is kept (default 2)")
    p.add_argument("--batch-size", default="auto", help='engine batch size (default "auto")')
    p.add_argument("--threads", type=int, default=0, help="torch threads in both workers (default: torch's choice)")
    p.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)

    sys.path.insert(0, str(ROOT))
    workers = {k: _spawn(k, args) for k in KINDS}
    hello = {k: _ask(w) for k, w in workers.items()}
    print(f"model: {hello['engine']['model']}")
    print(f"volume: {args.size}x{args.size}x{args.slices}, CPU cores: {os.cpu_count()}, load at start: "
          f"{os.getloadavg()[0]:.2f}")
    times = {k: [] for k in workers}
    precision = {}
    for r in range(args.rounds):
        for k, w in workers.items():
            res = _ask(w, "run")
            times[k].append(res["seconds"])
            precision[k] = res["precision"]
            print(f"  round {r + 1} {k:11s}: {res['seconds']:7.2f} s  ({args.slices / res['seconds']:6.2f} slices/s, "
                  f"load {res['load']:.2f})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        mem, outs = {}, {}
        for k, w in workers.items():
            path = os.path.join(tmp, f"{k}.npy")
            mem[k] = _ask(w, f"quit {path}")
            w.wait()
            import numpy as np

            outs[k] = np.load(path)
    scale = float(np.abs(outs["naive"]).max()) or 1.0
    rate = {k: args.slices / min(v) for k, v in times.items()}
    print()
    print(f"{'':12s}{'precision':>10s}{'slices/s':>10s}{'ratio':>7s}{'peak RSS MB':>13s}{'tracemalloc MB':>16s}"
          f"{'threads':>9s}")
    for k in workers:
        print(f"{k:12s}{precision[k]:>10s}{rate[k]:10.2f}{rate[k] / rate['naive']:7.2f}{mem[k]['peak_rss_mb']:13.0f}"
              f"{mem[k]['tracemalloc_peak_mb']:16.0f}{mem[k]['threads']:9d}")
    print(f"ratio engine/naive: {rate['engine'] / rate['naive']:.2f} (goal >= 2; engine at its default precision, "
          f"{precision['engine']}), engine peak RSS {mem['engine']['peak_rss_mb'] / 1024:.2f} GB (goal < 2 GB)")
    for k in ("engine-fp32", "engine"):
        d = np.abs(outs[k] - outs["naive"])
        print(f"outputs, {k} ({precision[k]}) vs naive (fp32): max |diff| = {float(d.max()):.4g} "
              f"({float(d.max()) / scale:.2e} of the output's peak), mean {float(d.mean()) / scale:.2e} of the peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
