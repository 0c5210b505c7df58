"""`medtrans evaluate`: a paper-style table of PSNR, SSIM and MAE over the test subjects."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

NAME = "evaluate"
HELP = "translate a dataset's test subjects and print PSNR/SSIM/MAE (mean +- sd) inside the brain mask"
DESCRIPTION = """\
Translate the subjects of one split (default: test) and compare each synthetic volume with the real one, on the
whole volume inside the brain mask (data range = the reference's range inside the mask). Prints mean +- sd over
subjects per direction and writes one CSV row per subject.

example:
  medtrans evaluate --model demo --data phantom-data/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint, 'demo', or a weights-store name")
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for synthetic volumes and metrics.csv (default: DATA/evaluation/<model name>)")
    p.add_argument("--csv", type=Path, default=None, help="where to write per-subject metrics (default: OUT/metrics.csv)")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_dataset, format_table, resolve_model

    model = resolve_model(args.model)
    data_root = args.data if args.data.is_dir() else args.data.parent
    # The folder name carries the checkpoint's hash so results of another model are never reused.
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:8]
    out = args.out or data_root / "evaluation" / f"{model.name.split('.')[0]}-{digest}"
    report = evaluate_dataset(model, args.data, out, split=args.split, device=args.device, steps=args.steps,
                              samples=args.samples, seed=args.seed, log=lambda s: print(s, flush=True))
    print()
    print(format_table(report))
    csv_path = report.write_csv(args.csv or out / "metrics.csv")
    print(f"\nper-subject metrics: {csv_path}")
    return 0
