"""What an exported DICOM series says about itself: the General Series, General Equipment, General Image and MR
Image attributes of :func:`~napari_medtrans.core.io.dicom_export.export_dicom_series`.

The synthetic marking (ImageType, SyntheticData, SeriesDescription, ImageComments, research-mode MR timing) and
the DerivationDescription naming the method, checkpoint and inputs; see the exporter's module notes, "What goes
into every file". The plane geometry, the rescaled 16-bit pixel description and the display window are added by
the series builder the plain writer uses too (``_slice_template`` of :mod:`.dicom_write`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..volume import Volume
from .dicom_export_checks import _map_name, is_map
from .dicom_write_common import _ds_str as _ds  # noqa: F401 - re-exported: it was defined here


def derivation_description(
    volume: Volume, method: str | None = None, checkpoint_sha256: str | None = None, synthetic: bool = True
) -> str:
    """The DerivationDescription text (at most 1024 characters).

    For a synthetic volume: the method, the checkpoint's sha256, the input contrast(s) and the software; for
    a map the same, saying it is a map; for another volume (a re-export) only that it was re-encoded by this
    software.
    """
    from ... import __version__

    prov = volume.provenance or {}
    if is_map(volume):
        method = method or prov.get("method")
        by = f" of an image computed by {method}" if method else ""
        text = (f"{_map_name(volume)} map{by}, written by napari-medtrans {__version__} (16-bit rescaled). "
                "A map, not an MR image of the patient.")
        return text[:1024]
    if not synthetic:
        return f"{volume.modality or 'image'} re-exported by napari-medtrans {__version__} (16-bit rescaled)"
    method = method or prov.get("method") or "unknown method"
    sha = checkpoint_sha256 or prov.get("checkpoint_sha256") or "none (untrained or unknown model)"
    inputs = prov.get("input_modalities") or []
    src = f" from {'+'.join(str(m) for m in inputs)}" if inputs else ""
    run = _run_text(prov)
    text = (
        f"SYNTHETIC {volume.modality or 'image'} computed{src} by {method}; checkpoint sha256 {sha}{run}; "
        f"napari-medtrans {__version__}. Not an acquired image."
    )
    return text[:1024]


def _run_text(prov: Mapping[str, Any]) -> str:
    """How the run went, from the provenance: checkpoint file name, steps, seed, samples, precision, and any
    modality override. Nothing identifying (no input paths or UIDs: they may name the patient, and de-identified
    exports replace UIDs)."""

    def clean(value: Any) -> str:
        return "".join(ch for ch in " ".join(str(value).split()) if ch.isprintable() and ch != "\\")[:64]

    parts = []
    if prov.get("checkpoint_name"):
        parts.append(f"checkpoint file {clean(prov['checkpoint_name'])}")
    for key in ("steps", "seed", "samples", "precision"):
        if prov.get(key) is not None:
            parts.append(f"{key} {clean(prov[key])}")
    for record in prov.get("modality_override") or []:
        if isinstance(record, Mapping):
            parts.append(f"input {clean(record.get('input'))} overridden (labelled {clean(record.get('labelled'))})")
    return ("; " + ", ".join(parts)) if parts else ""



def _series_description(volume: Volume, given: str | None, method: str | None, synthetic: bool) -> str:
    method = method or (volume.provenance or {}).get("method")
    what = f"{_map_name(volume)} map" if is_map(volume) else f"{volume.modality or 'image'}"
    text = given or (what + (f" by {method}" if method else ""))
    if synthetic and not text.upper().startswith("SYNTHETIC"):
        text = f"SYNTHETIC {text}"
    return text[:64]


def _series_and_image(ds, volume, series_uid, number, description, synthetic, now, derivation) -> None:
    from ... import __version__

    if now is not None:
        date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        ds.SeriesDate, ds.SeriesTime = date, time
        ds.ContentDate, ds.ContentTime = date, time
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    if "PatientPosition" not in ds:
        ds.PatientPosition = ""
    ds.Manufacturer = "napari-medtrans"
    ds.ManufacturerModelName = "contrast translation"
    ds.SoftwareVersions = f"napari-medtrans {__version__}"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.DerivationDescription = derivation
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if synthetic:
        ds.SyntheticData = "YES"
        ds.ImageComments = "SYNTHETIC image computed by a contrast-translation model; not acquired"
    if is_map(volume):
        ds.ImageComments = (f"{'SYNTHETIC ' if synthetic else ''}{_map_name(volume)} map computed by "
                            "napari-medtrans; not an MR image of the patient")[:10240]
    # MR Image module: nothing was acquired, so research mode and empty (Type 2) timing.
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = ""
    ds.RepetitionTime = None
    ds.EchoTime = None
    ds.EchoTrainLength = None


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _series_number(headers: list, series_number: int | None) -> int:
    """The SeriesNumber: the one given, else the source's + 1000 (1000 without a source)."""
    src_number = _int_or_none(headers[0].get("SeriesNumber")) if headers else None
    return int(series_number) if series_number is not None else (src_number or 0) + 1000
