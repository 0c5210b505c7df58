"""`medtrans phantom`: write a paired multi-contrast phantom dataset (NIfTI, optionally DICOM) with a manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "phantom"
HELP = "write phantom subjects (T1, T2, FLAIR, PD, T1c, labels, brain mask) and a dataset manifest"
DESCRIPTION = """\
Write N phantom subjects: five co-registered contrasts computed from tissue maps with MR signal equations
(3 T literature relaxation values), a label map (0 background, 1 CSF, 2 GM, 3 WM, 4 edema, 5 enhancing rim,
6 necrosis) and a brain mask, plus OUT_DIR/dataset.json with a train/val/test split by subject.

Layout:  OUT_DIR/sub-000/{T1,T2,FLAIR,PD,T1c}.nii.gz, labels.nii.gz, brain_mask.nii.gz, phantom.json
         OUT_DIR/sub-000/dicom/<contrast>/   (with --dicom: one series per contrast, one study per subject)

The same --seed gives identical subjects; subject k is the same whatever --subjects is.

examples:
  medtrans phantom phantom-data --subjects 10
  medtrans phantom tumours --subjects 4 --tumour --dicom --shape 96 96 64 --snr 20
  medtrans phantom mni --subjects 2 --anatomy mni152     (needs nilearn)
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write the dataset into")
    p.add_argument("--subjects", "-n", type=_positive_int, default=1, metavar="N",
                   help="number of subjects (default 1)")
    p.add_argument("--tumour", "--tumor", action="store_true",
                   help="add a tumour (edema, enhancing rim, necrosis) to every subject")
    p.add_argument("--dicom", action="store_true", help="also write each contrast as a DICOM series")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--snr", type=_positive_float, default=30.0,
                   help="white-matter SNR of every contrast, Rician noise (default 30)")
    p.add_argument("--shape", type=_positive_int, nargs=3, default=(128, 128, 80), metavar=("X", "Y", "Z"),
                   help="grid size (default 128 128 80: a 192 x 192 x 160 mm head at 1.5 x 1.5 x 2 mm)")
    p.add_argument("--anatomy", choices=("procedural", "mni152"), default="procedural",
                   help="procedural head (default, no data needed) or the MNI152 templates shipped with nilearn")
    p.add_argument("--split", type=float, nargs=3, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"),
                   help="split ratios by subject (default 0.6 0.2 0.2)")


def run(args: argparse.Namespace) -> int:
    from ..core.dataset import load_dataset
    from ..core.phantom import assign_splits, write_phantom_dataset

    n = args.subjects
    try:
        splits = assign_splits(n, seed=args.seed, split=args.split)
    except ValueError as exc:
        print(f"medtrans phantom: error: {exc}", file=sys.stderr)
        return 2
    what = f"{n} {args.anatomy} phantom subject{'s' if n != 1 else ''}" + (" with tumours" if args.tumour else "")
    print(f"writing {what} to {args.out_dir} (shape {' x '.join(map(str, args.shape))}, WM SNR {args.snr:g}, "
          f"seed {args.seed}{', NIfTI + DICOM' if args.dicom else ', NIfTI'})", flush=True)
    start = time.perf_counter()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        k = done - 1
        print(f"  [{done}/{total}] sub-{k:03d} ({splits[k]}) written in {now - last[0]:.1f} s", flush=True)
        last[0] = now

    manifest = write_phantom_dataset(
        args.out_dir,
        n,
        seed=args.seed,
        tumour=args.tumour,
        dicom=args.dicom,
        shape=tuple(args.shape),
        anatomy=args.anatomy,
        snr=args.snr,
        split=tuple(args.split),
        progress=progress,
    )
    ds = load_dataset(manifest)
    counts = ", ".join(f"{len(ds.split(name))} {name}" for name in ("train", "val", "test"))
    print(f"wrote {manifest} ({n} subject{'s' if n != 1 else ''}: {counts}; contrasts {', '.join(ds.modalities)}) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
