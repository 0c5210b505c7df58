"""Anatomy: partial-volume tissue fractions and the named regions that relaxation depends on.

The default anatomy (``"mni152"``) is built on the ICBM 2009a nonlinear symmetric MNI152 grey-matter,
white-matter and brain-mask templates that ship inside nilearn (1 mm, offline; Fonov et al. 2011). CSF is
brain mask - GM - WM. Around the brain: a 3 mm extra-cerebral CSF layer, a 1 mm dura, a 5 mm skull with fatty
marrow (diploe) in its middle, and a 6 mm scalp. Everything below is placed in template (MNI) millimetres, so it
follows each subject's deformation:

- **Deep grey nuclei** as soft ellipsoids around their MNI positions (caudate head and body, putamen, globus
  pallidus, thalamus, red nucleus, substantia nigra, dentate nucleus): inside one, the template's GM and WM
  become deep grey matter with that nucleus' relaxation (see :mod:`.relaxation`).
- **White-matter regions**: the corpus callosum, the corticospinal tract (a tube from the precentral gyrus
  through the posterior limb of the internal capsule and the cerebral peduncle to the pons), periventricular
  white matter (a weight falling from 1 at the lateral ventricles' wall to 0 at 10 mm).
- **Cortical regions**: primary motor/sensory and visual cortex (heavily myelinated), the hippocampus.
- **Vessels** (tissue "artery", "vein", "sinus"): superior sagittal and transverse sinuses along the skull,
  middle, anterior and posterior cerebral arteries in the Sylvian fissure, the interhemispheric fissure and the
  ambient cistern, the basilar artery, internal cerebral veins, and 30-45 random cortical veins on the brain's
  surface. They displace only CSF (sinuses: only non-brain tissue), so they never cut through parenchyma.
- **Choroid plexus** in the atria and bodies of the lateral ventricles (displacing CSF only), the **falx**
  (dura along the midline of the interhemispheric fissure), and 30-50 **perivascular spaces** (CSF, about
  1.4 mm wide and 6 mm long) in the basal ganglia and the centrum semiovale.

Positions are our own reading of the MNI152 template (checked on its slices), not an atlas: nothing but the four
templates is loaded, so the phantom works offline. Choices: the nuclei are ellipsoids (their real outlines are
not in the shipped templates), and the vessels are polylines of constant radius.

Labels: 0 background and non-brain (air, scalp, marrow, skull, dura, sinuses), 1 CSF (with the choroid plexus,
arteries and cortical veins inside the CSF spaces), 2 GM (cortical and deep), 3 WM, 4 edema, 5 enhancing rim,
6 necrosis. The brain mask is ``labels > 0``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ..core.errors import MedtransError, MissingDependencyError
from .fields import PointIndex, ellipsoid_sd, ramp, select_box, tube

__all__ = ["TISSUE_LABEL", "TISSUE_ORDER", "LABELS", "Fractions", "paint_sub", "labels_from", "mni_fractions",
           "mni_templates", "NUCLEI", "REGIONS"]

#: Label values of the label map.
LABELS = {0: "background", 1: "CSF", 2: "GM", 3: "WM", 4: "edema", 5: "enhancing rim", 6: "necrosis"}

#: Tissue classes of the fraction maps and the label each one counts towards.
TISSUE_LABEL = {
    "air": 0,
    "fat": 0,
    "muscle": 0,
    "bone": 0,
    "dura": 0,
    "sinus": 0,
    "csf": 1,
    "choroid": 1,
    "artery": 1,
    "vein": 1,
    "gm": 2,
    "dgm": 2,
    "wm": 3,
    "edema": 4,
    "enhancing": 5,
    "necrosis": 6,
}
TISSUE_ORDER = tuple(TISSUE_LABEL)

#: Deep grey nuclei: MNI centre (right hemisphere; mirrored to the left) and half-axes, mm.
NUCLEI = {
    "caudate": [((13.0, 13.0, 9.0), (4.5, 8.0, 8.0)), ((16.0, -6.0, 20.0), (3.0, 12.0, 4.0))],
    "putamen": [((25.0, 3.0, 1.0), (4.5, 14.0, 9.0))],
    "pallidum": [((19.0, -3.0, -1.0), (3.0, 7.0, 4.5))],
    "thalamus": [((11.0, -18.0, 6.0), (6.5, 11.0, 8.0))],
    "red_nucleus": [((5.0, -20.0, -9.0), (3.0, 3.5, 3.5))],
    "substantia_nigra": [((11.0, -17.0, -13.0), (3.0, 6.0, 2.5))],
    "dentate": [((15.0, -57.0, -34.0), (5.0, 8.0, 5.0))],
}

#: Region weights (0..1 per voxel) that :mod:`.relaxation` gives their own values.
REGIONS = ("corpus_callosum", "corticospinal", "periventricular", "motor_cortex", "visual_cortex", "hippocampus")

# MNI point at the grid centre, and the brain's centre for surface rays.
MNI_CENTRE = (0.0, -17.0, 14.0)
_SHARPEN = 2.0
_BRAIN_CENTRE = np.array([0.0, -18.0, 15.0], dtype=np.float32)


class Fractions(dict):
    """Tissue name -> fraction array; painting a tissue over a region keeps the fractions summing to one."""

    def __init__(self, n: int):
        super().__init__({t: np.zeros(n, dtype=np.float32) for t in TISSUE_ORDER})
        self["air"][:] = 1.0

    def paint(self, tissue: str, m: np.ndarray, over: Sequence[str] | None = None) -> None:
        """Put ``tissue`` in fraction ``m`` of each voxel, taking it from all tissues or only those in ``over``."""
        nz = np.flatnonzero(m)
        if nz.size == 0:
            return
        if over is None and nz.size < 0.5 * m.size:
            paint_sub(self, nz, tissue, m[nz])
            return
        if over is None:
            keep = 1.0 - m
            for t, f in self.items():
                if t != tissue and f.any():
                    f *= keep
            self[tissue] *= keep
            self[tissue] += m
        else:
            mm = m[nz]
            moved = np.zeros(nz.size, dtype=np.float32)
            for t in over:
                take = self[t][nz] * mm
                self[t][nz] -= take
                moved += take
            self[tissue][nz] += moved


def paint_sub(F: Fractions, sel: np.ndarray, tissue: str, m: np.ndarray) -> None:
    """Paint on the voxel subset ``sel`` only."""
    keep = 1.0 - m
    for t, f in F.items():
        if t != tissue:
            f[sel] *= keep
    F[tissue][sel] = F[tissue][sel] * keep + m


def labels_from(F: Fractions) -> np.ndarray:
    """The label of each voxel: the label group with the largest summed fraction."""
    groups = np.zeros((7, F["air"].size), dtype=np.float32)
    for t, f in F.items():
        groups[TISSUE_LABEL[t]] += f
    return np.argmax(groups, axis=0).astype(np.uint8)


# -- MNI152 ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def mni_templates() -> dict:
    """The MNI152 templates (1 mm, float32) and coarse (2 mm) distance maps derived from them, cached.

    Keys: ``gm``, ``wm``, ``mask``, ``affine``; ``outside`` (mm outside the brain mask), ``depth`` (mm inside
    it), ``ventricle`` (mm from the lateral ventricles), all on the 2 mm grid ``[::2, ::2, ::2]``.
    """
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
    gm = np.clip(np.minimum(gm, mask), 0, 1)
    wm = np.clip(np.minimum(wm, mask - gm), 0, 1)
    # the templates are stored in steps of 1/255: a CSF residue of a few steps inside tissue is rounding
    rest = mask - gm - wm
    small = (rest < 0.03) & (gm + wm > 0)
    scale = np.where(small, mask / np.maximum(gm + wm, 1e-6), 1.0)
    gm, wm = gm * scale, wm * scale
    # An average of many brains blurs the grey/white boundary over several mm; one brain's boundary is sharp.
    # Sharpen the GM share of the parenchyma: q -> clip(0.5 + 2 (q - 0.5)), so deep white matter is pure.
    parenchyma = gm + wm
    q = np.clip(0.5 + _SHARPEN * (gm / np.maximum(parenchyma, 1e-6) - 0.5), 0.0, 1.0)
    gm, wm = (q * parenchyma).astype(np.float32), ((1.0 - q) * parenchyma).astype(np.float32)
    coarse = mask[::2, ::2, ::2] > 0.5
    outside = ndimage.distance_transform_edt(~coarse, sampling=2.0).astype(np.float32)
    depth = ndimage.distance_transform_edt(coarse, sampling=2.0).astype(np.float32)
    csf = (mask - gm - wm)[::2, ::2, ::2]
    # lateral ventricles: CSF deep inside the brain, in the central box
    xs, ys, zs = (affine[i, 3] + 2.0 * np.arange(n) for i, n in enumerate(coarse.shape))
    box = ((np.abs(xs) < 32)[:, None, None] & ((ys > -48) & (ys < 36))[None, :, None]
           & ((zs > -2) & (zs < 36))[None, None, :])
    ventricles = (csf > 0.5) & (depth > 10.0) & box
    ventricles = ndimage.binary_opening(ventricles)
    ventricle = ndimage.distance_transform_edt(~ventricles, sampling=2.0).astype(np.float32)
    return {"gm": gm, "wm": wm, "mask": mask, "affine": affine, "outside": outside, "depth": depth,
            "ventricle": ventricle}


def _sample(vol: np.ndarray, idx: np.ndarray, *, cval: float = 0.0, nearest: bool = False) -> np.ndarray:
    from scipy import ndimage

    mode = "nearest" if nearest else "constant"
    return ndimage.map_coordinates(vol, idx, order=1, mode=mode, cval=cval).astype(np.float32, copy=False)


def _ellipsoid_weight(p: np.ndarray, centre, axes, h: float, index: PointIndex | None = None) -> np.ndarray:
    """Soft membership (0..1) of the ellipsoid at points ``p``, computed only inside its bounding box."""
    out = np.zeros(p.shape[1], dtype=np.float32)
    c = np.asarray(centre, dtype=np.float32)
    a = np.asarray(axes, dtype=np.float32)
    sel = select_box(p, c - a - 2 * h, c + a + 2 * h, index)
    if sel.size:
        sd, _, _, _ = ellipsoid_sd(p[:, sel], c, a)
        out[sel] = ramp(sd, h)
    return out


def _mirrored(c):
    return [c, (-c[0], c[1], c[2])]


def mni_fractions(p: np.ndarray, h: float, rng) -> tuple[Fractions, dict[str, np.ndarray], dict]:
    """Tissue fractions, region weights and what was drawn, at template points ``p`` (3, N) in MNI mm.

    ``rng`` draws the random structures (cortical veins, perivascular spaces); the rest is the template's.
    """
    t = mni_templates()
    index = PointIndex(p)
    origin = t["affine"][:3, 3].astype(np.float32)[:, None]
    idx = p - origin
    mask = np.clip(_sample(t["mask"], idx), 0, 1)
    gm = np.minimum(np.clip(_sample(t["gm"], idx), 0, 1), mask)
    wm = np.minimum(np.clip(_sample(t["wm"], idx), 0, 1), mask - gm)
    outside = _sample(t["outside"], idx / 2.0, nearest=True)
    ventricle = _sample(t["ventricle"], idx / 2.0, nearest=True)
    csf = mask - gm - wm
    F = Fractions(p.shape[1])
    F.paint("fat", ramp(15.0 - outside, h))
    F.paint("bone", ramp(9.0 - outside, h))
    F.paint("fat", 0.6 * ramp(1.0 - np.abs(outside - 6.5), h))  # diploe: fatty marrow inside the skull
    F.paint("dura", ramp(4.0 - outside, h))
    F.paint("csf", ramp(3.0 - outside, h))
    keep = 1.0 - mask
    for f in F.values():
        f *= keep
    F["gm"] += gm
    F["wm"] += wm
    F["csf"] += csf

    regions: dict[str, np.ndarray] = {}
    # deep grey nuclei: inside one, GM and WM become deep grey matter with that nucleus' values
    nuclei = {}
    total = np.zeros(p.shape[1], dtype=np.float32)
    for name, parts in NUCLEI.items():
        w = np.zeros(p.shape[1], dtype=np.float32)
        for centre, axes in parts:
            for c in _mirrored(centre):
                w = np.maximum(w, _ellipsoid_weight(p, c, axes, 2.0, index))
        nuclei[name] = w
        total = np.maximum(total, w)
    F.paint("dgm", total, over=("gm", "wm"))
    regions.update({f"nucleus_{k}": v for k, v in nuclei.items()})

    # white-matter regions
    cc = _ellipsoid_weight(p, (0.0, -4.0, 14.0), (13.0, 38.0, 13.0), 3.0, index) * ramp(ventricle - 1.0, 2.0)
    regions["corpus_callosum"] = cc * ramp(12.0 - np.abs(p[0]), 4.0)
    cst_path = [(30.0, -22.0, 55.0), (26.0, -18.0, 30.0), (22.0, -14.0, 12.0), (20.0, -12.0, 2.0),
                (14.0, -18.0, -12.0), (9.0, -24.0, -24.0), (7.0, -27.0, -38.0)]
    regions["corticospinal"] = np.maximum(*(tube(p, [(s * x, y, z) for x, y, z in cst_path], 3.5, 3.0, index)
                                            for s in (1, -1)))
    regions["periventricular"] = np.clip(1.0 - ventricle / 10.0, 0.0, 1.0) * (ventricle > 0)
    # cortical regions
    regions["motor_cortex"] = np.maximum(*(_ellipsoid_weight(p, c, (14.0, 14.0, 22.0), 6.0, index)
                                           for c in _mirrored((36.0, -22.0, 52.0))))
    regions["visual_cortex"] = np.maximum(*(_ellipsoid_weight(p, c, (9.0, 18.0, 14.0), 5.0, index)
                                            for c in _mirrored((9.0, -86.0, 4.0))))
    regions["hippocampus"] = np.maximum(*(_ellipsoid_weight(p, c, (6.0, 17.0, 6.0), 3.0, index)
                                          for c in _mirrored((28.0, -24.0, -14.0))))

    drawn = _vessels_and_spaces(F, p, h, rng, t, index)
    return F, regions, drawn


def _surface_points(directions: np.ndarray, t: dict, lift: float) -> np.ndarray:
    """Where rays from the brain centre along ``directions`` (K, 3) leave the brain mask, plus ``lift`` mm."""
    radii = np.arange(20.0, 110.0, 1.0, dtype=np.float32)
    pts = _BRAIN_CENTRE[None, None, :] + radii[None, :, None] * directions[:, None, :]
    origin = t["affine"][:3, 3].astype(np.float32)
    inside = _sample(t["mask"], (pts.reshape(-1, 3) - origin).T).reshape(pts.shape[:2]) > 0.5
    last = np.where(inside.any(1), inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    return _BRAIN_CENTRE[None, :] + (radii[last] + lift)[:, None] * directions


def _vessels_and_spaces(F: Fractions, p: np.ndarray, h: float, rng, t: dict, index: PointIndex) -> dict:
    """Paint vessels, choroid plexus, falx and perivascular spaces; return what was drawn (counts)."""
    fluid = ("csf",)
    outer = ("csf", "dura", "bone", "fat", "air")
    # sinuses: superior sagittal along the top of the skull's inner surface, transverse along the back
    arc = np.deg2rad(np.linspace(-20.0, 205.0, 24))
    ssd = np.stack([np.zeros_like(arc), np.cos(arc), np.sin(arc)], 1).astype(np.float32)
    sss = _surface_points(ssd, t, 5.0)
    sss = sss[sss[:, 2] > -10.0]
    F.paint("sinus", tube(p, sss, 3.5, h, index), over=outer)
    for s in (1, -1):
        F.paint("sinus", tube(p, [(0.0, -104.0, -6.0), (s * 30.0, -100.0, -12.0), (s * 52.0, -78.0, -22.0),
                                  (s * 56.0, -52.0, -30.0), (s * 44.0, -36.0, -44.0)], 3.0, h, index), over=outer)
    # arteries in the cisterns and fissures, internal cerebral veins
    arteries = [[(0.0, -24.0, -44.0), (0.0, -18.0, -22.0)]]  # basilar
    veins = []
    for s in (1, -1):
        arteries += [
            [(s * 12.0, 6.0, -16.0), (s * 30.0, 6.0, -14.0), (s * 40.0, 4.0, -8.0), (s * 46.0, -8.0, 2.0),
             (s * 50.0, -24.0, 10.0)],  # middle cerebral
            [(s * 3.0, 8.0, -10.0), (s * 3.0, 30.0, 0.0), (s * 3.0, 34.0, 18.0), (s * 3.0, 14.0, 34.0),
             (s * 3.0, -20.0, 42.0)],  # anterior cerebral
            [(s * 4.0, -20.0, -16.0), (s * 20.0, -32.0, -12.0), (s * 22.0, -60.0, -4.0),
             (s * 12.0, -84.0, 2.0)],  # posterior cerebral
        ]
        veins.append([(s * 2.5, -6.0, 18.0), (s * 2.5, -28.0, 16.0), (0.0, -40.0, 8.0)])  # internal cerebral
    for line in arteries:
        F.paint("artery", tube(p, line, 1.3, h, index), over=fluid)
    for line in veins:
        F.paint("vein", tube(p, line, 1.2, h, index), over=fluid)
    # cortical veins: random arcs on the brain's surface
    n_veins = int(rng.integers(30, 46))
    for _ in range(n_veins):
        a = rng.standard_normal(3)
        a[2] = abs(a[2]) + 0.3  # upper part of the brain
        a /= np.linalg.norm(a)
        b = np.cross(a, rng.standard_normal(3))
        b /= np.linalg.norm(b)
        span = math.radians(float(rng.uniform(15.0, 40.0)))
        ang = np.linspace(-span / 2, span / 2, 8)
        dirs = (np.cos(ang)[:, None] * a + np.sin(ang)[:, None] * b).astype(np.float32)
        F.paint("vein", tube(p, _surface_points(dirs, t, 1.5), float(rng.uniform(0.8, 1.5)), h, index), over=fluid)
    # choroid plexus in the atria and bodies of the lateral ventricles
    for c in _mirrored((26.0, -40.0, 14.0)):
        F.paint("choroid", _ellipsoid_weight(p, c, (5.0, 8.0, 6.0), h, index), over=fluid)
    for c in _mirrored((15.0, -20.0, 21.0)):
        F.paint("choroid", 0.7 * _ellipsoid_weight(p, c, (2.5, 12.0, 2.5), h, index), over=fluid)
    # falx cerebri: dura along the midline of the interhemispheric fissure (never more than 40 % of a voxel)
    F.paint("dura", 0.4 * ramp(0.8 - np.abs(p[0]), h) * (p[2] > 20.0), over=fluid)
    # perivascular spaces: short vertical CSF channels in the basal ganglia and the centrum semiovale
    n_pvs = int(rng.integers(30, 51))
    for k in range(n_pvs):
        if k % 2:
            c = (rng.uniform(12, 28), rng.uniform(-6, 12), rng.uniform(-8, 2))
        else:
            c = (rng.uniform(14, 32), rng.uniform(-40, 20), rng.uniform(24, 40))
        c = (c[0] * (1 if rng.random() < 0.5 else -1), c[1], c[2])
        F.paint("csf", _ellipsoid_weight(p, c, (0.7, 0.7, float(rng.uniform(2.5, 4.0))), h, index),
                over=("wm", "dgm"))
    return {"cortical_veins": n_veins, "perivascular_spaces": n_pvs}
