"""Slice datasets built from volumes, for training 2D translators.

Each subject's volumes are read once (NIfTI file or DICOM folder through :func:`napari_medtrans.core.io.load`),
normalised per volume to [-1, 1] from their own robust range (:func:`~napari_medtrans.core.preprocess.robust_range`
over voxels > 0, exactly as the engine normalises an input at inference time), and cut into slices along ``axis``.
A slice ``k`` along axis 2 is ``data[:, :, k]``: rows are ``i``, columns are ``j`` (no transposition).

Items are dicts of tensors ``{"input": [C_in, H, W], "target": [C_out, H, W], "mask": [1, H, W], "subject": id,
"index": k}``; ``mask`` is the brain mask slice when the manifest names one, else the foreground of the images.
Slices whose foreground covers less than ``min_foreground`` of the slice are skipped. Slices are padded with the
background value (-1; 0 for the mask) to ``size`` or to the next multiple of ``size_multiple``, centred; a slice
larger than ``size`` is cropped (centred, or at a random place when augmenting). Augmentation is the paper-style
one: random horizontal/vertical flips and 90-degree rotations, the same for input, target and mask
(``augment="dihedral"``, or True). ``augment="lr"`` flips along the patient's left-right axis only (read from each
subject's affine): for data in one standard orientation (the MNI-based benchmark phantom), where a structure
lies and which way it points tells what it is, the dihedral set teaches the model to ignore exactly that.

Tissue labels. With ``labels=True`` each subject's label map (``Subject.labels``: integers, e.g. the phantom's 0
background, 1 CSF, 2 GM, 3 WM, 4-6 tumour) is read too, and items carry ``"labels"`` (and ``"target_labels"``):
``[1, H, W]`` int64 slices cut, cropped, padded (with 0) and flipped/rotated exactly as their image slices, never
interpolated. Every subject then needs a label map on the grid of its images.

Target normalisation. ``target_norm="volume"`` (default) maps each target volume from its own robust range, like
the inputs. ``target_norm="dataset"`` maps every target volume from one range per modality, the median of the
targets' robust ranges with :data:`TARGET_HEADROOM` above the upper percentile: exactly the statistics written
into the checkpoint, with which the engine maps network outputs back to intensities. The network then learns the
target contrast's intensity scale itself instead of each volume's scale, which pays off where that scale is
reproducible (one scanner protocol, the phantom). The headroom is there because targets and outputs are clipped
to the range: small bright structures (CSF on T2, enhancing vessels on T1c) can hold less than 0.5 % of a large
field of view, so the 99.5th percentile falls below them (on the benchmark phantom, T2's ventricular CSF reaches
1.1 times it) and a range ending there would clip them in training and in every output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ..core import io
from ..core.dataset import Dataset, DatasetError, load_dataset
from ..core.errors import GeometryMismatchError, UnknownChoiceError
from ..core.preprocess import DEFAULT_PERCENTILES, FOREGROUND_LEVEL, IntensityRange, normalise, robust_range
from ..translators.blocks import _as_tuple

__all__ = ["PairedSliceDataset", "UnpairedSliceDataset", "normalisation_stats"]

#: Augmentation sets: every flip and 90-degree rotation, or left-right flips only.
AUGMENTATIONS = ("dihedral", "lr")


@dataclass
class _SubjectSlices:
    """One subject's volumes as read (or None when not cached), robust ranges and usable slice indices."""

    id: str
    arrays: dict[str, np.ndarray] | None
    mask: np.ndarray | None
    labels: np.ndarray | None
    has_mask: bool
    indices: list[int]
    ranges: dict[str, IntensityRange]
    shape: tuple[int, int]
    #: Tensor dim (-2 or -1) of a slice along the patient's left-right axis; None when slices are sagittal.
    lr_dim: int | None = None


def _as_dataset(dataset: Dataset | str | os.PathLike) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset)


def _slice(a: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Slice ``k`` along ``axis`` as a C-contiguous copy (basic indexing: ``np.take`` on the Fortran-ordered
    volumes nibabel returns was 500 times slower, 0.12 s of every training step at batch 8)."""
    index = [slice(None)] * a.ndim
    index[axis] = k
    return np.ascontiguousarray(a[tuple(index)])


def _fit(a: torch.Tensor | None, size: tuple[int, int], value: float,
         offset: tuple[int, int] | None) -> torch.Tensor | None:
    """Crop ``[C, H, W]`` to at most ``size`` (at ``offset``, else centred), then pad it to ``size`` (centred).

    Integer tensors (label maps) keep their dtype; None passes through."""
    if a is None:
        return None
    _, h, w = a.shape
    th, tw = size
    if h > th or w > tw:
        ch, cw = min(h, th), min(w, tw)
        oy = (h - ch) // 2 if offset is None else min(offset[0], h - ch)
        ox = (w - cw) // 2 if offset is None else min(offset[1], w - cw)
        a = a[:, oy : oy + ch, ox : ox + cw]
        h, w = ch, cw
    if (h, w) == (th, tw):
        return a
    top, left = (th - h) // 2, (tw - w) // 2
    return torch.nn.functional.pad(a, (left, tw - w - left, top, th - h - top), value=value)


def _lr_dim(affine: np.ndarray, axis: int) -> int | None:
    """The dim (-2 rows, -1 columns) of a slice along ``axis`` whose voxel axis runs most nearly left-right."""
    voxel_axis = int(np.argmax(np.abs(np.asarray(affine, dtype=np.float64)[0, :3])))
    if voxel_axis == axis:
        return None
    return -2 if voxel_axis == min(a for a in range(3) if a != axis) else -1


class _SlicePool:
    """Loads the subjects of one split for a set of modalities and indexes their usable slices."""

    def __init__(self, ds: Dataset, subjects, modalities: tuple[str, ...], *, axis: int, cache: bool,
                 min_foreground: float, label: str, labels: bool = False):
        self.ds = ds
        self.labels = bool(labels)
        self.modalities = modalities
        self.axis = axis
        self.cache = cache
        self.min_foreground = float(min_foreground)
        self.subjects: list[_SubjectSlices] = []
        self.items: list[tuple[int, int]] = []  # (subject position, slice index)
        #: Modalities normalised with one fixed range instead of each volume's own (see ``target_norm``).
        self.fixed: dict[str, IntensityRange] = {}
        for s in subjects:
            missing = [m for m in modalities if m not in s.images]
            if missing:
                raise DatasetError(
                    f"subject {s.id} has no {', '.join(missing)} image (it has {', '.join(sorted(s.images)) or 'none'})",
                    ds.root,
                )
            if self.labels and not s.labels:
                raise DatasetError(
                    f"subject {s.id} of dataset {ds.name!r} has no label map, but labels were asked for "
                    f"(give it a \"labels\" entry in the manifest, or train without labels)", ds.root,
                )
        for s in subjects:
            arrays, mask, labmap, ranges, affine = self._load(s)
            fg = mask if mask is not None else self._foreground(arrays, ranges)
            fraction = fg.astype(np.float32).mean(axis=tuple(a for a in range(3) if a != axis))
            indices = [int(k) for k in np.flatnonzero(fraction >= self.min_foreground)]
            shape = tuple(n for a, n in enumerate(fg.shape) if a != axis)
            self.subjects.append(_SubjectSlices(s.id, arrays if cache else None, mask if cache else None,
                                                labmap if cache else None, mask is not None, indices, ranges,
                                                shape, _lr_dim(affine, axis)))
            self.items.extend((len(self.subjects) - 1, k) for k in indices)
        self._last: tuple[int, dict, np.ndarray | None, np.ndarray | None] | None = None
        if not subjects:
            raise DatasetError(f"{label} has no subjects with {'+'.join(modalities)} images", ds.root)
        if not self.items:
            raise DatasetError(
                f"{label}: no slice of {len(self.subjects)} subject(s) has a foreground of at least "
                f"{self.min_foreground:.0%} (lower min_foreground, or check the brain masks)", ds.root
            )

    def _load(self, subject) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None,
                                      dict[str, IntensityRange], np.ndarray]:
        arrays, ranges, ref = {}, {}, None
        for m in self.modalities:
            path = self.ds.path(subject.images[m])
            vol = io.load(path, modality=m).check_finite()
            if ref is None:
                ref = vol
            elif not vol.same_grid(ref):
                raise GeometryMismatchError(
                    f"subject {subject.id}: {m} has shape {vol.shape} and another grid than "
                    f"{self.modalities[0]} {ref.shape}; paired slices need volumes on one grid",
                    path,
                )
            ranges[m] = robust_range(vol.data)
            arrays[m] = vol.data
        mask = None
        if subject.mask:
            path = self.ds.path(subject.mask)
            mvol = io.load(path)
            if mvol.shape != ref.shape:
                raise GeometryMismatchError(
                    f"subject {subject.id}: brain mask has shape {mvol.shape}, images have {ref.shape}", path
                )
            mask = mvol.data > 0.5
        labmap = self._load_labels(subject, ref.shape) if self.labels else None
        return arrays, mask, labmap, ranges, ref.affine

    def _load_labels(self, subject, shape: tuple[int, ...]) -> np.ndarray:
        """The subject's label map as int32, checked to be integers on the images' grid."""
        path = self.ds.path(subject.labels)
        data = io.load(path).check_finite().data
        if data.shape != tuple(shape):
            raise GeometryMismatchError(
                f"subject {subject.id}: label map has shape {data.shape}, images have {tuple(shape)}", path
            )
        lab = np.rint(data)
        if not np.array_equal(lab, data):
            raise DatasetError(f"subject {subject.id}: the label map holds non-integer values", path)
        if lab.size and (lab.min() < np.iinfo(np.int32).min or lab.max() > np.iinfo(np.int32).max):
            raise DatasetError(f"subject {subject.id}: label values do not fit 32-bit integers", path)
        return self.ds.convert_labels(lab.astype(np.int32), path)

    @staticmethod
    def _foreground(arrays: dict[str, np.ndarray], ranges: dict[str, IntensityRange]) -> np.ndarray:
        """Voxels above the background level of some image (each normalised from its own range)."""
        return np.any(np.stack([normalise(a, ranges[m]) > FOREGROUND_LEVEL for m, a in arrays.items()]), axis=0)

    def __len__(self) -> int:
        return len(self.items)

    def _volumes(self, pos: int) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
        subj = self.subjects[pos]
        if subj.arrays is not None:
            return subj.arrays, subj.mask, subj.labels
        if self._last is not None and self._last[0] == pos:
            return self._last[1], self._last[2], self._last[3]
        # Not cached: keep only the last subject read (slices of one subject tend to come in runs).
        s = next(x for x in self.ds.subjects if x.id == subj.id)
        arrays, mask, labmap, _, _ = self._load(s)
        self._last = (pos, arrays, mask, labmap)
        return arrays, mask, labmap

    def lr_dim(self, item: int) -> int | None:
        """The tensor dim of item ``item``'s slice that runs left-right (None for sagittal slices)."""
        return self.subjects[self.items[item][0]].lr_dim

    def slice(self, item: int) -> tuple[str, int, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(subject id, slice index, images [C, H, W] in [-1, 1], mask [1, H, W], labels [1, H, W] int64 or
        None when the pool has no labels) of one item, unpadded."""
        pos, k = self.items[item]
        arrays, mask, labmap = self._volumes(pos)
        ranges = self.subjects[pos].ranges
        raw = {m: _slice(arrays[m], self.axis, k) for m in self.modalities}
        img = np.stack([normalise(raw[m], self.fixed.get(m, ranges[m])) for m in self.modalities])
        if mask is not None:
            fg = _slice(mask, self.axis, k)[None].astype(np.float32)
        else:
            fg = self._foreground(raw, ranges)[None].astype(np.float32)
        lab = None if labmap is None else torch.from_numpy(_slice(labmap, self.axis, k)[None].astype(np.int64))
        return self.subjects[pos].id, k, torch.from_numpy(img), torch.from_numpy(fg), lab

    def slice_shape(self) -> tuple[int, int]:
        """In-plane shape of the slices (the largest over subjects)."""
        if not self.subjects:
            return (0, 0)
        return (max(s.shape[0] for s in self.subjects), max(s.shape[1] for s in self.subjects))


def normalisation_stats(ranges: Sequence[dict[str, IntensityRange]], inputs: Sequence[str],
                        outputs: Sequence[str]) -> dict:
    """Checkpoint statistics from per-volume robust ranges: the median ``lo``/``hi`` per modality.

    Returns ``{"scheme": "percentile", "lower_pct", "upper_pct", "inputs": {m: {"lo", "hi"}},
    "outputs": {m: {"lo", "hi"}}, "n_volumes": {m: n}}``; the engine maps network outputs into the output
    modality's ``[lo, hi]``. The datasets add ``"targets"``: how targets were normalised ("volume"/"dataset").
    """
    def med(m):
        vals = [r[m] for r in ranges if m in r]
        return {"lo": float(np.median([v.lo for v in vals])), "hi": float(np.median([v.hi for v in vals]))}

    counts = {m: sum(1 for r in ranges if m in r) for m in (*inputs, *outputs)}
    return {
        "scheme": "percentile",
        "lower_pct": float(DEFAULT_PERCENTILES[0]),
        "upper_pct": float(DEFAULT_PERCENTILES[1]),
        "inputs": {m: med(m) for m in inputs if counts[m]},
        "outputs": {m: med(m) for m in outputs if counts[m]},
        "n_volumes": counts,
    }


TARGET_NORMS = ("volume", "dataset")

#: With ``target_norm="dataset"``, the output range reaches this factor of the median robust span above ``lo``.
TARGET_HEADROOM = 1.25


class _SliceDatasetBase(TorchDataset):
    """Shared geometry, target normalisation and augmentation of the slice datasets."""

    def _setup_source(self, dataset, split, inputs, outputs, axis: int) -> None:
        """Check ``axis``, then set ``dataset`` (loaded when a path), ``split``, ``inputs``, ``outputs``, ``axis``."""
        if axis not in (0, 1, 2):
            raise ValueError(f'Argument "axis" must be 0, 1 or 2, got {axis!r}.')
        self.dataset = _as_dataset(dataset)
        self.split = split
        self.inputs = _as_tuple(inputs, "inputs")
        self.outputs = _as_tuple(outputs, "outputs")
        self.axis = axis

    def _setup_targets(self, pool: _SlicePool, target_norm) -> None:
        """Apply ``target_norm`` to the output modalities of ``pool`` and record it in ``self.normalisation``."""
        if isinstance(target_norm, str) and target_norm == "volume":
            self.target_norm = "volume"
            self.normalisation["targets"] = "volume"
            return
        if isinstance(target_norm, str) and target_norm == "dataset":
            stats = {m: {"lo": r["lo"], "hi": r["lo"] + TARGET_HEADROOM * (r["hi"] - r["lo"])}
                     for m, r in self.normalisation["outputs"].items()}
            self.normalisation["target_headroom"] = TARGET_HEADROOM
        elif isinstance(target_norm, Mapping):
            stats = target_norm
        else:
            raise UnknownChoiceError("target normalisation", str(target_norm), TARGET_NORMS)
        fixed = {}
        for m in self.outputs:
            try:
                fixed[m] = IntensityRange(lo=float(stats[m]["lo"]), hi=float(stats[m]["hi"]))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f'Argument "target_norm" needs {{"lo": ..., "hi": ...}} for {m}, got {stats!r}.') from None
            if not fixed[m].hi > fixed[m].lo:
                raise ValueError(f'Argument "target_norm" needs lo < hi for {m}, got {stats[m]!r}.')
        pool.fixed.update(fixed)
        self.target_norm = "dataset"
        self.normalisation["outputs"] = {m: {"lo": r.lo, "hi": r.hi} for m, r in fixed.items()}
        self.normalisation["targets"] = "dataset"

    def _setup_geometry(self, shape: tuple[int, int], size, size_multiple: int, augment: bool | str) -> None:
        if size is not None:
            if len(size) != 2 or any(int(s) < 1 for s in size):
                raise ValueError(f'Argument "size" must be (H, W) with positive integers, got {size!r}.')
            size = (int(size[0]), int(size[1]))
            if size[0] % size_multiple or size[1] % size_multiple:
                raise ValueError(f'Argument "size" {size} must be a multiple of size_multiple={size_multiple}.')
        else:
            size = tuple(-(-s // size_multiple) * size_multiple for s in shape)
        self.size: tuple[int, int] = size  # type: ignore[assignment]
        if augment is True:
            augment = "dihedral"
        if augment not in (False, None, *AUGMENTATIONS):
            raise UnknownChoiceError("augmentation", str(augment), AUGMENTATIONS)
        #: "dihedral", "lr" or None (no augmentation, centred crops).
        self.augmentation: str | None = augment or None
        self.augment = self.augmentation is not None

    def _offset(self, shape: tuple[int, int]) -> tuple[int, int] | None:
        if not self.augment:
            return None
        return tuple(int(torch.randint(0, max(s - t, 0) + 1, (1,))) for s, t in zip(shape, self.size))

    def _augment(self, *tensors: torch.Tensor | None, lr_dim: int | None = None) -> list[torch.Tensor | None]:
        """The same random flips and 90-degree rotation for every tensor ``[C, H, W]`` (None passes through);
        with ``augmentation="lr"`` a random flip along ``lr_dim`` only."""
        if not self.augment:
            return list(tensors)
        if self.augmentation == "lr":
            flips = [lr_dim] if lr_dim is not None and bool(torch.rand(1) < 0.5) else []
            k = 0
        else:
            flips = [d for d, on in zip((-2, -1), torch.rand(2) < 0.5) if on]
            square = self.size[0] == self.size[1]
            k = int(torch.randint(0, 4 if square else 2, (1,))) * (1 if square else 2)
        out = []
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            if flips:
                t = torch.flip(t, flips)
            if k:
                t = torch.rot90(t, k, dims=(-2, -1))
            out.append(t.contiguous())
        return out


class PairedSliceDataset(_SliceDatasetBase):
    """Paired 2D slices (input and target from the same subject and slice) for supervised translation.

    Parameters
    ----------
    dataset : Dataset or path-like
        A :class:`~napari_medtrans.core.dataset.Dataset` or a folder / manifest for ``load_dataset``.
    split : str or sequence of str or None
        Which subjects ("train", "val", "test"; None for all).
    inputs, outputs : sequence of str
        Modalities stacked as input and target channels.
    axis : int
        Slicing axis of the voxel array (2 = the k axis, axial for RAS-like data).
    size : (int, int) or None
        Pad (or crop) slices to this size; None pads to the next multiple of ``size_multiple``.
    size_multiple : int
        The model's ``spec.size_multiple``, used when ``size`` is None.
    augment : bool or {"dihedral", "lr"}
        Random flips and 90-degree rotations (True, "dihedral"), or random left-right flips only ("lr"); either
        crops at random places when slices exceed ``size``.
    cache : bool
        Keep the normalised volumes in memory (otherwise reread a subject's files when its slices are needed).
    min_foreground : float
        Skip slices whose foreground (brain mask, else non-background voxels) is below this fraction.
    target_norm : {"volume", "dataset"} or mapping
        Normalise each target volume from its own range, or all from the median range of this dataset's
        targets, or from given ranges ``{modality: {"lo", "hi"}}`` (a training set's ``normalisation["outputs"]``,
        for its validation set). See the module notes.
    labels : bool
        Also return each slice's tissue labels as ``"labels"`` (and the same map as ``"target_labels"``: the
        target is the same slice): ``[1, H, W]`` int64, geometrically identical to the images. Every subject
        then needs a label map (``Subject.labels``).

    Attributes
    ----------
    normalisation : dict
        Statistics for the checkpoint (see :func:`normalisation_stats`).
    """

    def __init__(self, dataset: Dataset | str | os.PathLike, split: str | Sequence[str] | None = "train", *,
                 inputs: Sequence[str] | str = ("T1",), outputs: Sequence[str] | str = ("T2",), axis: int = 2,
                 size: tuple[int, int] | None = None, size_multiple: int = 1, augment: bool | str = False,
                 cache: bool = True, min_foreground: float = 0.05, target_norm: str | Mapping = "volume",
                 labels: bool = False):
        self._setup_source(dataset, split, inputs, outputs, axis)
        subjects = self.dataset.split(split)
        self.pool = _SlicePool(self.dataset, subjects, tuple(dict.fromkeys(self.inputs + self.outputs)),
                               axis=axis, cache=cache, min_foreground=min_foreground,
                               label=f"split {split!r}", labels=labels)
        self.labels = bool(labels)
        self._in = [self.pool.modalities.index(m) for m in self.inputs]
        self._out = [self.pool.modalities.index(m) for m in self.outputs]
        self._setup_geometry(self.pool.slice_shape(), size, int(size_multiple), augment)
        self.normalisation = normalisation_stats([s.ranges for s in self.pool.subjects], self.inputs, self.outputs)
        self._setup_targets(self.pool, target_norm)

    @property
    def subject_ids(self) -> list[str]:
        """Ids of the subjects that contribute slices."""
        return [s.id for s in self.pool.subjects]

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < len(self):
            raise IndexError(f"slice {item} out of range for {len(self)} slices")
        sid, k, img, mask, lab = self.pool.slice(item)
        offset = self._offset(img.shape[-2:])
        img = _fit(img, self.size, -1.0, offset)
        mask = _fit(mask, self.size, 0.0, offset)
        lab = _fit(lab, self.size, 0, offset)
        img, mask, lab = self._augment(img, mask, lab, lr_dim=self.pool.lr_dim(item))
        out = {"input": img[self._in], "target": img[self._out], "mask": mask, "subject": sid, "index": k}
        if lab is not None:
            out["labels"] = out["target_labels"] = lab
        return out


class UnpairedSliceDataset(_SliceDatasetBase):
    """Unpaired 2D slices: each input slice comes with a target slice of another subject.

    Inputs are drawn from subjects that have all ``inputs`` modalities, targets from subjects that have all
    ``outputs`` modalities. With ``disjoint=True`` the subjects (sorted by id) are halved: the first half gives
    only inputs, the second only targets, so the model never sees both contrasts of one subject. Otherwise the
    target slice of item ``n`` is drawn at random, from another subject whenever there is one.

    Items: ``{"input", "target", "mask" (of the input slice), "target_mask", "subject", "target_subject",
    "index", "target_index"}``, with ``labels=True`` also ``"labels"`` and ``"target_labels"`` (``[1, H, W]``
    int64 tissue labels of the input and of the target slice, cropped, padded and augmented exactly as their
    images; every subject then needs a label map). Other parameters as for :class:`PairedSliceDataset`.
    """

    def __init__(self, dataset: Dataset | str | os.PathLike, split: str | Sequence[str] | None = "train", *,
                 inputs: Sequence[str] | str = ("T1",), outputs: Sequence[str] | str = ("T2",), axis: int = 2,
                 size: tuple[int, int] | None = None, size_multiple: int = 1, augment: bool | str = False,
                 cache: bool = True, min_foreground: float = 0.05, disjoint: bool = False,
                 target_norm: str | Mapping = "volume", labels: bool = False):
        self._setup_source(dataset, split, inputs, outputs, axis)
        subjects = sorted(self.dataset.split(split), key=lambda s: s.id)
        src = [s for s in subjects if all(m in s.images for m in self.inputs)]
        dst = [s for s in subjects if all(m in s.images for m in self.outputs)]
        if disjoint:
            both = [s for s in subjects if s in src and s in dst]
            half = set(s.id for s in both[: (len(both) + 1) // 2])
            src = [s for s in src if s.id in half or s not in dst]
            dst = [s for s in dst if s.id not in half]
        if not src or not dst:
            raise DatasetError(
                f"split {split!r} needs subjects with {'+'.join(self.inputs)} and subjects with "
                f"{'+'.join(self.outputs)} images", self.dataset.root,
            )
        self.labels = bool(labels)
        self.source = _SlicePool(self.dataset, src, self.inputs, axis=axis, cache=cache,
                                 min_foreground=min_foreground, label=f"split {split!r} (inputs)", labels=labels)
        self.target = _SlicePool(self.dataset, dst, self.outputs, axis=axis, cache=cache,
                                 min_foreground=min_foreground, label=f"split {split!r} (targets)", labels=labels)
        shape = tuple(max(a, b) for a, b in zip(self.source.slice_shape(), self.target.slice_shape()))
        self._setup_geometry(shape, size, int(size_multiple), augment)
        self.normalisation = normalisation_stats(
            [s.ranges for s in self.source.subjects + self.target.subjects], self.inputs, self.outputs
        )
        self._setup_targets(self.target, target_norm)
        # Target items grouped by subject so that "another subject" is one draw.
        self._by_subject = [[n for n, (p, _) in enumerate(self.target.items) if p == pos]
                            for pos in range(len(self.target.subjects))]

    @property
    def subject_ids(self) -> list[str]:
        """Ids of the subjects that contribute input or target slices, sorted."""
        return sorted({s.id for s in self.source.subjects + self.target.subjects})

    def __len__(self) -> int:
        return len(self.source)

    def _target_item(self, source_id: str) -> int:
        others = [pos for pos, s in enumerate(self.target.subjects) if s.id != source_id and self._by_subject[pos]]
        if not others:
            return int(torch.randint(0, len(self.target), (1,)))
        pos = others[int(torch.randint(0, len(others), (1,)))]
        group = self._by_subject[pos]
        return group[int(torch.randint(0, len(group), (1,)))]

    def __getitem__(self, item: int) -> dict:
        if not 0 <= item < len(self):
            raise IndexError(f"slice {item} out of range for {len(self)} slices")
        sid, k, x, xm, xl = self.source.slice(item)
        titem = self._target_item(sid)
        tid, tk, y, ym, yl = self.target.slice(titem)
        ox, oy = self._offset(x.shape[-2:]), self._offset(y.shape[-2:])
        x, xm, xl = _fit(x, self.size, -1.0, ox), _fit(xm, self.size, 0.0, ox), _fit(xl, self.size, 0, ox)
        y, ym, yl = _fit(y, self.size, -1.0, oy), _fit(ym, self.size, 0.0, oy), _fit(yl, self.size, 0, oy)
        x, xm, xl = self._augment(x, xm, xl, lr_dim=self.source.lr_dim(item))
        y, ym, yl = self._augment(y, ym, yl, lr_dim=self.target.lr_dim(titem))
        out = {"input": x, "target": y, "mask": xm, "target_mask": ym, "subject": sid, "target_subject": tid,
               "index": k, "target_index": tk}
        if self.labels:
            out["labels"], out["target_labels"] = xl, yl
        return out
