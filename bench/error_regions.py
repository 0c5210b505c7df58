"""Where a model's error lies: the share of the squared error (and the PSNR) per region of the brain mask, for the
synthetic volumes `medtrans evaluate` wrote, against the real ones. Regions: the outer rim of the brain mask (its
two outermost voxel layers: extra-cerebral CSF against the skull, where the contrasts' misregistration and the
flow voids of surface vessels sit), then CSF, grey matter, white matter and tumour inside it (label map).

    medtrans evaluate --model demo --data data/bench --precision fp32 --out data/bench/evaluation/demo-fp32
    python bench/error_regions.py data/bench data/bench/evaluation/demo-fp32 --modality T2 \\
        [--compare data/bench/evaluation/other-model]

PSNR per region uses the data range of the whole brain (as `medtrans evaluate`), so the regions' figures combine:
the brain's mean squared error is the voxel-weighted mean of theirs. Printed, not asserted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REGIONS = {"rim (2 outer voxels)": None, "CSF": (1,), "grey matter": (2,), "white matter": (3,),
           "tumour": (4, 5, 6)}


def region_errors(real: np.ndarray, synthetic: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> dict:
    """{region: (voxel fraction, share of the squared error, PSNR)} of one subject."""
    from scipy import ndimage

    rng = float(real[mask].max() - real[mask].min())
    err = ((synthetic - real) / rng) ** 2
    total = float(err[mask].sum())
    rim = mask & ~ndimage.binary_erosion(mask, iterations=2)
    out = {}
    for name, values in REGIONS.items():
        sel = rim if values is None else (mask & ~rim & np.isin(labels, values))
        if not sel.any():
            continue
        mse = float(err[sel].mean())
        out[name] = (float(sel.sum() / mask.sum()), float(err[sel].sum()) / total, 10 * np.log10(1 / mse))
    out["whole brain"] = (1.0, 1.0, 10 * np.log10(1 / float(err[mask].mean())))
    return out


def main(argv=None) -> int:
    from napari_medtrans.core import io
    from napari_medtrans.core.dataset import load_dataset
    from napari_medtrans.training.evaluate import output_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("evaluation", type=Path, nargs="+", help="folders medtrans evaluate wrote (one or more models)")
    p.add_argument("--modality", default="T2")
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
    ds = load_dataset(args.data)
    for folder in args.evaluation:
        rows: dict[str, list] = {}
        for s in ds.split(args.split):
            path = output_path(folder, s.id, args.modality)
            if not path.is_file():
                continue
            real = io.load(ds.path(s.images[args.modality])).data
            mask = io.load(ds.path(s.mask)).data > 0.5
            labels = np.rint(io.load(ds.path(s.labels)).data).astype(int)
            for name, vals in region_errors(real, io.load(path).data, mask, labels).items():
                rows.setdefault(name, []).append(vals)
        n = len(rows.get("whole brain", []))
        print(f"\n{folder} ({n} subjects, {args.modality})")
        print(f"{'region':24s} {'voxels':>8s} {'error share':>12s} {'PSNR (dB)':>10s}")
        for name, vals in rows.items():
            a = np.array(vals)
            print(f"{name:24s} {a[:, 0].mean():8.3f} {a[:, 1].mean():12.3f} {a[:, 2].mean():10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
