"""Finding a model file: an existing path, "demo" (the shipped demo checkpoint), or a name in the weights store.

One place for it, at the translators layer, so that the CLI, the GUIs and the workflows above training find
models without importing the training package.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import MedtransError, WeightsError
from ..core.weights import resources_dir

__all__ = ["demo_model_path", "resolve_model", "resources_dir", "reverse_direction"]


def demo_model_path() -> Path:
    """The shipped demo checkpoint (T1 -> T2 baseline trained on phantom subjects)."""
    path = resources_dir() / "models" / "demo-t1-t2.safetensors"
    if not path.exists():
        raise WeightsError("the demo model is not shipped in this installation", path)
    return path


def resolve_model(spec: str | os.PathLike) -> Path:
    """Turn a ``--model`` argument into a file: an existing path, ``"demo"``, or a name in the weights store."""
    p = Path(spec)
    if p.exists():
        return p
    if str(spec) == "demo":
        return demo_model_path()
    from ..core import weights

    try:
        return weights.weights_path(str(spec))
    except MedtransError:
        raise WeightsError(
            "no such model file, and no weights of that name in the store "
            "(use a checkpoint path, 'demo', or `medtrans weights import`)",
            spec,
        ) from None


def reverse_direction(model: str | os.PathLike) -> str:
    """The direction opposite to a one-input, one-output model's own (``"T1->T2"`` -> ``"T2->T1"``).

    Whether the model can run it is checked when it is loaded (``load_translator(..., direction=...)``).
    """
    from ..translators.checkpoint import format_direction, load_translator, read_checkpoint_metadata

    path = resolve_model(model)
    info = read_checkpoint_metadata(path)
    spec = info.spec if info.spec and info.spec.get("inputs") and info.spec.get("outputs") else None
    if spec is None:  # no spec in the metadata: the model says it itself
        spec = load_translator(path).spec.to_dict()
    inputs, outputs = tuple(spec["inputs"]), tuple(spec["outputs"])
    if len(inputs) != 1 or len(outputs) != 1:
        raise MedtransError(f"translates {format_direction(inputs, outputs)}: no single reverse direction", path)
    return format_direction(outputs, inputs)
