"""NIfTI reading and writing with nibabel.

The affine comes from nibabel's ``get_best_affine`` logic (sform when its code is set, else qform), which is
what every other NIfTI tool shows. A singular or non-finite affine, NaNs in the data, or data that is not 3D
(a 4D file with one volume is squeezed; a true 4D series is refused) raise errors that name the file.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InvalidVolumeError, NotAVolumeError, VolumeReadError
from ..volume import SourceInfo, Volume

__all__ = ["read_nifti", "write_nifti", "is_nifti_path"]

_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in .nii or .nii.gz (case-insensitive)."""
    return str(path).lower().endswith(_SUFFIXES)


def read_nifti(path: str | os.PathLike, *, modality: str | None = None) -> Volume:
    """Read a 3D NIfTI file into a :class:`Volume`.

    Parameters
    ----------
    path : path-like
        A .nii or .nii.gz file.
    modality : str, optional
        Overrides the modality guessed from the file name ("sub-01_T2w.nii.gz" -> "T2").

    Raises
    ------
    NotAVolumeError, VolumeReadError, GeometryError, InvalidVolumeError
        With the path and the problem in the message.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise NotAVolumeError("no such file", path)
    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise VolumeReadError(f"not a readable NIfTI file ({exc})", path) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise NotAVolumeError(f"is a {type(img).__name__}, not NIfTI", path)

    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InvalidVolumeError(
            f"expected 3D data, got {len(img.shape)}D with shape {tuple(img.shape)}"
            + (" (a 4D series: split it into 3D volumes first)" if len(img.shape) == 4 else ""),
            path,
        )
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        raise GeometryError("affine contains NaN or infinite values", path)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise GeometryError("affine is singular (a zero voxel size or collinear axes in sform/qform)", path)
    try:
        data = img.get_fdata(dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise VolumeReadError(f"voxel data cannot be read; the file is truncated or corrupt ({exc})", path) from exc
    data = data.reshape(shape)
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise InvalidVolumeError(f"volume contains {n_bad} NaN/infinite voxels of {data.size}", path)
    descrip = _descrip(img.header)
    # Files this tool wrote say "SYNTHETIC <modality> by <method>": the mark must survive a round trip.
    synthetic = descrip.upper().startswith("SYNTHETIC")
    words = descrip.split()[1:] if synthetic else descrip.split()
    from_descrip = _guess_modality(words[0]) if words else None
    return Volume(
        data=data,
        affine=np.asarray(affine, dtype=np.float64),
        modality=modality or _guess_modality(path.name) or from_descrip,
        source=SourceInfo(kind="nifti", path=str(path), header=img.header.copy()),
        synthetic=synthetic,
        provenance=_method_from(descrip) if synthetic else {},
    )


def _method_from(descrip: str) -> dict:
    """{"method": name} from a description "SYNTHETIC T2 by unet" that this tool wrote, else {}."""
    head, sep, method = descrip.partition(" by ")
    return {"method": method.strip()} if sep and method.strip() else {}


def write_nifti(volume: Volume, path: str | os.PathLike, *, dtype=np.float32) -> Path:
    """Write ``volume`` as NIfTI-1 with its affine as both sform and qform (code 1, scanner).

    The description field says SYNTHETIC for synthetic volumes so the mark survives outside this tool.
    The file is written to a temporary name and renamed, so a crash never leaves a half-written file.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise ValueError(f'Argument "path" should end in .nii or .nii.gz, got {str(path)!r}.')
    img = nib.Nifti1Image(np.asarray(volume.data, dtype=dtype), volume.affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    desc = ("SYNTHETIC " if volume.synthetic else "") + (volume.modality or "")
    method = volume.provenance.get("method")
    if method:
        desc += f" by {method}"
    img.header["descrip"] = desc.strip()[:79].encode("ascii", "replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    tmp = path.with_name(f".{path.name}.partial{suffix}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _descrip(header) -> str:
    """The header's description field as text ("" when empty or unreadable)."""
    try:
        raw = header["descrip"].tobytes() if hasattr(header["descrip"], "tobytes") else bytes(header["descrip"])
    except (KeyError, TypeError, ValueError):
        return ""
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _guess_modality(name: str) -> str | None:
    from ..volume import normalise_modality

    stem = name.lower()
    for suffix in _SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    # BIDS-style suffix first (sub-01_T2w), then any token.
    tokens = [t for t in stem.replace(".", "_").split("_") if t]
    tokens += [p for t in tokens for p in t.split("-")]
    for token in reversed(tokens):
        canon = normalise_modality(token)
        if canon in ("T1", "T1c", "T2", "FLAIR", "PD"):
            return canon
    return None
