"""`medtrans phantom`: write a paired multi-contrast phantom dataset (NIfTI, optionally DICOM) with a manifest."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

NAME = "phantom"
HELP = "write phantom subjects (T1, T2, FLAIR, PD, T1c, labels, brain mask) and a dataset manifest"
DESCRIPTION = """\
Write N phantom subjects: five contrasts computed from tissue maps with MR signal equations (3 T literature
relaxation values that depend on where a voxel is), a label map (0 background, 1 CSF, 2 GM, 3 WM, 4 edema,
5 enhancing rim, 6 necrosis) and a brain mask, plus OUT_DIR/dataset.json with a train/val/test split by subject.
The anatomy is the MNI152 template shipped with nilearn (default) or an analytic head (--anatomy procedural).
Each contrast but T1 is slightly misregistered against T1 (the labels' grid), as in one scanning session;
--registered turns that off. docs/benchmark.md defines the benchmark dataset built with this command.

Layout:  OUT_DIR/sub-000/{T1,T2,FLAIR,PD,T1c}.nii.gz, labels.nii.gz, brain_mask.nii.gz, phantom.json
         OUT_DIR/sub-000/dicom/<contrast>/   (with --dicom: one series per contrast, one study per subject)

The same --seed gives identical subjects; subject k is the same whatever --subjects is.

examples:
  medtrans phantom phantom-data --subjects 10
  medtrans phantom data/bench --subjects 60 --seed 0 --tumour 0.8 --split 0.7 0.1 0.2   (the benchmark)
  medtrans phantom tumours --subjects 4 --tumour --dicom --shape 96 112 64 --snr 20
  medtrans phantom noisy --subjects 2 --snr T1=25 FLAIR=12 --gibbs 0.6
  medtrans phantom simple --subjects 2 --anatomy procedural --registered
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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def _snr(text: str):
    """``30`` (T1's white-matter SNR) or ``T2=20`` (one contrast's)."""
    if "=" not in text:
        return _positive_float(text)
    name, _, value = text.partition("=")
    from ..phantom import CONTRASTS

    if name not in CONTRASTS:
        raise argparse.ArgumentTypeError(f"unknown contrast {name!r}; choose from {', '.join(CONTRASTS)}")
    return (name, _positive_float(value))


def _gibbs(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction of k-space in (0, 1], got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write the dataset into")
    p.add_argument("--subjects", "-n", type=_positive_int, default=1, metavar="N",
                   help="number of subjects (default 1)")
    p.add_argument("--tumour", "--tumor", type=_fraction, nargs="?", const=1.0, default=0.0, metavar="FRACTION",
                   help="add a tumour (edema, enhancing rim, necrosis) to every subject, or to each with probability "
                        "FRACTION (drawn from the subject's seed)")
    p.add_argument("--no-mass-effect", dest="mass_effect", action="store_false",
                   help="tumours do not push the tissue around them")
    p.add_argument("--registered", action="store_true",
                   help="no misregistration between the contrasts (default: each contrast but T1 moves by a "
                        "sub-voxel rigid motion, 0.1-0.6 mm and < 0.5 degrees, recorded in phantom.json)")
    p.add_argument("--gibbs", type=_gibbs, default=None, metavar="KEEP",
                   help="Gibbs ringing: keep this central fraction of k-space in-plane (e.g. 0.6; default off)")
    p.add_argument("--dicom", action="store_true", help="also write each contrast as a DICOM series")
    p.add_argument("--layout", choices=("medtrans", "brats2021", "brats2023", "bids"), default="medtrans",
                   help="file names: the project's (default) or a public dataset's, to try the path a BraTS or "
                        "BIDS folder takes (see docs/datasets.md; the split is then by subject hash)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--snr", type=_snr, nargs="+", default=[30.0], metavar="SNR",
                   help="white-matter SNR of T1 (default 30); the others follow a 3 T protocol's ratios (T2 0.9, "
                        "FLAIR 0.6, PD 1.2, T1c 0.75 of T1's). CONTRAST=SNR sets one contrast, e.g. --snr 25 FLAIR=12")
    p.add_argument("--shape", type=_positive_int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="grid size (default: 1.5 x 1.5 x 2 mm over the anatomy's field of view, 120 144 88 for "
                        "mni152, 128 128 80 for procedural)")
    p.add_argument("--anatomy", choices=("mni152", "procedural"), default="mni152",
                   help="the MNI152 templates shipped with nilearn (default) or an analytic head (no data needed)")
    p.add_argument("--split", type=float, nargs=3, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"),
                   help="split ratios by subject (default 0.6 0.2 0.2)")


def run(args: argparse.Namespace) -> int:
    from ..core.dataset import load_dataset
    from ..phantom import DEFAULT_SHAPE, assign_splits, write_phantom_dataset

    n = args.subjects
    snr: float | dict = 30.0
    named = dict(x for x in args.snr if isinstance(x, tuple))
    plain = [x for x in args.snr if not isinstance(x, tuple)]
    if len(plain) > 1:
        print("medtrans phantom: error: --snr takes one plain value (T1's) and CONTRAST=SNR pairs", file=sys.stderr)
        return 2
    if named:
        snr = {"T1": plain[0] if plain else 30.0, **named}
    elif plain:
        snr = plain[0]
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPE[args.anatomy]
    try:
        splits = assign_splits(n, seed=args.seed, split=args.split)
    except ValueError as exc:
        print(f"medtrans phantom: error: {exc}", file=sys.stderr)
        return 2
    if args.layout != "medtrans" and args.dicom:
        print(f"medtrans phantom: error: --dicom writes the medtrans layout only, not {args.layout}", file=sys.stderr)
        return 2
    tumour = True if args.tumour >= 1.0 else (False if args.tumour <= 0.0 else args.tumour)
    what = f"{n} {args.anatomy} phantom subject{'s' if n != 1 else ''}" + (
        "" if tumour is False else " with tumours" if tumour is True else f" (tumour probability {tumour:g})")
    snr_text = f"T1 {snr:g}" if isinstance(snr, float) else ", ".join(f"{k} {v:g}" for k, v in snr.items())
    print(f"writing {what} to {args.out_dir} (shape {' x '.join(map(str, shape))}, WM SNR {snr_text}, "
          f"seed {args.seed}{', NIfTI + DICOM' if args.dicom else ', NIfTI'})", flush=True)
    start = time.perf_counter()
    last = [start]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        k = done - 1
        where = f"sub-{k:03d} ({splits[k]})" if args.layout == "medtrans" else f"subject {k}"
        print(f"  [{done}/{total}] {where} written in {now - last[0]:.1f} s", flush=True)
        last[0] = now

    manifest = write_phantom_dataset(
        args.out_dir,
        n,
        seed=args.seed,
        tumour=tumour,
        dicom=args.dicom,
        shape=shape,
        anatomy=args.anatomy,
        snr=snr,
        registered=args.registered,
        gibbs=args.gibbs,
        mass_effect=args.mass_effect,
        split=tuple(args.split),
        progress=progress,
        layout=args.layout,
    )
    ds = load_dataset(manifest)
    counts = ", ".join(f"{len(ds.split(name))} {name}" for name in ("train", "val", "test"))
    print(f"wrote {manifest} ({n} subject{'s' if n != 1 else ''}: {counts}; contrasts {', '.join(ds.modalities)}) "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
