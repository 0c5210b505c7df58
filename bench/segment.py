"""SAM2 / MedSAM2 segmentation speed: image embedding per slice, 2D re-prompting, and propagation through a
155-slice volume, with and without the embedding cache; peak memory.

Volume: a phantom subject with a tumour (``make_subject(tumour=True)``, 240 x 240 x 155 by default, the BraTS
grid); the prompt is the box around the tumour on its key slice, as ``medtrans segment-eval --mode propagate``
derives it. Model: SAM2.1 tiny at a 512-pixel input (the MedSAM2 architecture) with the weights in the store
when they are there, else random weights (timings do not depend on the weights; masks then mean nothing).

Phases, in order, on one Segmenter:
  embed      every slice through the image encoder (``Segmenter.precompute``): seconds per slice
  reprompt   the key slice again with another box: cached embedding, prompt encoder and mask decoder only
  propagate  forward and backward from the key slice with every embedding cached
  cold       the cache cleared, propagation again: embeddings computed on the fly

Peak memory: the process's peak RSS (``resource.getrusage``) after each phase, the cache's size, and on CUDA
``torch.cuda.max_memory_allocated`` per phase.

    python bench/segment.py                          # CPU, 155 slices
    python bench/segment.py --device cuda            # on a GPU
    python bench/segment.py --slices 20 --size 128   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sam2.1_hiera_tiny", help="segmentation model (default sam2.1_hiera_tiny)")
    p.add_argument("--image-size", type=int, default=512, help="model input size (default 512)")
    p.add_argument("--slices", type=int, default=155, help="slices in the volume (default 155)")
    p.add_argument("--size", type=int, default=240, help="in-plane size (default 240)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--random", action="store_true", help="random weights even when the store has the checkpoint")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from napari_medtrans.core.errors import WeightsError
    from napari_medtrans.phantom import make_subject
    from napari_medtrans.segment import FrameGeometry, Segmenter, SlicePrompt, prompts_from_mask
    from napari_medtrans.segment.evaluate import ground_truth_mask

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    subject = make_subject(0, shape=(args.size, args.size, args.slices), tumour=True, contrasts=("T1",))
    vol = subject.images["T1"]
    made = time.perf_counter() - t0
    weights = "random"
    try:
        if args.random:
            raise WeightsError("random weights asked for")
        seg = Segmenter.from_name(args.model, device=args.device, image_size=args.image_size)
        weights = "store"
    except WeightsError:
        seg = Segmenter.from_name(args.model, device=args.device, image_size=args.image_size, random_init=True)
    cuda = seg.device.type == "cuda"
    print(f"model: {args.model} at {seg.image_size} px, {weights} weights, device {seg.device}, "
          f"{torch.get_num_threads()} threads, precision {seg.precision}")
    print(f"volume: phantom T1 {vol.shape} (made in {made:.1f} s), CPU cores {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    frames = FrameGeometry.of(vol).to_frames(ground_truth_mask(subject.labels, [4, 5, 6]))
    (key,) = prompts_from_mask(frames, mode="key")
    n = FrameGeometry.of(vol).n_slices
    figures: dict = {"model": args.model, "image_size": seg.image_size, "weights": weights, "device": str(seg.device),
                     "threads": torch.get_num_threads(), "slices": n, "shape": list(vol.shape), "key_slice": key.slice}

    def phase(name, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        figures[name] = {"seconds": dt, "peak_rss_mb": _rss_mb(), "cache_mb": seg.cache.nbytes / 2**20,
                         "load": os.getloadavg()[0]}
        if cuda:
            figures[name]["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(f"  {name:10s} {dt:8.2f} s  peak RSS {figures[name]['peak_rss_mb']:7.0f} MB  cache "
              f"{figures[name]['cache_mb']:6.0f} MB" + (f"  CUDA peak {figures[name]['cuda_peak_mb']:6.0f} MB"
                                                         if cuda else ""), flush=True)
        return out

    phase("warmup", lambda: seg.precompute(vol, [key.slice]))
    phase("embed", lambda: seg.precompute(vol))
    x0, y0, x1, y1 = key.box
    other = SlicePrompt(key.slice, box=(x0 + 1, y0 + 1, x1 - 1, y1 - 1))
    res2d = phase("reprompt", lambda: seg.segment_slices(vol, other))
    res = phase("propagate", lambda: seg.propagate(vol, key))
    seg.cache.clear()
    cold = phase("cold", lambda: seg.propagate(vol, key))
    assert res2d.embeddings_computed == 0 and res.embeddings_computed == 0 and cold.embeddings_computed == n
    assert np.array_equal(res.mask, cold.mask), "cached and fresh embeddings must give the same mask"

    per_slice = figures["embed"]["seconds"] / max(n - 1, 1)
    print()
    print(f"embedding: {per_slice * 1000:.0f} ms per slice ({n - 1} slices)")
    print(f"re-prompting a slice with its embedding cached: {figures['reprompt']['seconds'] * 1000:.0f} ms")
    print(f"propagation over {n} slices: {figures['propagate']['seconds']:.1f} s with the cache, "
          f"{figures['cold']['seconds']:.1f} s without "
          f"({figures['propagate']['seconds'] / n * 1000:.0f} / {figures['cold']['seconds'] / n * 1000:.0f} "
          "ms per slice)")
    print(f"cache for {n} slices: {figures['embed']['cache_mb']:.0f} MB; peak RSS {_rss_mb():.0f} MB")
    figures["embed_ms_per_slice"] = per_slice * 1000
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
