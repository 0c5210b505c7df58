"""NIfTI reading and writing with nibabel.

The affine comes from nibabel's ``get_best_affine`` logic (sform when its code is set, else qform), which is
what every other NIfTI tool shows. A singular or non-finite affine, NaNs in the data, or data that is not 3D
(a 4D file with one volume is squeezed; a true 4D series is refused) raise errors that name the file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import uuid
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InvalidVolumeError, MedtransError, NotAVolumeError, VolumeReadError
from ..volume import MAX_VOXELS, SourceInfo, Volume

__all__ = ["read_nifti", "write_nifti", "is_nifti_path", "read_provenance", "sidecar_json_path", "PROVENANCE_PREFIX"]

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
        with _quiet_nibabel():
            img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, OSError, EOFError, ValueError,
            zlib.error, gzip.BadGzipFile) as exc:
        raise VolumeReadError(f"not a readable NIfTI file ({_one_line(exc)})", path) from exc
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
    if any(int(n) <= 0 for n in shape):
        raise InvalidVolumeError(f"has a dimension of size zero or less (shape {tuple(img.shape)}): no voxels", path)
    n_voxels = int(np.prod([int(n) for n in shape], dtype=object))
    if n_voxels > MAX_VOXELS:
        raise InvalidVolumeError(
            f"its header claims {n_voxels:,} voxels (shape {tuple(img.shape)}), more than the {MAX_VOXELS:,} "
            "a volume may hold here; the header is corrupt or the image is not one MR volume",
            path,
        )
    dtype = img.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "V":
        raise InvalidVolumeError(
            f"holds colour (RGB) voxels of type {dtype}, not one MR intensity per voxel", path
        )
    if dtype.kind == "c":
        raise InvalidVolumeError(
            f"holds complex voxels ({dtype}); translate the magnitude image (abs) instead", path
        )
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)):
        raise GeometryError("affine contains NaN or infinite values", path)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise GeometryError("affine is singular (a zero voxel size or collinear axes in sform/qform)", path)
    try:
        # Overflow and invalid casts (a huge scl_slope) give inf/NaN, refused just below in one line.
        with np.errstate(over="ignore", invalid="ignore"), _quiet_nibabel():
            data = img.get_fdata(dtype=np.float32)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise VolumeReadError(
            f"voxel data cannot be read; the file is truncated or corrupt ({_one_line(exc)})", path
        ) from exc
    data = data.reshape(shape)
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise InvalidVolumeError(f"volume contains {n_bad} NaN/infinite voxels of {data.size}", path)
    descrip = _descrip(img.header)
    # Files this tool wrote say "SYNTHETIC <modality> by <method>": the mark must survive a round trip.
    synthetic = descrip.upper().startswith("SYNTHETIC")
    provenance = read_provenance(img.header, path) if synthetic else {}
    if synthetic and not provenance:
        provenance = _method_from(descrip)
    found, evidence = _modality_evidence(path, descrip, synthetic)
    if modality:
        found, evidence = modality, "override"
    return Volume(
        data=data,
        affine=np.asarray(affine, dtype=np.float64),
        modality=found,
        source=SourceInfo(kind="nifti", path=str(path), header=img.header.copy()),
        synthetic=synthetic,
        provenance=provenance,
        modality_evidence=evidence,
    )


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (nibabel's messages span several)."""
    return " ".join(str(exc).split())


@contextlib.contextmanager
def _quiet_nibabel():
    """Silence nibabel's logger ("sizeof_hdr should be 348") and warnings while one file is read: what is wrong
    with the file is reported once, by the error raised."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _method_from(descrip: str) -> dict:
    """{"method": name} from a description "SYNTHETIC T2 by unet" (files written before provenance travelled in a
    header extension), else {}."""
    _head, sep, method = descrip.partition(" by ")
    return {"method": method.strip()} if sep and method.strip() else {}


def _modality_evidence(path: Path, descrip: str, synthetic: bool) -> tuple[str | None, str | None]:
    """(modality, evidence): the header's description first, then a JSON sidecar, then the file name.

    The description counts when its first word (after "SYNTHETIC") names a contrast, as this tool writes it;
    scanner and converter descriptions ("TE=90;Time=...") name none and fall through.
    """
    words = descrip.split()[1:] if synthetic else descrip.split()
    from_descrip = _guess_modality(words[0]) if words else None
    if from_descrip:
        return from_descrip, "header"
    from_sidecar = _sidecar_modality(path)
    if from_sidecar:
        return from_sidecar, "sidecar"
    from_name = _guess_modality(path.name)
    if from_name:
        return from_name, "filename"
    return None, None


def sidecar_json_path(path: str | os.PathLike) -> Path:
    """The BIDS / dcm2niix sidecar of a NIfTI file: the same name with .json instead of .nii(.gz)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _sidecar_modality(path: Path) -> str | None:
    """The contrast a JSON sidecar names (SeriesDescription etc., or TR/TE/TI in seconds), None without one.

    A sidecar that cannot be read or parsed is ignored: it is optional evidence, and the file name remains.
    """
    from ..modality import modality_from_fields

    side = sidecar_json_path(path)
    try:
        if not side.is_file() or side.stat().st_size > _MAX_SIDECAR_BYTES:
            return None
        fields = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(fields, dict):
        return None
    return modality_from_fields(fields)


#: A JSON sidecar or a provenance record larger than this is not read (no real one comes near).
_MAX_SIDECAR_BYTES = 1 << 20
#: NIfTI header extensions written by this tool start with this text (extension code 6, "comment").
PROVENANCE_PREFIX = b"napari-medtrans provenance v1\n"


def read_provenance(header, path: str | os.PathLike | None = None) -> dict:
    """The provenance record this tool stored in a NIfTI header extension ({} when there is none).

    The record is data from a file and is treated as untrusted: it must be a JSON object of at most 1 MiB, keys
    are strings, and it is only ever displayed or copied into text fields (never used as a path).
    """
    for ext in getattr(header, "extensions", None) or []:
        try:
            content = ext.get_content()
        except Exception:  # noqa: BLE001 - a malformed extension of another tool: not ours, skip it
            continue
        if not isinstance(content, (bytes, bytearray)) or not content.startswith(PROVENANCE_PREFIX):
            continue
        body = bytes(content[len(PROVENANCE_PREFIX):]).rstrip(b"\x00")
        if len(body) > _MAX_SIDECAR_BYTES:
            return {}
        try:
            record = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}
        if isinstance(record, dict):
            return {str(k): v for k, v in record.items()}
    return {}


def _provenance_extension(provenance: dict):
    """A NIfTI comment extension holding ``provenance`` as JSON (values that JSON lacks become text)."""
    import nibabel as nib

    body = json.dumps(provenance, default=_json_default, sort_keys=True, allow_nan=False).encode("utf-8")
    content = PROVENANCE_PREFIX + body
    content += b"\x00" * (-(len(content) + 8) % 16)  # NIfTI extensions are a multiple of 16 bytes
    return nib.nifti1.Nifti1Extension("comment", content)


def _json_default(value):
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value
    if isinstance(value, np.ndarray) and value.size <= 64:
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def write_nifti(volume: Volume, path: str | os.PathLike, *, dtype=np.float32) -> Path:
    """Write ``volume`` as NIfTI-1 with its affine as both sform and qform (code 1, scanner).

    The description field says SYNTHETIC for synthetic volumes so the mark survives outside this tool, and the
    volume's provenance is stored as JSON in a header extension (:func:`read_provenance`). A synthetic volume is
    never written over an existing acquired NIfTI file (:class:`MedtransError`).
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
    if volume.synthetic and volume.provenance:
        # The whole record travels in the header, so it survives whatever the file is later called.
        img.header.extensions.append(_provenance_extension(_finite(volume.provenance)))
    if volume.synthetic and _is_acquired_nifti(path):
        raise MedtransError(
            "holds an acquired (not synthetic) image; a synthetic volume is never written over it. Choose another "
            "output name",
            path,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    # A short temporary name next to the target: the same file system (an atomic rename) and never longer than
    # a name the target's folder accepts.
    tmp = path.with_name(f".medtrans-{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _is_acquired_nifti(path: Path) -> bool:
    """True when ``path`` is an existing NIfTI file whose header does not say SYNTHETIC."""
    import nibabel as nib

    if not path.is_file():
        return False
    try:
        header = nib.load(str(path)).header
    except Exception:  # noqa: BLE001 - not a readable NIfTI: nothing acquired to protect
        return False
    return not _descrip(header).upper().startswith("SYNTHETIC")


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


def _finite(record):
    """``record`` with non-finite floats replaced by None (JSON has no NaN)."""
    if isinstance(record, dict):
        return {str(k): _finite(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [_finite(v) for v in record]
    if isinstance(record, (float, np.floating)) and not np.isfinite(record):
        return None
    return record
