"""`medtrans dataset`: index a BraTS, BIDS or IXI folder into a dataset manifest and check co-registration."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

NAME = "dataset"
HELP = "index a BraTS 2021/2023, BIDS or IXI folder into dataset.json and check that contrasts are co-registered"
DESCRIPTION = """\
Write the manifest (dataset.json) that train, evaluate, floors and translate-dataset read, from the folder a
public dataset ships in: BraTS 2021 (<ID>_t1/_t1ce/_t2/_flair/_seg), BraTS 2023 (<ID>-t1n/-t1c/-t2w/-t2f/-seg),
BIDS (sub-*/[ses-*/]anat/*_T1w|T2w|FLAIR|PDw, ce- entity = T1c) or IXI (IXI<nnn>-<Site>-<nnnn>-T1|T2|PD).
The layout is detected (--layout forces one). Files no rule places are listed, not guessed. Splits are by subject,
from a hash of its id: the same on every run.

Then every subject's contrasts are checked for a shared voxel grid (headers only): paired training needs it.
Subjects whose grids differ are listed (IXI's T1 against its T2/PD, for one) and recorded in the manifest under
"misaligned"; they still index, for unpaired methods. --register aligns them (rigid, mutual information,
SimpleITK), writes the aligned images under registered/ beside the manifest, names those in the manifest and
records each transform with the normalised mutual information before and after under "registration".

examples:
  medtrans dataset index ~/data/BraTS2021_Training_Data
  medtrans dataset index ~/data/ixi --layout ixi --out ~/data/ixi/dataset.json --register
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("index", help="write DIR/dataset.json from the files of a known layout")
    p.add_argument("folder", type=Path, metavar="DIR", help="the dataset's top folder")
    p.add_argument("--layout", choices=["brats2021", "brats2023", "bids", "ixi"], default=None,
                   help="the layout (default: detected from the file names)")
    p.add_argument("--out", type=Path, default=None, help="manifest to write (default: DIR/dataset.json)")
    p.add_argument("--name", default=None, help="dataset name in the manifest (default: the folder's name)")
    p.add_argument("--reference", default="T1", help="contrast the others are checked against (default: T1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.add_argument("--register", action="store_true",
                   help="align each misaligned contrast rigidly to the reference contrast (SimpleITK, mutual "
                        "information), write it on the reference's grid under the manifest's folder in "
                        "registered/, and name that file in the manifest")


def run(args: argparse.Namespace) -> int:
    from ..core.errors import MedtransError
    from ..training.layouts import check_alignment, index_folder, register_misaligned

    out = args.out or args.folder / "dataset.json"
    if out.exists() and not args.overwrite:
        raise MedtransError("a manifest is already there (--overwrite replaces it)", out)
    result = index_folder(args.folder, args.layout, name=args.name)
    ds = result.dataset
    counts: dict[str, int] = {}
    for s in ds.subjects:
        for m in s.images:
            counts[m] = counts.get(m, 0) + 1
    splits = {k: sum(s.split == k for s in ds.subjects) for k in ("train", "val", "test")}
    labelled = sum(s.labels is not None for s in ds.subjects)
    print(f"layout {result.layout}: {len(ds.subjects)} subjects "
          f"({', '.join(f'{k} {v}' for k, v in splits.items())}); "
          + ", ".join(f"{m} {n}" for m, n in sorted(counts.items())) + f"; labels {labelled}")
    for what, items in (("not placed (no rule of the layout matches)", result.unknown),
                        ("second files of a contrast (the first by name is used)", result.duplicates)):
        if items:
            shown = items[:10]
            print(f"{len(items)} file(s) {what}:")
            for rel in shown:
                print(f"  {rel}")
            if len(items) > len(shown):
                print(f"  ... and {len(items) - len(shown)} more")
    problems = check_alignment(ds, reference=args.reference)
    bad = sorted({p.subject for p in problems})
    if problems:
        print(f"{len(bad)} subject(s) whose contrasts do not share one voxel grid (pair them only after "
              f"registration; unpaired methods can use them):", file=sys.stderr)
        for p in problems[:20]:
            print(f"  {p}", file=sys.stderr)
        if len(problems) > 20:
            print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
    else:
        print("co-registration: every subject's contrasts share one voxel grid")
    registered: dict = {}
    if problems and args.register:
        print(f"registering {len(problems)} image(s) (rigid, mutual information):", flush=True)
        registered = register_misaligned(ds, problems, out.resolve().parent / "registered",
                                         log=lambda s: print(s, flush=True))
        problems = check_alignment(ds, reference=args.reference)
        bad = sorted({p.subject for p in problems})
        print(f"after registration: {len(bad)} subject(s) still misaligned")
    doc = ds.to_dict()
    base = out.resolve().parent
    for row in doc["subjects"]:  # manifest paths are relative to the manifest's folder
        row["images"] = {m: Path(os.path.relpath(ds.path(rel).resolve(), base)).as_posix()
                         for m, rel in row["images"].items()}
        if row.get("labels"):
            row["labels"] = Path(os.path.relpath(ds.path(row["labels"]).resolve(), base)).as_posix()
    if registered:
        doc["registration"] = registered
    if bad:  # recorded beside the subjects; load_dataset ignores the key
        doc["misaligned"] = {sid: [str(p) for p in problems if p.subject == sid] for sid in bad}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0
