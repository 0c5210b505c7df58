"""Relaxation and proton density that depend on where a voxel is, at 3 T.

Every tissue class has base values (T1 ms, T2 ms, PD relative to pure water, effective gadolinium concentration
in mM after a standard dose), jittered per subject (3 % SD each). On top of them, inside the brain:

1. **Named deep grey nuclei** (:data:`NUCLEI`) with their own values. Iron shortens T2 (and, less, T1): the
   globus pallidus, substantia nigra, red nucleus and dentate nucleus are darker than white matter on T2-weighted
   images while their T1 lies between white and grey matter, so one T1 value maps to different T2 values in
   different places.
2. **Regions** (:data:`REGION_FACTORS`) that multiply the values of the tissue classes they name: the
   corticospinal tract is brighter on T2 than the white matter around it at the same T1, periventricular white
   matter has longer T1 and T2 (more water), the corpus callosum and the primary motor/sensory and visual
   cortices are more myelinated (shorter T1 and T2), the hippocampus has a longer T2 than neocortex.
3. **Smooth property fields** (correlation ~20 mm) that are only partly shared between T1, T2 and PD
   (correlations 0.4 between log T1 and log T2, 0.3 between log T1 and log PD; SDs 3 %, 3 %, 2 %): the same
   tissue is not the same everywhere, and T1 tells only part of how T2 varies.
4. **Fine texture** (correlation ~2 mm), independent for T1 (3 % SD), T2 (7 %) and PD (2 %): texture is not
   one field shared by every contrast.

Base values at 3 T (T1 ms, T2 ms, PD, gadolinium mM)
----------------------------------------------------
=================  =====  =====  ====  =====  ==========================================================
tissue              T1     T2     PD    Gd    source
=================  =====  =====  ====  =====  ==========================================================
white matter         960     75  0.70  0.003  mean of Wansapura et al. 1999 (832 / 79.6) and Stanisz et al.
                                              2005 (1084 / 69), rounded
grey matter         1580    105  0.80  0.005  mean of Wansapura et al. 1999 (1331 / 110) and Stanisz et al.
                                              2005 (1820 / 99), rounded
deep grey matter    1330     93  0.76  0.005  generic (procedural head): 60 % GM + 40 % WM
CSF                 4300   1900  1.00  0      subarachnoid CSF at 3 T, 4309 / 1886 ms (PMC10696635)
choroid plexus      1300    120  0.85  0.30   vascular stroma between blood and grey matter; strongly
                                              enhancing (our choice of values)
artery              1650    150  0.85  0.60   arterial blood at 3 T: T1 about 1650 ms (Lu et al. 2004),
                                              T2 about 150 ms at high oxygenation (Zhao et al. 2007);
                                              blood-pool gadolinium shortly after injection
vein, sinus         1650     50  0.85  0.60   venous blood (oxygenation ~0.6): T2 about 50 ms at 3 T
                                              (Zhao et al. 2007)
dura                1000     50  0.60  0.10   dense connective tissue: short T2; enhances (no blood-brain
                                              barrier); approximate
scalp, marrow (fat)  380    130  0.90  0      subcutaneous fat at 3 T (Gold et al. 2004)
neck (muscle)       1420     32  0.80  0.05   skeletal muscle at 3 T (Gold et al. 2004)
skull (bone)         250    0.5  0.15  0      cortical bone: T2 well below 1 ms, dark on every contrast
edema               1800    185  0.86  0.012  vasogenic oedema: T1 and T2 lengthened; spread by a field
enhancing tumour    1700    145  0.85  0.15   solid glioblastoma, pre-contrast; T2 and Gd spread by fields
necrosis            2600    350  0.95  0.01   necrotic core: long T1 and T2, close to fluid
=================  =====  =====  ====  =====  ==========================================================

Deep grey nuclei (T1 ms, T2 ms, PD)
-----------------------------------
caudate 1400 / 85 / 0.80, putamen 1270 / 72 / 0.78, globus pallidus 1050 / 55 / 0.74,
thalamus 1150 / 78 / 0.76, red nucleus 1050 / 55 / 0.74, substantia nigra 1050 / 55 / 0.74,
dentate nucleus 1100 / 60 / 0.75.
Representative values inside the ranges reviewed for 3 T by Bojorquez et al. 2017, ordered by iron content as
Gelman et al. 1999 measured transverse relaxation rates at 3 T (globus pallidus > putamen > caudate >
thalamus; R2 rising linearly with the estimated iron concentration), not one study's measurements.

Region factors (multiplying T1, T2, PD of the classes named)
-------------------------------------------------------------
================  ============  =====  =====  =====  ==================================================
region            classes        T1     T2     PD    why
================  ============  =====  =====  =====  ==================================================
corticospinal     WM            1.02   1.18   1.02   the tract is normally T2/FLAIR-hyperintense in the
                                                     posterior limb of the internal capsule (Mirowitz et
                                                     al. 1989)
periventricular   WM            1.08   1.22   1.04   periventricular caps and bands: more interstitial
                                                     water near the ventricles (Sze et al. 1986)
corpus callosum   WM            0.90   0.92   0.97   densely myelinated
motor cortex      GM            0.88   0.94   0.97   heavily myelinated primary cortex (Glasser and Van
visual cortex     GM            0.90   0.95   0.97   Essen 2011: T1w/T2w myelin maps)
hippocampus       GM            1.03   1.10   1.01   longer T2 than neocortex
================  ============  =====  =====  =====  ==================================================

PD values are water contents (WM about 0.70, GM about 0.80 of pure water; Neeb et al. 2006). Tumour values are
representative, inside the ranges quantitative studies report for untreated glioblastoma at 3 T (Badve et al.
2017), not one measurement. The contrast agent shortens T1 as ``1/T1_post = 1/T1 + r1 C`` (``r1 = 4.0 /mM/s``,
Rohrer et al. 2005); the effective concentrations above give the enhancing rim a T1 drop near the 838 +- 210 ms
measured in glioblastoma (Quantitative T1 mapping indicates tumor infiltration beyond the enhancing part of
glioblastomas, 2020), and normal brain (intact blood-brain barrier) 10-50 ms.

References
----------
Wansapura JP et al. NMR relaxation times in the human brain at 3.0 tesla. J Magn Reson Imaging 1999.
Stanisz GJ et al. T1, T2 relaxation and magnetization transfer in tissue at 3T. Magn Reson Med 2005.
Bojorquez JZ et al. What are normal relaxation times of tissues at 3 T? Magn Reson Imaging 2017.
Gelman N et al. MR imaging of human brain at 3.0 T: preliminary report on transverse relaxation rates and
relation to estimated iron content. Radiology 1999.
Lu H et al. Determining the longitudinal relaxation time (T1) of blood at 3.0 Tesla. Magn Reson Med 2004.
Zhao JM et al. Oxygenation and hematocrit dependence of transverse relaxation rates of blood at 3T. Magn Reson
Med 2007.
Mirowitz S et al. Hyperintense signal on T2-weighted MR images in the posterior limb of the internal capsule:
a normal finding. Radiology 1989.
Sze G et al. Foci of MRI signal (pseudo lesions) anterior to the frontal horns: histologic correlations of a
normal finding. AJR 1986.
Glasser MF, Van Essen DC. Mapping human cortical areas in vivo based on myelin content as revealed by T1- and
T2-weighted MRI. J Neurosci 2011.
Gold GE et al. Musculoskeletal MRI at 3.0 T: relaxation times and image contrast. AJR 2004.
Neeb H, Zilles K, Shah NJ. A new method for fast quantitative mapping of absolute water content in vivo.
NeuroImage 2006.
Quantification of T1 and T2 of subarachnoid CSF: implications for water exchange between CSF and brain
tissues. PMC10696635.
Badve C et al. MR fingerprinting of adult brain tumors: initial experience. AJNR 2017.
Rohrer M et al. Comparison of magnetic properties of MRI contrast media solutions at different magnetic field
strengths. Invest Radiol 2005.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .anatomy import TISSUE_ORDER
from .fields import Field

__all__ = ["TISSUES", "NUCLEI", "REGION_FACTORS", "R1_GADOLINIUM", "jittered_tissues", "Properties",
           "tissue_properties"]

#: (T1 ms, T2 ms, PD, gadolinium mM) per tissue and field strength. Sources in the module docstring.
TISSUES: dict[float, dict[str, tuple[float, float, float, float]]] = {
    3.0: {
        "air": (1000.0, 1.0, 0.0, 0.0),
        "fat": (380.0, 130.0, 0.90, 0.0),
        "muscle": (1420.0, 32.0, 0.80, 0.05),
        "bone": (250.0, 0.5, 0.15, 0.0),
        "dura": (1000.0, 50.0, 0.60, 0.10),
        "sinus": (1650.0, 50.0, 0.85, 0.60),
        "csf": (4300.0, 1900.0, 1.00, 0.0),
        "choroid": (1300.0, 120.0, 0.85, 0.30),
        "artery": (1650.0, 150.0, 0.85, 0.60),
        "vein": (1650.0, 50.0, 0.85, 0.60),
        "gm": (1580.0, 105.0, 0.80, 0.005),
        "dgm": (1330.0, 93.0, 0.76, 0.005),
        "wm": (960.0, 75.0, 0.70, 0.003),
        "edema": (1800.0, 185.0, 0.86, 0.012),
        "enhancing": (1700.0, 145.0, 0.85, 0.15),
        "necrosis": (2600.0, 350.0, 0.95, 0.01),
    }
}

#: Deep grey nuclei at 3 T: (T1 ms, T2 ms, PD).
NUCLEI = {
    "caudate": (1400.0, 85.0, 0.80),
    "putamen": (1270.0, 72.0, 0.78),
    "pallidum": (1050.0, 55.0, 0.74),
    "thalamus": (1150.0, 78.0, 0.76),
    "red_nucleus": (1050.0, 55.0, 0.74),
    "substantia_nigra": (1050.0, 55.0, 0.74),
    "dentate": (1100.0, 60.0, 0.75),
}

#: Region -> (classes it applies to, T1, T2, PD factors).
REGION_FACTORS = {
    "corticospinal": (("wm",), 1.02, 1.18, 1.02),
    "periventricular": (("wm",), 1.08, 1.22, 1.04),
    "corpus_callosum": (("wm",), 0.90, 0.92, 0.97),
    "motor_cortex": (("gm",), 0.88, 0.94, 0.97),
    "visual_cortex": (("gm",), 0.90, 0.95, 0.97),
    "hippocampus": (("gm",), 1.03, 1.10, 1.01),
}

#: Longitudinal relaxivity of the gadolinium agent, /mM/s.
R1_GADOLINIUM = 4.0

_BRAIN = ("gm", "dgm", "wm")
# smooth fields: (SD of log T1, log T2, log PD); shared-component weights (T2, PD on the T1 field)
_SMOOTH_SD = (0.03, 0.03, 0.02)
_SMOOTH_SHARED = (0.4, 0.3)
_TEXTURE_SD = (0.03, 0.07, 0.02)
_TEXTURE_MM = 2.0


def jittered_tissues(field: float, rng) -> dict[str, tuple[float, float, float, float]]:
    """Base values of every tissue with a per-subject jitter (3 % SD on T1, T2 and PD, clipped at 2.5 SD)."""
    out = {}
    for t in TISSUE_ORDER:
        t1, t2, pd, gd = TISSUES[field][t]
        j = 1.0 + 0.03 * np.clip(rng.standard_normal(3), -2.5, 2.5)
        out[t] = (t1 * j[0], t2 * j[1], min(pd * j[2], 1.05), gd)
    return out


@dataclasses.dataclass
class Properties:
    """Per-voxel values of one tissue class on the voxels ``sel`` where it is present."""

    sel: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    pd: np.ndarray
    gd: np.ndarray


def _smooth_fields(rng, axes) -> tuple[np.ndarray, ...]:
    """Log-scale fields of T1, T2 and PD (~20 mm correlation), partly shared (resolution-independent)."""
    a, b, c = (Field(rng, -130.0, 130.0, 8.0, 20.0).on_grid(axes) for _ in range(3))
    b = _SMOOTH_SHARED[0] * a + np.float32(np.sqrt(1.0 - _SMOOTH_SHARED[0] ** 2)) * b
    c = _SMOOTH_SHARED[1] * a + np.float32(np.sqrt(1.0 - _SMOOTH_SHARED[1] ** 2)) * c
    return tuple(np.float32(s) * f for s, f in zip(_SMOOTH_SD, (a, b, c)))


def _texture_fields(rng, axes) -> tuple[np.ndarray, ...]:
    """Independent fine log-scale textures of T1, T2 and PD (~3 mm correlation), drawn on the grid itself."""
    from scipy import ndimage

    shape = tuple(len(x) for x in axes)
    spacing = [float(x[1] - x[0]) if len(x) > 1 else 1.0 for x in axes]
    out = []
    for sd in _TEXTURE_SD:
        f = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), [_TEXTURE_MM / s for s in spacing],
                                    mode="wrap", truncate=3.0)
        f -= f.mean()
        f *= np.float32(sd / max(float(f.std()), 1e-12))
        out.append(f.ravel())
    return tuple(out)


def tissue_properties(F, regions: dict[str, np.ndarray], tissues, rng, axes,
                      overrides: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, Properties]:
    """Per-voxel T1, T2, PD and gadolinium of every tissue class present.

    Parameters
    ----------
    F : Fractions
    regions : region weights from the anatomy (``nucleus_<name>`` and the names of :data:`REGION_FACTORS`)
    tissues : jittered base values (:func:`jittered_tissues`)
    rng : the generator for the smooth fields and the texture
    axes : the grid's coordinate axes (mm)
    overrides : tissue -> {"t1" | "t2" | "pd" | "gd": factor over all voxels}, e.g. the tumour's fields
    """
    smooth = _smooth_fields(rng, axes)
    texture = _texture_fields(rng, axes)
    overrides = overrides or {}
    nucleus = {k[len("nucleus_"):]: v for k, v in regions.items() if k.startswith("nucleus_")}
    out = {}
    for t, frac in F.items():
        t1b, t2b, pdb, gd = tissues[t]
        if pdb <= 0:
            continue
        sel = np.nonzero(frac > 1e-4)[0]
        if not sel.size:
            continue
        log1 = texture[0][sel].copy()
        log2 = texture[1][sel].copy()
        log3 = texture[2][sel].copy()
        if t in _BRAIN:
            log1 += smooth[0][sel]
            log2 += smooth[1][sel]
            log3 += smooth[2][sel]
        t1 = t1b * np.exp(log1)
        t2 = t2b * np.exp(log2)
        pd = pdb * np.exp(log3)
        if t == "dgm" and nucleus:
            # the values of the nucleus a voxel lies in (weighted by membership), jittered as the generic value
            w = np.stack([nucleus[k][sel] for k in NUCLEI if k in nucleus])
            weight = w.sum(0)
            inside = weight > 1e-6
            generic = TISSUES[min(TISSUES)]["dgm"][:3]
            for i, arr in enumerate((t1, t2, pd)):
                vals = np.array([NUCLEI[k][i] for k in NUCLEI if k in nucleus], dtype=np.float32)
                own = (w * vals[:, None]).sum(0) / np.maximum(weight, 1e-6)
                arr[inside] *= own[inside] / np.float32(generic[i])  # keeps the subject's jitter
        for region, (classes, f1, f2, f3) in REGION_FACTORS.items():
            if t in classes and region in regions:
                r = regions[region][sel]
                if r.any():
                    t1 *= 1.0 + (f1 - 1.0) * r
                    t2 *= 1.0 + (f2 - 1.0) * r
                    pd *= 1.0 + (f3 - 1.0) * r
        gdv = np.full(sel.size, gd, dtype=np.float32)
        for key, arr in (("t1", t1), ("t2", t2), ("pd", pd), ("gd", gdv)):
            f = overrides.get(t, {}).get(key)
            if f is not None:
                arr *= f[sel]
        out[t] = Properties(sel=sel, t1=t1.astype(np.float32), t2=t2.astype(np.float32),
                            pd=np.minimum(pd, 1.05).astype(np.float32), gd=gdv)
    return out
