"""Tumours: an enhancing rim around a necrotic core, oedema spreading into the white matter, mass effect.

Placement: a random centre in the white matter, deep enough for the tumour to fit. Shape: an ellipsoid with
random axes (0.75-1.3 of the radius) and orientation, lobulated by a smooth random field (amplitude 10-35 %); a
necrotic core of 30-70 % of the radius with its own irregular outline, absent in about one tumour in seven
(solid tumours); oedema 8-25 mm beyond the rim, finger-like because it spreads only into white matter and deep
grey matter of the tumour's hemisphere.

What cannot be read off the pre-contrast images (the point of this module):

- **Enhancement** follows a hidden leakage field (smooth, ~5 mm, log-normal, factor 0.1-3 of the rim's base
  gadolinium concentration) that is independent of every pre-contrast property: parts of the rim enhance
  strongly, parts hardly at all, and nothing in T1, T2, FLAIR or PD says which.
- **Rim and oedema T2 overlap**: each carries its own smooth T2 field (log SD 0.2 for the rim, 0.18 for the
  oedema), so the T2 value alone does not tell solid tumour from oedema.

Mass effect (optional, on by default): tissue within about 1.5 radii is pushed outwards, ``x -> c + (x - c)
(1 - A exp(-|x - c|^2 / L^2))`` sampled backwards with ``A`` in 0.2-0.45 and ``L`` 1.5 radii (monotone in ``|x -
c|`` for ``A < 1``, so nothing folds), which compresses nearby ventricles and sulci.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Fractions
from .fields import Field, ramp

__all__ = ["place_tumour", "mass_effect", "paint_tumour"]


def _rotation(rng) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]], dtype=np.float32)


def place_tumour(labels: np.ndarray, world: np.ndarray, shape, spacing, rng) -> dict | None:
    """Draw a tumour's geometry: centre (mm), radii, shape parameters. None when there is no brain tissue."""
    from scipy import ndimage

    vox = float(max(spacing))
    radius = max(float(rng.uniform(10.0, 22.0)), 2.0 * vox)
    solid = bool(rng.random() < 0.15)
    necrosis = 0.0 if solid else max(min(float(rng.uniform(0.3, 0.7)) * radius, radius - vox), 0.75 * vox)
    edema = radius + max(float(rng.uniform(8.0, 25.0)), 1.5 * vox)
    axes = [float(a) for a in rng.uniform(0.75, 1.3, 3)]
    rotation = _rotation(rng)
    lobulation = float(rng.uniform(0.10, 0.35))
    push = float(rng.uniform(0.2, 0.45))
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
    centre = world[:, int(candidates[int(rng.integers(candidates.size))])]
    return {
        "centre_mm": [round(float(x), 2) for x in centre],
        "enhancing_radius_mm": round(radius, 2),
        "necrosis_radius_mm": round(necrosis, 2),
        "edema_radius_mm": round(edema, 2),
        "axes": [round(a, 3) for a in axes],
        "rotation": [[round(float(v), 5) for v in row] for row in rotation],
        "lobulation": round(lobulation, 4),
        "solid": solid,
        "mass_effect": round(push, 4),
    }


def mass_effect(info: dict, world: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxels a tumour's mass effect moves, and their new template coordinates."""
    c = np.asarray(info["centre_mm"], dtype=np.float32)[:, None]
    length = 1.5 * info["enhancing_radius_mm"]
    d = world - c
    r2 = (d * d).sum(0)
    near = np.nonzero(r2 < (3.0 * length) ** 2)[0]
    shift = d[:, near] * (np.float32(info["mass_effect"]) * np.exp(-r2[near] / np.float32(length**2)))
    return near, template[:, near] - shift


def paint_tumour(F: Fractions, info: dict, world: np.ndarray, h: float, rng) -> dict[str, dict[str, np.ndarray]]:
    """Paint oedema, rim and necrosis; return the tumour's property fields as per-voxel factors.

    Returns ``{tissue: {"t1" | "t2" | "pd" | "gd": factor (N,)}}`` for :func:`.relaxation.tissue_properties`.
    """
    c = np.asarray(info["centre_mm"], dtype=np.float32)
    radius, necrosis, edema = info["enhancing_radius_mm"], info["necrosis_radius_mm"], info["edema_radius_mm"]
    lo, hi = -130.0, 130.0
    shape_field = Field(rng, lo, hi, 4.0, 7.0)
    core_field = Field(rng, lo, hi, 3.0, 4.0)
    edema_field = Field(rng, lo, hi, 4.0, 5.0)
    d = world - c[:, None]
    r = np.sqrt((d * d).sum(0))
    near = np.nonzero(r < 1.75 * edema + 2 * h)[0]
    local = world[:, near]
    rot = np.asarray(info["rotation"], dtype=np.float32)
    e = (rot.T @ d[:, near]) / np.asarray(info["axes"], dtype=np.float32)[:, None]
    r_shape = np.sqrt((e * e).sum(0))
    r_core = r_shape / (1.0 + info["lobulation"] * np.clip(shape_field(local), -2.5, 2.5))
    r_nec = r_shape / (1.0 + 0.25 * np.clip(core_field(local), -2.5, 2.5))
    r_ed = r[near] / (1.0 + 0.3 * np.clip(edema_field(local), -2.5, 2.5))  # < 1.75 edema
    side = 1.0 if c[0] >= 0 else -1.0  # vasogenic oedema stays in its hemisphere
    hemisphere = ramp(side * local[0] + 1.0, h)
    intracranial = 1.0 - sum(F[t][near] for t in ("air", "fat", "muscle", "bone", "dura", "sinus"))
    part = Fractions(near.size)
    part.update({t: f[near].copy() for t, f in F.items()})
    part.paint("edema", ramp(edema - r_ed, h) * hemisphere, over=("wm", "dgm"))
    part.paint("enhancing", ramp(radius - r_core, h) * intracranial)
    if necrosis > 0:
        part.paint("necrosis", ramp(necrosis - r_nec, h) * intracranial)
    for t in F:
        F[t][near] = part[t]

    # property fields (full-size factor maps, 1 away from the tumour)
    n = world.shape[1]

    def factor(sd: float, cell: float = 3.0, sigma: float = 5.0, field=None) -> np.ndarray:
        f = np.ones(n, dtype=np.float32)
        vals = field(local) if field is not None else Field(rng, lo, hi, cell, sigma)(local)
        f[near] = np.exp(np.float32(sd) * np.clip(vals, -2.5, 2.5))
        return f

    rim_t2_field = Field(rng, lo, hi, 3.0, 5.0)
    leak_field = Field(rng, lo, hi, 3.0, 5.0)
    leak = np.ones(n, dtype=np.float32)
    leak[near] = np.clip(np.exp(0.8 * np.clip(leak_field(local), -2.5, 2.5) - 0.1), 0.1, 3.0)
    return {
        "enhancing": {"t2": factor(0.2, field=rim_t2_field), "t1": factor(0.06), "pd": factor(0.03), "gd": leak},
        "edema": {"t2": factor(0.18), "t1": factor(0.07), "pd": factor(0.02)},
        "necrosis": {"t2": factor(0.15), "t1": factor(0.05)},
    }
