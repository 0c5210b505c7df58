"""Geometry shared by the phantom's parts: grids, signed distances, smooth random fields, deformation."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["grid_axes", "grid_world", "ramp", "ellipsoid_sd", "Field", "deformation", "mirror", "union",
           "tube", "PointIndex", "select_box"]

def grid_axes(shape, spacing) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) along i, j, k for a grid centred at the origin, i/j/k along R/A/S."""
    return [((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * np.float32(s)) for n, s in zip(shape, spacing)]


def grid_world(axes) -> np.ndarray:
    """Voxel centres in mm, (3, N) float32."""
    grids = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grids]).astype(np.float32)


def ramp(sd, h: float):
    """Partial-volume fraction from a signed distance (mm, positive inside) over a voxel of size ``h``."""
    return np.clip(0.5 + sd / h, 0.0, 1.0).astype(np.float32, copy=False)


def ellipsoid_sd(p: np.ndarray, centre, axes):
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


class Field:
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


def deformation(rng, world: np.ndarray, axes, *, enabled: bool):
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
    fields = [Field(rng, -130.0, 130.0, 10.0, 30.0) for _ in range(3)]
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



def mirror(c, s):
    return (c[0] * s, c[1], c[2])


def union(p, parts, origin, scale: float, h: float) -> np.ndarray:
    """Fraction inside the union of ellipsoids (centres relative to ``origin``; axes scaled by ``scale``)."""
    out = np.zeros(p.shape[1], dtype=np.float32)
    for c, a in parts:
        centre = tuple(o + x for o, x in zip(origin, c))
        axes = tuple(x * scale for x in a)
        lo = np.asarray(centre) - np.asarray(axes) - 2 * h
        hi = np.asarray(centre) + np.asarray(axes) + 2 * h
        sel = np.nonzero(np.all((p >= lo[:, None].astype(np.float32)) & (p <= hi[:, None].astype(np.float32)), 0))[0]
        if sel.size:
            sd, _, _, _ = ellipsoid_sd(p[:, sel], centre, axes)
            out[sel] = np.maximum(out[sel], ramp(sd, h))
    return out



class PointIndex:
    """Points (3, N) bucketed on a coarse lattice, so that the points inside a box are found without a full scan."""

    def __init__(self, p: np.ndarray, cell: float = 8.0):
        self.p = p
        self.cell = float(cell)
        self.lo = p.min(axis=1).astype(np.float64)
        key = np.floor((p - self.lo[:, None].astype(np.float32)) / np.float32(cell)).astype(np.int64)
        self.dims = key.max(axis=1) + 1
        flat = np.ravel_multi_index(tuple(key), tuple(self.dims))
        self.order = np.argsort(flat, kind="stable")
        self.starts = np.searchsorted(flat[self.order], np.arange(int(np.prod(self.dims)) + 1))

    def box(self, lo, hi) -> np.ndarray:
        """Indices of the points inside the box [lo, hi] (mm), ascending."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        a = np.maximum(np.floor((lo - self.lo) / self.cell).astype(int), 0)
        b = np.minimum(np.floor((hi - self.lo) / self.cell).astype(int), self.dims - 1)
        if np.any(b < a):
            return np.zeros(0, dtype=np.int64)
        cells = np.ravel_multi_index(tuple(np.meshgrid(*(np.arange(i, j + 1) for i, j in zip(a, b)),
                                                       indexing="ij")), tuple(self.dims)).ravel()
        parts = [self.order[self.starts[c]:self.starts[c + 1]] for c in cells]
        cand = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if not cand.size:
            return cand
        q = self.p[:, cand]
        inside = np.all((q >= lo[:, None].astype(np.float32)) & (q <= hi[:, None].astype(np.float32)), 0)
        return np.sort(cand[inside])


def select_box(p: np.ndarray, lo, hi, index: PointIndex | None = None) -> np.ndarray:
    """Indices of the points ``p`` (3, N) inside the box [lo, hi], through ``index`` when given."""
    if index is not None:
        return index.box(lo, hi)
    lo = np.asarray(lo, dtype=np.float32)
    hi = np.asarray(hi, dtype=np.float32)
    return np.nonzero(np.all((p >= lo[:, None]) & (p <= hi[:, None]), 0))[0]


def tube(p: np.ndarray, points, radius: float, h: float, index: PointIndex | None = None) -> np.ndarray:
    """Fraction inside a tube of ``radius`` mm around the polyline ``points`` (K, 3), at points ``p`` (3, N)."""
    pts = np.asarray(points, dtype=np.float32)
    out = np.zeros(p.shape[1], dtype=np.float32)
    pad = radius + 2 * h
    for a, b in zip(pts[:-1], pts[1:]):
        sel = select_box(p, np.minimum(a, b) - pad, np.maximum(a, b) + pad, index)
        if not sel.size:
            continue
        d = p[:, sel] - a[:, None]
        ab = b - a
        t = np.clip((ab @ d) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        off = d - ab[:, None] * t
        dist = np.sqrt((off * off).sum(0))
        out[sel] = np.maximum(out[sel], ramp(radius - dist, h))
    return out
