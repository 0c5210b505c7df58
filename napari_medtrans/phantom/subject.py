"""One phantom subject: anatomy, per-subject variety, tumour, relaxation, acquisition, in that order.

Each step draws from its own random stream of the seed, so turning tumours, noise or a contrast on or off never
changes the rest of the subject:

1. **Anatomy** (:mod:`.anatomy`, default the MNI152 templates; :mod:`.procedural` as an option) as partial-volume
   tissue fractions and region weights, sampled through
2. **per-subject variety**: a small random affine (scale ~3 %, rotation ~2 degrees, shift ~2 mm), a smooth random
   displacement (RMS 2 mm, correlation ~30 mm) and, for the MNI152 anatomy, an "atrophy" level (0-1) that
   enlarges the ventricles (up to 25 % magnification about their centre; the procedural head also widens its
   sulci), then
3. an optional **tumour** (:mod:`.tumour`) with mass effect,
4. **relaxation** per voxel (:mod:`.relaxation`), per-subject jitter of every tissue (3 % SD),
5. **acquisition** per contrast (:mod:`.acquisition`): signal equations with flow voids, receive bias, small
   rigid misregistration of every contrast against T1, optional Gibbs ringing, Rician noise at a per-contrast SNR.

Images are in arbitrary units (``1000 x`` the equations' value). Only 3 T is tabulated; other field strengths are
refused rather than extrapolated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..core.errors import UnknownChoiceError
from ..core.volume import SourceInfo, Volume
from . import acquisition as acq
from .anatomy import LABELS, MNI_CENTRE, labels_from, mni_fractions
from .fields import deformation, grid_axes, grid_world
from .procedural import procedural_fractions
from .relaxation import TISSUES, jittered_tissues, tissue_properties
from .relaxation import R1_GADOLINIUM
from .tumour import mass_effect as push_tissue
from .tumour import paint_tumour, place_tumour

__all__ = ["ANATOMIES", "DEFAULT_SHAPE", "PhantomSubject", "make_subject", "check_seed", "check_shape",
           "snr_per_contrast"]

ANATOMIES = ("mni152", "procedural")

#: Default grid per anatomy: 1.5 x 1.5 x 2 mm over the anatomy's field of view.
DEFAULT_SHAPE = {"mni152": (120, 144, 88), "procedural": (128, 128, 80)}

# Field of view (mm) when spacing is not given.
_FOV = {"procedural": (192.0, 192.0, 160.0), "mni152": (180.0, 216.0, 176.0)}

# Independent random streams per component of a subject.
_STREAM = {"anatomy": 1, "deform": 2, "jitter": 3, "texture": 4, "tumour": 5, "bias": 6, "noise": 7,
           "motion": 8, "structures": 9}

# centre of the lateral ventricles (MNI mm), for the atrophy of the MNI152 anatomy
_VENTRICLE_CENTRE = np.array([0.0, -12.0, 16.0], dtype=np.float32)


@dataclasses.dataclass
class PhantomSubject:
    """One phantom subject: contrasts, labels and brain mask on one grid.

    Attributes
    ----------
    subject_id : str
    images : dict of str to Volume
        One Volume per contrast ("T1", "T2", "FLAIR", "PD", "T1c"), all with the same affine. The labels lie on
        T1's anatomy; the other contrasts carry the small misregistration recorded in ``params``.
    labels : Volume
        Integer-valued label map (see :data:`LABELS`), stored as float32.
    brain_mask : Volume
        1 inside the brain (CSF, GM, WM, tumour), 0 elsewhere.
    params : dict
        Everything drawn for this subject (JSON-serialisable): seed, anatomy, grid, jittered tissue values,
        sequences, SNR and noise sigma per contrast, bias, deformation, misregistration, tumour placement.
    """

    subject_id: str
    images: dict[str, Volume]
    labels: Volume
    brain_mask: Volume
    params: dict


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f'Argument "seed" should be a non-negative integer, got {seed!r}.')
    return int(seed)


def check_shape(shape) -> tuple[int, int, int]:
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


def snr_per_contrast(snr, contrasts: Sequence[str]) -> dict[str, float | None]:
    """White-matter SNR of each contrast from ``snr``: T1's value (the others by :data:`SNR_RATIO`), a mapping
    per contrast (missing ones follow the ratios from T1's, else from 30), or None for noise-free images."""
    if snr is None:
        return {c: None for c in contrasts}
    if isinstance(snr, Mapping):
        given = {}
        for c, v in snr.items():
            if c not in acq.CONTRASTS:
                raise UnknownChoiceError("contrast", c, acq.CONTRASTS)
            given[c] = _positive_snr(v)
        base = given.get("T1", 30.0)
        return {c: given.get(c, None if base is None else base * acq.SNR_RATIO[c]) for c in contrasts}
    value = _positive_snr(snr)
    return {c: None if value is None else value * acq.SNR_RATIO[c] for c in contrasts}


def _positive_snr(v) -> float | None:
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f'Argument "snr" should be a positive number or None, got {v!r}.') from None
    if math.isinf(v):
        return None
    if not v > 0:
        raise ValueError(f'Argument "snr" should be a positive number or None, got {v!r}.')
    return v


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[stream]])


def _anatomy(anatomy: str, p: np.ndarray, h: float, seed: int):
    """Fractions, regions and drawn parameters at template points ``p`` (fresh streams: same draws each call)."""
    if anatomy == "procedural":
        arng = _rng(seed, "anatomy")
        atrophy = float(arng.uniform(0.0, 1.0))
        return procedural_fractions(p, h, arng, atrophy), {}, {"atrophy": round(atrophy, 4)}
    F, regions, drawn = mni_fractions(p, h, _rng(seed, "structures"))
    return F, regions, {"template": "ICBM 2009a nonlinear symmetric MNI152 (nilearn)", **drawn}


def _mni_atrophy(template: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Enlarge the ventricles: magnify template coordinates about the ventricles' centre (MNI mm)."""
    level = float(_rng(seed, "anatomy").uniform(0.0, 1.0))
    c = (_VENTRICLE_CENTRE - np.asarray(MNI_CENTRE, dtype=np.float32))[:, None]
    d = template - c
    r2 = (d * d).sum(0)
    return template - d * (np.float32(0.25 * level) * np.exp(-r2 / np.float32(30.0**2))), level


def _check_contrasts(contrasts: Sequence[str]) -> tuple[str, ...]:
    """``contrasts`` as a tuple: known contrasts, each at most once, at least one."""
    contrasts = tuple(contrasts)
    for c in contrasts:
        if c not in acq.CONTRASTS:
            raise UnknownChoiceError("contrast", c, acq.CONTRASTS)
    if len(set(contrasts)) != len(contrasts) or not contrasts:
        raise ValueError(f'Argument "contrasts" should name each contrast at most once, got {contrasts!r}.')
    return contrasts


def _check_spacing(spacing, anatomy: str, shape: tuple[int, int, int]) -> tuple[float, ...]:
    """Voxel size (mm): the anatomy's field of view over ``shape`` when ``spacing`` is None, else checked."""
    if spacing is None:
        return tuple(f / n for f, n in zip(_FOV[anatomy], shape))
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f'Argument "spacing" should be three positive numbers (mm), got {spacing!r}.')
    return spacing


def _grid(shape: tuple[int, int, int], spacing: tuple[float, ...]):
    """The subject's grid centred on the origin: affine, axes, world coordinates (3, N) mm and mean spacing."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(shape, spacing)]
    axes = grid_axes(shape, spacing)
    world = grid_world(axes)  # (3, N) mm, float32
    return affine, axes, world, float(np.mean(spacing))


def _deformed_anatomy(anatomy: str, seed: int, world: np.ndarray, axes, h: float, deform: bool):
    """Steps 1-2: per-subject deformation (and MNI152 atrophy) of the grid into template space, and the anatomy
    sampled there; returns the template points, the deformation's parameters, fractions, regions and the
    anatomy's parameters."""
    to_template, deform_info = deformation(_rng(seed, "deform"), world, axes, enabled=deform)
    if anatomy == "mni152":
        to_template, level = _mni_atrophy(to_template, seed)
        deform_info["atrophy"] = round(level, 4)
        to_template += np.asarray(MNI_CENTRE, dtype=np.float32)[:, None]
    F, regions, anatomy_info = _anatomy(anatomy, to_template, h, seed)
    return to_template, deform_info, F, regions, anatomy_info


def _add_tumour(anatomy: str, seed: int, F: dict, regions: dict, labels: np.ndarray, world: np.ndarray,
                to_template: np.ndarray, shape, spacing, h: float, mass_effect: bool):
    """Step 3: place a tumour, push the tissue around it (resampling the anatomy there, ``F`` and ``regions`` in
    place) and paint it into ``F``; returns the labels, the tumour's parameters and the tissue overrides (the
    labels unchanged and None, None when no tumour fits)."""
    trng = _rng(seed, "tumour")
    tumour_info = place_tumour(labels, world, shape, spacing, trng)
    if tumour_info is None:
        return labels, None, None
    if mass_effect:
        near, moved = push_tissue(tumour_info, world, to_template)
        F_near, regions_near, _ = _anatomy(anatomy, moved, h, seed)
        for t in F:
            F[t][near] = F_near[t]
        for k in regions:
            regions[k][near] = regions_near[k]
    else:
        tumour_info["mass_effect"] = 0.0
    overrides = paint_tumour(F, tumour_info, world, h, trng)
    return labels_from(F), tumour_info, overrides


def _white_matter(labels: np.ndarray, head: np.ndarray, shape) -> np.ndarray:
    """Voxels whose mean signal sets the noise level: white matter, else any brain tissue, else the head."""
    wm = (labels == 3).reshape(shape)
    if not wm.any():
        wm = (labels > 0).reshape(shape)
    if not wm.any():
        wm = head.reshape(shape)
    return wm


def _acquire(c: str, seq: dict, F: dict, props, bias_field, motions: dict, gibbs, snr: float | None,
             wm: np.ndarray, seed: int, shape, spacing) -> tuple[np.ndarray, float]:
    """Step 5 for one contrast: signal equation times bias, misregistration, Gibbs ringing and Rician noise at
    ``snr`` in white matter (own stream per contrast); returns the image and the noise sigma."""
    clean = (acq.synthesise(c, seq, F, props) * bias_field).reshape(shape)
    if c in motions:
        clean = acq.apply_motion(clean, motions[c], spacing)
    if gibbs is not None:
        clean = acq.gibbs(clean, float(gibbs))
    if snr is None:
        return clean, 0.0
    sigma = float(clean[wm].mean()) / snr
    img = acq.add_rician(clean, sigma, np.random.default_rng([seed, _STREAM["noise"], acq.CONTRASTS.index(c)]))
    return img, sigma


def _contrast_volume(img: np.ndarray, affine: np.ndarray, c: str, seq: dict, field: float, prov_base: dict,
                     snr: float | None, sigma: float) -> Volume:
    """One contrast's Volume, with its sequence and DICOM-style MR parameters in the provenance."""
    mr = {
        "ScanningSequence": "SE" if seq["kind"] == "SE" else ["SE", "IR"],
        "RepetitionTime": seq["TR"],
        "EchoTime": seq["TE"],
        "MagneticFieldStrength": field,
    }
    if "TI" in seq:
        mr["InversionTime"] = seq["TI"]
    return Volume(
        img,
        affine.copy(),
        modality=c,
        source=SourceInfo(kind="phantom"),
        provenance={**prov_base, "contrast": c, "sequence": dict(seq), "snr_wm": snr,
                    "noise_sigma": sigma, "mr_parameters": mr},
    )


def _provenance_base(subject_id: str, seed: int, snrs: dict, anatomy: str, field: float, tumour: bool) -> dict:
    """Provenance shared by every Volume of the subject (and the head of its params)."""
    return {
        "generator": "napari_medtrans.phantom",
        "subject_id": subject_id,
        "seed": seed,
        "snr": snrs.get("T1") if "T1" in snrs else next(iter(snrs.values())),
        "anatomy": anatomy,
        "field_strength": field,
        "tumour": bool(tumour),
    }


def _subject_params(prov_base: dict, shape, spacing, contrasts, tissues: dict, seqs: dict, snrs: dict,
                    sigmas: dict, bias_info, deform_info, motions: dict, gibbs, anatomy_info, tumour_info,
                    labels: np.ndarray) -> dict:
    """``PhantomSubject.params``: everything drawn for the subject, JSON-serialisable."""
    return {
        **prov_base,
        "shape": list(shape),
        "spacing": [float(s) for s in spacing],
        "contrasts": list(contrasts),
        "tissues": {k: dict(zip(("T1", "T2", "PD", "gd_mM"), (round(float(x), 4) for x in v)))
                    for k, v in tissues.items()},
        "r1_gadolinium_per_mM_s": R1_GADOLINIUM,
        "sequences": {c: dict(seqs[c]) for c in contrasts},
        "snr_wm": snrs,
        "noise_sigma": sigmas,
        "bias": bias_info,
        "deformation": deform_info,
        "misregistration": motions or {"enabled": False},
        "gibbs_k_space_fraction": None if gibbs is None else float(gibbs),
        "anatomy_params": anatomy_info,
        "tumour_params": tumour_info,
        "label_counts": {LABELS[v]: int(np.count_nonzero(labels == v)) for v in LABELS},
    }


def make_subject(
    seed: int = 0,
    *,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    anatomy: str = "mni152",
    snr: float | Mapping[str, float] | None = 30.0,
    tumour: bool = False,
    mass_effect: bool = True,
    field_strength: float = 3.0,
    bias: bool = True,
    deform: bool = True,
    registered: bool = False,
    gibbs: float | None = None,
    contrasts: Sequence[str] = acq.CONTRASTS,
    subject_id: str | None = None,
) -> PhantomSubject:
    """Make one phantom subject: five contrasts, a label map and a brain mask.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and arguments give identical arrays.
    shape : 3 ints, optional
        Grid size (i, j, k). Default :data:`DEFAULT_SHAPE` of the anatomy (1.5 x 1.5 x 2 mm).
    spacing : 3 floats, optional
        Voxel size in mm. By default the anatomy's field of view divided by ``shape`` (mni152
        180 x 216 x 176 mm, procedural 192 x 192 x 160 mm).
    anatomy : {"mni152", "procedural"}
        The MNI152 templates shipped with nilearn (default), or the analytic head (no data needed).
    snr : float, mapping or None
        White-matter SNR of T1 (the other contrasts follow :data:`~.acquisition.SNR_RATIO`), or a mapping
        contrast -> SNR. None gives noise-free images.
    tumour : bool
        Add a tumour (oedema, enhancing rim, necrosis). ``params["tumour_params"]`` gives its geometry (None when
        the grid is too coarse to hold any brain tissue).
    mass_effect : bool
        Let the tumour push the tissue around it outwards.
    field_strength : float
        Tesla; tissue tables exist for 3.0.
    bias : bool
        Multiply by a smooth bias field (+-10-20 %).
    deform : bool
        Apply the per-subject random affine and smooth deformation to the anatomy.
    registered : bool
        Turn off the small misregistration between the contrasts (default: each contrast but T1 moves a little).
    gibbs : float, optional
        Keep this central fraction of k-space in-plane (e.g. 0.6) to add Gibbs ringing; None: no truncation.
    contrasts : sequence of str
        Which contrasts to synthesise (the ones computed are the same as with all five).
    subject_id : str, optional
        Defaults to ``"phantom-<seed>"``.

    Raises
    ------
    UnknownChoiceError
        Unknown anatomy, contrast or field strength.
    MissingDependencyError
        ``anatomy="mni152"`` without nilearn installed.
    ValueError
        A malformed shape, spacing, seed, snr or gibbs.
    """
    seed = check_seed(seed)
    if anatomy not in ANATOMIES:
        raise UnknownChoiceError("anatomy", anatomy, ANATOMIES)
    shape = check_shape(DEFAULT_SHAPE[anatomy] if shape is None else shape)
    field = _check_field(field_strength)
    contrasts = _check_contrasts(contrasts)
    snrs = snr_per_contrast(snr, contrasts)
    if gibbs is not None and not 0 < float(gibbs) <= 1:
        raise ValueError(f'Argument "gibbs" should be a fraction in (0, 1], got {gibbs!r}.')
    spacing = _check_spacing(spacing, anatomy, shape)
    subject_id = subject_id or f"phantom-{seed}"

    affine, axes, world, h = _grid(shape, spacing)

    # 1-2. anatomy (with per-subject deformation) as tissue fractions and region weights
    to_template, deform_info, F, regions, anatomy_info = _deformed_anatomy(anatomy, seed, world, axes, h, deform)

    # 3. tumour, with mass effect: the anatomy is sampled again where the tumour pushes it
    labels = labels_from(F)
    tumour_info, overrides = None, None
    if tumour:
        labels, tumour_info, overrides = _add_tumour(anatomy, seed, F, regions, labels, world, to_template, shape,
                                                     spacing, h, mass_effect)
    del to_template

    # 4. relaxation per voxel
    tissues = jittered_tissues(field, _rng(seed, "jitter"))
    props = tissue_properties(F, regions, tissues, _rng(seed, "texture"), axes, overrides)
    del regions, overrides

    # 5. acquisition per contrast
    head = F["air"] < 0.5
    bias_fields, bias_info = acq.bias_fields(_rng(seed, "bias"), world, head, shape, spacing, contrasts,
                                             enabled=bias)
    motions = {} if registered else acq.misregistration(_rng(seed, "motion"))
    wm = _white_matter(labels, head, shape)
    seqs = acq.SEQUENCES[field]
    prov_base = _provenance_base(subject_id, seed, snrs, anatomy, field, tumour)
    images: dict[str, Volume] = {}
    sigmas: dict[str, float] = {}
    for c in contrasts:
        img, sigmas[c] = _acquire(c, seqs[c], F, props, bias_fields[c], motions, gibbs, snrs[c], wm, seed, shape,
                                  spacing)
        images[c] = _contrast_volume(img, affine, c, seqs[c], field, prov_base, snrs[c], sigmas[c])

    labels_vol = Volume(labels.reshape(shape).astype(np.float32), affine.copy(), modality="labels",
                        source=SourceInfo(kind="phantom"), provenance={**prov_base, "labels": dict(LABELS)})
    mask_vol = Volume((labels > 0).reshape(shape).astype(np.float32), affine.copy(), modality="mask",
                      source=SourceInfo(kind="phantom"), provenance={**prov_base})
    params = _subject_params(prov_base, shape, spacing, contrasts, tissues, seqs, snrs, sigmas, bias_info,
                             deform_info, motions, gibbs, anatomy_info, tumour_info, labels)
    return PhantomSubject(subject_id=subject_id, images=images, labels=labels_vol, brain_mask=mask_vol,
                          params=params)
