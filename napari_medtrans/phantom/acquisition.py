"""Acquisition: signal equations, flow voids, receive bias, per-contrast SNR, Gibbs ringing, misregistration.

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
T1c        spin echo, as T1, after gadolinium (``1/T1_post = 1/T1 + r1 C``)
=========  ==========================  =====  =====  ===================================================

Flow voids. Blood that leaves the slice between the excitation and the refocusing pulse gives no echo. Each
vessel class keeps a fraction of its signal per contrast (:data:`FLOW`): fast arterial flow voids on every spin
echo; slow venous flow keeps part of its signal at the short TE of the T1-weighted scans (so veins and sinuses
light up after gadolinium) and almost none at the long TEs of T2, PD and FLAIR. These fractions are our choice;
the physics fixes only the ordering.

Receive bias: a smooth multiplicative field (exponential of a random quadratic scaled to +-10-20 % across the
head, shared by the contrasts of one subject as one coil would be, plus a +-3 % linear term per contrast).

Noise: Rician, ``|S + sigma (n1 + i n2)|`` with ``sigma = mean white-matter signal / SNR`` per contrast. The
white-matter SNR of T1 is the ``snr`` argument; the other contrasts follow :data:`SNR_RATIO`, the ratios of a
typical 3 T clinical protocol (our choice: FLAIR loses signal to the inversion and T1c is usually a faster
acquisition, so both are below T1; PD has the most signal), unless given per contrast.

Gibbs ringing (optional): k-space truncated in-plane, keeping the central ``gibbs`` fraction of each in-plane
axis (a sharp cut, no apodisation), which rings at every sharp edge as a lower-resolution acquisition does.

Inter-contrast misregistration (default on): every contrast except T1 (whose grid the labels share) is resampled
(cubic spline) through its own small rigid motion, a rotation of about 0.15 degrees (SD per axis, at most 0.5)
about the grid centre and a translation of 0.1-0.6 mm in a random direction: sub-voxel, and below 1 mm at the
edge of the brain for all but rare draws, as between the sequences of one session with a still patient.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import UnknownChoiceError
from .relaxation import R1_GADOLINIUM, TISSUES

__all__ = ["CONTRASTS", "SEQUENCES", "SNR_RATIO", "FLOW", "GAIN", "signal", "synthesise", "bias_fields",
           "add_rician", "gibbs", "misregistration", "apply_motion"]

CONTRASTS = ("T1", "T2", "FLAIR", "PD", "T1c")

#: White-matter SNR of each contrast relative to T1's (defaults).
SNR_RATIO = {"T1": 1.0, "T2": 0.9, "FLAIR": 0.6, "PD": 1.2, "T1c": 0.75}

#: Fraction of the signal that flowing blood keeps per contrast (flow voids).
FLOW = {
    "artery": {"T1": 0.05, "T2": 0.03, "FLAIR": 0.03, "PD": 0.05, "T1c": 0.15},
    "vein": {"T1": 0.6, "T2": 0.15, "FLAIR": 0.1, "PD": 0.3, "T1c": 0.8},
    "sinus": {"T1": 0.6, "T2": 0.15, "FLAIR": 0.1, "PD": 0.3, "T1c": 0.8},
}

GAIN = 1000.0


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


def synthesise(contrast: str, seq: dict, F, props) -> np.ndarray:
    """Noise-free image (flat) of one sequence: tissue signals summed by fraction (signed for IR)."""
    out = np.zeros(F["air"].size, dtype=np.float32)
    r1 = R1_GADOLINIUM / 1000.0  # /mM/ms
    for t, pr in props.items():
        t1v = pr.t1
        if seq.get("contrast_agent"):
            t1v = 1.0 / (1.0 / t1v + r1 * pr.gd)
        s = signal(seq["kind"], pr.pd, t1v, pr.t2, tr=seq["TR"], te=seq["TE"], ti=seq.get("TI"), signed=True)
        if t in FLOW:
            s = s * np.float32(FLOW[t][contrast])
        out[pr.sel] += F[t][pr.sel] * s
    return np.abs(out) * np.float32(GAIN)


def bias_fields(rng, world, head, shape, spacing, contrasts, *, enabled: bool):
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


def misregistration(rng) -> dict[str, dict]:
    """A small rigid motion per contrast (T1 is the reference and does not move); drawn for all five."""
    out = {}
    for c in CONTRASTS:
        angles = np.clip(rng.normal(0.0, 0.15, 3), -0.5, 0.5)
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        shift = direction * rng.uniform(0.1, 0.6)
        if c != "T1":
            out[c] = {"rotation_deg": [round(float(a), 4) for a in angles],
                      "translation_mm": [round(float(s), 4) for s in shift]}
    return out


def apply_motion(image: np.ndarray, motion: dict, spacing) -> np.ndarray:
    """Resample ``image`` (on a grid centred at the origin) through a rigid motion, cubic spline."""
    from scipy import ndimage

    ax, ay, az = np.deg2rad(motion["rotation_deg"])
    cx, cy, cz = np.cos([ax, ay, az])
    sx, sy, sz = np.sin([ax, ay, az])
    rot = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    sp = np.asarray(spacing, dtype=np.float64)
    centre = (np.asarray(image.shape) - 1) / 2.0
    # output voxel i samples the input at  R^T (x_i - t)  (x in mm about the centre), in voxel units
    matrix = np.diag(1.0 / sp) @ rot.T @ np.diag(sp)
    offset = centre - matrix @ centre - np.diag(1.0 / sp) @ rot.T @ np.asarray(motion["translation_mm"])
    out = ndimage.affine_transform(image, matrix, offset=offset, order=3, mode="nearest")
    return np.maximum(out, 0.0).astype(np.float32, copy=False)


def gibbs(image: np.ndarray, keep: float) -> np.ndarray:
    """Truncate k-space in-plane (axes 0 and 1) to the central ``keep`` fraction: ringing at sharp edges."""
    if not 0 < keep <= 1:
        raise ValueError(f'Argument "gibbs" should be in (0, 1], got {keep!r}.')
    if keep >= 1:
        return image
    k = np.fft.fftn(image, axes=(0, 1))
    for axis in (0, 1):
        n = image.shape[axis]
        f = np.abs(np.fft.fftfreq(n))
        cut = f > keep * 0.5
        idx = [slice(None)] * image.ndim
        idx[axis] = cut
        k[tuple(idx)] = 0
    return np.abs(np.fft.ifftn(k, axes=(0, 1))).astype(np.float32)


def add_rician(clean: np.ndarray, sigma: float, rng) -> np.ndarray:
    """Rician magnitude noise of standard deviation ``sigma`` per channel."""
    re = clean + sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    im = sigma * rng.standard_normal(clean.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im)
