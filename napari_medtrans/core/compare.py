"""Which images may be compared: the one rule behind every error map and metric of a synthetic image.

An error map, PSNR or SSIM of a synthetic T2 against an acquired PD measures how two contrasts differ, not how
well the T2 was synthesised, yet it looks like a result. So a comparison needs the reference to be the same
contrast as the synthetic image (``Volume.modality``; canonical names T1, T1c, T2, FLAIR, PD):

* both known and equal: allowed;
* either unknown (None): allowed, with a warning the GUI shows beside the result;
* both known and different: refused with :class:`~napari_medtrans.core.errors.ModalityMismatchError`, unless
  the caller passes ``allow_mismatch=True`` (a user who ticked an explicit override), which turns the refusal
  into a warning.

:func:`pick_reference` is the default choice the GUIs make from this rule: a reference of the synthetic
image's contrast, never the image itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ModalityMismatchError
from .volume import normalise_modality

__all__ = ["same_modality", "check_comparable", "pick_reference", "modality_text"]


def _key(modality: str | None) -> str | None:
    m = normalise_modality(modality)
    return None if m is None or not str(m).strip() else str(m).casefold()


def same_modality(a: str | None, b: str | None) -> bool | None:
    """True when both modalities are known and equal, False when both are known and differ, None otherwise."""
    ka, kb = _key(a), _key(b)
    if ka is None or kb is None:
        return None
    return ka == kb


def modality_text(modality: str | None) -> str:
    """A modality for people: its canonical name, or "contrast unknown"."""
    m = normalise_modality(modality)
    return m if m else "contrast unknown"


def check_comparable(synthetic: Any, reference: Any, *, allow_mismatch: bool = False) -> list[str]:
    """Check that ``reference`` may serve to judge ``synthetic`` (error maps, PSNR, SSIM, MAE).

    Parameters
    ----------
    synthetic, reference : Volume
        The image judged and the image it is judged against (anything with a ``modality`` works).
    allow_mismatch : bool
        The user explicitly asked to compare different contrasts: a mismatch becomes a warning.

    Returns
    -------
    list of str
        Warnings to show beside the result (empty when nothing needs saying).

    Raises
    ------
    ModalityMismatchError
        Both contrasts are known and differ (and ``allow_mismatch`` is False); names the reference's file.
    """
    syn_mod, ref_mod = getattr(synthetic, "modality", None), getattr(reference, "modality", None)
    warnings: list[str] = []
    same = same_modality(syn_mod, ref_mod)
    if same is False:
        if not allow_mismatch:
            raise ModalityMismatchError(modality_text(syn_mod), modality_text(ref_mod),
                                        getattr(reference, "path", None))
        warnings.append(
            f"different contrasts (synthetic {modality_text(syn_mod)}, reference {modality_text(ref_mod)}), "
            "compared because the override is on: the error map and metrics measure the contrast difference, "
            "not the translation")
    elif same is None:
        if _key(syn_mod) is None and _key(ref_mod) is None:
            what = "neither image's contrast is known"
        elif _key(syn_mod) is None:
            what = f"the synthetic image's contrast is unknown (the reference is {modality_text(ref_mod)})"
        else:
            what = f"the reference's contrast is unknown (the synthetic image is {modality_text(syn_mod)})"
        warnings.append(f"{what}: make sure both are the same contrast, or the numbers mean nothing")
    data_s, data_r = getattr(synthetic, "data", None), getattr(reference, "data", None)
    if synthetic is reference or (isinstance(data_s, np.ndarray) and isinstance(data_r, np.ndarray)
                                  and data_s.shape == data_r.shape and np.may_share_memory(data_s, data_r)):
        warnings.append("the reference is the synthetic image itself: the error is zero everywhere")
    elif getattr(reference, "synthetic", False):
        warnings.append("the reference is synthetic too: this measures agreement between two translations, "
                        "not accuracy")
    return warnings


def pick_reference(synthetic: tuple[str, str | None], candidates: Iterable[tuple[str, str | None]]) -> str | None:
    """The default reference for ``synthetic``: the first candidate of the same contrast, never itself.

    Parameters
    ----------
    synthetic : (name, modality)
        The image to judge.
    candidates : iterable of (name, modality)
        The possible references in order of preference (acquired images first, say).

    Returns
    -------
    str or None
        A candidate's name. When the synthetic image's contrast is known, only a candidate of that contrast
        qualifies (None when there is none); when it is unknown, the first candidate other than itself.
    """
    name, modality = synthetic
    others = [(n, m) for n, m in candidates if n != name]
    if _key(modality) is None:
        return others[0][0] if others else None
    for n, m in others:
        if same_modality(modality, m):
            return n
    return None
