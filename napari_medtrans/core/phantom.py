"""Paired multi-contrast brain phantom: T1w, T2w, FLAIR, PD and post-contrast T1w with tissue and tumour labels.

A subject is built in four steps, each drawn from its own random stream of the seed (so turning tumours, noise
or a contrast on or off never changes the rest of the subject):

1. **Anatomy** as partial-volume tissue fractions on the output grid. ``"procedural"`` builds a head from
   analytic shapes in millimetres: scalp (fat), skull (cortical bone) and subarachnoid CSF following the brain's
   outline, neck muscle, a cerebrum whose cortex is folded along the zero set of a smooth random field on the
   sphere (gyri and sulci of random depth, a cortical ribbon about 2.7 mm thick), an interhemispheric fissure
   down to the corpus callosum, Sylvian fissures, lateral/third/fourth ventricles, caudate, putamen and thalamus
   (deep grey matter), a foliated cerebellum and the brainstem. It
   needs no data, works at any grid size and, for a given seed, gives the same head at every resolution.
   ``"mni152"`` uses the ICBM 2009a MNI152 grey-matter, white-matter and brain-mask templates that ship inside
   nilearn (1 mm, offline): CSF = brain mask - GM - WM, with the probabilities used as partial-volume fractions,
   plus a 3 mm extra-cerebral CSF layer, a 6 mm skull and a 6 mm scalp grown around the mask.
2. **Per-subject variability.** A small random affine (scale ~3 %, rotation ~2 degrees, shift ~2 mm) and a
   smooth random displacement field (RMS 2 mm, a few mm at most, correlation ~30 mm) applied to the anatomy
   before any signal is computed; per-subject jitter of every tissue's T1, T2 and PD (3 % SD); a smooth
   within-tissue texture (T1 and PD vary by ~2 % over ~4 mm); for the procedural head also sulcal width and
   ventricle size (a random "atrophy" level).
3. **Optional tumour** inside the white matter: necrotic core (label 6), enhancing rim (label 5) and
   peritumoral edema (label 4, grown into the white matter of its hemisphere, sparing cortex and CSF), with
   irregular random boundaries, random size and position per seed.
4. **Signal synthesis** from the MR signal equations for each tissue fraction, summed per voxel (partial
   volume), times a smooth multiplicative receive bias field, plus Rician noise.

Signal equations (times in ms)
------------------------------
* spin echo:          ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``
* inversion recovery: ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` (the signed signals of the
  tissues in a voxel are summed before the magnitude is taken)

=========  ==========================  =====  =====  ===================================================
contrast   sequence                     TR     TE     TI
=========  ==========================  =====  =====  ===================================================
T1         spin echo (T1-weighted)        500     10  -
T2         spin echo (T2-weighted)       5000    100  -
FLAIR      inversion recovery (SE)       9000    140  2480: nulls CSF, ``TI = T1_CSF ln(2 / (1 + exp(-TR/T1_CSF)))``
PD         spin echo (PD-weighted)       7000     12  -
T1c        spin echo, as T1, after gadolinium (see below)
=========  ==========================  =====  =====  ===================================================

Tissue values at 3 T (T1 ms, T2 ms, PD relative to pure water)
--------------------------------------------------------------
=================  =====  =====  ====  ======================================================================
tissue              T1     T2     PD   source
=================  =====  =====  ====  ======================================================================
white matter         960     75  0.70  T1/T2: mean of Wansapura et al. 1999 (832 / 79.6 ms, frontal WM) and
                                       Stanisz et al. 2005 (1084 / 69 ms), rounded
grey matter         1580    105  0.80  mean of Wansapura et al. 1999 (1331 / 110 ms, cortical GM) and
                                       Stanisz et al. 2005 (1820 / 99 ms), rounded
deep grey matter    1330     93  0.76  60 % GM + 40 % WM: the caudate, putamen and thalamus lie between GM and
                                       WM in the studies reviewed by Bojorquez et al. 2017
CSF                 4300   1900  1.00  subarachnoid CSF at 3 T, 4309 / 1886 ms ("Quantification of T1 and T2
                                       of subarachnoid CSF", PMC10696635), rounded
scalp (fat)          380    130  0.90  subcutaneous fat at 3 T (Gold et al. 2004, AJR), approximate
neck (muscle)       1420     32  0.80  skeletal muscle at 3 T (Gold et al. 2004, AJR), approximate
skull (bone)         250    0.5  0.15  cortical bone: T2 well below 1 ms, so it is dark on every contrast here;
                                       nominal values
edema               1800    200  0.86  peritumoral (vasogenic) edema: T1 and T2 lengthened relative to WM
enhancing tumour    1700    130  0.85  solid (enhancing) glioblastoma tissue, pre-contrast
necrosis            2600    350  0.95  necrotic core: long T1 and T2, close to fluid
=================  =====  =====  ====  ======================================================================

PD values are water contents (WM about 0.70, GM about 0.80 of pure water; e.g. Neeb et al. 2006, NeuroImage).
Tumour values are representative, chosen inside the ranges that quantitative studies report for untreated
glioblastoma at 3 T (e.g. Badve et al. 2017, AJNR, MR fingerprinting), not the result of one measurement.
With these values the 3 T orderings are: T1w WM > GM > CSF, T2w CSF > GM > WM, FLAIR GM > WM with CSF nulled,
PD CSF > GM > WM.

Contrast agent
--------------
``1/T1_post = 1/T1 + r1 C`` with ``r1 = 4.0 /mM/s`` (a typical plasma relaxivity of gadolinium chelates at
1.5-3 T, cf. Rohrer et al. 2005, Invest Radiol) and effective tissue concentrations C (mM): enhancing tumour
0.15, edema 0.012, necrosis 0.01, muscle 0.05, GM and deep GM 0.005 and WM 0.003 (intact blood-brain barrier:
intravascular agent only), CSF, fat and bone 0. With these, the enhancing rim's T1 drops by about 860 ms,
edema's by about 140 ms and normal brain's by 10-50 ms, close to the 838 +- 210 ms, 123 +- 74 ms and 32 +- 35 ms
that "Quantitative T1 mapping indicates tumor infiltration beyond the enhancing part of glioblastomas" (2020)
measured. T2 shortening by the agent is neglected at these concentrations.

Noise, bias, units
------------------
Images are in arbitrary units (``1000 x`` the equations' value). A smooth multiplicative bias field
(exponential of a random quadratic polynomial scaled to +-10-20 % across the head, shared by the contrasts of
one subject as one receive coil would be, plus a +-3 % linear term per contrast) multiplies the noise-free
image. Noise is Rician: ``|S + sigma (n1 + i n2)|`` with ``sigma = mean white-matter signal / snr`` for each
contrast, so ``snr`` is the white-matter SNR of every contrast.

Only 3 T is tabulated; other field strengths are refused rather than extrapolated.

Labels: 0 background and non-brain tissue (air, scalp, skull), 1 CSF, 2 GM (cortical and deep), 3 WM,
4 edema, 5 enhancing tumour rim, 6 necrosis. The brain mask is ``labels > 0``.

References
----------
Wansapura JP, Holland SK, Dunn RS, Ball WS. NMR relaxation times in the human brain at 3.0 tesla.
J Magn Reson Imaging 1999.
Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T. Magn Reson Med 2005.
Bojorquez JZ et al. What are normal relaxation times of tissues at 3 T? Magn Reson Imaging 2017.
Gold GE et al. Musculoskeletal MRI at 3.0 T: relaxation times and image contrast. AJR 2004.
Neeb H, Zilles K, Shah NJ. A new method for fast quantitative mapping of absolute water content in vivo.
NeuroImage 2006.
Quantification of T1 and T2 of subarachnoid CSF: implications for water exchange between CSF and brain
tissues. PMC10696635.
Quantitative T1 mapping indicates tumor infiltration beyond the enhancing part of glioblastomas. 2020.
Badve C et al. MR fingerprinting of adult brain tumors: initial experience. AJNR 2017.
Rohrer M et al. Comparison of magnetic properties of MRI contrast media solutions at different magnetic field
strengths. Invest Radiol 2005.
Fonov V et al. Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 2011 (the ICBM
2009a nonlinear symmetric MNI152 templates, as shipped by nilearn).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import MedtransError, MissingDependencyError, UnknownChoiceError
from .volume import SourceInfo, Volume

__all__ = [
    "CONTRASTS",
    "ANATOMIES",
    "LABELS",
    "TISSUES",
    "SEQUENCES",
    "R1_GADOLINIUM",
    "PhantomSubject",
    "make_subject",
    "write_phantom_dataset",
    "assign_splits",
    "subject_seed",
    "signal",
]

CONTRASTS = ("T1", "T2", "FLAIR", "PD", "T1c")
ANATOMIES = ("procedural", "mni152")

#: Label values of the label map.
LABELS = {0: "background", 1: "CSF", 2: "GM", 3: "WM", 4: "edema", 5: "enhancing rim", 6: "necrosis"}

# Tissue classes of the fraction maps and the label each one counts towards.
_TISSUE_LABEL = {
    "air": 0,
    "fat": 0,
    "muscle": 0,
    "bone": 0,
    "csf": 1,
    "gm": 2,
    "dgm": 2,
    "wm": 3,
    "edema": 4,
    "enhancing": 5,
    "necrosis": 6,
}
_TISSUE_ORDER = tuple(_TISSUE_LABEL)

#: Relaxation and proton density per tissue and field strength: (T1 ms, T2 ms, PD, gadolinium mM).
#: Sources in the module docstring.
TISSUES: dict[float, dict[str, tuple[float, float, float, float]]] = {
    3.0: {
        "air": (1000.0, 1.0, 0.0, 0.0),
        "fat": (380.0, 130.0, 0.90, 0.0),
        "muscle": (1420.0, 32.0, 0.80, 0.05),
        "bone": (250.0, 0.5, 0.15, 0.0),
        "csf": (4300.0, 1900.0, 1.00, 0.0),
        "gm": (1580.0, 105.0, 0.80, 0.005),
        "dgm": (1330.0, 93.0, 0.76, 0.005),
        "wm": (960.0, 75.0, 0.70, 0.003),
        "edema": (1800.0, 200.0, 0.86, 0.012),
        "enhancing": (1700.0, 130.0, 0.85, 0.15),
        "necrosis": (2600.0, 350.0, 0.95, 0.01),
    }
}

#: Longitudinal relaxivity of the gadolinium agent, /mM/s.
R1_GADOLINIUM = 4.0

_GAIN = 1000.0


def _flair_ti(tr: float, t1_csf: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation ``t1_csf`` at repetition time ``tr``."""
    return t1_csf * math.log(2.0 / (1.0 + math.exp(-tr / t1_csf)))


def _sequences(field: float) -> dict[str, dict]:
    t1_csf = TISSUES[field]["csf"][0]
    return {
        "T1": {"kind": "SE", "TR": 500.0, "TE": 10.0},
        "T2": {"kind": "SE", "TR": 5000.0, "TE": 100.0},
        "FLAIR": {"kind": "IR", "TR": 9000.0, "TE": 140.0, "TI": round(_flair_ti(9000.0, t1_csf), 1)},
        "PD": {"kind": "SE", "TR": 7000.0, "TE": 12.0},
        "T1c": {"kind": "SE", "TR": 500.0, "TE": 10.0, "contrast_agent": True},
    }


#: Acquisition parameters per field strength and contrast (times in ms).
SEQUENCES: dict[float, dict[str, dict]] = {f: _sequences(f) for f in TISSUES}

# Default field of view (mm) when spacing is not given.
_FOV = {"procedural": (192.0, 192.0, 160.0), "mni152": (176.0, 212.0, 172.0)}

# Independent random streams per component of a subject.
_STREAM = {"anatomy": 1, "deform": 2, "jitter": 3, "texture": 4, "tumour": 5, "bias": 6, "noise": 7}


@dataclasses.dataclass
class PhantomSubject:
    """One phantom subject: co-registered contrasts, labels and brain mask on one grid.

    Attributes
    ----------
    subject_id : str
    images : dict of str to Volume
        One Volume per contrast ("T1", "T2", "FLAIR", "PD", "T1c"), all with the same affine.
    labels : Volume
        Integer-valued label map (see :data:`LABELS`), stored as float32.
    brain_mask : Volume
        1 inside the brain (CSF, GM, WM, tumour), 0 elsewhere.
    params : dict
        Everything drawn for this subject (JSON-serialisable): seed, anatomy, grid, jittered tissue values,
        sequences, noise sigma per contrast, bias amplitude, deformation size, tumour placement.
    """

    subject_id: str
    images: dict[str, Volume]
    labels: Volume
    brain_mask: Volume
    params: dict


# -- public functions -------------------------------------------------------------------------------------


def signal(kind: str, pd, t1, t2, *, tr: float, te: float, ti: float | None = None, signed: bool = False):
    """MR signal of a tissue from the spin-echo or inversion-recovery equation.

    Parameters
    ----------
    kind : {"SE", "IR"}
        Spin echo ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` or inversion recovery
        ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``.
    pd, t1, t2 : float or array
        Proton density and relaxation times (ms).
    tr, te, ti : float
        Repetition, echo and inversion time (ms); ``ti`` only for "IR".
    signed : bool
        For "IR", return the signed value (before the magnitude) so that partial volumes can be summed first.
    """
    pd, t1, t2 = (np.asarray(a, dtype=np.float32) for a in (pd, t1, t2))
    decay = np.exp(-te / t2)
    if kind == "SE":
        return pd * (1.0 - np.exp(-tr / t1)) * decay
    if kind == "IR":
        if ti is None:
            raise ValueError('Argument "ti" is needed for an inversion-recovery signal.')
        s = pd * (1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * decay
        return s if signed else np.abs(s)
    raise UnknownChoiceError("sequence kind", kind, ("SE", "IR"))


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


def make_subject(
    seed: int = 0,
    *,
    shape: Sequence[int] = (128, 128, 80),
    spacing: Sequence[float] | None = None,
    anatomy: str = "procedural",
    snr: float | None = 30.0,
    tumour: bool = False,
    field_strength: float = 3.0,
    bias: bool = True,
    deform: bool = True,
    contrasts: Sequence[str] = CONTRASTS,
    subject_id: str | None = None,
) -> PhantomSubject:
    """Make one phantom subject: five co-registered contrasts, a label map and a brain mask.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and arguments give identical arrays.
    shape : 3 ints
        Grid size (i, j, k). The default covers a 192 x 192 x 160 mm head at 1.5 x 1.5 x 2 mm.
    spacing : 3 floats, optional
        Voxel size in mm. By default the anatomy's field of view divided by ``shape`` (procedural
        192 x 192 x 160 mm, mni152 176 x 212 x 172 mm).
    anatomy : {"procedural", "mni152"}
        Analytic head (no data needed) or the MNI152 templates shipped with nilearn.
    snr : float or None
        White-matter signal-to-noise ratio of every contrast (Rician noise). None gives noise-free images.
    tumour : bool
        Add a tumour (edema, enhancing rim, necrosis) in the white matter. ``params["tumour_params"]`` gives its
        centre and radii (None when the grid is too coarse to hold any brain tissue).
    field_strength : float
        Tesla; tissue tables exist for 3.0.
    bias : bool
        Multiply by a smooth bias field (+-10-20 %).
    deform : bool
        Apply the per-subject random affine and smooth deformation to the anatomy.
    contrasts : sequence of str
        Which of :data:`CONTRASTS` to synthesise (the others are not computed; the ones computed are the same
        as with all five).
    subject_id : str, optional
        Defaults to ``"phantom-<seed>"``.

    Returns
    -------
    PhantomSubject

    Raises
    ------
    UnknownChoiceError
        Unknown anatomy, contrast or field strength.
    MissingDependencyError
        ``anatomy="mni152"`` without nilearn installed.
    ValueError
        A malformed shape, spacing, seed or snr.
    """
    seed = _check_seed(seed)
    shape = _check_shape(shape)
    if anatomy not in ANATOMIES:
        raise UnknownChoiceError("anatomy", anatomy, ANATOMIES)
    field = _check_field(field_strength)
    contrasts = tuple(contrasts)
    for c in contrasts:
        if c not in CONTRASTS:
            raise UnknownChoiceError("contrast", c, CONTRASTS)
    if len(set(contrasts)) != len(contrasts) or not contrasts:
        raise ValueError(f'Argument "contrasts" should name each contrast at most once, got {contrasts!r}.')
    if snr is not None:
        snr = float(snr)
        if math.isinf(snr):
            snr = None
        elif not snr > 0:
            raise ValueError(f'Argument "snr" should be a positive number or None, got {snr!r}.')
    if spacing is None:
        spacing = tuple(f / n for f, n in zip(_FOV[anatomy], shape))
    else:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f'Argument "spacing" should be three positive numbers (mm), got {spacing!r}.')
    subject_id = subject_id or f"phantom-{seed}"

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(shape, spacing)]
    axes = _grid_axes(shape, spacing)
    world = _grid_world(axes)  # (3, N) mm, float32
    h = float(np.mean(spacing))

    # 1-2. anatomy (with per-subject deformation) as tissue fractions
    to_template, deform_info = _deformation(_rng(seed, "deform"), world, axes, enabled=deform)
    if anatomy == "procedural":
        arng = _rng(seed, "anatomy")
        atrophy = float(arng.uniform(0.0, 1.0))
        fractions = _procedural_fractions(to_template, h, arng, atrophy)
        anatomy_info = {"atrophy": round(atrophy, 4)}
    else:
        fractions = _mni_fractions(to_template, h)
        anatomy_info = {"template": "ICBM 2009a nonlinear symmetric MNI152 (nilearn)"}
    del to_template

    # 3. tumour
    labels = _labels_from(fractions)
    tumour_info = None
    if tumour:
        tumour_info = _add_tumour(fractions, labels, world, shape, spacing, h, _rng(seed, "tumour"))
        labels = _labels_from(fractions)

    # 4. tissue values, texture, signal, bias, noise
    tissues = _jittered_tissues(field, _rng(seed, "jitter"))
    tex = _texture(_rng(seed, "texture"), axes)
    head = fractions["air"] < 0.5
    bias_fields, bias_info = _bias_fields(_rng(seed, "bias"), world, head, shape, spacing, contrasts, enabled=bias)
    wm = labels == 3
    if not wm.any():
        wm = labels > 0
    if not wm.any():
        wm = head
    seqs = SEQUENCES[field]
    prov_base = {
        "generator": "napari_medtrans.core.phantom",
        "subject_id": subject_id,
        "seed": seed,
        "snr": snr,
        "anatomy": anatomy,
        "field_strength": field,
        "tumour": bool(tumour),
    }
    images: dict[str, Volume] = {}
    sigmas: dict[str, float] = {}
    for c in contrasts:
        clean = _synthesise(seqs[c], fractions, tissues, tex) * bias_fields[c]
        if snr is None:
            img, sigma = clean, 0.0
        else:
            sigma = float(clean[wm].mean()) / snr
            noise = np.random.default_rng([seed, _STREAM["noise"], CONTRASTS.index(c)])
            re = clean + sigma * noise.standard_normal(clean.shape, dtype=np.float32)
            im = sigma * noise.standard_normal(clean.shape, dtype=np.float32)
            img = np.sqrt(re * re + im * im)
        sigmas[c] = sigma
        seq = seqs[c]
        mr = {
            "ScanningSequence": "SE" if seq["kind"] == "SE" else ["SE", "IR"],
            "RepetitionTime": seq["TR"],
            "EchoTime": seq["TE"],
            "MagneticFieldStrength": field,
        }
        if "TI" in seq:
            mr["InversionTime"] = seq["TI"]
        images[c] = Volume(
            img.reshape(shape),
            affine.copy(),
            modality=c,
            source=SourceInfo(kind="phantom"),
            provenance={**prov_base, "contrast": c, "sequence": dict(seq), "noise_sigma": sigma, "mr_parameters": mr},
        )

    labels_vol = Volume(labels.reshape(shape).astype(np.float32), affine.copy(), modality="labels",
                        source=SourceInfo(kind="phantom"), provenance={**prov_base, "labels": dict(LABELS)})
    mask_vol = Volume((labels > 0).reshape(shape).astype(np.float32), affine.copy(), modality="mask",
                      source=SourceInfo(kind="phantom"), provenance={**prov_base})
    params = {
        **prov_base,
        "shape": list(shape),
        "spacing": [float(s) for s in spacing],
        "contrasts": list(contrasts),
        "tissues": {k: dict(zip(("T1", "T2", "PD", "gd_mM"), (round(float(x), 4) for x in v)))
                    for k, v in tissues.items()},
        "r1_gadolinium_per_mM_s": R1_GADOLINIUM,
        "sequences": {c: dict(seqs[c]) for c in contrasts},
        "noise_sigma": sigmas,
        "bias": bias_info,
        "deformation": deform_info,
        "anatomy_params": anatomy_info,
        "tumour_params": tumour_info,
        "label_counts": {LABELS[v]: int(np.count_nonzero(labels == v)) for v in LABELS},
    }
    return PhantomSubject(subject_id=subject_id, images=images, labels=labels_vol, brain_mask=mask_vol,
                          params=params)


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int,
    *,
    seed: int = 0,
    tumour: bool = False,
    dicom: bool = False,
    shape: Sequence[int] = (128, 128, 80),
    anatomy: str = "procedural",
    snr: float | None = 30.0,
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
    tumour, shape, anatomy, snr, contrasts
        As in :func:`make_subject`.
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
    from . import io
    from .dataset import Dataset, Subject

    n = int(n_subjects)
    if n < 1:
        raise ValueError(f'Argument "n_subjects" should be at least 1, got {n_subjects!r}.')
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MedtransError("exists and is not a folder; cannot write a dataset into it", out)
    splits = assign_splits(n, seed=seed, split=split)
    if dicom:
        from pydicom.uid import generate_uid

        from .io.dicom_write import write_dicom_series
    subjects = []
    for k in range(n):
        sid = f"sub-{k:03d}"
        s_seed = subject_seed(seed, k)
        subj = make_subject(s_seed, shape=shape, anatomy=anatomy, snr=snr, tumour=tumour, contrasts=contrasts,
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


# -- argument checks --------------------------------------------------------------------------------------


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f'Argument "seed" should be a non-negative integer, got {seed!r}.')
    return int(seed)


def _check_shape(shape) -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f'Argument "shape" should be three integers, got {shape!r}.') from None
    if len(out) != 3 or min(out) < 4 or any(int(s) != s for s in shape):
        raise ValueError(f'Argument "shape" should be three integers >= 4, got {tuple(shape)!r}.')
    return out  # type: ignore[return-value]


def _check_field(field_strength) -> float:
    try:
        f = float(field_strength)
    except (TypeError, ValueError):
        f = float("nan")
    for known in TISSUES:
        if abs(f - known) < 1e-6:
            return known
    raise UnknownChoiceError("field strength (T)", str(field_strength), [str(k) for k in TISSUES])


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[stream]])


# -- geometry helpers -------------------------------------------------------------------------------------


def _grid_axes(shape, spacing) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) along i, j, k for a grid centred at the origin, i/j/k along R/A/S."""
    return [((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * np.float32(s)) for n, s in zip(shape, spacing)]


def _grid_world(axes) -> np.ndarray:
    """Voxel centres in mm, (3, N) float32."""
    grids = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grids]).astype(np.float32)


def _ramp(sd, h: float):
    """Partial-volume fraction from a signed distance (mm, positive inside) over a voxel of size ``h``."""
    return np.clip(0.5 + sd / h, 0.0, 1.0).astype(np.float32, copy=False)


def _ellipsoid_sd(p: np.ndarray, centre, axes):
    """Approximate signed distance (mm, positive inside) to an ellipsoid, measured along the ray from its centre.

    Also returns the normalised coordinates q and radius rho (rho < 1 inside).
    """
    c = np.asarray(centre, dtype=np.float32)[:, None]
    a = np.asarray(axes, dtype=np.float32)[:, None]
    d = p - c
    q = d / a
    rho = np.sqrt((q * q).sum(0))
    r = np.sqrt((d * d).sum(0))
    radius = np.where(rho > 1e-6, r / np.maximum(rho, 1e-6), float(a.min()))
    return (radius - r), q, rho, r


class _Field:
    """Smooth zero-mean, unit-variance random field on a lattice, sampled at arbitrary points (trilinear)."""

    def __init__(self, rng, lo: float, hi: float, cell: float, sigma, gradient: bool = False):
        from scipy import ndimage

        n = int(math.ceil((hi - lo) / cell)) + 1
        sig = np.broadcast_to(np.asarray(sigma, dtype=float), (3,)) / cell
        f = ndimage.gaussian_filter(rng.standard_normal((n, n, n)).astype(np.float32), sig, mode="wrap",
                                    truncate=3.0)
        f -= f.mean()
        f /= max(float(f.std()), 1e-12)
        self.lo, self.cell, self.f = lo, cell, f
        self.grads = np.gradient(f, cell) if gradient else None

    def _idx(self, p):
        return (p - self.lo) / self.cell

    def __call__(self, p: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        return ndimage.map_coordinates(self.f, self._idx(p), order=1, mode="nearest").astype(np.float32)

    def on_grid(self, axes) -> np.ndarray:
        """Samples on the regular grid with coordinates ``axes`` (three 1D arrays, mm), flattened: separable."""
        n = self.f.shape[0]
        w = []
        for x in axes:
            t = np.clip((np.asarray(x, dtype=np.float64) - self.lo) / self.cell, 0.0, n - 1 - 1e-6)
            i0 = np.floor(t).astype(int)
            frac = (t - i0).astype(np.float32)
            m = np.zeros((t.size, n), dtype=np.float32)
            rows = np.arange(t.size)
            m[rows, i0] = 1.0 - frac
            m[rows, i0 + 1] += frac
            w.append(m)
        a = np.tensordot(w[0], self.f, axes=(1, 0))  # (Nx, n, n)
        a = np.tensordot(a, w[1], axes=(1, 1))  # (Nx, n, Ny)
        a = np.tensordot(a, w[2], axes=(1, 1))  # (Nx, Ny, Nz)
        return np.ascontiguousarray(a, dtype=np.float32).ravel()

    def gradient(self, p: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        idx = self._idx(p)
        return np.stack([ndimage.map_coordinates(g, idx, order=1, mode="nearest") for g in self.grads])


def _deformation(rng, world: np.ndarray, axes, *, enabled: bool):
    """Template coordinates for each grid point: a random small affine plus a smooth displacement field."""
    if not enabled:
        return world.copy(), {"enabled": False}
    scale = 1.0 + np.clip(rng.normal(0.0, 0.03, 3), -0.07, 0.07)
    angles = np.deg2rad(np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0))
    shift = np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    forward = rz @ ry @ rx @ np.diag(scale)  # template -> subject
    inverse = np.linalg.inv(forward).astype(np.float32)
    rms = 2.0
    fields = [_Field(rng, -130.0, 130.0, 10.0, 30.0) for _ in range(3)]
    disp = np.stack([f.on_grid(axes) for f in fields]) * np.float32(rms / math.sqrt(3.0))
    template = inverse @ (world - shift.astype(np.float32)[:, None]) + disp
    mag = np.sqrt((disp * disp).sum(0))
    info = {
        "enabled": True,
        "scale": [round(float(s), 4) for s in scale],
        "rotation_deg": [round(float(a), 3) for a in np.rad2deg(angles)],
        "shift_mm": [round(float(s), 3) for s in shift],
        "displacement_rms_mm": round(float(np.sqrt((mag**2).mean())), 3),
        "displacement_max_mm": round(float(mag.max()), 3),
    }
    return template.astype(np.float32), info


# -- anatomy: tissue fractions ----------------------------------------------------------------------------


class _Fractions(dict):
    """Tissue name -> fraction array; painting a tissue over a region keeps the fractions summing to one."""

    def __init__(self, n: int):
        super().__init__({t: np.zeros(n, dtype=np.float32) for t in _TISSUE_ORDER})
        self["air"][:] = 1.0

    def paint(self, tissue: str, m: np.ndarray, over: Sequence[str] | None = None) -> None:
        """Put ``tissue`` in fraction ``m`` of each voxel, taking it from all tissues or only those in ``over``."""
        nz = np.flatnonzero(m)
        if nz.size == 0:
            return
        if over is None and nz.size < 0.5 * m.size:
            _paint_sub(self, nz, tissue, m[nz])
            return
        if over is None:
            keep = 1.0 - m
            for t, f in self.items():
                if t != tissue and f.any():
                    f *= keep
            self[tissue] *= keep
            self[tissue] += m
        else:
            moved = np.zeros_like(m)
            for t in over:
                take = self[t] * m
                self[t] -= take
                moved += take
            self[tissue] += moved


def _folding(sd, q, rho, r, fold: _Field, depth_field: _Field, *, depth_range, gm, csf, bend=None):
    """Cortical GM zone and sulcal CSF as signed distances (mm) for a folded ellipsoidal cortex.

    Sulci are walls along the zero set of ``fold`` (a smooth random field on the unit sphere), running in from
    the surface to a depth drawn from ``depth_field``; GM lines the outer surface and both sides of each sulcus.
    ``bend`` (a 3-vector field per point, in unit-sphere units per mm of depth) makes the walls curve with depth.
    """
    u = q / np.maximum(rho, 1e-6)
    if bend is not None:
        u = u + bend * np.clip(sd, 0.0, None)
        u /= np.sqrt((u * u).sum(0))
    g = fold(u)
    grad = fold.gradient(u)
    grad -= (grad * u).sum(0) * u  # tangential part
    gnorm = np.sqrt((grad * grad).sum(0))
    dist = np.abs(g) / np.maximum(gnorm, 1e-3) * np.maximum(r, 1.0)  # mm from the sulcal mid-plane
    lo, hi = depth_range
    dmax = lo + (hi - lo) * (0.5 + 0.5 * np.tanh(depth_field(u)))
    sulcus = np.minimum(dmax - sd, csf - dist)
    ribbon = np.maximum(gm - sd, np.minimum(dmax + gm - sd, csf + gm - dist))
    return sulcus, ribbon


def _procedural_fractions(p: np.ndarray, h: float, rng, atrophy: float) -> _Fractions:
    """Tissue fractions of the procedural head at template points ``p`` (3, N), mm."""
    n = p.shape[1]
    F = _Fractions(n)
    # random fields on the unit sphere: folding patterns, sulcal depth, overall brain shape
    cereb_fold = _Field(rng, -1.1, 1.1, 0.03, 0.06, gradient=True)
    cereb_depth = _Field(rng, -1.1, 1.1, 0.05, 0.15)
    cbl_fold = _Field(rng, -1.1, 1.1, 0.03, (0.25, 0.05, 0.06), gradient=True)
    cbl_depth = _Field(rng, -1.1, 1.1, 0.05, 0.2)
    shape_coef = rng.standard_normal(19)
    bend_fields = [_Field(rng, -130.0, 130.0, 6.0, 12.0) for _ in range(3)]
    csf_half = 0.5 + 0.8 * atrophy  # sulcal CSF half-width, mm
    vent = 1.0 + 0.35 * atrophy  # ventricle size factor

    cc, ca = (0.0, 0.0, 8.0), (62.0, 78.0, 50.0)  # cerebrum
    cbl_c, cbl_a = (0.0, -50.0, -30.0), (46.0, 26.0, 19.0)  # cerebellum
    sd_c, q_c, rho_c, r_c = _ellipsoid_sd(p, cc, ca)
    near = np.nonzero(sd_c > -25.0)[0]  # the outline modulation (< 10 mm) matters only near the brain
    sd_c[near] += 3.0 * _sphere_poly(shape_coef, q_c[:, near] / np.maximum(rho_c[near], 1e-6))
    sd_b, q_b, rho_b, r_b = _ellipsoid_sd(p, cbl_c, cbl_a)
    stem_sd, _, _, _ = _ellipsoid_sd(p, (0.0, -18.0, -42.0), (12.0, 12.0, 36.0))

    # neck muscle, then scalp, skull and subarachnoid CSF following the brain's outline
    neck_sd, _, _, _ = _ellipsoid_sd(p, (0.0, -20.0, -95.0), (52.0, 56.0, 50.0))
    F.paint("muscle", _ramp(neck_sd, h))
    icv_sd = np.maximum(sd_c, sd_b) + 3.0
    F.paint("fat", _ramp(icv_sd + 12.0, h))
    F.paint("bone", _ramp(icv_sd + 6.0, h))
    F.paint("csf", _ramp(icv_sd, h))

    # cerebrum: folded cortex, interhemispheric and lateral (Sylvian) fissures
    sel = np.nonzero(sd_c > -h)[0]
    if sel.size:
        ps, sd, q = p[:, sel], sd_c[sel], q_c[:, sel]
        sulcus = np.full(sel.size, -1e3, dtype=np.float32)
        ribbon = np.full(sel.size, -1e3, dtype=np.float32)
        shell = np.nonzero(sd < 20.0 + 2.7 + 2 * h)[0]  # folding reaches 20 mm deep at most
        bend = np.stack([f(ps[:, shell]) for f in bend_fields]) * np.float32(0.006)
        sulcus[shell], ribbon[shell] = _folding(sd[shell], q[:, shell], rho_c[sel][shell], r_c[sel][shell],
                                                cereb_fold, cereb_depth, depth_range=(7.0, 20.0), gm=2.7,
                                                csf=csf_half, bend=bend)
        del bend
        walls = []
        # interhemispheric fissure: down to the arc of the corpus callosum, full depth at the poles
        arc = np.sqrt((q[1] / 0.6) ** 2 + ((q[2] + 0.1) / 0.65) ** 2)
        walls.append((np.abs(ps[0] - cc[0]), 40.0 * (arc - 1.0)))
        # Sylvian fissure: a tilted wall on each side, from the lateral surface in to the insula
        plane_z = cc[2] + ca[2] * (-0.12 + 0.3 * q[1])
        extent = np.minimum(np.abs(ps[0]) - 38.0, 60.0 * np.minimum(0.35 - q[1], q[1] + 0.4))
        walls.append((np.abs(ps[2] - plane_z), extent))
        for dist, extent in walls:
            sulcus = np.maximum(sulcus, np.minimum(csf_half + 0.7 - dist, extent))
            ribbon = np.maximum(ribbon, np.minimum(csf_half + 0.7 + 2.7 - dist, extent + 2.7))
        # the tentorium: keep the cerebrum 1.5 mm away from the cerebellum
        inside = _ramp(sd, h) * _ramp(-sd_b[sel] - 1.5, h)
        _paint_sub(F, sel, "wm", inside)
        _paint_sub(F, sel, "gm", inside * _ramp(ribbon, h))
        _paint_sub(F, sel, "csf", inside * _ramp(sulcus, h))

    # cerebellum (foliated), then brainstem (continuing through the foramen magnum)
    sel = np.nonzero(sd_b > -h)[0]
    if sel.size:
        sulcus, ribbon = _folding(sd_b[sel], q_b[:, sel], rho_b[sel], r_b[sel], cbl_fold, cbl_depth,
                                  depth_range=(4.0, 10.0), gm=1.6, csf=0.45 + 0.3 * atrophy)
        inside = _ramp(sd_b[sel], h)
        _paint_sub(F, sel, "wm", inside)
        _paint_sub(F, sel, "gm", inside * _ramp(ribbon, h))
        _paint_sub(F, sel, "csf", inside * _ramp(sulcus, h))
    F.paint("wm", _ramp(stem_sd, h))

    # deep grey matter, then ventricles (positions relative to the cerebrum centre)
    nuclei = [((14.0, 14.0, 8.0), (4.5, 10.0, 7.0)),  # caudate head
              ((24.0, 2.0, -4.0), (4.5, 14.0, 9.0)),  # putamen
              ((9.0, -14.0, -2.0), (8.0, 13.0, 8.0))]  # thalamus
    F.paint("dgm", _union(p, [(_mirror(c, s), a) for c, a in nuclei for s in (1, -1)], cc, 1.0, h))
    ventricles = [((6.5, -4.0, 14.0), (4.5, 22.0, 5.5)),  # bodies
                  ((7.5, 20.0, 8.0), (4.5, 9.0, 8.0)),  # frontal horns
                  ((15.0, -28.0, 6.0), (6.5, 10.0, 8.0)),  # atria
                  ((16.0, -42.0, 6.0), (3.5, 10.0, 4.0)),  # occipital horns
                  ((29.0, -8.0, -18.0), (3.5, 13.0, 3.5))]  # temporal horns
    parts = [(_mirror(c, s), a) for c, a in ventricles for s in (1, -1)]
    parts.append(((0.0, -6.0, -4.0), (2.0, 12.0, 8.0)))  # third ventricle
    parts.append(((0.0, -30.0, -40.0), (6.0, 3.0, 6.0)))  # fourth ventricle (cerebrum-relative)
    F.paint("csf", _union(p, parts, cc, vent, h))
    return F


def _sphere_poly(coef, u) -> np.ndarray:
    """A smooth random function on the unit sphere: polynomial of degree <= 3 in u with unit RMS."""
    x, y, z = u
    terms = [x, y, z, x * x - z * z, y * y - z * z, x * y, x * z, y * z,
             x * x * x, y * y * y, z * z * z, x * x * y, x * x * z, y * y * x, y * y * z, z * z * x, z * z * y,
             x * y * z, x * x - y * y]
    out = np.zeros(u.shape[1], dtype=np.float32)
    for c, t in zip(coef, terms):
        out += np.float32(c) * t
    # RMS of each term over the sphere is about 0.3-0.5; this keeps the field near unit RMS
    return out * np.float32(1.0 / (0.4 * math.sqrt(len(terms))))


def _mirror(c, s):
    return (c[0] * s, c[1], c[2])


def _union(p, parts, origin, scale: float, h: float) -> np.ndarray:
    """Fraction inside the union of ellipsoids (centres relative to ``origin``; axes scaled by ``scale``)."""
    out = np.zeros(p.shape[1], dtype=np.float32)
    for c, a in parts:
        centre = tuple(o + x for o, x in zip(origin, c))
        axes = tuple(x * scale for x in a)
        lo = np.asarray(centre) - np.asarray(axes) - 2 * h
        hi = np.asarray(centre) + np.asarray(axes) + 2 * h
        sel = np.nonzero(np.all((p >= lo[:, None].astype(np.float32)) & (p <= hi[:, None].astype(np.float32)), 0))[0]
        if sel.size:
            sd, _, _, _ = _ellipsoid_sd(p[:, sel], centre, axes)
            out[sel] = np.maximum(out[sel], _ramp(sd, h))
    return out


def _paint_sub(F: _Fractions, sel: np.ndarray, tissue: str, m: np.ndarray) -> None:
    """Paint on the voxel subset ``sel`` only."""
    keep = 1.0 - m
    for t, f in F.items():
        if t != tissue:
            f[sel] *= keep
    F[tissue][sel] = F[tissue][sel] * keep + m


@functools.lru_cache(maxsize=1)
def _mni_templates():
    """GM, WM and brain-mask probabilities (1 mm, float32), their affine, and the 2 mm distance map outside."""
    try:
        from nilearn import datasets
    except ImportError as exc:
        raise MissingDependencyError('anatomy "mni152"', "nilearn", "anatomy") from exc
    try:
        gm_img = datasets.load_mni152_gm_template(resolution=1)
        wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
        mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(), dtype=np.float32)
        gm = np.asarray(gm_img.get_fdata(), dtype=np.float32)
    except Exception as exc:  # nilearn's own loaders raise many kinds; report them as one
        raise MedtransError(f"nilearn is installed but its MNI152 templates could not be loaded ({exc})") from exc
    from scipy import ndimage

    affine = np.asarray(gm_img.affine, dtype=np.float64)
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise MedtransError(f"unexpected MNI152 template affine {affine.tolist()} (expected 1 mm RAS)")
    coarse = mask[::2, ::2, ::2] > 0.5
    dist = ndimage.distance_transform_edt(~coarse, sampling=2.0).astype(np.float32)
    return gm, wm, mask, dist, affine


def _mni_fractions(p: np.ndarray, h: float) -> _Fractions:
    """Tissue fractions from the MNI152 templates at template points ``p`` (3, N), mm, grid-centred."""
    from scipy import ndimage

    gm_t, wm_t, mask_t, dist_t, affine = _mni_templates()
    centre = np.array([0.0, -17.0, 14.0], dtype=np.float32)  # MNI point at the grid centre
    idx = (p + (centre - affine[:3, 3].astype(np.float32))[:, None])
    mask = np.clip(ndimage.map_coordinates(mask_t, idx, order=1, mode="constant", cval=0.0), 0, 1)
    gm = np.clip(ndimage.map_coordinates(gm_t, idx, order=1, mode="constant", cval=0.0), 0, 1)
    wm = np.clip(ndimage.map_coordinates(wm_t, idx, order=1, mode="constant", cval=0.0), 0, 1)
    dist = ndimage.map_coordinates(dist_t, idx / 2.0, order=1, mode="nearest")
    gm = np.minimum(gm, mask)
    wm = np.minimum(wm, mask - gm)
    csf = mask - gm - wm
    F = _Fractions(p.shape[1])
    F.paint("fat", _ramp(15.0 - dist, h))
    F.paint("bone", _ramp(9.0 - dist, h))
    F.paint("csf", _ramp(3.0 - dist, h))
    keep = 1.0 - mask
    for f in F.values():
        f *= keep
    F["gm"] += gm
    F["wm"] += wm
    F["csf"] += csf
    return F


def _labels_from(F: _Fractions) -> np.ndarray:
    groups = np.zeros((7, F["air"].size), dtype=np.float32)
    for t, f in F.items():
        groups[_TISSUE_LABEL[t]] += f
    return np.argmax(groups, axis=0).astype(np.uint8)


# -- tumour -----------------------------------------------------------------------------------------------


def _add_tumour(F: _Fractions, labels, world, shape, spacing, h, rng) -> dict | None:
    """Paint edema, enhancing rim and necrosis around a random centre in the white matter."""
    from scipy import ndimage

    vox = float(max(spacing))
    radius = max(float(rng.uniform(10.0, 20.0)), 2.0 * vox)
    necrosis = min(float(rng.uniform(0.4, 0.65)) * radius, radius - 1.0 * vox)
    necrosis = max(necrosis, 0.75 * vox)
    edema = radius + max(float(rng.uniform(5.0, 15.0)), 1.5 * vox)
    parenchyma = np.isin(labels, (2, 3)).reshape(shape)
    if min(shape) >= 48:  # a half-resolution distance map is plenty to place the tumour
        coarse = ndimage.distance_transform_edt(parenchyma[::2, ::2, ::2], sampling=[2 * s for s in spacing])
        depth = coarse[np.ix_(*(np.arange(n) // 2 for n in shape))].ravel()
    else:
        depth = ndimage.distance_transform_edt(parenchyma, sampling=spacing).ravel()
    wm = labels == 3
    candidates = np.nonzero(wm & (depth >= 0.8 * radius))[0]
    if candidates.size == 0:
        candidates = np.nonzero(wm)[0] if wm.any() else np.nonzero(parenchyma.ravel())[0]
        if candidates.size == 0:
            return None
        candidates = candidates[depth[candidates] >= depth[candidates].max() - 1e-6]
    centre_idx = int(candidates[int(rng.integers(candidates.size))])
    centre = world[:, centre_idx]
    shape_field = _Field(rng, -130.0, 130.0, 4.0, 7.0)
    edema_field = _Field(rng, -130.0, 130.0, 4.0, 5.0)
    d = world - centre[:, None]
    r = np.sqrt((d * d).sum(0))
    near = np.nonzero(r < 1.6 * edema + 2 * h)[0]
    local = world[:, near]
    r_core = r[near] / (1.0 + 0.15 * np.clip(shape_field(local), -2.5, 2.5))
    r_ed = r[near] / (1.0 + 0.25 * np.clip(edema_field(local), -2.5, 2.5))
    side = 1.0 if centre[0] >= 0 else -1.0  # vasogenic edema stays in its hemisphere
    hemisphere = _ramp(side * local[0] + 1.0, h)
    intracranial = 1.0 - (F["air"][near] + F["fat"][near] + F["muscle"][near] + F["bone"][near])
    sub = {t: f[near].copy() for t, f in F.items()}
    part = _Fractions(near.size)
    part.update(sub)
    part.paint("edema", _ramp(edema - r_ed, h) * hemisphere, over=("wm", "dgm"))
    part.paint("enhancing", _ramp(radius - r_core, h) * intracranial)
    part.paint("necrosis", _ramp(necrosis - r_core, h) * intracranial)
    for t in F:
        F[t][near] = part[t]
    return {
        "centre_mm": [round(float(x), 2) for x in centre],
        "necrosis_radius_mm": round(necrosis, 2),
        "enhancing_radius_mm": round(radius, 2),
        "edema_radius_mm": round(edema, 2),
    }


# -- signal -----------------------------------------------------------------------------------------------


def _jittered_tissues(field: float, rng) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for t in _TISSUE_ORDER:
        t1, t2, pd, gd = TISSUES[field][t]
        j = 1.0 + 0.03 * np.clip(rng.standard_normal(3), -2.5, 2.5)
        out[t] = (t1 * j[0], t2 * j[1], min(pd * j[2], 1.05), gd)
    return out


def _texture(rng, axes) -> tuple[np.ndarray, np.ndarray]:
    """Smooth within-tissue variation of T1 and PD (relative, ~2 % SD, ~4 mm correlation)."""
    a = _Field(rng, -130.0, 130.0, 4.0, 4.0)
    b = _Field(rng, -130.0, 130.0, 4.0, 4.0)
    return 1.0 + 0.02 * a.on_grid(axes), 1.0 + 0.015 * b.on_grid(axes)


def _synthesise(seq: dict, F: _Fractions, tissues, tex) -> np.ndarray:
    """Noise-free image (flat) of one sequence: tissue signals summed by fraction (signed for IR)."""
    t1_mod, pd_mod = tex
    out = np.zeros(F["air"].size, dtype=np.float32)
    r1 = R1_GADOLINIUM / 1000.0  # /mM/ms
    for t, frac in F.items():
        t1, t2, pd, gd = tissues[t]
        if pd <= 0:
            continue
        sel = np.nonzero(frac > 1e-4)[0]
        if not sel.size:
            continue
        t1v = t1 * t1_mod[sel]
        if seq.get("contrast_agent"):
            t1v = 1.0 / (1.0 / t1v + r1 * gd)
        s = signal(seq["kind"], pd * pd_mod[sel], t1v, np.float32(t2), tr=seq["TR"], te=seq["TE"],
                   ti=seq.get("TI"), signed=True)
        out[sel] += frac[sel] * s
    return np.abs(out) * np.float32(_GAIN)


def _bias_fields(rng, world, head, shape, spacing, contrasts, *, enabled: bool):
    """A shared smooth receive field (exp of a quadratic, +-10-20 %) and a small linear term per contrast."""
    n = world.shape[1]
    if not enabled:
        one = np.ones(n, dtype=np.float32)
        return {c: one for c in contrasts}, {"enabled": False}
    half = np.array([max(s * (k - 1) / 2.0, 1e-6) for k, s in zip(shape, spacing)], dtype=np.float32)
    u = world / half[:, None]
    terms = [u[0], u[1], u[2], u[0] * u[0], u[1] * u[1], u[2] * u[2], u[0] * u[1], u[0] * u[2], u[1] * u[2]]
    coef = rng.standard_normal(len(terms)) * np.array([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    logb = np.zeros(n, dtype=np.float32)
    for c, t in zip(coef, terms):
        logb += np.float32(c) * t
    region = head if head.any() else np.ones(n, dtype=bool)
    logb -= np.float32(logb[region].mean())
    amp = float(rng.uniform(0.10, 0.20))
    peak = float(np.abs(logb[region]).max())
    if peak > 0:
        logb *= np.float32(math.log(1.0 + amp) / peak)
    fields, per = {}, {}
    for c in CONTRASTS:  # draw for every contrast so a subset gets the same fields
        d = rng.standard_normal(3)
        lin = (np.float32(d[0]) * u[0] + np.float32(d[1]) * u[1] + np.float32(d[2]) * u[2])
        lpeak = float(np.abs(lin[region]).max())
        lin *= np.float32(math.log(1.03) / lpeak) if lpeak > 0 else 0.0
        if c in contrasts:
            fields[c] = np.exp(logb + lin).astype(np.float32)
            per[c] = [round(float(fields[c][region].min()), 4), round(float(fields[c][region].max()), 4)]
    return fields, {"enabled": True, "amplitude": round(amp, 4), "range_in_head": per}
