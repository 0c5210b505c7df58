"""`medtrans translate`: one volume (or one per input modality) through a translator, to NIfTI or DICOM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_sampling_arguments

NAME = "translate"
HELP = "translate a NIfTI file or DICOM series into another contrast (writes NIfTI or DICOM, marked synthetic)"
DESCRIPTION = """\
Translate a volume with a trained model and write the synthetic result as NIfTI (its header says SYNTHETIC).
The output keeps the input's affine. For models with several inputs (e.g. T1+T2 -> T1c) give one path per input,
as MODALITY=PATH or in the model's input order. With --format dicom, --out is a new or empty folder that receives
a DICOM series marked synthetic; when the input was DICOM the series joins its study and references its slices
(maps are then written as NIfTI next to the folder).

examples:
  medtrans translate sub-000/T1.nii.gz --model demo --out t2_synthetic.nii.gz
  medtrans translate dicom/T1/ --model edts.safetensors --out t2.nii.gz --steps 50 --samples 4 --seed 1
  medtrans translate T1=t1.nii.gz T2=t2.nii.gz --model t1c_model.safetensors --out t1c.nii.gz
  medtrans translate dicom/T1/ --model demo --format dicom --out t2_dicom/ --deidentify
  medtrans translate sub-000/T2.nii.gz --model hifisyn.safetensors --direction "T2->T1" --out t1.nii.gz

A two-modality model (HiFi-Syn, DisDiff) translates both ways from one checkpoint: --direction "SRC->DST" (quote
it: > is a shell redirection; SRC:DST works unquoted) or --reverse picks the direction it was not saved for.
"""


def _direction(text: str) -> str:
    """argparse type: a direction in canonical spelling ("t2:t1" -> "T2->T1")."""
    from ..translators.checkpoint import format_direction, parse_direction

    try:
        return format_direction(*parse_direction(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_direction_arguments(p: argparse.ArgumentParser, *, several: bool = False) -> None:
    """``--direction SRC->DST`` (repeatable when ``several``) and ``--reverse``, mutually exclusive."""
    g = p.add_mutually_exclusive_group()
    extra = " (repeat it for several rows, e.g. both directions)" if several else ""
    g.add_argument("--direction", type=_direction, action="append" if several else "store", default=None,
                   metavar="SRC->DST",
                   help=f'translation direction, e.g. "T2->T1" or T2:T1 (default: the one the model was saved '
                        f'for); two-modality models (HiFi-Syn, DisDiff) translate both ways{extra}')
    g.add_argument("--reverse", action="store_true",
                   help="the opposite of the direction the model was saved for (two-modality models)")


def direction_from_args(args: argparse.Namespace, model) -> str | list[str] | None:
    """The ``direction`` argument of the library calls from ``--direction``/``--reverse``."""
    if getattr(args, "reverse", False):
        from ..translators.lookup import reverse_direction

        return reverse_direction(model)
    return getattr(args, "direction", None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI file or DICOM folder/file, optionally MODALITY=PATH")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors, .pt, TorchScript, .onnx), 'demo', or a weights-store name")
    p.add_argument("--out", required=True, type=Path, help="output .nii or .nii.gz (a folder with --format dicom)")
    p.add_argument("--format", default="nifti", choices=["nifti", "dicom"],
                   help="nifti (default) or dicom: a synthetic DICOM series in the input's study")
    p.add_argument("--deidentify", action="store_true", help="with --format dicom: remove patient identifiers")
    add_sampling_arguments(p, batch_size=True)
    p.add_argument("--series", default=None, help="SeriesInstanceUID when a DICOM folder holds several series")
    p.add_argument("--maps", action="store_true", help="also write the model's extra maps (e.g. TSM) next to OUT")
    p.add_argument("--override-modality", action="store_true",
                   help="take each input as the contrast the model expects even when its header, sidecar, DICOM "
                        "tags or file name say otherwise (recorded in the output's provenance)")
    add_direction_arguments(p)


def _parse_inputs(items: list[str], spec_inputs: tuple[str, ...]) -> dict[str, str]:
    from ..core.errors import MedtransError
    from ..core.volume import normalise_modality

    named, positional = {}, []
    for item in items:
        key, sep, val = item.partition("=")
        if sep and not Path(item).exists():
            named[normalise_modality(key)] = val
        else:
            positional.append(item)
    for modality in spec_inputs:
        if modality not in named and positional:
            named[modality] = positional.pop(0)
    missing = [m for m in spec_inputs if m not in named]
    if missing or positional:
        raise MedtransError(
            f"the model takes {', '.join(spec_inputs)}; "
            + (f"missing {', '.join(missing)}" if missing else f"unexpected extra input(s) {positional}")
        )
    return {m: named[m] for m in spec_inputs}


def _map_path(out: Path, name: str) -> Path:
    if not out.name.lower().endswith((".nii", ".nii.gz")):  # a DICOM folder: maps go next to it
        return out.with_name(f"{out.name}_{name}.nii.gz")
    base = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
    return out.with_name(f"{base}_{name}.nii.gz")


def run(args: argparse.Namespace) -> int:
    from ..core import io
    from ..core.engine import translate_volume
    from ..core.io.paths import refuse_overwriting_inputs
    from ..translators.checkpoint import load_translator
    from ..translators.lookup import resolve_model
    from ._progress import TextProgress

    dicom = getattr(args, "format", "nifti") == "dicom"
    if dicom and io.is_nifti_path(args.out):
        print("medtrans translate: error: with --format dicom, --out must be a folder, not a NIfTI file name",
              file=sys.stderr)
        return 2
    if not dicom and not io.is_nifti_path(args.out):
        print("medtrans translate: error: --out must end in .nii or .nii.gz (or use --format dicom with a folder)",
              file=sys.stderr)
        return 2
    model_path = resolve_model(args.model)
    translator = load_translator(model_path, direction=direction_from_args(args, model_path))
    paths = _parse_inputs(args.inputs, translator.spec.inputs)
    refuse_overwriting_inputs(args.out, paths.values())
    io.check_output_path(args.out, folder=dicom)  # before the work, not after it
    # Each volume keeps the modality its own evidence gives; the engine refuses a mismatch.
    volumes = {m: io.load(p, series_uid=args.series) for m, p in paths.items()}
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    with TextProgress(f"{translator.spec.method}") as bar:
        result = translate_volume(
            volumes if len(volumes) > 1 else next(iter(volumes.values())),
            translator,
            device=args.device,
            precision=args.precision,
            batch_size=batch,
            steps=args.steps,
            samples=args.samples,
            seed=args.seed,
            progress=bar,
            override_modality=args.override_modality,
        )
    if dicom:
        from ..core.io.dicom_export import export_dicom_series

        exported = export_dicom_series(result.volume, args.out, deidentify=args.deidentify)
        written = [args.out]
        print(f"DICOM series {exported.series_instance_uid} with {len(exported.files)} files, "
              + ("in a new study" if exported.new_study else f"in study {exported.study_instance_uid}"))
    else:
        written = [io.write_nifti(result.volume, args.out)]
    for name, vol in result.maps.items():
        if args.maps or name == "std":
            written.append(io.write_nifti(vol, _map_path(args.out, name)))
    for m, vol in volumes.items():
        if vol.modality is None:
            print(f"medtrans translate: note: {vol.path}: contrast unknown (no header, sidecar, DICOM tag or file "
                  f"name names it); taken as {m}, the model's input", file=sys.stderr)
        elif vol.modality != m and args.override_modality:
            print(f"medtrans translate: note: {vol.path}: labelled {vol.modality} ({vol.modality_evidence}), "
                  f"taken as {m} on --override-modality (recorded in the output)", file=sys.stderr)
    v = result.volume
    print(f"{'+'.join(paths)} -> {v.modality} with {translator.spec.method} ({model_path.name}) "
          f"on {result.device} in {result.seconds:.1f} s")
    for path in written:
        print(f"wrote {path}")
    return 0
