"""`medtrans convert IN OUT.nii.gz`: DICOM series (or NIfTI) to NIfTI, geometry kept."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a DICOM series (or a NIfTI file) to NIfTI, keeping its geometry"
DESCRIPTION = """\
Convert a DICOM series to NIfTI (.nii or .nii.gz). Slices are ordered along the slice normal, rescale
slope/intercept applied, and the affine built from the DICOM geometry (it agrees with dcm2niix).

When the input folder holds several series, pick one with --series UID (see `medtrans info FOLDER`).
Unevenly spaced slices are refused unless --allow-uneven is given; they are never resampled.

examples:
  medtrans convert /data/dicom/t1_series t1.nii.gz
  medtrans convert /data/dicom/study1 flair.nii.gz --series 1.2.826.0.1.3680043.8.498.123
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="DICOM folder or file (or a NIfTI file)")
    parser.add_argument("output", help="output file ending in .nii or .nii.gz")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to convert when the folder holds several series")
    parser.add_argument("--allow-uneven", action="store_true",
                        help="convert a series with uneven slice spacing as it is (no resampling)")
    parser.add_argument("--modality", default=None,
                        help="contrast label to record (T1, T1c, T2, FLAIR, PD); guessed from the headers otherwise")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..core.io import check_output_path, is_nifti_path, load, save
    from ..core.io.paths import refuse_overwriting_inputs
    from .info import describe

    if not is_nifti_path(args.output):
        print(f"medtrans convert: error: output {args.output!r} must end in .nii or .nii.gz", file=sys.stderr)
        return 2
    refuse_overwriting_inputs(args.output, [args.input])
    check_output_path(args.output)  # before reading: a bad output location fails at once and leaves nothing
    vol = load(args.input, series_uid=args.series, modality=args.modality, allow_uneven=args.allow_uneven)
    out = save(vol, args.output)
    print(f"wrote {out}")
    print(describe(vol))
    return 0
