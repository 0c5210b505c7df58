"""Directions of a translator: ``"T2->T1"`` parsed and written, the directions a loaded translator offers, and the
twin of a two-modality translator (HiFi-Syn, DisDiff) for the other direction with that direction's
normalisation record (see :mod:`.checkpoint`, "Directions"; re-exported there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ..core.errors import CheckpointError, MedtransError
from .base import Translator
from .checkpoint_info import validate_normalisation

__all__ = ["parse_direction", "format_direction", "translator_directions", "redirect_translator"]


def parse_direction(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"T2->T1"`` (or ``"T2:T1"``, ``"T1+T2->T1c"``) -> ``(inputs, outputs)`` with canonical modality names.

    Raises
    ------
    ValueError
        Naming the argument and the expected form.
    """
    if not isinstance(text, str):
        raise TypeError(f'Argument "direction" must be a string like "T2->T1", got {type(text).__name__}.')
    sep = "->" if "->" in text else ":"
    src, found, dst = text.partition(sep)
    from ..core.volume import normalise_modality

    def names(part: str) -> tuple[str, ...]:
        return tuple(normalise_modality(m) for m in part.split("+") if m.strip())

    inputs, outputs = names(src), names(dst)
    if not found or not inputs or not outputs or len(set(inputs)) < len(inputs) or set(inputs) & set(outputs):
        raise ValueError(f'Argument "direction" must read SRC->DST with different modalities (e.g. "T2->T1" '
                         f'or T2:T1), got {text!r}.')
    return inputs, outputs


def format_direction(inputs: tuple[str, ...] | list[str], outputs: tuple[str, ...] | list[str]) -> str:
    """``(("T1",), ("T2",))`` -> ``"T1->T2"`` (inputs joined by ``+``)."""
    return f"{'+'.join(inputs)}->{'+'.join(outputs)}"


def translator_directions(model: Translator) -> list[str]:
    """The directions a loaded translator can run in, its own first (``["T1->T2", "T2->T1"]``)."""
    own = format_direction(model.spec.inputs, model.spec.outputs)
    if not getattr(type(model), "bidirectional", False):
        return [own]
    return list(dict.fromkeys([own, *(format_direction(i, o) for i, o in model.directions())]))


def _where(model: Translator, where: str | os.PathLike | None) -> str:
    info = getattr(model, "checkpoint_info", None)
    path = where if where is not None else getattr(info, "path", None)
    return os.fspath(path) if path is not None else f"{model.spec.method} translator"


def _normalisation_for(norm: Mapping | None, inputs: tuple[str, ...], outputs: tuple[str, ...], own: str,
                       where: str) -> dict:
    """The normalisation record of a checkpoint (written for direction ``own``) for ``inputs -> outputs``.

    The trainer stores per-modality statistics under ``"inputs"`` and ``"outputs"``; the new direction's output
    ranges may come from either. Training normalised the old inputs per volume, so ``"targets"`` becomes
    ``"volume"``.
    """
    # Without statistics the engine would map the output into the input's range: the other contrast's.
    stats = {} if norm is None else {**dict(norm.get("inputs") or {}), **dict(norm.get("outputs") or {})}
    missing = [m for m in outputs if m not in stats]
    if missing:
        raise CheckpointError(
            f"has no intensity statistics for {', '.join(missing)} ("
            + (f"its normalisation record, written for {own}, holds {', '.join(sorted(stats)) or 'none'}"
               if norm is not None else "it has no normalisation record")
            + f"), so {format_direction(inputs, outputs)} could not "
            f"map its output into the {', '.join(missing)} range; retrain or re-save it with per-modality statistics",
            where,
        )
    out = json.loads(json.dumps(dict(norm)))  # type: ignore[arg-type]
    out["inputs"] = {m: stats[m] for m in inputs if m in stats}
    out["outputs"] = {m: stats[m] for m in outputs}
    if "targets" in out and not set(outputs) <= set(norm.get("outputs") or {}):
        out["targets"] = "volume"
    out["direction"] = format_direction(inputs, outputs)
    out["saved_direction"] = own
    return validate_normalisation(out, where)


def redirect_translator(model: Translator, direction: str, *, where: str | os.PathLike | None = None) -> Translator:
    """``model`` for ``direction``: itself when that is its own direction, else the other direction's twin.

    The twin (only for a class with ``bidirectional = True``) is built with source and target swapped and gets a
    copy of every tensor, the same ``checkpoint_info`` (the file is the same), and the normalisation record of
    the new direction: outputs are mapped into the range stored for the new output modality.

    Parameters
    ----------
    model : Translator
        A loaded translator (with ``checkpoint_info`` and ``normalisation`` when it came from a file).
    direction : str
        ``"SRC->DST"`` (see :func:`parse_direction`).
    where : path-like, optional
        The file, for error messages (default: ``model.checkpoint_info.path``).

    Raises
    ------
    CheckpointError
        The model does not offer ``direction`` (the message names the file and the directions it offers), or its
        normalisation record lacks the statistics of the new output modality.
    """
    inputs, outputs = parse_direction(direction)
    own = format_direction(model.spec.inputs, model.spec.outputs)
    if (inputs, outputs) == (model.spec.inputs, model.spec.outputs):
        return model
    place = _where(model, where)
    offered = translator_directions(model)
    asked = format_direction(inputs, outputs)
    if asked not in offered:
        kind = "a two-modality translator" if len(offered) > 1 else "a one-direction translator"
        raise CheckpointError(f"holds {kind} ({model.spec.method}) that translates {' or '.join(offered)}, "
                              f"not {asked}", place, direction=asked, choices=offered)
    if len(inputs) != 1 or len(outputs) != 1:  # bidirectional translators map one modality to one
        raise CheckpointError(f"cannot translate {asked}", place, direction=asked, choices=offered)
    try:
        twin = model.for_direction(inputs[0], outputs[0])
    except (MedtransError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot build the {asked} direction of {model.spec.method}: {exc}", place) from None
    info = getattr(model, "checkpoint_info", None)
    twin.checkpoint_info = info
    twin.normalisation = _normalisation_for(getattr(model, "normalisation", None), inputs, outputs, own, place)
    return twin
