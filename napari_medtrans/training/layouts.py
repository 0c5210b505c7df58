"""Index the folders public MR datasets ship in (BraTS 2021, BraTS 2023, BIDS, IXI) into a dataset manifest.

The papers train and test on BraTS (EDTS-Trans, CDM, MRNet), IXI and BraTS (HiFi-Syn, DisDiff). Each dataset has
its own file naming; :func:`index_folder` recognises it (or takes ``layout=``), maps its contrast names onto the
project's (``T1``, ``T1c``, ``T2``, ``FLAIR``, ``PD``) and returns a :class:`~napari_medtrans.core.dataset.Dataset`
plus what it could not place. Nothing is guessed: a file that matches no rule of the layout is listed in
:attr:`IndexResult.unknown`, and a subject with two files for one contrast (two runs, two sessions) keeps the first
by name and lists the others in :attr:`IndexResult.duplicates`.

Layouts (the rules, with the datasets' own names):

``brats2021``
    one folder per subject, ``<ID>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair`` and ``_seg`` (the labels);
``brats2023``
    one folder per subject, ``<ID>-t1n.nii.gz`` (native T1), ``-t1c``, ``-t2w``, ``-t2f`` (FLAIR), ``-seg``;
``bids``
    ``sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>][_<entity>-<value>...]_<suffix>.nii[.gz]`` with
    suffixes ``T1w``, ``T2w``, ``FLAIR``, ``PDw``; a ``ce-`` entity on a T1w makes it T1c (contrast-enhanced).
    Sessions are separate subjects (``sub-01_ses-02``): their images are not co-registered across sessions;
``ixi``
    ``IXI<nnn>-<Site>-<nnnn>-<T1|T2|PD|MRA|DTI-nn>.nii.gz``, in one folder or one folder per contrast; MRA and
    DTI are not structural contrasts and are listed as unknown. IXI's T1 was acquired separately from the T2/PD
    dual echo, so its grid differs: :func:`check_alignment` reports it.

BraTS segmentations are recorded with their label scheme (``label_scheme`` in the manifest), so their values are
read as the project's tumour compartments (:data:`~napari_medtrans.core.dataset.LABEL_SCHEMES`).

Splits are by subject, from a hash of the subject id (:func:`~napari_medtrans.core.dataset.assign_split`), so
indexing the same folder twice gives the same split and adding subjects does not move the others.

Co-registration. Paired training takes slice ``k`` of each contrast of a subject as one example, which is only
right when the contrasts share one voxel grid. :func:`check_alignment` reads each image's header (no voxel
data) and compares its shape and affine with the subject's reference contrast (T1 when present); a subject whose
grids differ by more than ``tol_mm`` anywhere in the volume is reported, with the largest displacement in mm.
Unpaired methods do not need aligned contrasts. :func:`register_misaligned` fixes what the check finds: a rigid
registration onto the reference contrast, resampled onto its grid (:mod:`.registration`), and the manifest then
names the registered file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core.dataset import Dataset, Subject, assign_split
from ..core.errors import MedtransError, UnknownChoiceError

__all__ = ["LAYOUTS", "IndexResult", "Misalignment", "index_folder", "detect_layout", "check_alignment",
           "register_misaligned"]

LAYOUTS = ("brats2021", "brats2023", "bids", "ixi")

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.I)
_BRATS21 = re.compile(r"^(?P<id>.+)_(?P<c>t1|t1ce|t2|flair|seg)\.nii(\.gz)?$", re.I)
_BRATS21_MAP = {"t1": "T1", "t1ce": "T1c", "t2": "T2", "flair": "FLAIR", "seg": "labels"}
_BRATS23 = re.compile(r"^(?P<id>BraTS-[A-Za-z]+-\d+-\d+)-(?P<c>t1n|t1c|t2w|t2f|seg)\.nii(\.gz)?$", re.I)
_BRATS23_MAP = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR", "seg": "labels"}
_BIDS = re.compile(r"^(?P<stem>sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_(?P<suffix>T1w|T2w|FLAIR|PDw)"
                   r"\.nii(\.gz)?$")
_BIDS_MAP = {"T1w": "T1", "T2w": "T2", "FLAIR": "FLAIR", "PDw": "PD"}
_IXI = re.compile(r"^(?P<id>IXI\d+-[A-Za-z]+-\d+)-(?P<c>T1|T2|PD)\.nii(\.gz)?$")


class LayoutError(MedtransError):
    """A folder that does not follow the layout asked for (or any known layout)."""


@dataclasses.dataclass
class IndexResult:
    """What :func:`index_folder` found.

    Attributes
    ----------
    dataset : Dataset
        The manifest (paths relative to the indexed folder).
    layout : str
        The layout used.
    unknown : list of str
        NIfTI files (relative paths) that match no rule of the layout.
    duplicates : list of str
        Files of a contrast a subject already has (the first by name is kept).
    """

    dataset: Dataset
    layout: str
    unknown: list[str]
    duplicates: list[str]


@dataclasses.dataclass(frozen=True)
class Misalignment:
    """A subject whose contrast ``modality`` does not share the voxel grid of ``reference``."""

    subject: str
    modality: str
    reference: str
    reason: str
    max_mm: float | None

    def __str__(self) -> str:
        extra = f" (up to {self.max_mm:.2f} mm apart)" if self.max_mm is not None else ""
        return f"{self.subject}: {self.modality} vs {self.reference}: {self.reason}{extra}"


def _nifti_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames) if _NIFTI.search(f) and not f.startswith(".")]
    return out


def _match(layout: str, path: Path, root: Path) -> tuple[str, str] | None:
    """``(subject id, modality or "labels")`` of one file under ``layout``, or None."""
    name = path.name
    if layout == "brats2021":
        m = _BRATS21.match(name)
        return (m["id"], _BRATS21_MAP[m["c"].lower()]) if m else None
    if layout == "brats2023":
        m = _BRATS23.match(name)
        return (m["id"], _BRATS23_MAP[m["c"].lower()]) if m else None
    if layout == "bids":
        m = _BIDS.match(name)
        if not m or path.parent.name != "anat":
            return None
        entities = dict(part.split("-", 1) for part in m["stem"].split("_"))
        sid = f"sub-{entities['sub']}" + (f"_ses-{entities['ses']}" if "ses" in entities else "")
        modality = _BIDS_MAP[m["suffix"]]
        if modality == "T1" and "ce" in entities:
            modality = "T1c"
        return sid, modality
    if layout == "ixi":
        m = _IXI.match(name)
        return (m["id"], m["c"]) if m else None
    raise UnknownChoiceError("dataset layout", layout, LAYOUTS)


def detect_layout(root: str | os.PathLike, files: Iterable[Path] | None = None) -> str:
    """The layout most of the NIfTI files under ``root`` follow.

    Raises
    ------
    LayoutError
        No NIfTI file, or none that any layout recognises.
    """
    root = Path(root)
    files = list(files) if files is not None else _nifti_files(root)
    if not files:
        raise LayoutError("no NIfTI files (.nii, .nii.gz) in this folder", root)
    counts = {layout: sum(_match(layout, f, root) is not None for f in files) for layout in LAYOUTS}
    best = max(LAYOUTS, key=lambda k: counts[k])
    if counts[best] == 0:
        example = files[0].relative_to(root)
        raise LayoutError(
            f"no file follows a known layout ({', '.join(LAYOUTS)}); e.g. {example} (write a dataset.json by "
            "hand, see docs/datasets.md)", root)
    return best


def index_folder(root: str | os.PathLike, layout: str | None = None, *, name: str | None = None) -> IndexResult:
    """Index the dataset under ``root`` (see the module notes); ``layout`` None detects it.

    Raises
    ------
    LayoutError
        Nothing under ``root`` follows the layout, or no subject has an image.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError("not a folder", root)
    files = _nifti_files(root)
    if layout is None:
        layout = detect_layout(root, files)
    elif layout not in LAYOUTS:
        raise UnknownChoiceError("dataset layout", str(layout), LAYOUTS)
    found: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    duplicates: list[str] = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        hit = _match(layout, f, root)
        if hit is None:
            unknown.append(rel)
            continue
        sid, kind = hit
        entries = found.setdefault(sid, {})
        if kind in entries:
            duplicates.append(rel)
        else:
            entries[kind] = rel
    subjects = []
    for sid in sorted(found):
        entries = found[sid]
        labels = entries.pop("labels", None)
        if not entries:
            unknown.append(labels)  # a segmentation without any image
            continue
        subjects.append(Subject(id=sid, split=assign_split(sid), images=dict(sorted(entries.items())),
                                labels=labels))
    if not subjects:
        raise LayoutError(f"no subject with an image follows the {layout} layout", root)
    scheme = layout if layout.startswith("brats") else "medtrans"
    return IndexResult(Dataset(root=root, subjects=subjects, name=name or root.name, label_scheme=scheme), layout,
                       sorted(unknown), sorted(duplicates))


def _grid_corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    return (affine @ corners.T).T[:, :3]


def check_alignment(dataset: Dataset, *, reference: str = "T1", tol_mm: float = 0.01) -> list[Misalignment]:
    """Subjects whose contrasts do not share one voxel grid (headers only; see the module notes).

    The reference is ``reference`` when a subject has it, else its first contrast by name. Grids agree when the
    shapes match and every corner voxel of the volume lies within ``tol_mm`` of the reference's.
    """
    import nibabel as nib

    out: list[Misalignment] = []
    for s in dataset.subjects:
        mods = sorted(s.images)
        ref = reference if reference in s.images else mods[0]
        headers = {}
        for m in mods:
            p = dataset.path(s.images[m])
            try:
                img = nib.load(str(p))
            except Exception as exc:  # noqa: BLE001 - any unreadable header is reported for its file
                out.append(Misalignment(s.id, m, ref, f"header cannot be read ({exc})", None))
                continue
            headers[m] = (tuple(int(n) for n in img.shape[:3]), np.asarray(img.affine, dtype=np.float64))
        if ref not in headers:
            continue
        rshape, raff = headers[ref]
        for m, (shape, aff) in headers.items():
            if m == ref:
                continue
            if shape != rshape:
                d = float(np.abs(_grid_corners(shape, aff) - _grid_corners(rshape, raff)).max()) \
                    if len(shape) == 3 and len(rshape) == 3 else None
                out.append(Misalignment(s.id, m, ref, f"grid {shape} differs from {rshape}", d))
                continue
            d = float(np.linalg.norm(_grid_corners(shape, aff) - _grid_corners(rshape, raff), axis=1).max())
            if d > tol_mm:
                out.append(Misalignment(s.id, m, ref, "affines differ", d))
    return out


def _safe_name(text: str) -> str:
    """A file-name part made from ``text`` (ids come from file names: nothing else of them is trusted)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return name or "subject"


def register_misaligned(dataset: Dataset, problems: Iterable[Misalignment], out_dir: str | os.PathLike, *,
                        log=print) -> dict[str, dict[str, dict]]:
    """Rigidly register each misaligned contrast onto its subject's reference and point the manifest at the result.

    Each ``(subject, modality)`` of ``problems`` is aligned to the reference contrast
    (:func:`~napari_medtrans.training.registration.register_rigid`) and written, on the reference's grid, to
    ``out_dir/<subject>/<modality>.nii.gz``; ``dataset`` then names that file (an absolute path; the caller makes
    paths relative when it writes the manifest). Unreadable headers are left as they are. Returns, per subject and
    modality, the transform, the NMI before and after, and the original file.
    """
    from .registration import register_rigid

    out_dir = Path(out_dir)
    by_id = {s.id: s for s in dataset.subjects}
    done: dict[str, dict[str, dict]] = {}
    for p in problems:
        s = by_id.get(p.subject)
        if s is None or p.modality not in s.images or p.reference not in s.images or p.reason.startswith("header"):
            continue
        source = s.images[p.modality]
        target = out_dir / _safe_name(s.id) / f"{_safe_name(p.modality)}.nii.gz"
        result = register_rigid(dataset.path(source), dataset.path(s.images[p.reference]), target)
        s.images[p.modality] = str(target.resolve())
        done.setdefault(s.id, {})[p.modality] = {**result.to_dict(), "reference": p.reference, "source": source}
        log(f"  {s.id}: {p.modality} -> {p.reference}: NMI {result.nmi_before:.3f} -> {result.nmi_after:.3f}")
    return done
