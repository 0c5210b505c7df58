"""`medtrans evaluate`: a paper-style table of PSNR, SSIM and MAE over the test subjects."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_sampling_arguments
from .translate import add_direction_arguments, direction_from_args

NAME = "evaluate"
HELP = "translate a dataset's test subjects and print PSNR/SSIM/MAE (mean +- sd) inside the brain mask"
DESCRIPTION = """\
Translate the subjects of one split (default: test) and compare each synthetic volume with the real one, on the
whole volume inside the brain mask (data range = the reference's range inside the mask). Prints mean +- sd over
subjects per direction and writes one CSV row per subject and method. Next to the model, the table gives the
zero-parameter floors on the same subjects, fitted on the dataset's training subjects: identity (the input
rescaled), unpaired histogram mapping (by rank, reversed for anti-correlated contrasts) and a per-voxel lookup.

Maps that are images of the output contrast (by name: regression, diffusion, fused, coarse, refined; e.g.
EDTS-Trans's regression and diffusion branches, which it fuses into its output) are scored too, as rows
"map: <name>" between the model and the floors, and written beside the synthetic volumes as
<modality>_map-<name>.nii.gz: a branch ablation needs no Python. Other maps (the TSM map, MRNet's masks) are not
images of the output and are left out unless named with --map; --no-maps scores the model alone.

A two-modality model (HiFi-Syn, DisDiff) is evaluated in any direction from one checkpoint: --direction "T2->T1"
(quoted, or T2:T1) or --reverse; repeat --direction for one row per direction. Synthetic volumes of a direction
the model was not saved for are named <modality>_from_<source>_synthetic.nii.gz, and the default CSV is then
metrics_<SRC>_to_<DST>.csv, so the directions share OUT without overwriting each other.

examples:
  medtrans evaluate --model demo --data phantom-data/
  medtrans evaluate --model resources/models/edts-t1-t2.safetensors --data phantom-data/   # + its branches
  medtrans evaluate --model hifisyn.safetensors --data phantom-data/ --direction T1:T2 --direction T2:T1
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint, 'demo', or a weights-store name")
    p.add_argument("--data", required=True, type=Path, help="dataset folder or manifest")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--by-tumour", action="store_true",
                   help="also give the table over the subjects with tumours and over those without (label maps)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for synthetic volumes and metrics.csv (default: DATA/evaluation/<model name>)")
    p.add_argument("--csv", type=Path, default=None,
                   help="where to write per-subject metrics (default: OUT/metrics.csv; "
                        "OUT/metrics_<SRC>_to_<DST>.csv with --direction or --reverse)")
    add_sampling_arguments(p)
    p.add_argument("--protocol", default="project",
                   choices=["project", "hifisyn", "disdiff", "edts", "cdm", "mrnet"],
                   help="how images are scored: the project's (3-D volumes inside the brain mask, per subject; "
                        "default) or a paper's (axial 2-D slices, normalised, per slice; see docs/datasets.md)")
    p.add_argument("--no-floors", dest="floors", action="store_false",
                   help="skip the zero-parameter floors (identity, histogram mapping, per-voxel lookup fitted on the "
                        "training subjects) that are otherwise scored on the same subjects")
    p.add_argument("--map", dest="maps", action="append", default=None, metavar="NAME",
                   help="score this map of the translator as an image of the output (repeatable; default: the maps "
                        "named regression, diffusion, fused, coarse or refined that the translator returns)")
    p.add_argument("--no-maps", dest="maps", action="store_const", const=[],
                   help="score the model's output alone, none of its maps")
    add_direction_arguments(p, several=True)


def run(args: argparse.Namespace) -> int:
    from ..training.evaluate import evaluate_dataset, format_table
    from ..translators.lookup import resolve_model

    model = resolve_model(args.model)
    data_root = args.data if args.data.is_dir() else args.data.parent
    from ..core.engine import resolve_device, resolve_precision
    from ..training.evaluate import evaluation_dir

    precision = resolve_precision(args.precision, resolve_device(args.device))
    out = args.out or evaluation_dir(data_root, model, precision)
    direction = direction_from_args(args, model)
    report = evaluate_dataset(model, args.data, out, split=args.split, device=args.device, precision=precision,
                              steps=args.steps, samples=args.samples, seed=args.seed, direction=direction,
                              floors=args.floors, maps=args.maps, protocol=args.protocol,
                              log=lambda s: print(s, flush=True))
    print()
    print(format_table(report, by_tumour=args.by_tumour))
    csv_path = report.write_csv(args.csv or out / _csv_name(direction))
    print(f"\nper-subject metrics: {csv_path}")
    return 0


def _csv_name(direction: str | list[str] | None) -> str:
    """``metrics.csv`` for the model's own direction, ``metrics_T2_to_T1.csv`` (joined by ``+``) for chosen ones."""
    if direction is None:
        return "metrics.csv"
    names = [direction] if isinstance(direction, str) else direction
    return "metrics_" + "+".join(d.replace("->", "_to_") for d in names) + ".csv"
