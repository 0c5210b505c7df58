"""`medtrans export`: a (synthetic) NIfTI volume as a derived DICOM series of a source study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "export"
HELP = "export a NIfTI volume as a synthetic DICOM series of its source study"
DESCRIPTION = """\
Write VOLUME (NIfTI) as a new DICOM MR series. With --source the series joins the study of that DICOM series
(patient and study copied, source images referenced, same frame of reference); without it a new study is made.
The series is marked synthetic: ImageType DERIVED, SyntheticData YES, SeriesDescription "SYNTHETIC ...", and a
DerivationDescription naming the method and the checkpoint's sha256 (from the NIfTI header written by
`medtrans translate`, or --method / --model). OUT_DIR must be new or empty.

Only synthetic MR images are exported unless asked: a volume whose header does not say SYNTHETIC is refused
(--allow-acquired re-exports it unmarked; --synthetic --method NAME marks one made by another tool), so is an
error, trust or spread map (--allow-map), and so is a source study of another patient or another study than the
one VOLUME was made from (--allow-other-study). The source is checked as `load` checks it. Nothing is left in
OUT_DIR when the export fails.

examples:
  medtrans export t2_synthetic.nii.gz out/t2_dicom --source dicom/T1/
  medtrans export t2_synthetic.nii.gz out/t2_anon --source dicom/T1/ --deidentify --model demo
"""

#: Keyword of export_dicom_series that lifts a refusal -> the flag that sets it here.
_FLAGS = {
    "allow_non_synthetic": "--allow-acquired",
    "allow_maps": "--allow-map",
    "allow_other_study": "--allow-other-study",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("volume", type=Path, help="NIfTI file (.nii or .nii.gz)")
    p.add_argument("out_dir", type=Path, help="new or empty folder for the DICOM files")
    p.add_argument("--source", type=Path, default=None, help="DICOM folder or file of the source series")
    p.add_argument("--series", default=None, help="SeriesInstanceUID when the source folder holds several series")
    p.add_argument("--deidentify", action="store_true", help="remove patient identifiers and replace UIDs")
    p.add_argument("--method", default=None, help="method named in DerivationDescription (default: from the header)")
    p.add_argument("--model", default=None, help="checkpoint used (path, 'demo' or store name): its sha256 is recorded")
    p.add_argument("--description", default=None, help="SeriesDescription (SYNTHETIC is prepended)")
    p.add_argument("--modality", default=None, help="contrast of VOLUME when its name and header do not say")
    p.add_argument("--synthetic", action="store_true",
                   help="VOLUME is synthetic although its header does not say so (made by another tool): mark it; "
                        "needs --method")
    p.add_argument("--allow-acquired", action="store_true",
                   help="export a volume that is not synthetic (an acquired scan), without the synthetic marks")
    p.add_argument("--allow-map", action="store_true",
                   help="export an error, trust or spread map as a derived series that says it is a map")
    p.add_argument("--allow-other-study", action="store_true",
                   help="export into the --source study even when VOLUME was made from another patient or study")


def _method_from_header(volume) -> str | None:
    """The method of a NIfTI written by `medtrans translate` ("SYNTHETIC T2 by unet")."""
    header = volume.source.header if volume.source is not None else None
    if header is None:
        return None
    raw = header["descrip"].tobytes().split(b"\x00", 1)[0].decode("ascii", "replace")
    _, sep, method = raw.partition(" by ")
    return (method.strip() or None) if sep else None


def run(args: argparse.Namespace) -> int:
    from ..core import io
    from ..core.errors import ExportError
    from ..core.io.dicom_export import export_dicom_series

    if not io.is_nifti_path(args.volume):
        print("medtrans export: error: VOLUME must be a .nii or .nii.gz file", file=sys.stderr)
        return 2
    if args.synthetic and not args.method:
        print("medtrans export: error: --synthetic needs --method (the method DerivationDescription names)",
              file=sys.stderr)
        return 2
    volume = io.load(args.volume, modality=args.modality)
    sha = None
    if args.model:
        from ..core.weights import sha256_file
        from ..translators.lookup import resolve_model

        sha = sha256_file(resolve_model(args.model))
    method = args.method or (volume.provenance or {}).get("method") or _method_from_header(volume)
    try:
        result = export_dicom_series(
            volume,
            args.out_dir,
            source=args.source,
            source_series_uid=args.series,
            method=method,
            checkpoint_sha256=sha,
            series_description=args.description,
            deidentify=args.deidentify,
            synthetic=True if args.synthetic else None,
            allow_non_synthetic=args.allow_acquired,
            allow_maps=args.allow_map,
            allow_other_study=args.allow_other_study,
        )
    except ExportError as exc:
        option = exc.data.get("option")
        if option in _FLAGS:  # name this command's flag, not the Python keyword
            reason = exc.reason.replace(f"{option}=True", _FLAGS[option])
            reason = reason.replace("or synthetic=True", "or --synthetic --method NAME")
            raise ExportError(reason, exc.path, **exc.data) from exc
        raise
    where = "a new study" if result.new_study else f"study {result.study_instance_uid}"
    print(f"wrote {len(result.files)} files of series {result.series_instance_uid} ({where}) to {args.out_dir}")
    if args.source is not None and not result.geometry_matches_source:
        print("medtrans export: warning: the volume does not overlap the source series; the nearest source "
              "slices are referenced. Check that VOLUME is in the source's patient coordinates.", file=sys.stderr)
    return 0
