"""What :func:`~napari_medtrans.core.io.dicom_export.export_dicom_series` may export, and where.

Every check the exporter makes before it creates anything: the voxels (none, NaN, infinite), what the volume is
(a partial translation, a map, an acquired image, a synthetic volume asked to be written unmarked), the output
folder (new or empty), the geometry (an affine DICOM can express), and whether the source series is of the
patient and study the volume was made from. Refusals are :class:`~napari_medtrans.core.errors.ExportError` with
``data["refused"]`` and ``data["option"]`` (see the exporter's module notes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ExportError, GeometryError, InvalidVolumeError
from ..volume import MODALITIES, Volume, patient_id_sha256
from .orientation import dicom_geometry_from_affine


def is_map(volume: Volume) -> bool:
    """True for an error, trust or spread map (provenance ``"map"``) or anything whose modality is no MR contrast."""
    prov = volume.provenance or {}
    return bool(prov.get("map")) or (volume.modality is not None and volume.modality not in MODALITIES)


def _map_name(volume: Volume) -> str:
    return str((volume.provenance or {}).get("map") or volume.modality or "map")


def _checked_voxels(volume: Volume) -> np.ndarray:
    """The volume's voxels, refused when it is no Volume, has none, or holds NaN or infinite ones."""
    if not isinstance(volume, Volume):
        raise TypeError(f'Argument "volume" must be a Volume, got {type(volume).__name__}.')
    data = np.asarray(volume.data)
    if data.size == 0:
        raise InvalidVolumeError(f"cannot export: the volume has no voxels (shape {tuple(data.shape)})", volume.path)
    if not np.all(np.isfinite(data)):
        raise InvalidVolumeError("cannot export: the volume holds NaN or infinite voxels", volume.path)
    return data


def _check_what_it_is(volume: Volume, out_dir, synthetic, allow_non_synthetic: bool, allow_maps: bool) -> bool:
    """Refuse maps and acquired volumes unless allowed; return whether the series is marked synthetic."""
    where = volume.path or out_dir
    partial = (volume.provenance or {}).get("partial")
    if partial:
        done = partial.get("slices_done") if isinstance(partial, dict) else None
        total = partial.get("slices_total") if isinstance(partial, dict) else None
        raise ExportError(
            "the volume is a partial translation (cancelled after "
            + (f"{done} of {total} slices" if done is not None else "some slices")
            + "); its unfinished slices are blank, so it is not exported. Translate it again to the end",
            where, refused="partial", option=None)
    if synthetic is False and volume.synthetic:
        raise ExportError(
            f"the volume is marked synthetic ({volume.modality or 'image'}); synthetic data is never exported "
            "unmarked, so synthetic=False cannot apply to it", where, refused="unmark", option=None)
    if is_map(volume) and not allow_maps:
        if (volume.provenance or {}).get("map"):
            what = f"the volume is a {_map_name(volume)} map, not an MR image"
        else:
            what = (f"the volume's modality {volume.modality!r} is none of the MR contrasts "
                    f"{', '.join(MODALITIES)}: it is taken for a map, not an MR image")
        raise ExportError(
            f"{what}; written as an MR series it would sit among the patient's images like a scan. Save it as "
            "NIfTI, or pass allow_maps=True to write it as a derived series that says it is a map",
            where, refused="map", option="allow_maps")
    marked = bool(volume.synthetic or synthetic)
    if not marked and not is_map(volume) and not allow_non_synthetic:
        raise ExportError(
            f"the volume is not marked synthetic (an acquired {volume.modality or 'image'}?); export writes "
            "synthetic images. Pass allow_non_synthetic=True to re-export it unmarked, or synthetic=True if it "
            "is a synthetic image made by another tool", where, refused="acquired", option="allow_non_synthetic")
    return marked


def _check_same_patient_and_study(volume: Volume, first, where) -> None:
    """Refuse a source whose patient or study differs from the one the volume was made from."""
    prov = volume.provenance or {}
    want_patient = str(prov.get("input_patient_sha256") or "").strip().lower()
    source_id = first.get("PatientID")
    source_id = "" if source_id is None else str(source_id)
    if want_patient and source_id.strip():
        have = {patient_id_sha256(source_id), patient_id_sha256(source_id.strip())}
        if want_patient not in have:
            raise ExportError(
                f"the source series belongs to patient {source_id!r} (PatientID sha256 "
                f"{patient_id_sha256(source_id)[:12]}...), but the volume was made from the images of another "
                f"patient (PatientID sha256 {want_patient[:12]}...); a synthetic image must not join another "
                "patient's study. Choose the source it was made from, or pass allow_other_study=True",
                where, refused="patient", option="allow_other_study")
    want_study = str(prov.get("input_study_uid") or "").strip()
    source_study = str(first.get("StudyInstanceUID", "") or "").strip()
    if want_study and source_study and want_study != source_study:
        raise ExportError(
            f"the source series is in study {source_study}, but the volume was made from study {want_study}: "
            "exporting it there would put it in another study (another visit, or another patient). Choose the "
            "source it was made from, or pass allow_other_study=True",
            where, refused="study", option="allow_other_study")


def _check_out_dir(out_dir) -> Path:
    """The output folder, which must be new or empty (nothing is created here)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file; DICOM export needs a folder", out)
    if out.is_dir() and any(out.iterdir()):
        raise ExportError("folder is not empty; export a series into a new or empty folder so that no two "
                          "series are mixed", out)
    return out


def _export_geometry(volume: Volume, n_slices: int) -> dict:
    """The DICOM geometry of every slice from the volume's affine; GeometryError when DICOM cannot express it."""
    try:
        return dicom_geometry_from_affine(volume.affine, n_slices)
    except ValueError as exc:
        raise GeometryError(f"cannot export to DICOM: {exc}", volume.path) from exc
