"""The figures of the segmenter's model card: Dice per tumour region and contrast on a dataset's test subjects
with tumours, with box prompts from the ground truth on every slice (each slice on its own, EDTS-Trans Table
III's protocol) and, for the whole tumour, one box on the key slice propagated through the volume. Also the
false-positive and false-negative voxels of the whole tumour (over- or under-segmenting) and, for comparison, the
Dice of one fixed threshold of the windowed image inside the same boxes.

    python bench/segmenter_card.py data/bench                                    # the shipped segmenter
    python bench/segmenter_card.py data/bench --model runs/promptunet/model.safetensors --split val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    import torch

    from napari_medtrans.core.dataset import load_dataset
    from napari_medtrans.core.io.nifti import read_nifti
    from napari_medtrans.core.metrics import dice
    from napari_medtrans.segment.evaluate import evaluate_segmentation
    from napari_medtrans.segment.frames import FrameGeometry
    from napari_medtrans.segment.promptnet import PromptSegmenter, frames01, load_promptunet
    from napari_medtrans.segment.prompts import prompts_from_mask
    from napari_medtrans.segment.table3 import REGIONS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("--model", type=Path, default=ROOT / "resources/segmenters/promptunet-phantom.safetensors")
    p.add_argument("--split", default="test")
    p.add_argument("--contrasts", nargs="+", default=["FLAIR", "T2", "T1c"])
    p.add_argument("--threshold", type=float, default=0.41,
                   help="the fixed threshold of the windowed image (0..1) for the comparison row")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_promptunet(args.model)
    seg = PromptSegmenter(model)
    ds = load_dataset(args.data)
    rows: dict[tuple[str, str], list[float]] = {}
    errors: dict[str, list[tuple[int, int]]] = {}
    for subj in ds.split(args.split):
        if not subj.labels:
            continue
        lab = read_nifti(ds.path(subj.labels))
        labels = np.rint(lab.data)
        if not np.isin(labels, REGIONS["whole tumour"]).any():
            continue
        geom = FrameGeometry.of(lab)
        for c in args.contrasts:
            if c not in subj.images:
                continue
            img = read_nifti(ds.path(subj.images[c]))
            for region, values in REGIONS.items():
                truth = np.isin(labels, values)
                if not truth.any():
                    continue
                gt = lab.derive(truth.astype(np.uint8))
                rep = evaluate_segmentation({c: img}, gt, seg, mode="slices")
                rows.setdefault((c, region), []).append(rep.images[0].dice)
                if region == "whole tumour":
                    mask = rep.results[c].mask
                    errors.setdefault(c, []).append((int((mask & ~truth).sum()), int((~mask & truth).sum())))
                    prop = evaluate_segmentation({c: img}, gt, seg, mode="propagate")
                    rows.setdefault((c, "whole tumour, propagated"), []).append(prop.images[0].dice)
                    tf = geom.to_frames(truth)
                    frames, _ = frames01(img, geom)
                    thr = np.zeros_like(tf)
                    for pr in prompts_from_mask(tf, mode="slices"):
                        x0, y0, x1, y1 = (int(round(v)) for v in pr.box)
                        box = frames[pr.slice, y0:y1 + 1, x0:x1 + 1]
                        thr[pr.slice, y0:y1 + 1, x0:x1 + 1] = box > args.threshold
                    rows.setdefault((c, f"whole tumour, threshold {args.threshold} in the boxes"), []).append(
                        float(dice(geom.to_volume(thr), truth)))
        print(f"{subj.id} done", file=sys.stderr, flush=True)
    print(f"model: {args.model}\nsplit: {args.split}\n")
    print("| image | region | n | Dice mean | minimum |")
    print("|---|---|---|---|---|")
    for (c, region), v in rows.items():
        print(f"| {c} | {region} | {len(v)} | {np.mean(v):.3f} | {np.min(v):.3f} |")
    print()
    for c, e in errors.items():
        fp, fn = np.array(e).T
        print(f"{c} whole tumour, slices: false-positive voxels {int(fp.mean())} (per subject, mean), "
              f"false-negative {int(fn.mean())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
