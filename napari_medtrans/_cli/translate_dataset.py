"""`medtrans translate-dataset`: every subject of a dataset, resumable, sharded under torchrun."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_sampling_arguments
from .translate import add_direction_arguments, direction_from_args

NAME = "translate-dataset"
HELP = "translate every subject of a dataset (skips outputs already written; shards by rank under torchrun)"
DESCRIPTION = """\
Translate every subject of a dataset (a folder with dataset.json or dataset.csv, e.g. from `medtrans phantom`).
Outputs go to OUT/<subject>/<modality>_synthetic.nii.gz. Outputs already written are skipped, so an interrupted
run resumes. Under torchrun each process takes every WORLD_SIZE-th subject and one GPU:

  torchrun --nproc-per-node 4 -m napari_medtrans.cli translate-dataset --model m.safetensors --data D --out O

A two-modality model (HiFi-Syn, DisDiff) translates both ways: --direction "T2->T1" (or --reverse) runs the
direction it was not saved for, into OUT/<subject>/<modality>_from_<source>_synthetic.nii.gz, so the two
directions never skip or overwrite each other's outputs.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint, 'demo', or a weights-store name")
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split (default: all)")
    add_sampling_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="translate again even if the output exists")
    add_direction_arguments(p, several=True)


def run(args: argparse.Namespace) -> int:
    from ..training.evaluate import dist_info, translate_dataset

    info = dist_info()
    prefix = f"[rank {info.rank}/{info.world_size}] " if info.world_size > 1 else ""
    directions = direction_from_args(args, args.model)
    records = []
    for direction in [directions] if directions is None or isinstance(directions, str) else directions:
        records += translate_dataset(
            args.model, args.data, args.out, split=args.split, device=args.device, precision=args.precision,
            steps=args.steps, samples=args.samples, seed=args.seed, overwrite=args.overwrite, direction=direction,
            log=lambda s: print(prefix + s, flush=True),
        )
    print(f"{prefix}{len(records)} synthetic volumes in {args.out}")
    return 0
