"""`medtrans segment-eval`: SAM2 / MedSAM2 on the source, the real target and the synthetic image (EDTS-Trans
Table III), scored against a ground-truth label map and against each other."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

NAME = "segment-eval"
HELP = "segment source, real and synthetic images with SAM2/MedSAM2; Dice and mIoU against ground truth (Table III)"
DESCRIPTION = """\
Segment every image with the same prompts, derived from the ground truth as segmentation benchmarks do:
  --mode slices      a box around the object on every slice that holds it, each slice on its own (2D)
  --mode propagate   one box on the key slice (largest object), propagated forward and backward (3D)
or, with --prompts FILE.json, your own points and boxes (the same for every image; the ground truth then only
scores): --mode slices segments each prompted slice on its own (unprompted slices stay empty), --mode propagate
propagates from the first prompted slice forward and backward. Then print, per model, the mean per-slice IoU
(mIoU) and Dice and the 3D Dice and IoU of each image against the ground truth, and the agreement (Dice, IoU)
between the images' masks; every score also goes to a CSV file, whose "prompts" column says "ground truth" or
"user".

Images (all on the ground truth's grid): --source, --target, --synthetic (repeatable) and --labels; or
--subject DIR (a folder written by `medtrans phantom`: DIR/T1.nii.gz, DIR/T2.nii.gz, DIR/labels.nii.gz);
or --phantom SEED (a phantom subject with a tumour, made in memory). --translator MODEL translates the source
into a synthetic image first. The object is labels --label (default: the tumour, 4 5 6, for phantoms; any
non-zero label otherwise).

Prompt file (--prompts): JSON in the segmenter's frame coordinates. Frames are the axial slices of the
ground truth's grid seen the radiological way (as napari shows them): "slice" counts from the most inferior
slice (0), x is the column from the image's left edge (the patient's right), y the row from the top edge
(anterior), in pixels, 0-based. A point is [x, y, label] (label 1 inside the object, 0 outside; default 1), a
box [x0, y0, x1, y1] (first and last pixel it covers). One entry per slice, each with a point or a box:
  {"slices": [{"slice": 3, "points": [[20, 24, 1], [5, 6, 0]], "box": [10, 12, 30, 36]},
              {"slice": 5, "points": [[21, 25]]}]}

SAM2 and MedSAM2 need their weights in the store: `medtrans weights fetch medsam2_latest` (or `weights import`);
without them the shipped promptunet-phantom (trained on phantom tumours) is used.

examples:
  medtrans segment-eval --phantom 1 --shape 80 96 60 --translator demo --model medsam2 --model sam2.1_hiera_tiny
  medtrans segment-eval --subject tumours/sub-000 --synthetic t2_synthetic.nii.gz --mode propagate
  medtrans segment-eval --source t1.nii.gz --target t2.nii.gz --synthetic syn.nii.gz --labels seg.nii.gz --label 1 2 4
  medtrans segment-eval --source BraTS2021_00000_t1.nii.gz --target BraTS2021_00000_t2.nii.gz \
      --labels BraTS2021_00000_seg.nii.gz --label-scheme brats2021 --region core
  medtrans segment-eval --subject tumours/sub-000 --synthetic syn.nii.gz --prompts clicks.json --mode propagate
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("images")
    src.add_argument("--source", type=Path, help="source image (e.g. the T1 a translator reads)")
    src.add_argument("--target", type=Path, help="the real target image (e.g. the acquired T2)")
    src.add_argument("--synthetic", type=Path, action="append", default=[],
                     help="a synthetic image of the target contrast (repeatable)")
    src.add_argument("--labels", type=Path, help="ground-truth label map")
    src.add_argument("--label-scheme", choices=("medtrans", "brats2021", "brats2023"), default="medtrans",
                     help="values of --labels: the project's (4 oedema, 5 enhancing rim, 6 necrosis; default) or "
                          "BraTS's, mapped onto the project's so --region and --label mean the same for both")
    src.add_argument("--region", choices=("whole", "core", "enhancing"), default=None,
                     help="the object as BraTS defines it (Table III): whole tumour (labels 4 5 6), tumour core "
                          "(5 6) or enhancing tumour (5), in the project's values; instead of --label")
    src.add_argument("--subject", type=Path, help="a phantom subject folder (source, target and labels.nii.gz)")
    src.add_argument("--pair", nargs=2, default=("T1", "T2"), metavar=("SOURCE", "TARGET"),
                     help="contrasts taken from --subject or --phantom (default: T1 T2)")
    src.add_argument("--phantom", type=int, metavar="SEED", help="make a phantom subject with a tumour in memory")
    src.add_argument("--shape", type=int, nargs=3, default=(80, 96, 60), metavar=("X", "Y", "Z"),
                     help="grid of --phantom (default 80 96 60)")
    src.add_argument("--translator", help="translate the source with this model (checkpoint, 'demo', store name)")
    seg = p.add_argument_group("segmentation")
    seg.add_argument("--model", action="append", default=None,
                     help="medsam2 (the default once its weights are imported; until then the shipped "
                          "promptunet-phantom), sam2.1_hiera_tiny, _small, _base_plus, _large or promptunet-phantom "
                          "(repeatable)")
    seg.add_argument("--weights", type=Path, default=None, help="checkpoint file instead of the store (one --model)")
    seg.add_argument("--mode", choices=("slices", "propagate"), default="slices", help="default: slices")
    seg.add_argument("--label", type=int, nargs="+", default=None, metavar="N", help="label values of the object")
    seg.add_argument("--margin", type=float, default=0.0, help="pixels added around each ground-truth box")
    seg.add_argument("--prompts", type=Path, default=None, metavar="FILE.json",
                     help="your prompts instead of ground-truth boxes: JSON in axial frame pixels (x column, "
                          "y row, 0-based; see the format above), used for every image")
    seg.add_argument("--window", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                     help="intensity window (default: 0.5-99.5th percentiles of each image's non-zero voxels)")
    seg.add_argument("--largest-component", action="store_true", help="keep only the largest connected component")
    seg.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    out = p.add_argument_group("output")
    out.add_argument("--csv", type=Path, default=Path("segment_eval.csv"), help="default: segment_eval.csv")
    out.add_argument("--masks", type=Path, default=None, help="also write every mask as NIfTI into this folder")


def _images(args) -> tuple[dict, object, list[int] | None]:
    """The named images, the ground truth and the default labels, from the arguments."""
    from ..core import io
    from ..core.errors import MedtransError

    source_mod, target_mod = args.pair
    images: dict = {}
    labels_default = None
    if args.phantom is not None:
        from ..phantom import make_subject

        subject = make_subject(args.phantom, shape=tuple(args.shape), tumour=True, contrasts=(source_mod, target_mod))
        source, target, truth = subject.images[source_mod], subject.images[target_mod], subject.labels
        labels_default = [4, 5, 6]
    elif args.subject is not None:
        d = args.subject
        source = io.load(d / f"{source_mod}.nii.gz", modality=source_mod)
        target = io.load(d / f"{target_mod}.nii.gz", modality=target_mod)
        truth = io.load(d / "labels.nii.gz", modality="labels")
        labels_default = [4, 5, 6]
    else:
        if args.labels is None:
            raise MedtransError("give --labels (a ground-truth label map), or --subject DIR, or --phantom SEED")
        source = io.load(args.source) if args.source else None
        target = io.load(args.target) if args.target else None
        truth = io.load(args.labels, modality="labels")
        if args.label_scheme != "medtrans":
            import numpy as np

            from ..core.dataset import convert_labels

            values = convert_labels(np.rint(truth.data).astype(np.int32), args.label_scheme, args.labels)
            truth = truth.derive(values.astype(np.float32))
            labels_default = [4, 5, 6]
    if source is not None:
        images[f"{source.modality or 'source'} (source)"] = source
    if target is not None:
        images[f"{target.modality or 'target'} (real)"] = target
    for n, path in enumerate(args.synthetic):
        vol = io.load(path)
        name = f"{vol.modality or (target.modality if target is not None else None) or 'image'} (synthetic)"
        images[name if name not in images else f"{name[:-1]} {n + 1}: {path.name})"] = vol
    if args.translator:
        if source is None:
            raise MedtransError("--translator needs a source image (--source, --subject or --phantom)")
        images.update(_translate(args, source))
    if not images:
        raise MedtransError("no image to segment: give --source, --target, --synthetic, --subject or --phantom")
    return images, truth, labels_default


def _prompts(args, truth):
    """The user's prompts from --prompts, checked against the ground truth's frames; None without --prompts."""
    from ..core.errors import MedtransError
    from ..segment import FrameGeometry
    from ..segment.prompts import load_prompts_json

    if args.prompts is None:
        return None
    if args.margin:
        raise MedtransError("--margin grows the ground-truth boxes; it does not apply to --prompts")
    return load_prompts_json(args.prompts, FrameGeometry.of(truth).shape)


def _translate(args, source) -> dict:
    from ..core.engine import translate_volume
    from ..translators.checkpoint import load_translator
    from ..translators.lookup import resolve_model
    from ._progress import TextProgress

    translator = load_translator(resolve_model(args.translator))
    with TextProgress(f"translate ({translator.spec.method})") as bar:
        result = translate_volume(source, translator, device=args.device, progress=bar)
    vol = result.volume
    return {f"{vol.modality or 'target'} (synthetic, {translator.spec.method})": vol}


def run(args: argparse.Namespace) -> int:
    from ..core import io
    from ..segment import Segmenter, default_model
    from ..segment.evaluate import evaluate_segmentation, format_report, write_reports_csv
    from ._progress import TextProgress

    models = args.model or [default_model()]
    if args.weights is not None and len(models) != 1:
        print("medtrans segment-eval: error: --weights goes with exactly one --model", file=sys.stderr)
        return 2
    images, truth, labels_default = _images(args)
    if args.region is not None and args.label is not None:
        from ..core.errors import MedtransError

        raise MedtransError("give --region or --label, not both")
    regions = {"whole": [4, 5, 6], "core": [5, 6], "enhancing": [5]}
    labels = regions[args.region] if args.region else (args.label if args.label is not None else labels_default)
    prompts = _prompts(args, truth)
    reports = []
    for name in models:
        segmenter = Segmenter.from_name(name, device=args.device, weights_file=args.weights)
        try:
            with TextProgress(f"{name} ({args.mode})") as bar:
                report = evaluate_segmentation(
                    images, truth, segmenter, labels=labels, mode=args.mode, margin=args.margin,
                    window=tuple(args.window) if args.window else None,
                    largest_component=args.largest_component, prompts=prompts, progress=bar,
                )
        finally:
            segmenter.release()
        reports.append(report)
        if args.masks is not None:
            args.masks.mkdir(parents=True, exist_ok=True)
            for image, res in report.results.items():
                safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{name}_{image}").strip("_")
                io.write_nifti(res.to_volume(images[image]), args.masks / f"{safe}.nii.gz")
    print(format_report(reports))
    if prompts is not None:
        print(f"prompts: user, {len(prompts)} slice(s) from {args.prompts}")
    path = write_reports_csv(reports, args.csv)
    print(f"\nscores: {path}")
    if args.masks is not None:
        print(f"masks: {args.masks}")
    return 0
