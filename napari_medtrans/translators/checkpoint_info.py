"""What a model file says about itself: the checkpoint format's constants, :class:`CheckpointInfo`, the sidecar
rule and the checks of a file's records (normalisation, config bounds) that run before anything is built.

Split from :mod:`.checkpoint` (which re-exports every name) so that the exported-model loaders
(:mod:`.exported`) can use them without importing the loader that imports them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError, ConfigMismatchError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "CheckpointInfo",
    "sidecar_path",
    "read_sidecar_object",
    "validate_normalisation",
    "check_config_bounds",
    "SAFETENSORS_SUFFIXES",
    "PICKLE_SUFFIXES",
    "TORCHSCRIPT_SUFFIXES",
    "ONNX_SUFFIXES",
]

FORMAT = "napari-medtrans/checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "medtrans"
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth")
TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")
ONNX_SUFFIXES = (".onnx",)


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a model file says about itself, read without building the model.

    Attributes
    ----------
    path : Path
        The file.
    sha256 : str
        sha256 of the file bytes (what DICOM export writes into DerivationDescription).
    method : str
        Registry name of the method.
    config : dict
        Keyword arguments for ``create_translator(method, **config)`` (empty for exported models).
    spec : dict or None
        ``TranslatorSpec.to_dict()`` as saved.
    normalisation : dict or None
        Intensity statistics the engine uses to map outputs back to the target contrast's range.
    training : dict
        Command, data, steps, wall time, ... (empty when unknown).
    metrics : dict
        Validation metrics (empty when unknown).
    package_version : str or None
        napari-medtrans version that wrote the file.
    format : str
        ``"safetensors"``, ``"pt"``, ``"torchscript"`` or ``"onnx"``.
    raw : dict
        The whole metadata (or sidecar) as read.
    """

    path: Path
    sha256: str
    method: str
    config: dict
    spec: dict | None
    normalisation: dict | None
    training: dict
    metrics: dict
    package_version: str | None
    format: str = "safetensors"
    raw: dict = dataclasses.field(default_factory=dict)

    @property
    def torch_version(self) -> str | None:
        """torch version that wrote the file, when recorded."""
        return self.raw.get("torch_version")

    @property
    def created(self) -> str | None:
        """ISO 8601 time the file was written, when recorded."""
        return self.raw.get("created")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a model file: the full file name plus ``.json`` (``m.onnx`` -> ``m.onnx.json``)."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def read_sidecar_object(side: Path) -> dict:
    """The JSON object in the sidecar file ``side`` (of a checkpoint or of an exported model).

    Raises
    ------
    CheckpointError
        The file is unreadable, not JSON, or holds something other than an object.
    """
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"sidecar is not readable JSON ({exc})", side) from None
    if not isinstance(data, dict):
        raise CheckpointError("sidecar must hold a JSON object", side)
    return data


def validate_normalisation(norm: Any, where: str | os.PathLike | None = None) -> dict | None:
    """Check the normalisation record the engine relies on and return it as a plain dict.

    Expected shape: ``{"scheme": str, ..., "outputs": {modality: {"lo": float, "hi": float}}}``; every key
    is optional except that each entry of ``"outputs"`` needs finite ``lo < hi``.

    Raises
    ------
    ValueError
        (or :class:`CheckpointError` naming ``where`` when given) describing the offending field.
    """
    if norm is None:
        return None

    def bad(msg: str):
        if where is not None:
            return CheckpointError(f"bad normalisation record: {msg}", where)
        return ValueError(f'Argument "normalisation": {msg}')

    if not isinstance(norm, Mapping):
        raise bad(f"must be a mapping, got {type(norm).__name__}")
    if "scheme" in norm and not isinstance(norm["scheme"], str):
        raise bad('"scheme" must be a string')
    outputs = norm.get("outputs", {})
    if not isinstance(outputs, Mapping):
        raise bad('"outputs" must map modality names to {"lo": ..., "hi": ...}')
    for mod, stats in outputs.items():
        if not isinstance(stats, Mapping) or "lo" not in stats or "hi" not in stats:
            raise bad(f'"outputs"[{mod!r}] must hold "lo" and "hi"')
        try:
            lo, hi = float(stats["lo"]), float(stats["hi"])
        except (TypeError, ValueError):
            raise bad(f'"outputs"[{mod!r}] "lo"/"hi" must be numbers') from None
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise bad(f'"outputs"[{mod!r}] needs finite lo < hi, got lo={lo}, hi={hi}')
    return json.loads(json.dumps(dict(norm)))


_INT_LIMITS = (
    (re.compile(r"depth|blocks|layers|levels|n_down|n_res|convs|heads|items|n_masks|mult"), 64),
    (re.compile(r"width|dim|channels|patch|grid|size|pixels"), 8192),
)
_DEFAULT_INT_LIMIT = 100_000
_MAX_CONFIG_ITEMS = 256


def check_config_bounds(p: Path, method: str, config: Mapping[str, Any]) -> None:
    """Refuse a config with an integer out of bounds, a non-finite float or an oversized list (fails in
    microseconds, before anything is built). Raises :class:`ConfigMismatchError` naming every bad key."""
    problems: list[str] = []

    def walk(key: str, value: Any, limit: int) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, str):
            if len(value) > 1024:
                problems.append(f"{key} is a {len(value)}-character string")
            return
        if isinstance(value, (list, tuple)):
            if len(value) > _MAX_CONFIG_ITEMS:
                problems.append(f"{key} has {len(value)} entries")
                return
            for item in value:
                walk(key, item, limit)
            return
        if isinstance(value, Mapping):
            if len(value) > _MAX_CONFIG_ITEMS:
                problems.append(f"{key} has {len(value)} entries")
                return
            for k, item in value.items():
                walk(f"{key}.{k}", item, _limit_for(str(k)))
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                problems.append(f"{key}={value}")
            return
        if isinstance(value, int) and not 0 <= value <= limit:
            problems.append(f"{key}={value} (allowed 0 to {limit})")

    for key, value in config.items():
        walk(str(key), value, _limit_for(str(key)))
    if problems:
        raise ConfigMismatchError(
            f"config of method {method!r} is out of bounds: {'; '.join(problems[:6])}"
            + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else "")
            + "; the file is damaged or crafted",
            p,
            method=method,
        )


def _limit_for(key: str) -> int:
    for pattern, limit in _INT_LIMITS:
        if pattern.search(key.lower()):
            return limit
    return _DEFAULT_INT_LIMIT
