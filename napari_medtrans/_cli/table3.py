"""`medtrans table3`: EDTS-Trans Table III (tumour segmentation on real versus synthetic images) on a dataset."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

NAME = "table3"
HELP = "EDTS-Trans Table III: segment the tumour on real and synthetic images with the same prompts"
DESCRIPTION = """\
Every shipped translator (or --model) translates the split's subjects with tumours (outputs shared with
`medtrans evaluate`, so finished volumes are reused and an interrupted run resumes); each output contrast is
segmented on the real and on the synthetic image with the same ground-truth box prompts (one per slice), for
whole tumour, tumour core and enhancing tumour; Dice and HD95 against the ground truth, and the gap. Segmenters:
the shipped promptunet-phantom and every SAM2/MedSAM2 model whose weights are in the store (or --segmenter).

examples:
  medtrans table3 --data data/bench                                  # writes docs/results/edts-table3.md
  medtrans table3 --data ph --model demo --segmenter promptunet-phantom --out table3.md
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest with tumour labels")
    p.add_argument("--model", action="append", default=None,
                   help="a translator (path, 'demo' or store name; repeatable; default: every shipped one)")
    p.add_argument("--segmenter", action="append", default=None,
                   help="promptunet-phantom, medsam2, sam2.1_hiera_tiny, ... (repeatable; default: all available)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--out", type=Path, default=Path("docs/results/edts-table3.md"),
                   help="markdown table to write (default: docs/results/edts-table3.md)")
    p.add_argument("--csv", type=Path, default=None, help="per-subject rows (default: beside --out, .csv)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="translation precision (default: auto, as medtrans evaluate)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes on the CPU, one thread each (default: the machine's cores, at most 8; "
                        "the table is the same with any number)")


def _command(args: argparse.Namespace) -> str:
    """The command line that remakes this table (options left at their defaults are left out)."""
    parts = ["medtrans", "table3", "--data", str(args.data)]
    for m in args.model or []:
        parts += ["--model", str(m)]
    for s in args.segmenter or []:
        parts += ["--segmenter", s]
    if args.split != "test":
        parts += ["--split", args.split]
    if args.out != Path("docs/results/edts-table3.md"):
        parts += ["--out", str(args.out)]
    if args.csv is not None:
        parts += ["--csv", str(args.csv)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.precision != "auto":
        parts += ["--precision", args.precision]
    if args.jobs is not None:
        parts += ["--jobs", str(args.jobs)]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import MedtransError
    from ..segment.table3 import default_jobs, format_table3, run_table3, write_report, write_rows_csv

    if args.jobs is not None and args.jobs < 1:
        raise MedtransError(f"--jobs must be at least 1, got {args.jobs}")
    jobs = default_jobs() if args.jobs is None else args.jobs
    t0 = time.perf_counter()
    rows = run_table3(args.data, models=args.model, segmenters=args.segmenter, split=args.split,
                      device=args.device, precision=args.precision, jobs=jobs, log=lambda s: print(s, flush=True))
    command = _command(args)
    print()
    print(format_table3(rows))
    csv_path = write_rows_csv(rows, args.csv or args.out.with_suffix(".csv"))
    path = write_report(rows, args.out, command=command, seconds=time.perf_counter() - t0,
                        jobs=jobs if args.device == "cpu" else 1)
    print(f"\ntable: {path}\nper-subject rows: {csv_path}")
    return 0
