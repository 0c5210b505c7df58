"""`medtrans ablation`: a paper's ablation table, trained with equal budgets, evaluated and written as markdown."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

NAME = "ablation"
HELP = "rerun a paper's ablation table: train the variants with equal budgets, evaluate, write a markdown table"
DESCRIPTION = """\
Trains every variant of one of the papers' ablation tables with the same budget (one after another on one core,
or --jobs N at a time; resumable: run the same command again to continue), evaluates each on the test subjects
with the floors, and writes RESULTS/<paper>-table<N>.md: mean +- SD, paired Wilcoxon p against the full method,
whether the paper's ordering holds here, every command, seeds and wall times. --list shows the tables and their
variants.

examples:
  medtrans ablation --list
  medtrans ablation edts 1 --data data/bench               # writes docs/results/edts-table1.md
  medtrans ablation disdiff 2 --data data/bench --use "full DisDiff=resources/models/disdiff-t1-t2.safetensors"
  nohup medtrans ablation cdm 4 --data data/bench > cdm4.log 2>&1 &      # hours: run it in the background
  medtrans ablation edts 4 --data data/bench --jobs 2                     # two variants at a time (two cores)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paper", nargs="?", help="edts, cdm, mrnet, disdiff or hifisyn")
    p.add_argument("table", nargs="?", help="the paper's table number (1, 4, IV, ...)")
    p.add_argument("--data", type=Path, help="dataset folder or manifest (the benchmark: docs/benchmark.md)")
    p.add_argument("--list", action="store_true", help="list the tables and their variants")
    p.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="training folders (default: runs/ablation)")
    p.add_argument("--results", type=Path, default=Path("docs/results"),
                   help="folder of the markdown table (default: docs/results)")
    p.add_argument("--steps", type=int, default=None, help="steps per variant (default: the table's budget)")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="model options for every variant, over the table's (e.g. width=8 for a quick run)")
    p.add_argument("--train-option", nargs="+", default=[], metavar="KEY=VALUE",
                   help="medtrans train options for every variant, e.g. size=[32,32] batch-size=2 threads=2")
    p.add_argument("--use", action="append", default=[], metavar="LABEL=CHECKPOINT",
                   help="score this checkpoint for the variant LABEL instead of training it (e.g. a shipped model "
                   "trained with the same command)")
    p.add_argument("--jobs", type=int, default=1,
                   help="variants trained and evaluated at a time, one core each (default 1; the same commands)")
    p.add_argument("--dry-run", action="store_true", help="print the training commands and stop")


def _command(args: argparse.Namespace) -> str:
    parts = ["medtrans", "ablation", args.paper, args.table, "--data", str(args.data)]
    if args.runs != Path("runs/ablation"):
        parts += ["--runs", str(args.runs)]
    if args.results != Path("docs/results"):
        parts += ["--results", str(args.results)]
    if args.steps is not None:
        parts += ["--steps", str(args.steps)]
    if args.config:
        parts += ["--config", *args.config]
    if args.train_option:
        parts += ["--train-option", *args.train_option]
    for u in args.use:
        parts += ["--use", u]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from ..core.errors import MedtransError
    from ..training.ablation import TABLES, get_table, run_table, variant_commands
    from .train import _key_values

    if args.list:
        for t in TABLES:
            print(f"{t.paper} {t.table}: {t.title} ({t.method}, {t.steps} steps)")
            for v in t.variants:
                print(f"    {v.label}")
        return 0
    if not args.paper or not args.table or args.data is None:
        raise MedtransError("give PAPER TABLE and --data (or --list)")
    table = get_table(args.paper, args.table)
    use = {}
    for item in args.use:
        label, sep, path = item.partition("=")
        if not sep:
            raise MedtransError(f"--use expects LABEL=CHECKPOINT, got {item!r}")
        use[label] = Path(path)
    config = _key_values(args.config, "--config")
    train = {k.replace("_", "-"): v for k, v in _key_values(args.train_option, "--train-option").items()}
    if args.dry_run:
        plans = variant_commands(table, args.data, args.runs, steps=args.steps, config=config, train=train, use=use)
        for label, plan in plans.items():
            print(f"{label}:")
            for _d, argv in plan.stages:
                print("  medtrans train " + shlex.join(argv))
            if plan.used is not None:
                print(f"  (uses {plan.used})")
            elif plan.variant.model_of is not None:
                print(f"  (the model of {plan.variant.model_of!r}, scored as {plan.variant.row!r})")
        return 0
    run_table(table, args.data, runs=args.runs, results=args.results, steps=args.steps, config=config, train=train,
              use=use, command=_command(args), jobs=args.jobs, log=lambda s: print(s, flush=True))
    return 0
