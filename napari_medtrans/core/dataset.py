"""Dataset manifests: which subjects, which modalities, which split.

A dataset is a folder with a manifest, ``dataset.json``::

    {"format": "medtrans-dataset/1", "name": "phantom",
     "subjects": [{"id": "sub-000", "split": "train",
                   "images": {"T1": "sub-000/T1.nii.gz", "T2": "sub-000/dicom/T2"},
                   "labels": "sub-000/labels.nii.gz", "mask": "sub-000/brain_mask.nii.gz"}]}

A JSON manifest may name its ``"label_scheme"``: ``"medtrans"`` (the default: the phantom's values, 1 CSF, 2 GM,
3 WM, 4 oedema, 5 enhancing rim, 6 necrosis), ``"brats2021"`` (1 necrotic core, 2 oedema, 4 enhancing) or
``"brats2023"`` (1, 2, 3 likewise); :meth:`Dataset.convert_labels` maps a label map onto the project's values, so
the tumour compartments mean the same everywhere (training, ``evaluate --by-tumour``, segment-eval).

or ``dataset.csv`` with columns ``subject, split, <one column per modality>, labels, mask`` (labels, mask and split
optional). Paths are relative to the manifest's folder and may name a NIfTI file or a DICOM folder. Subjects without
a split are assigned one deterministically from a hash of their id, so the split never depends on the order of
rows, and a subject never appears in two splits (splitting is by subject, never by slice).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import MedtransError, UnknownChoiceError
from .volume import normalise_modality

__all__ = ["Subject", "Dataset", "load_dataset", "SPLITS", "DatasetError", "LABEL_SCHEMES", "convert_labels"]

SPLITS = ("train", "val", "test")
FORMAT = "medtrans-dataset/1"
_RESERVED = {"subject", "id", "split", "labels", "mask"}

#: Label value maps onto the project's values (see the module notes); None: already the project's.
LABEL_SCHEMES: dict[str, dict[int, int] | None] = {
    "medtrans": None,
    "brats2021": {1: 6, 2: 4, 4: 5},  # necrotic core -> necrosis, oedema -> oedema, enhancing -> enhancing rim
    "brats2023": {1: 6, 2: 4, 3: 5},
}


class DatasetError(MedtransError):
    """A dataset manifest is missing, malformed, or names files that do not exist."""


@dataclasses.dataclass
class Subject:
    """One subject: images per modality (paths relative to the dataset root), optional labels and mask."""

    id: str
    split: str | None = None
    images: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: str | None = None
    mask: str | None = None


@dataclasses.dataclass
class Dataset:
    """A set of subjects under ``root``. Use :meth:`path` to resolve a subject's files."""

    root: Path
    subjects: list[Subject]
    name: str = "dataset"
    label_scheme: str = "medtrans"

    def __post_init__(self):
        self.root = Path(self.root)
        if self.label_scheme not in LABEL_SCHEMES:
            raise UnknownChoiceError("label scheme", str(self.label_scheme), list(LABEL_SCHEMES))
        seen = set()
        for s in self.subjects:
            if s.id in seen:
                raise DatasetError(f"subject id {s.id!r} appears twice", self.root)
            seen.add(s.id)
            s.images = {normalise_modality(k): v for k, v in s.images.items()}
            if s.split is not None and s.split not in SPLITS:
                raise UnknownChoiceError("split", s.split, SPLITS)

    @property
    def modalities(self) -> list[str]:
        """Modalities present in every subject."""
        if not self.subjects:
            return []
        common = set(self.subjects[0].images)
        for s in self.subjects[1:]:
            common &= set(s.images)
        return sorted(common)

    def path(self, rel: str) -> Path:
        """Absolute path of a file named in the manifest."""
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def split(self, name: str | Sequence[str] | None) -> list[Subject]:
        """Subjects of one split ("train", "val", "test"), of several, or all when None."""
        if name is None:
            return list(self.subjects)
        names = (name,) if isinstance(name, str) else tuple(name)
        for n in names:
            if n not in SPLITS:
                raise UnknownChoiceError("split", n, SPLITS)
        return [s for s in self.subjects if s.split in names]

    def convert_labels(self, labels, where: str | os.PathLike | None = None):
        """A label map of this dataset in the project's values (:func:`convert_labels` with its scheme)."""
        return convert_labels(labels, self.label_scheme, where or self.root)

    def to_dict(self) -> dict:
        doc = {
            "format": FORMAT,
            "name": self.name,
            "subjects": [
                {k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in self.subjects
            ],
        }
        if self.label_scheme != "medtrans":
            doc["label_scheme"] = self.label_scheme
        return doc

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the manifest as JSON (default ``root/dataset.json``)."""
        path = Path(path) if path is not None else self.root / "dataset.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    def check_files(self) -> None:
        """Raise :class:`DatasetError` naming the first file the manifest lists but that does not exist."""
        for s in self.subjects:
            for rel in list(s.images.values()) + [s.labels, s.mask]:
                if rel is not None and not self.path(rel).exists():
                    raise DatasetError(f"subject {s.id}: listed file {rel!r} does not exist", self.root)


def convert_labels(labels, scheme: str, where: str | os.PathLike | None = None):
    """A label map (integer-valued array) of ``scheme`` in the project's values (see :data:`LABEL_SCHEMES`).

    Raises
    ------
    UnknownChoiceError
        An unknown scheme.
    DatasetError
        The map holds a non-zero value the scheme does not know (names ``where``).
    """
    import numpy as np

    if scheme not in LABEL_SCHEMES:
        raise UnknownChoiceError("label scheme", str(scheme), list(LABEL_SCHEMES))
    table = LABEL_SCHEMES[scheme]
    if table is None:
        return labels
    unknown = [int(v) for v in np.unique(labels) if v != 0 and int(v) not in table]
    if unknown:
        raise DatasetError(f"label values {unknown} are not part of the {scheme} scheme "
                           f"({', '.join(str(k) for k in sorted(table))} and 0)", where)
    out = np.zeros_like(labels)
    for src, dst in table.items():
        out[labels == src] = dst
    return out


def assign_split(subject_id: str, ratios: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """Deterministic split for a subject id from a hash (stable across runs and row orders)."""
    h = int(hashlib.sha256(subject_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    total = float(sum(ratios))
    acc = 0.0
    for name, r in zip(SPLITS, ratios):
        acc += r / total
        if h <= acc:
            return name
    return SPLITS[-1]


def load_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset from a folder (with dataset.json or dataset.csv) or from a manifest file."""
    p = Path(path)
    if p.is_dir():
        for name in ("dataset.json", "dataset.csv"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise DatasetError("no dataset.json or dataset.csv manifest in this folder", path)
    if not p.exists():
        raise DatasetError("no such manifest", p)
    try:
        scheme = "medtrans"
        if p.suffix.lower() == ".json":
            subjects, name, scheme = _read_json(p)
        elif p.suffix.lower() == ".csv":
            subjects, name = _read_csv(p)
        else:
            raise DatasetError("manifest must be .json or .csv", p)
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"malformed manifest ({exc})", p) from exc
    for s in subjects:
        if s.split is None:
            s.split = assign_split(s.id)
    if not subjects:
        raise DatasetError("manifest lists no subjects", p)
    return Dataset(root=p.parent, subjects=subjects, name=name, label_scheme=scheme)


def _read_json(p: Path) -> tuple[list[Subject], str, str]:
    doc = json.loads(p.read_text())
    if doc.get("format", FORMAT) != FORMAT:
        raise DatasetError(f"unsupported manifest format {doc.get('format')!r} (expected {FORMAT})", p)
    subjects = []
    for i, row in enumerate(doc["subjects"]):
        if "id" not in row or not row.get("images"):
            raise DatasetError(f"subject entry {i} needs 'id' and 'images'", p)
        subjects.append(
            Subject(
                id=str(row["id"]),
                split=row.get("split"),
                images={str(k): str(v) for k, v in row["images"].items()},
                labels=row.get("labels"),
                mask=row.get("mask"),
            )
        )
    scheme = str(doc.get("label_scheme", "medtrans"))
    if scheme not in LABEL_SCHEMES:
        raise DatasetError(f"unknown label_scheme {scheme!r} (known: {', '.join(LABEL_SCHEMES)})", p)
    return subjects, str(doc.get("name", p.parent.name)), scheme


def _read_csv(p: Path) -> tuple[list[Subject], str]:
    subjects = []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not ({"subject", "id"} & set(reader.fieldnames)):
            raise DatasetError("CSV manifest needs a 'subject' column", p)
        for row in reader:
            sid = (row.get("subject") or row.get("id") or "").strip()
            if not sid:
                continue
            images = {k: v.strip() for k, v in row.items() if k and k.lower() not in _RESERVED and v and v.strip()}
            subjects.append(
                Subject(
                    id=sid,
                    split=(row.get("split") or "").strip() or None,
                    images=images,
                    labels=(row.get("labels") or "").strip() or None,
                    mask=(row.get("mask") or "").strip() or None,
                )
            )
    return subjects, p.parent.name
