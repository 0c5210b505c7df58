"""Phantom datasets: subjects written as NIfTI (optionally DICOM) with a manifest and a split by subject."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import MedtransError
from .acquisition import CONTRASTS
from .subject import check_seed as _check_seed
from .subject import make_subject

__all__ = ["subject_seed", "assign_splits", "has_tumour", "write_phantom_dataset"]


def subject_seed(base_seed: int, index: int) -> int:
    """Seed of subject ``index`` of a dataset with ``base_seed``; it does not depend on the dataset size."""
    return int(np.random.SeedSequence([_check_seed(base_seed), int(index)]).generate_state(1)[0])


def assign_splits(n_subjects: int, *, seed: int = 0, split: Sequence[float] = (0.6, 0.2, 0.2)) -> list[str]:
    """Split labels ("train", "val", "test") for subjects 0..n-1, deterministic in ``seed``.

    Counts follow the ratios (largest remainder); with three or more subjects and a non-zero ratio, the test
    and validation splits get at least one subject each and training keeps at least one.
    """
    ratios = [float(r) for r in split]
    if len(ratios) != 3 or any(r < 0 or not math.isfinite(r) for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f'Argument "split" should be three non-negative ratios (train, val, test), got {split!r}.')
    n = int(n_subjects)
    if n < 0:
        raise ValueError(f'Argument "n_subjects" should be >= 0, got {n_subjects!r}.')
    total = sum(ratios)
    exact = [n * r / total for r in ratios]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in (2, 1):  # test first, then val
            if ratios[i] > 0 and counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
        if ratios[0] > 0 and counts[0] == 0:
            donor = max(range(3), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[0] += 1
    labels = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    order = np.random.default_rng([_check_seed(seed), 99]).permutation(n)
    out = [""] * n
    for pos, k in enumerate(order):
        out[int(k)] = labels[pos]
    return out



def has_tumour(seed: int, tumour: bool | float) -> bool:
    """Whether the subject with ``seed`` gets a tumour: always, never, or with probability ``tumour``.

    The draw depends only on the subject's seed, so subject k is the same whatever the dataset size.
    """
    if isinstance(tumour, bool):
        return tumour
    p = float(tumour)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f'Argument "tumour" should be True, False or a fraction in [0, 1], got {tumour!r}.')
    return bool(np.random.default_rng([_check_seed(seed), 17]).random() < p)


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int,
    *,
    seed: int = 0,
    tumour: bool | float = False,
    dicom: bool = False,
    shape: Sequence[int] | None = None,
    anatomy: str = "mni152",
    snr: float | Mapping[str, float] | None = 30.0,
    registered: bool = False,
    gibbs: float | None = None,
    mass_effect: bool = True,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    progress: Callable[[int, int], None] | None = None,
    contrasts: Sequence[str] = CONTRASTS,
    name: str = "phantom",
    layout: str = "medtrans",
) -> Path:
    """Write ``n_subjects`` phantom subjects and a dataset manifest; return the manifest's path.

    Layout: ``out_dir/sub-000/{T1,T2,FLAIR,PD,T1c}.nii.gz``, ``labels.nii.gz``, ``brain_mask.nii.gz``,
    ``phantom.json`` (the subject's parameters), optionally ``dicom/<contrast>/`` (one series per contrast, one
    study per subject), and ``out_dir/dataset.json`` (:class:`napari_medtrans.core.dataset.Dataset`).

    Parameters
    ----------
    out_dir : path-like
        Output folder (created if needed).
    n_subjects : int
        Number of subjects (>= 1).
    seed : int
        Base seed. Subject k gets :func:`subject_seed` (seed, k), so it is the same whatever ``n_subjects`` is.
    tumour : bool or float
        A tumour in every subject (True), none (False), or in each subject with this probability (drawn from the
        subject's own seed, see :func:`has_tumour`).
    shape, anatomy, snr, registered, gibbs, mass_effect, contrasts
        As in :func:`~napari_medtrans.phantom.make_subject`.
    dicom : bool
        Also write each contrast as a DICOM series.
    split : 3 floats
        Train, validation and test ratios (see :func:`assign_splits`); the split is by subject.
    progress : callable, optional
        Called as ``progress(done, total)`` after each subject.
    name : str
        Dataset name written into the manifest.
    layout : {"medtrans", "brats2021", "brats2023", "bids"}
        File names: the project's (above), or those of a public dataset, so the paths a researcher's data takes
        (:mod:`napari_medtrans.training.layouts`) are exercised without it. ``brats*``: one folder per subject
        (``BraTS2021_00000`` / ``BraTS-GLI-00000-000``) with T1, T1c, T2 and FLAIR under BraTS's names and the
        tumour in BraTS's label values (no tissue labels, no brain mask, as BraTS ships); ``bids``:
        ``sub-000/anat/sub-000_T1w.nii.gz``, ``_ce-gadolinium_T1w``, ``_T2w``, ``_FLAIR``, ``_PDw`` (no labels).
        The manifest is then written by :func:`~napari_medtrans.training.layouts.index_folder`, and the split is
        its hash of the subject id; DICOM is not written.

    Returns
    -------
    pathlib.Path
        ``out_dir/dataset.json``.
    """
    from ..core.dataset import Dataset

    _check_layout(layout, dicom)
    n = int(n_subjects)
    if n < 1:
        raise ValueError(f'Argument "n_subjects" should be at least 1, got {n_subjects!r}.')
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MedtransError("exists and is not a folder; cannot write a dataset into it", out)
    splits = assign_splits(n, seed=seed, split=split)
    dicom_writers = _dicom_writers() if dicom else None
    subjects = []
    for k in range(n):
        sid = f"sub-{k:03d}"
        s_seed = subject_seed(seed, k)
        subj = make_subject(s_seed, shape=shape, anatomy=anatomy, snr=snr, tumour=has_tumour(s_seed, tumour),
                            registered=registered, gibbs=gibbs, mass_effect=mass_effect, contrasts=contrasts,
                            subject_id=sid)
        if layout != "medtrans":
            _write_in_layout(subj, out, k, layout, dict(subj.params, dataset_seed=int(seed), index=k))
            if progress is not None:
                progress(k + 1, n)
            continue
        params = dict(subj.params, dataset_seed=int(seed), index=k, split=splits[k])
        subjects.append(_write_medtrans_subject(subj, out, sid, params, dicom_writers,
                                                ["napari-medtrans phantom", str(s_seed), sid, str(anatomy)]))
        if progress is not None:
            progress(k + 1, n)
    if layout != "medtrans":
        from ..training.layouts import index_folder

        return index_folder(out, layout, name=name).dataset.save(out / "dataset.json")
    return Dataset(root=out, subjects=subjects, name=name).save(out / "dataset.json")


def _check_layout(layout: str, dicom: bool) -> None:
    """Refuse an unknown layout, and DICOM series outside the medtrans layout."""
    if layout not in ("medtrans", *_LAYOUT_NAMES):
        from ..core.errors import UnknownChoiceError

        raise UnknownChoiceError("phantom layout", str(layout), ["medtrans", *_LAYOUT_NAMES])
    if layout != "medtrans" and dicom:
        raise ValueError(f"DICOM series are written in the medtrans layout only, not {layout}")


def _dicom_writers():
    """pydicom's UID generator and the DICOM series writer, imported before any subject is made (so that a
    missing pydicom fails at once)."""
    from pydicom.uid import generate_uid

    from ..core.io.dicom_write import write_dicom_series

    return generate_uid, write_dicom_series


def _write_medtrans_subject(subj, out: Path, sid: str, params: dict, dicom_writers, study_entropy: list[str]):
    """One phantom subject in the project's layout (see :func:`write_phantom_dataset`): its NIfTI files,
    ``phantom.json`` and, with ``dicom_writers``, one DICOM series per contrast in one study whose UID comes from
    ``study_entropy``; returns the manifest's :class:`~napari_medtrans.core.dataset.Subject`."""
    from ..core import io
    from ..core.dataset import Subject

    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for c, vol in subj.images.items():
        io.write_nifti(vol, folder / f"{c}.nii.gz")
        images[c] = f"{sid}/{c}.nii.gz"
    io.write_nifti(subj.labels, folder / "labels.nii.gz")
    io.write_nifti(subj.brain_mask, folder / "brain_mask.nii.gz")
    (folder / "phantom.json").write_text(json.dumps(params, indent=1))
    if dicom_writers is not None:
        generate_uid, write_dicom_series = dicom_writers
        study_uid = generate_uid(entropy_srcs=study_entropy)
        for number, (c, vol) in enumerate(subj.images.items(), start=1):
            write_dicom_series(
                vol,
                folder / "dicom" / c,
                series_description=f"phantom {c}",
                patient_name=f"PHANTOM^{sid}",
                patient_id=sid,
                study_instance_uid=study_uid,
                series_number=number,
            )
    return Subject(id=sid, split=params["split"], images=images, labels=f"{sid}/labels.nii.gz",
                   mask=f"{sid}/brain_mask.nii.gz")


#: Per layout: subject folder name, file name per contrast, label file name, project label -> layout label.
_LAYOUT_NAMES = {
    "brats2021": (lambda k: f"BraTS2021_{k:05d}",
                  lambda sid, c: f"{sid}_{ {'T1': 't1', 'T1c': 't1ce', 'T2': 't2', 'FLAIR': 'flair'}[c] }.nii.gz",
                  lambda sid: f"{sid}_seg.nii.gz", {6: 1, 4: 2, 5: 4}),
    "brats2023": (lambda k: f"BraTS-GLI-{k:05d}-000",
                  lambda sid, c: f"{sid}-{ {'T1': 't1n', 'T1c': 't1c', 'T2': 't2w', 'FLAIR': 't2f'}[c] }.nii.gz",
                  lambda sid: f"{sid}-seg.nii.gz", {6: 1, 4: 2, 5: 3}),
    "bids": (lambda k: f"sub-{k:03d}",
             lambda sid, c: "anat/" + sid + {"T1": "_T1w", "T1c": "_ce-gadolinium_T1w", "T2": "_T2w",
                                             "FLAIR": "_FLAIR", "PD": "_PDw"}[c] + ".nii.gz",
             None, None),
}
_LAYOUT_CONTRASTS = {"brats2021": ("T1", "T1c", "T2", "FLAIR"), "brats2023": ("T1", "T1c", "T2", "FLAIR"),
                     "bids": ("T1", "T1c", "T2", "FLAIR", "PD")}


def _write_in_layout(subj, out: Path, k: int, layout: str, params: dict) -> None:
    """One phantom subject under a public dataset's file names (see :func:`write_phantom_dataset`)."""
    from ..core import io

    folder_name, image_name, seg_name, values = _LAYOUT_NAMES[layout]
    sid = folder_name(k)
    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    for c, vol in subj.images.items():
        if c in _LAYOUT_CONTRASTS[layout]:
            path = folder / image_name(sid, c)
            path.parent.mkdir(parents=True, exist_ok=True)
            io.write_nifti(vol, path)
    if seg_name is not None:
        lab = np.rint(subj.labels.data).astype(np.int32)
        seg = np.zeros_like(lab)
        for src, dst in values.items():
            seg[lab == src] = dst
        io.write_nifti(subj.labels.derive(seg.astype(np.float32)), folder / seg_name(sid))
    (folder / "phantom.json").write_text(json.dumps(params, indent=1))
