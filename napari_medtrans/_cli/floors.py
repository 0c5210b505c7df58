"""`medtrans floors`: the zero-parameter floors of a dataset, without any model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .translate import _direction

NAME = "floors"
HELP = "score the zero-parameter floors (identity, histogram mapping, per-voxel lookup) on a dataset's test subjects"
DESCRIPTION = """\
What a translation scores without learning anything about anatomy, on the subjects of one split (default: test):
identity (the input rescaled onto the training targets' range), unpaired histogram mapping (brain voxels by rank
onto the pooled training target histogram, reversed for anti-correlated contrasts) and a per-voxel lookup
(mean training target per input bin). All three are fitted on the dataset's training subjects. `medtrans
evaluate` prints the same rows beside a model; this command needs no model.

examples:
  medtrans floors --data data/bench --direction T1:T2 --direction T2:T1
  medtrans floors --data data/bench --direction "T1+T2->T1c"
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest")
    p.add_argument("--direction", required=True, type=_direction, action="append", metavar="SRC->DST",
                   help='e.g. "T1->T2", T1:T2 or "T1+T2->T1c"; repeat it for several')
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--by-tumour", action="store_true",
                   help="also give the table over the subjects with tumours and over those without (label maps)")
    p.add_argument("--csv", type=Path, default=None, help="also write one row per subject and floor")
    p.add_argument("--protocol", default="project",
                   choices=["project", "hifisyn", "disdiff", "edts", "cdm", "mrnet"],
                   help="how images are scored (see medtrans evaluate --help)")


def run(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_floors, format_table

    report = evaluate_floors(args.data, args.direction, split=args.split, protocol=args.protocol,
                             log=lambda s: print(s, flush=True))
    print()
    print(format_table(report, by_tumour=args.by_tumour))
    if args.csv:
        print(f"\nper-subject metrics: {report.write_csv(args.csv)}")
    return 0
