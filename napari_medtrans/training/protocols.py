"""Evaluation protocols: how each paper turns a synthetic and a real image into its PSNR / SSIM / MAE.

``medtrans evaluate --protocol NAME``. The project's own protocol scores whole 3-D volumes inside the brain mask
on the reference's intensity range; the papers score 2-D axial slices, normalised, mostly as whole slices. None
of the five papers states all of its choices (no paper gives the PSNR data range, the SSIM window, or whether the
background counts), so each protocol below quotes what its paper says and names what was chosen where it is
silent. A figure made with a paper's protocol can be set beside that paper's table; it is still not the same
experiment (other data, other subjects).

Steps, in this order, for the slice protocols: pick the slices (:attr:`Protocol.slices`) along the axial axis
(the voxel axis closest to the patient's head-foot axis); normalise both images with the *reference's* range
(:attr:`Protocol.normalise`; the synthetic image is clipped to [0, 1] afterwards, as a network with a bounded
output gives it); bring each slice to 256 x 256 (:attr:`Protocol.size`: ``"pad"`` centres it on a zero
background, cropping a larger side; ``"resize"`` resamples it bilinearly); score each slice over its whole area
(data range 1, SSIM with an 11 x 11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, Wang et al. 2004, the values
every cited implementation defaults to); report mean +- sd over all slices of all subjects (:attr:`Protocol.unit`
``"slice"``; HiFi-Syn's Wilcoxon p-values, as small as 1e-72, are only possible with slices as the unit).

Protocols (the papers' words in quotes; §: their section):

``project``
    3-D volumes inside the brain mask, data range = the reference's range inside the mask, 3-D SSIM, mean +- sd
    over subjects (:func:`~napari_medtrans.core.metrics.evaluate_volumes`). What every table of this project uses.
``hifisyn``
    "100 axial cross-sections containing brain tissues are selected" from each subject (§4.1); "Input images are
    resized to 256x256" and "normalized to the range of [-1, 1]" (§4.2). Chosen: the 100 central slices of those
    that contain brain (all of them when fewer), min-max of the reference volume to [0, 1] (the [-1, 1] of the
    inputs, shifted: PSNR with data range 1 on [0, 1] equals data range 2 on [-1, 1]), resize.
``disdiff``
    The same group and wording: "We select 100 axial cross-sections containing brain tissues" (§3.1); mean +- std
    "across the test set" (Table 1). Size and normalisation are not stated; HiFi-Syn's are taken.
``edts``
    BraTS and IXI slices as Fast-DDPM prepares them, "All images have a resolution of 256 x 256", IXI "padded with
    black borders to the resolution of 256 x 256" (§IV-A). Chosen: every axial slice that contains brain, min-max
    of the reference volume to [0, 1], zero padding.
``cdm``
    "We partition the 3D image along the Z-axis into 2D images", "we resize each image to 256x256" (§3.1).
    Chosen: every axial slice, min-max of the reference volume to [0, 1], resize.
``mrnet``
    "axial cross-sections", "input images were resized to a tensor configuration of 3x256x256" (§IV). Chosen:
    every axial slice that contains brain, min-max of the reference volume to [0, 1], resize.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.errors import UnknownChoiceError

__all__ = ["PROTOCOLS", "Protocol", "get_protocol", "axial_axis"]


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One way of scoring (see the module notes).

    Attributes
    ----------
    name, paper : str
        The protocol's name and whose it is.
    slices : {"volume", "brain-100", "brain", "all"}
        3-D volumes, or axial slices: the 100 central ones containing brain, all containing brain, all.
    normalise : {"none", "volume"}
        Intensities as they are (data range from the reference inside the mask), or min-max of the reference
        volume to [0, 1].
    size : {None, "pad", "resize"}
        How slices become 256 x 256.
    unit : {"subject", "slice"}
        What one row of the table's mean +- sd is.
    """

    name: str
    paper: str
    slices: str
    normalise: str
    size: str | None
    unit: str

    @property
    def description(self) -> str:
        if self.slices == "volume":
            return "whole volumes inside the brain mask, data range of the reference, 3-D SSIM, per subject"
        which = {"brain-100": "the 100 central axial slices with brain", "brain": "axial slices with brain",
                 "all": "every axial slice"}[self.slices]
        size = {"pad": ", zero-padded to 256 x 256", "resize": ", resized to 256 x 256", None: ""}[self.size]
        return (f"{self.paper} protocol: {which}{size}, reference volume min-max to [0, 1], whole slices, "
                f"2-D SSIM, mean over slices")

    def score(self, synth: np.ndarray, ref: np.ndarray, mask: np.ndarray | None, affine: np.ndarray | None = None
              ) -> list[dict]:
        """Rows of metrics: one for the subject (``unit="subject"``) or one per scored slice (with ``"slice"``).

        ``mask``: the brain mask (also where "contains brain" is decided; None: reference > 0). ``affine``: the
        reference's voxel-to-world matrix, for the axial axis (None: the last axis).
        """
        from ..core.metrics import evaluate_volumes, slice_metrics

        synth = np.asarray(synth, dtype=np.float32)
        ref = np.asarray(ref, dtype=np.float32)
        if synth.shape != ref.shape or ref.ndim != 3:
            raise ValueError(f"synthetic {synth.shape} and reference {ref.shape} must be 3-D volumes of one shape")
        brain = (np.asarray(mask) > 0) if mask is not None else ref > 0
        if self.slices == "volume":
            return [evaluate_volumes(synth, ref, mask=brain)]
        axis = axial_axis(affine) if affine is not None else 2
        picked = self.pick_slices(brain, axis)
        if not picked:
            return []
        lo, hi = float(ref.min()), float(ref.max())
        span = hi - lo if hi > lo else 1.0
        r = (np.take(ref, picked, axis=axis) - lo) / span
        s = np.clip((np.take(synth, picked, axis=axis) - lo) / span, 0.0, 1.0)
        r, s = np.moveaxis(r, axis, 0), np.moveaxis(s, axis, 0)
        if self.size is not None:
            r, s = _to_256(r, self.size), _to_256(s, self.size)
        m = slice_metrics(s, r, 0, 1.0)
        return [{"slice": int(k), "psnr": float(p), "ssim": float(q), "mae": float(a)}
                for k, p, q, a in zip(picked, m["psnr"], m["ssim"], m["mae"])]

    def pick_slices(self, brain: np.ndarray, axis: int) -> list[int]:
        """Indices of the slices this protocol scores, along ``axis``."""
        n = brain.shape[axis]
        if self.slices == "all":
            return list(range(n))
        other = tuple(a for a in range(3) if a != axis)
        with_brain = [int(k) for k in np.flatnonzero(brain.any(axis=other))]
        if self.slices == "brain" or len(with_brain) <= 100:
            return with_brain
        start = (len(with_brain) - 100) // 2
        return with_brain[start:start + 100]


def _to_256(stack: np.ndarray, how: str) -> np.ndarray:
    """Slices ``[N, H, W]`` to ``[N, 256, 256]``: zero padding (centred; larger sides cropped) or bilinear."""
    if how == "resize":
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
        return F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False)[:, 0].numpy()
    out = np.zeros((stack.shape[0], 256, 256), dtype=np.float32)
    h, w = stack.shape[1:]
    ch, cw = min(h, 256), min(w, 256)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    oy, ox = (256 - ch) // 2, (256 - cw) // 2
    out[:, oy:oy + ch, ox:ox + cw] = stack[:, sy:sy + ch, sx:sx + cw]
    return out


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis whose direction is closest to the patient's head-foot (world z) axis."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    cols = a / np.maximum(np.linalg.norm(a, axis=0, keepdims=True), 1e-12)
    return int(np.argmax(np.abs(cols[2])))


PROTOCOLS: dict[str, Protocol] = {
    "project": Protocol("project", "this project", "volume", "none", None, "subject"),
    "hifisyn": Protocol("hifisyn", "HiFi-Syn", "brain-100", "volume", "resize", "slice"),
    "disdiff": Protocol("disdiff", "DisDiff", "brain-100", "volume", "resize", "slice"),
    "edts": Protocol("edts", "EDTS-Trans", "brain", "volume", "pad", "slice"),
    "cdm": Protocol("cdm", "CDM", "all", "volume", "resize", "slice"),
    "mrnet": Protocol("mrnet", "MRNet", "brain", "volume", "resize", "slice"),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (raises with the known names)."""
    if name not in PROTOCOLS:
        raise UnknownChoiceError("evaluation protocol", str(name), list(PROTOCOLS))
    return PROTOCOLS[name]
