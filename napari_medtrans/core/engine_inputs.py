"""The engine's input boundary: the volumes a translator is given, gathered in the order its spec names them and
checked once where they enter (3-D, one grid, the modality each model expects, not constant), and the identity of
the acquisitions they came from, recorded in the synthetic volume's provenance. Used by :mod:`.engine`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .errors import GeometryMismatchError, InputModalityError, InvalidVolumeError, TranslatorError
from .modality import EVIDENCE
from .volume import MODALITIES, Volume, normalise_modality, patient_id_sha256


def _as_volume(v: Any, modality: str | None) -> Volume:
    if isinstance(v, Volume):
        v.check()  # its data or affine may have been replaced since it was made
        return v
    if isinstance(v, (np.ndarray, torch.Tensor)):
        arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
        return Volume(arr, np.eye(4), modality=modality)
    raise TypeError(f'Argument "volume" must be a Volume (or a dict/sequence of them), got {type(v).__name__}.')


def _gather_inputs(volume: Any, spec: Any) -> list[Volume]:
    """The input Volumes in ``spec.inputs`` order (their modalities are checked by :func:`_check_modalities`)."""
    wanted = [normalise_modality(m) for m in spec.inputs]
    if isinstance(volume, Mapping):
        given = {normalise_modality(k): v for k, v in volume.items()}
        missing = [m for m in wanted if m not in given]
        if missing:
            raise TranslatorError(
                f"translator {spec.method!r} needs inputs {', '.join(wanted)}; missing {', '.join(missing)} "
                f"(given: {', '.join(str(k) for k in given) or 'none'})"
            )
        return [_as_volume(given[m], m) for m in wanted]
    if isinstance(volume, Sequence) and not isinstance(volume, (str, bytes)):
        items = list(volume)
        if len(items) != len(wanted):
            raise TranslatorError(
                f"translator {spec.method!r} needs {len(wanted)} input volume(s) ({', '.join(wanted)}), got {len(items)}"
            )
        return [_as_volume(v, m) for v, m in zip(items, wanted)]
    if len(wanted) != 1:
        raise TranslatorError(
            f"translator {spec.method!r} needs {len(wanted)} inputs ({', '.join(wanted)}); pass a dict "
            "{modality: volume}"
        )
    return [_as_volume(volume, wanted[0])]


def _check_modalities(inputs: list[Volume], wanted: list[str], spec: Any, override: bool) -> list[dict]:
    """Refuse an input whose own modality is another contrast than the model's (unless ``override``), and one
    file given for two inputs. Returns the overrides made, for the provenance."""
    overrides = []
    for v, m in zip(inputs, wanted):
        if v.modality in MODALITIES and v.modality != m:
            if override:
                overrides.append({"input": m, "labelled": v.modality, "evidence": v.modality_evidence})
                continue
            how = EVIDENCE.get(v.modality_evidence or "", "its label")
            raise InputModalityError(
                f"is {v.modality} (from {how}) but translator {spec.method!r} expects {m} there "
                f"(inputs: {', '.join(wanted)}); give a {m} volume, or --override-modality "
                "(override_modality=True) if the label is wrong",
                v.path,
                found=v.modality,
                expected=m,
                evidence=v.modality_evidence,
            )
    seen: dict[str, str] = {}
    for v, m in zip(inputs, wanted):
        if v.path is None or not os.path.exists(v.path):
            continue
        key = os.path.realpath(v.path)
        if key in seen:
            raise InputModalityError(
                f"is given as both {seen[key]} and {m}: one acquisition cannot be two contrasts",
                v.path,
                found=seen[key],
                expected=m,
            )
        seen[key] = m
    return overrides


def _check_not_constant(v: Volume, name: str) -> None:
    """A constant volume (all zero, or one value everywhere) has no anatomy to translate."""
    data = v.data
    if data.size == 0:
        raise InvalidVolumeError(f"{name} input has no voxels (shape {v.shape})", v.path)
    lo, hi = float(data.min()), float(data.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        raise InvalidVolumeError(
            f"{name} input is constant (every voxel is {lo:g}): there is no image to translate", v.path
        )


def _check_geometry(vols: list[Volume], names: list[str]) -> None:
    first = vols[0]
    for v, name in zip(vols[1:], names[1:]):
        if not first.same_grid(v):
            raise GeometryMismatchError(
                f"inputs must share one grid: {names[0]} {first.path or '(array)'} has shape {first.shape}, "
                f"{name} {v.path or '(array)'} has shape {v.shape}"
                + ("" if first.shape != v.shape else " and a different affine")
                + "; register/resample them onto one grid first",
                first.path,
                other=v.path,
            )


def _input_identity(inputs: list[Volume]) -> dict:
    """Which acquisitions went in: series and study UIDs, and a sha256 of the patient ID (never the ID itself),
    so that an export can check that the synthetic goes back to the same patient's study."""
    series, study, patient = [], None, None
    for v in inputs:
        src = v.source
        series.append(getattr(src, "series_instance_uid", None))
        study = study or getattr(src, "study_instance_uid", None)
        datasets = getattr(src, "dicom_datasets", None) or []
        if patient is None and datasets:
            patient = patient_id_sha256(datasets[0].get("PatientID", None))
    return {"input_series_uids": series, "input_study_uid": study, "input_patient_sha256": patient}
