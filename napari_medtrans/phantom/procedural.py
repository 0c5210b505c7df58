"""The procedural head: analytic shapes in millimetres, no data needed (the option for tests and for any grid).

Scalp (fat), skull (cortical bone) and subarachnoid CSF following the brain's outline, neck muscle, a cerebrum
whose cortex is folded along the zero set of a smooth random field on the sphere (gyri and sulci of random depth,
a cortical ribbon about 2.7 mm thick), an interhemispheric fissure down to the corpus callosum, Sylvian fissures,
lateral/third/fourth ventricles, caudate, putamen and thalamus (deep grey matter), a foliated cerebellum and the
brainstem. For a given seed it gives the same head at every resolution. It has none of the MNI152 anatomy's
regions (named nuclei, tracts, vessels, choroid plexus, dura): its deep grey matter takes the generic values.
"""

from __future__ import annotations

import math

import numpy as np

from .anatomy import Fractions, paint_sub
from .fields import Field, ellipsoid_sd, mirror, ramp, union

__all__ = ["procedural_fractions"]


def _folding(sd, q, rho, r, fold: Field, depth_field: Field, *, depth_range, gm, csf, bend=None):
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


def procedural_fractions(p: np.ndarray, h: float, rng, atrophy: float) -> Fractions:
    """Tissue fractions of the procedural head at template points ``p`` (3, N), mm."""
    n = p.shape[1]
    F = Fractions(n)
    # random fields on the unit sphere: folding patterns, sulcal depth, overall brain shape
    cereb_fold = Field(rng, -1.1, 1.1, 0.03, 0.06, gradient=True)
    cereb_depth = Field(rng, -1.1, 1.1, 0.05, 0.15)
    cbl_fold = Field(rng, -1.1, 1.1, 0.03, (0.25, 0.05, 0.06), gradient=True)
    cbl_depth = Field(rng, -1.1, 1.1, 0.05, 0.2)
    shape_coef = rng.standard_normal(19)
    bend_fields = [Field(rng, -130.0, 130.0, 6.0, 12.0) for _ in range(3)]
    csf_half = 0.5 + 0.8 * atrophy  # sulcal CSF half-width, mm
    vent = 1.0 + 0.35 * atrophy  # ventricle size factor

    cc, ca = (0.0, 0.0, 8.0), (62.0, 78.0, 50.0)  # cerebrum
    cbl_c, cbl_a = (0.0, -50.0, -30.0), (46.0, 26.0, 19.0)  # cerebellum
    sd_c, q_c, rho_c, r_c = ellipsoid_sd(p, cc, ca)
    near = np.nonzero(sd_c > -25.0)[0]  # the outline modulation (< 10 mm) matters only near the brain
    sd_c[near] += 3.0 * _sphere_poly(shape_coef, q_c[:, near] / np.maximum(rho_c[near], 1e-6))
    sd_b, q_b, rho_b, r_b = ellipsoid_sd(p, cbl_c, cbl_a)
    stem_sd, _, _, _ = ellipsoid_sd(p, (0.0, -18.0, -42.0), (12.0, 12.0, 36.0))

    # neck muscle, then scalp, skull and subarachnoid CSF following the brain's outline
    neck_sd, _, _, _ = ellipsoid_sd(p, (0.0, -20.0, -95.0), (52.0, 56.0, 50.0))
    F.paint("muscle", ramp(neck_sd, h))
    icv_sd = np.maximum(sd_c, sd_b) + 3.0
    F.paint("fat", ramp(icv_sd + 12.0, h))
    F.paint("bone", ramp(icv_sd + 6.0, h))
    F.paint("csf", ramp(icv_sd, h))

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
        inside = ramp(sd, h) * ramp(-sd_b[sel] - 1.5, h)
        paint_sub(F, sel, "wm", inside)
        paint_sub(F, sel, "gm", inside * ramp(ribbon, h))
        paint_sub(F, sel, "csf", inside * ramp(sulcus, h))

    # cerebellum (foliated), then brainstem (continuing through the foramen magnum)
    sel = np.nonzero(sd_b > -h)[0]
    if sel.size:
        sulcus, ribbon = _folding(sd_b[sel], q_b[:, sel], rho_b[sel], r_b[sel], cbl_fold, cbl_depth,
                                  depth_range=(4.0, 10.0), gm=1.6, csf=0.45 + 0.3 * atrophy)
        inside = ramp(sd_b[sel], h)
        paint_sub(F, sel, "wm", inside)
        paint_sub(F, sel, "gm", inside * ramp(ribbon, h))
        paint_sub(F, sel, "csf", inside * ramp(sulcus, h))
    F.paint("wm", ramp(stem_sd, h))

    # deep grey matter, then ventricles (positions relative to the cerebrum centre)
    nuclei = [((14.0, 14.0, 8.0), (4.5, 10.0, 7.0)),  # caudate head
              ((24.0, 2.0, -4.0), (4.5, 14.0, 9.0)),  # putamen
              ((9.0, -14.0, -2.0), (8.0, 13.0, 8.0))]  # thalamus
    F.paint("dgm", union(p, [(mirror(c, s), a) for c, a in nuclei for s in (1, -1)], cc, 1.0, h))
    ventricles = [((6.5, -4.0, 14.0), (4.5, 22.0, 5.5)),  # bodies
                  ((7.5, 20.0, 8.0), (4.5, 9.0, 8.0)),  # frontal horns
                  ((15.0, -28.0, 6.0), (6.5, 10.0, 8.0)),  # atria
                  ((16.0, -42.0, 6.0), (3.5, 10.0, 4.0)),  # occipital horns
                  ((29.0, -8.0, -18.0), (3.5, 13.0, 3.5))]  # temporal horns
    parts = [(mirror(c, s), a) for c, a in ventricles for s in (1, -1)]
    parts.append(((0.0, -6.0, -4.0), (2.0, 12.0, 8.0)))  # third ventricle
    parts.append(((0.0, -30.0, -40.0), (6.0, 3.0, 6.0)))  # fourth ventricle (cerebrum-relative)
    F.paint("csf", union(p, parts, cc, vent, h))
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
