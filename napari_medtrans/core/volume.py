"""The one volume type used everywhere: float32 voxels, a 4x4 affine to patient RAS mm, and where it came from.

Conventions
-----------
* ``data`` is indexed ``(i, j, k)`` exactly as a NIfTI voxel array: ``affine @ [i, j, k, 1]`` gives the
  voxel centre in RAS+ millimetres as nibabel defines it: +x towards the patient's Right, +y Anterior,
  +z Superior.
* For DICOM-derived volumes, ``i`` runs along the columns of a slice (ImageOrientationPatient's row
  direction cosine), ``j`` along the rows, ``k`` along the slice normal in increasing position. The affine
  is converted from DICOM LPS to RAS by negating its first two rows.
* ``source`` keeps the original headers (a nibabel header, or the list of pydicom datasets without pixel
  data) so that export can be built from them. Geometry is never dropped: derived volumes keep the affine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import GeometryError, InvalidVolumeError

__all__ = ["Volume", "SourceInfo", "MODALITIES", "MAX_VOXELS", "normalise_modality", "patient_id_sha256"]

#: The most voxels one volume may hold (2**31: 8 GiB of float32). The NIfTI and DICOM readers refuse a header that
#: claims more before anything is allocated.
MAX_VOXELS = 1 << 31

#: Canonical modality names. Other spellings are mapped by :func:`normalise_modality`.
MODALITIES = ("T1", "T1c", "T2", "FLAIR", "PD")

_ALIASES = {
    "t1": "T1",
    "t1w": "T1",
    "t1-weighted": "T1",
    "mprage": "T1",
    "t1c": "T1c",
    "t1ce": "T1c",
    "t1gd": "T1c",
    "t1-gd": "T1c",
    "t1+c": "T1c",
    "t1post": "T1c",
    "t2": "T2",
    "t2w": "T2",
    "t2-weighted": "T2",
    "flair": "FLAIR",
    "t2flair": "FLAIR",
    "t2-flair": "FLAIR",
    "pd": "PD",
    "pdw": "PD",
}


def normalise_modality(name: str | None) -> str | None:
    """Map a modality spelling ("t1w", "T1-Gd", "flair") to its canonical name; unknown names pass through."""
    if name is None:
        return None
    key = str(name).strip().lower().replace("_", "").replace(" ", "")
    return _ALIASES.get(key, str(name).strip())


def patient_id_sha256(patient_id: Any) -> str | None:
    """Hex sha256 of a PatientID's text (UTF-8), as provenance ``"input_patient_sha256"`` records it (the ID itself
    is never stored); None when the ID is empty or missing. Export compares it with its source's."""
    text = "" if patient_id is None else str(patient_id)
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text.strip() else None


@dataclasses.dataclass
class SourceInfo:
    """Where a Volume came from.

    Attributes
    ----------
    kind : str
        "nifti", "dicom", "phantom", "derived" or "array".
    path : str or None
        The file or folder it was read from.
    header : Any
        The nibabel header (NIfTI) or None.
    dicom_datasets : list
        pydicom Datasets of the source slices (pixel data removed), in slice order; empty for NIfTI.
    series_instance_uid, study_instance_uid : str or None
        Convenience copies for DICOM sources.
    """

    kind: str = "array"
    path: str | None = None
    header: Any = None
    dicom_datasets: list = dataclasses.field(default_factory=list)
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None


@dataclasses.dataclass(eq=False)
class Volume:
    """A 3D MR volume with its geometry.

    Parameters
    ----------
    data : array-like
        3D voxel array, converted to float32.
    affine : array-like
        4x4 voxel-index-to-RAS-mm matrix.
    modality : str, optional
        "T1", "T1c", "T2", "FLAIR", "PD" or any other label.
    source : SourceInfo, optional
        Provenance of the voxels (headers kept for export).
    synthetic : bool
        True for every image a translator produced. Synthetic data is never shown or exported as real.
    provenance : dict
        Free-form record: method, checkpoint sha256, parameters, input paths.
    modality_evidence : str, optional
        Where ``modality`` came from, strongest first: "header" (a NIfTI description naming the contrast, as
        this tool writes it), "sidecar" (a JSON sidecar's series description or TR/TE/TI), "dicom" (the DICOM
        header), "filename", "override" (the caller said so), "derived" (a map computed from another volume).
        None when nobody knows; a translator then takes the volume as what it expects, and says so.
    """

    data: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    source: SourceInfo = dataclasses.field(default_factory=SourceInfo)
    synthetic: bool = False
    provenance: dict = dataclasses.field(default_factory=dict)
    modality_evidence: str | None = None

    def __post_init__(self):
        self.data = np.asarray(self.data, dtype=np.float32)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        self.modality = normalise_modality(self.modality)
        self.check()

    def check(self) -> None:
        """Raise if the data is not 3-D or the affine is not a finite, invertible 4 x 4 matrix.

        Run on construction; the engine runs it again on the Volumes it is handed, whose ``data`` or ``affine``
        may have been replaced since.
        """
        where = self.source.path if self.source is not None else None
        if self.data.ndim != 3:
            hint = "; a 2D slice is a volume of one slice (add an axis)" if self.data.ndim == 2 else ""
            raise InvalidVolumeError(
                f"expected a 3D volume, got {self.data.ndim}D data of shape {self.data.shape}{hint}", where
            )
        if self.affine.shape != (4, 4):
            raise GeometryError(f"affine must be 4x4, got shape {self.affine.shape}", where)
        if not np.all(np.isfinite(self.affine)):
            raise GeometryError("affine contains NaN or infinite values", where)
        if abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise GeometryError("affine is singular (zero voxel size or collinear axes)", where)

    # -- geometry -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Three-letter orientation code of the voxel axes, e.g. "RAS" or "LPS" (nibabel's aff2axcodes)."""
        from nibabel.orientations import aff2axcodes

        return "".join(aff2axcodes(self.affine))

    @property
    def path(self) -> str | None:
        return self.source.path if self.source is not None else None

    def same_grid(self, other: "Volume", atol: float = 1e-3) -> bool:
        """True when ``other`` has the same shape and affine (to ``atol`` mm)."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol))

    # -- derivation -----------------------------------------------------------------------------------
    def derive(
        self,
        data: np.ndarray,
        *,
        modality: str | None = None,
        synthetic: bool | None = None,
        provenance: Mapping[str, Any] | None = None,
        inherit_provenance: bool = True,
    ) -> "Volume":
        """A new Volume on this grid (same affine) with other voxels; the source headers are kept for export.

        ``provenance`` is added to this volume's (``inherit_provenance=False``: it is the whole provenance, as for
        a translator's output, whose record must not carry its input's)."""
        data = np.asarray(data)
        if data.shape != self.data.shape:
            raise InvalidVolumeError(
                f"derived data has shape {data.shape}, expected {self.data.shape}", self.path
            )
        prov = dict(self.provenance) if inherit_provenance else {}
        if provenance:
            prov.update(provenance)
        return Volume(
            data=data,
            affine=self.affine.copy(),
            modality=modality if modality is not None else self.modality,
            source=self.source if self.source is not None else SourceInfo(),
            synthetic=self.synthetic if synthetic is None else synthetic,
            provenance=prov,
            modality_evidence=(
                self.modality_evidence
                if modality is None or normalise_modality(modality) == self.modality
                else "derived"
            ),
        )

    def check_finite(self) -> "Volume":
        """Raise :class:`InvalidVolumeError` naming the file if the data holds NaN or inf."""
        bad = ~np.isfinite(self.data)
        if bad.any():
            raise InvalidVolumeError(
                f"volume contains {int(bad.sum())} NaN/infinite voxels of {bad.size}", self.path
            )
        return self

    def __repr__(self) -> str:
        name = os.path.basename(self.path) if self.path else "array"
        kind = "synthetic " if self.synthetic else ""
        sp = "x".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"<Volume {kind}{self.modality or '?'} {name} shape={self.shape} spacing={sp}mm "
            f"orientation={self.orientation}>"
        )
