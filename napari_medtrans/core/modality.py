"""What contrast an MR volume is, from its own evidence.

Two kinds of evidence, used by the NIfTI and DICOM readers:

* **Words**: a series description, protocol or sequence name ("t2_tse_tra", "AX FLAIR", "T1 MPRAGE +C").
  :func:`modality_from_text` reads them (DICOM SeriesDescription / ProtocolName / SequenceName, or the same
  fields of a BIDS / dcm2niix JSON sidecar).
* **Timing**: repetition, echo and inversion times. :func:`modality_from_timing` applies the textbook
  spin-echo weighting rules when no word names the contrast. The thresholds are our choice, set wide so that
  an ambiguous pair gives None rather than a guess:

  =========================================  =======================================
  inversion time >= 1500 ms and TR >= 5000   FLAIR (the fluid signal is nulled)
  inversion time 300-1500 ms, TR < 5000      T1 (MPRAGE-like inversion recovery)
  TR <= 1000 ms and TE <= 30 ms              T1 (T1c when a contrast agent is named)
  TR >= 2000 ms and TE >= 70 ms              T2
  TR >= 2000 ms and TE <= 35 ms              PD
  anything else                              None
  =========================================  =======================================

  Gradient-echo sequences are left to their words: their weighting also depends on the flip angle.

The readers rank the evidence: a NIfTI description naming the contrast (what this tool writes), then a JSON
sidecar, then the DICOM header, and the file name last (:class:`~napari_medtrans.core.volume.Volume`'s
``modality_evidence`` records which one was used).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["modality_from_text", "modality_from_timing", "modality_from_fields", "CONTRAST_AGENT_WORDS", "EVIDENCE",
           "TISSUE_ORDER", "contrast_sign"]

#: Order of the brain's tissues from dark to bright in each contrast (textbook values at 1.5-3 T).
TISSUE_ORDER: dict[str, tuple[str, str, str]] = {
    "T1": ("CSF", "GM", "WM"),
    "T1c": ("CSF", "GM", "WM"),
    "T2": ("WM", "GM", "CSF"),
    "PD": ("WM", "GM", "CSF"),
    "FLAIR": ("CSF", "WM", "GM"),
}


def contrast_sign(source: str, target: str) -> int | None:
    """+1 when ``source`` and ``target`` order the brain's tissues alike (:data:`TISSUE_ORDER`), -1 when in
    reverse (T1 <-> T2), None otherwise or when a contrast is unknown (FLAIR against any other)."""
    a, b = TISSUE_ORDER.get(str(source)), TISSUE_ORDER.get(str(target))
    if a is None or b is None:
        return None
    if a == b:
        return 1
    if a == tuple(reversed(b)):
        return -1
    return None

#: Where a Volume's ``modality_evidence`` says its contrast came from, in words for messages.
EVIDENCE = {
    "header": "the NIfTI header",
    "sidecar": "the JSON sidecar",
    "dicom": "the DICOM header",
    "filename": "the file name",
    "override": "the caller",
    "derived": "a derivation",
}

#: Words (upper case tokens) that mean a T1 image was taken after a contrast agent.
CONTRAST_AGENT_WORDS = frozenset({
    "POST", "GAD", "GADO", "GD", "CE", "T1C", "T1CE", "T1GD", "CONTRAST", "POSTCONTRAST", "POSTGAD", "POSTGD",
    "POSTCON",
})


def modality_from_text(text: str, *, contrast: str = "", agent: str = "") -> str | None:
    """The contrast named in ``text`` (series description, protocol, sequence name), or None.

    FLAIR / dark fluid / TIRM -> "FLAIR"; T1 with post/gad/+C/CE/contrast (or a named contrast ``agent``) ->
    "T1c"; T2 (not T2*) -> "T2"; PD / proton density -> "PD"; T1 / MPRAGE / SPGR / TFE -> "T1". ``contrast``
    is Enhanced MR's AcquisitionContrast ("T1", "T2", "PROTON_DENSITY", "FLUID_ATTENUATED").
    """
    up = str(text or "").upper()
    tokens = set(re.split(r"[\s_\-/.,;:()\[\]]+", up)) - {""}
    contrast = str(contrast or "").upper()
    post = bool(
        tokens & CONTRAST_AGENT_WORDS
        or any(s in up for s in ("+C", "C+", "+GD", "+GAD", "POST-CONTRAST", "POST CONTRAST"))
    ) or bool(str(agent or "").strip())
    if "FLAIR" in up or "TIRM" in tokens or ("DARK" in up and "FLUID" in up) or contrast == "FLUID_ATTENUATED":
        return "FLAIR"
    t2 = bool(re.search(r"T2(?!\*)", up.replace("T2STAR", "T2*"))) or contrast == "T2"
    pd = bool(tokens & {"PD", "PDW", "PD-W"}) or "PROTON" in up or contrast == "PROTON_DENSITY"
    t1 = bool(re.search(r"T1|MPRAGE|MP2RAGE|SPGR|BRAVO|TFE|TFL", up)) or contrast == "T1"
    if t1 and post:
        return "T1c"
    if t2:
        return "T2"
    if pd:
        return "PD"
    if t1:
        return "T1"
    return None


def _ms(value: Any) -> float | None:
    """A time in ms as float, or None for missing / non-numeric / non-finite / non-positive values."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def modality_from_timing(
    tr: Any = None, te: Any = None, ti: Any = None, *, scanning_sequence: Any = "", agent: str = ""
) -> str | None:
    """The contrast implied by TR, TE and TI in milliseconds (see the module table), or None."""
    tr, te, ti = _ms(tr), _ms(te), _ms(ti)
    seq = scanning_sequence
    if isinstance(seq, (list, tuple)):
        seq = "\\".join(str(s) for s in seq)
    seq = str(seq or "").upper()
    if ti is not None:
        if ti >= 1500 and (tr is None or tr >= 5000):
            return "FLAIR"
        if 300 <= ti < 1500 and (tr is None or tr < 5000):
            return "T1c" if str(agent or "").strip() else "T1"
        return None
    if "GR" in seq.split("\\") and "SE" not in seq.split("\\"):
        return None  # gradient echo: the flip angle decides, words must say
    if tr is None or te is None:
        return None
    if tr <= 1000 and te <= 30:
        return "T1c" if str(agent or "").strip() else "T1"
    if tr >= 2000 and te >= 70:
        return "T2"
    if tr >= 2000 and te <= 35:
        return "PD"
    return None


def modality_from_fields(fields: Mapping[str, Any]) -> str | None:
    """The contrast from DICOM-like fields: words first (SeriesDescription, ProtocolName, SequenceName), then
    timing (RepetitionTime, EchoTime, InversionTime, ScanningSequence).

    ``fields`` is a pydicom Dataset or a JSON sidecar (BIDS / dcm2niix spell the same keys; their times are in
    seconds, recognised by values under 20 and converted).
    """

    def get(key: str) -> Any:
        try:
            value = fields.get(key, None)
        except Exception:  # a malformed DICOM element: treat as absent
            return None
        return value

    text = " ".join(str(get(k) or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName"))
    agent = str(get("ContrastBolusAgent") or "")
    found = modality_from_text(text, contrast=str(get("AcquisitionContrast") or ""), agent=agent)
    if found is not None:
        return found
    tr, te, ti = (_ms(get(k)) for k in ("RepetitionTime", "EchoTime", "InversionTime"))
    if isinstance(fields, dict) and _in_seconds(tr, te, ti):
        tr, te, ti = (None if t is None else t * 1000.0 for t in (tr, te, ti))
    return modality_from_timing(tr, te, ti, scanning_sequence=get("ScanningSequence") or "", agent=agent)


def _in_seconds(tr: float | None, te: float | None, ti: float | None) -> bool:
    """True when sidecar times look like seconds (BIDS) rather than milliseconds (DICOM)."""
    if tr is not None:
        return tr < 30.0  # no MR sequence repeats in under 30 ms with a TR quoted in seconds over 30 s
    if te is not None:
        return te < 1.0
    return ti is not None and ti < 10.0
