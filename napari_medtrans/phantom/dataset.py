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

    Returns
    -------
    pathlib.Path
        ``out_dir/dataset.json``.
    """
    from ..core import io
    from ..core.dataset import Dataset, Subject

    n = int(n_subjects)
    if n < 1:
        raise ValueError(f'Argument "n_subjects" should be at least 1, got {n_subjects!r}.')
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MedtransError("exists and is not a folder; cannot write a dataset into it", out)
    splits = assign_splits(n, seed=seed, split=split)
    if dicom:
        from pydicom.uid import generate_uid

        from ..core.io.dicom_write import write_dicom_series
    subjects = []
    for k in range(n):
        sid = f"sub-{k:03d}"
        s_seed = subject_seed(seed, k)
        subj = make_subject(s_seed, shape=shape, anatomy=anatomy, snr=snr, tumour=has_tumour(s_seed, tumour),
                            registered=registered, gibbs=gibbs, mass_effect=mass_effect, contrasts=contrasts,
                            subject_id=sid)
        folder = out / sid
        folder.mkdir(parents=True, exist_ok=True)
        images = {}
        for c, vol in subj.images.items():
            io.write_nifti(vol, folder / f"{c}.nii.gz")
            images[c] = f"{sid}/{c}.nii.gz"
        io.write_nifti(subj.labels, folder / "labels.nii.gz")
        io.write_nifti(subj.brain_mask, folder / "brain_mask.nii.gz")
        params = dict(subj.params, dataset_seed=int(seed), index=k, split=splits[k])
        (folder / "phantom.json").write_text(json.dumps(params, indent=1))
        if dicom:
            study_uid = generate_uid(entropy_srcs=["napari-medtrans phantom", str(s_seed), sid, str(anatomy)])
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
        subjects.append(Subject(id=sid, split=splits[k], images=images, labels=f"{sid}/labels.nii.gz",
                                mask=f"{sid}/brain_mask.nii.gz"))
        if progress is not None:
            progress(k + 1, n)
    return Dataset(root=out, subjects=subjects, name=name).save(out / "dataset.json")
