"""`medtrans info PATH`: what a NIfTI file or DICOM folder holds (shape, spacing, orientation, series), or what a
model file says about itself (method, direction, training, validation metrics)."""

from __future__ import annotations

import argparse
import os

NAME = "info"
HELP = "describe a NIfTI file, DICOM folder or model file: geometry and series, or method and training"
DESCRIPTION = """\
Describe a volume without changing anything.

For a NIfTI file: shape, voxel spacing, orientation code, modality, synthetic or not, value range.
For a DICOM folder (or file): every series found (UID, description, number of files), then the same
description of the series read. When the folder holds several series, pick one with --series UID;
without it the series are listed and the exit status is 2.
For a model file (.safetensors, .pt/.pth, TorchScript, ONNX): method, direction, configuration, sha256,
output normalisation, the training command and data, and the validation metrics, read without building
the model (a .pt is read with weights_only).

examples:
  medtrans info sub-01_T1w.nii.gz
  medtrans info /data/dicom/study1
  medtrans info /data/dicom/study1 --series 1.2.826.0.1.3680043.8.498.123
  medtrans info resources/models/demo-t1-t2.safetensors
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .nii/.nii.gz file, a DICOM file, a folder of DICOM files, or a model file")
    parser.add_argument("--series", metavar="UID", default=None,
                        help="SeriesInstanceUID to describe when a DICOM folder holds several series")
    parser.add_argument("--allow-uneven", action="store_true",
                        help="read a DICOM series with uneven slice spacing as it is (no resampling)")


def run(args: argparse.Namespace) -> int:

    from ..core.io import is_nifti_path, list_series, load

    path = args.path
    if not os.path.exists(path):
        from ..core.errors import NotAVolumeError
        from ..core.io.paths import missing_reason

        raise NotAVolumeError(missing_reason(path), path)
    if os.path.isfile(path) and _is_model_path(path):
        from ..translators.checkpoint import read_checkpoint_metadata

        print(describe_checkpoint(read_checkpoint_metadata(path)))
        return 0
    if not (os.path.isfile(path) and is_nifti_path(path)):
        series = list_series(path)
        print(f"DICOM: {len(series)} series in {series.path}"
              + (f" ({len(series.skipped)} other files skipped)" if series.skipped else ""))
        for s in series:
            print(f"  {s.series_instance_uid}  #{s.series_number if s.series_number is not None else '-'}  "
                  f"{s.description or '(no description)'}  [{s.modality or '?'}]  "
                  f"{s.n_files} file{'' if s.n_files == 1 else 's'}")
        for bad, reason in series.unreadable:
            print(f"  unreadable: {bad}: {reason}")
        if len(series) > 1 and args.series is None and not (os.path.isfile(path)):
            print("several series: choose one with --series UID")
            return 2
    vol = load(path, series_uid=args.series, allow_uneven=args.allow_uneven)
    print(describe(vol))
    return 0


def _is_model_path(path: str) -> bool:
    from ..translators.checkpoint import ONNX_SUFFIXES, PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, TORCHSCRIPT_SUFFIXES

    suffix = os.path.splitext(path)[1].lower()
    return suffix in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES + TORCHSCRIPT_SUFFIXES + ONNX_SUFFIXES


def describe_checkpoint(info) -> str:
    """Lines describing a model file from its metadata (:class:`~napari_medtrans.translators.checkpoint.CheckpointInfo`)."""
    import json

    spec = info.spec or {}
    direction = "?"
    if spec.get("inputs") and spec.get("outputs"):
        direction = f"{' + '.join(spec['inputs'])} -> {' + '.join(spec['outputs'])}"
    lines = [
        f"path:        {info.path}",
        f"format:      {info.format}",
        f"method:      {info.method}",
        f"direction:   {direction}",
        f"sha256:      {info.sha256}",
        f"written by:  napari-medtrans {info.package_version or '?'}"
        + (f", torch {info.torch_version}" if info.torch_version else "")
        + (f", {info.created}" if info.created else ""),
    ]
    if info.config:
        lines.append(f"config:      {json.dumps(info.config, sort_keys=True, default=str)}")
    if info.normalisation:
        lines.append(f"normalisation: {json.dumps(info.normalisation, sort_keys=True, default=str)}")
    training = dict(info.training or {})
    if training:
        command = training.pop("command", None)
        if command:
            lines.append(f"trained with: {command if isinstance(command, str) else ' '.join(map(str, command))}")
        for key in sorted(training):
            value = training[key]
            text = json.dumps(value, default=str) if not isinstance(value, str) else value
            if len(text) > 200:
                text = text[:197] + "..."
            lines.append(f"  {key}: {text}")
    if info.metrics:
        lines.append("validation:  " + "  ".join(
            f"{k} {v:.4g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(info.metrics.items())))
    return "\n".join(lines)


def _evidence(vol) -> str:
    from ..core.modality import EVIDENCE

    evidence = getattr(vol, "modality_evidence", None)
    if not vol.modality or evidence not in EVIDENCE:
        return ""
    return " (as given)" if evidence == "override" else f" (from {EVIDENCE[evidence]})"


def _made_by(prov: dict) -> list[str]:
    """What a synthetic volume's provenance says about how it was made (text from the file, shown, never used)."""
    if not prov:
        return ["made by:     unknown (no provenance record in the file)"]

    def text(value) -> str:
        return " ".join(str(value).split())[:200]

    lines = []
    method = prov.get("method")
    sha = prov.get("checkpoint_sha256")
    name = prov.get("checkpoint_name")
    lines.append(f"made by:     {text(method or 'unknown method')}"
                 + (f", checkpoint {text(name)}" if name else "")
                 + (f" (sha256 {text(sha)[:16]}...)" if sha else ", checkpoint unknown"))
    mods = prov.get("input_modalities") or []
    inputs = prov.get("inputs") or []
    if mods:
        pairs = [f"{text(m)} {text(p)}" if p else text(m) for m, p in zip(mods, list(inputs) + [None] * len(mods))]
        lines.append(f"from:        {'; '.join(pairs)}")
    for record in prov.get("modality_override") or []:
        if isinstance(record, dict):
            lines.append(f"override:    input {text(record.get('input'))} was labelled "
                         f"{text(record.get('labelled'))} ({text(record.get('evidence'))})")
    run = [f"{k} {text(prov[k])}" for k in ("precision", "steps", "seed", "samples") if prov.get(k) is not None]
    if run:
        lines.append(f"run:         {', '.join(run)}")
    return lines


def describe(vol) -> str:
    """Lines describing a Volume (used by `info` and `convert`)."""
    import numpy as np

    data = vol.data
    lo, hi = (float(np.min(data)), float(np.max(data))) if data.size else (0.0, 0.0)
    sp = " x ".join(f"{s:.4g}" for s in vol.spacing)
    lines = [
        f"path:        {vol.path}",
        f"shape:       {' x '.join(str(s) for s in vol.shape)}",
        f"spacing:     {sp} mm",
        f"orientation: {vol.orientation}",
        f"modality:    {vol.modality or 'unknown'}{_evidence(vol)}",
        f"synthetic:   {'yes' if vol.synthetic else 'no'}",
        f"value range: {lo:.6g} to {hi:.6g}",
    ]
    if vol.synthetic:
        lines.extend(_made_by(vol.provenance or {}))
    if vol.source is not None and vol.source.kind == "dicom":
        lines.append(f"series UID:  {vol.source.series_instance_uid}")
    if "uneven_spacing_mm" in vol.provenance:
        gaps = vol.provenance["uneven_spacing_mm"]
        lines.append(f"warning:     uneven slice spacing ({min(gaps):.3f} to {max(gaps):.3f} mm) read as is")
    return "\n".join(lines)
