"""What the translate panel offers and runs, without Qt: model choices, devices, and the translation job.

Model choices, in this order: checkpoints shipped in ``resources/models``, files in the weights store that
look like translator models (model file endings, minus the store's known VGG16/SAM2/MedSAM2 files), files the user loaded ("load file..."), then every registered method with
random weights (marked "untrained": useful to try the pipeline, not for images anyone should look at).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MODEL_SUFFIXES",
    "ModelChoice",
    "TranslateRequest",
    "model_choices",
    "device_choices",
    "describe_choice",
    "keep_translator",
    "take_translator",
    "build_translator",
    "run_translation",
    "preview_buffer",
    "merge_partials",
    "partial_volume",
    "partial_name",
    "cores_but_one",
    "gui_core_left",
]

#: File endings of models the translate panel lists (see ``load_translator``).
MODEL_SUFFIXES = (".safetensors", ".pt", ".pth", ".ts", ".torchscript", ".onnx")


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """One entry of the model list.

    Attributes
    ----------
    label : str
        What the list shows.
    kind : {"checkpoint", "method"}
        A model file, or a registered method built with random weights.
    value : str
        The file path or the method name.
    direction : str or None
        ``"SRC->DST"`` for a direction of a two-way checkpoint (HiFi-Syn, DisDiff, CycleGAN) other than the one
        it was saved in; None runs it as saved.
    """

    label: str
    kind: str
    value: str
    direction: str | None = None


@dataclasses.dataclass
class TranslateRequest:
    """Everything one run needs; built by the panel, executed by :func:`run_translation` in a worker.

    ``inputs`` maps each input modality of the model to ``(display name, Volume)``. ``batch_size`` is the
    engine's (slices per network call; "auto" by default). ``threads`` is torch's intra-op thread count while
    the job runs; None leaves one core to the GUI (see :func:`gui_core_left`).
    """

    choice: ModelChoice
    inputs: dict[str, tuple[str, Any]]
    device: str = "auto"
    steps: int | None = None
    samples: int = 1
    seed: int | None = 0
    batch_size: int | str = "auto"
    threads: int | None = None
    #: Take each input as the model's contrast even when its own label says otherwise (recorded in provenance).
    override_modality: bool = False

    @property
    def input_label(self) -> str:
        return "+".join(name for name, _ in self.inputs.values())


DEMO_MODEL_FILE = "demo-t1-t2.safetensors"


def _model_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(MODEL_SUFFIXES)
                  and not p.name.startswith("."))


def model_choices(extra_files: list[str | Path] = ()) -> list[ModelChoice]:
    """Shipped checkpoints, weights-store models, ``extra_files``, then registered methods (untrained)."""
    from ..core import weights
    from ..translators.lookup import resources_dir
    from ..translators import list_translators

    out: list[ModelChoice] = []
    seen: set[str] = set()

    def add(path: Path, where: str) -> None:
        key = str(Path(path).resolve())
        if key not in seen:
            seen.add(key)
            directions = checkpoint_directions(path)
            own = f", {directions[0].replace('->', ' -> ')}" if len(directions) > 1 else ""
            out.append(ModelChoice(f"{Path(path).name}{own} ({where})", "checkpoint", str(path)))
            for d in directions[1:]:
                out.append(ModelChoice(f"{Path(path).name}, {d.replace('->', ' -> ')} ({where})", "checkpoint",
                                       str(path), d))

    # the demo model first (the default a clinician sees), then the other shipped models by name
    for p in sorted(_model_files(resources_dir() / "models"), key=lambda f: (f.name != DEMO_MODEL_FILE, f.name)):
        add(p, "shipped")
    not_translators = {e.filename for e in weights.MANIFEST}  # VGG16, SAM2, MedSAM2: weights of other tools
    for p in _model_files(weights.store_dir()):
        if p.name not in not_translators:
            add(p, "weights store")
    for p in extra_files:
        add(Path(p), "file")
    for name in list_translators():
        out.append(ModelChoice(f"{name} (untrained: random weights)", "method", name))
    return out


_directions_cache: dict[tuple[str, int, int], list[str]] = {}


def checkpoint_directions(path: str | Path) -> list[str]:
    """Directions a model file translates in, its own first; one entry for a one-way model.

    Read from the file's metadata (its header only) and the method's class, cached by path, size and modification
    time: no model is built, so listing stays quick on the GUI thread. A direction is offered only when the file
    holds the intensity statistics of its output contrast (without them the engine could not map the output into
    that contrast's range). A file that cannot be read gives ``[]``: it is still listed, and loading it reports
    the problem.
    """
    from ..translators import read_checkpoint_metadata
    from ..translators.base import create_translator, meta_device, translator_class
    from ..translators.checkpoint import format_direction, translator_directions

    p = Path(path)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if key in _directions_cache:
            return _directions_cache[key]
        info = read_checkpoint_metadata(p)
        found: list[str] = []
        if info.format == "safetensors" and info.method and info.spec:
            own = (tuple(info.spec["inputs"]), tuple(info.spec["outputs"]))
            cls = translator_class(info.method)
            if cls is None:  # a factory without a return annotation: ask a weightless build
                with meta_device():
                    found = translator_directions(create_translator(info.method, **info.config))
            else:
                found = [format_direction(*own)]
                if getattr(cls, "bidirectional", False) and len(own[0]) == len(own[1]) == 1:
                    found.append(format_direction(own[1], own[0]))
            stats = {**dict((info.normalisation or {}).get("inputs") or {}),
                     **dict((info.normalisation or {}).get("outputs") or {})}
            found = found[:1] + [d for d in found[1:] if all(m in stats for m in d.split("->", 1)[1].split("+"))]
    except Exception:  # noqa: BLE001 - listing must not fail on one bad file; loading it names the problem
        return []
    _directions_cache[key] = found
    return found


def device_choices() -> list[str]:
    """"auto", "cpu", then every CUDA device and Apple MPS when present (:func:`~napari_medtrans.core.device.
    available_devices`)."""
    from ..core.device import available_devices

    return available_devices()


def build_translator(choice: ModelChoice, device: str = "cpu"):
    """Load (checkpoint) or create (method) the translator of ``choice``; runs in a worker."""
    from ..translators import create_translator, load_translator

    if choice.kind == "checkpoint":
        return load_translator(choice.value, device="cpu" if device == "auto" else device,
                               direction=choice.direction)
    return create_translator(choice.value)


def describe_choice(job: Any, choice: ModelChoice) -> dict:
    """The spec of a choice as a dict (read from the file's metadata when possible); a job function.

    A model file is also loaded here and kept for the next Run (:func:`take_translator`): choosing a model is when
    a user expects it to load, and the first slice of the first translation then shows that much sooner."""
    from ..translators import TranslatorSpec, read_checkpoint_metadata

    if choice.kind == "checkpoint" and choice.value.lower().endswith(".safetensors") and choice.direction is None:
        info = read_checkpoint_metadata(choice.value)
        if info.spec:
            _load_ahead(choice)
            return dict(TranslatorSpec.from_dict(info.spec).to_dict(), sha256=info.sha256)
    model = build_translator(choice)
    keep_translator(choice, model)
    info = getattr(model, "checkpoint_info", None)
    return dict(model.spec.to_dict(), sha256=getattr(info, "sha256", None))


def _load_ahead(choice: ModelChoice) -> None:
    """Load the model of a file whose spec was read from its metadata, for the next run. A file that cannot be
    built here (e.g. weights it needs are not in the store) is left to Run, which reports why, as before."""
    from ..core.errors import MedtransError

    try:
        keep_translator(choice, build_translator(choice))
    except (MedtransError, OSError, RuntimeError, ValueError, TypeError, ImportError):
        pass


# The translator last loaded from a file, kept for the next run: one entry, keyed by the file's path, size and
# modification time and the direction, so a changed file is loaded again. A run takes it out (a second run
# started meanwhile loads its own) and puts it back when it ends. Models made from a method name (random
# weights) are never kept: each run makes its own, as before.
_kept_lock = threading.Lock()
_kept: dict[tuple, Any] = {}


def _kept_key(choice: ModelChoice) -> tuple | None:
    if choice.kind != "checkpoint":
        return None
    try:
        st = os.stat(choice.value)
    except OSError:
        return None
    return (os.path.realpath(choice.value), choice.direction, st.st_size, st.st_mtime_ns)


def keep_translator(choice: ModelChoice, model: Any) -> None:
    """Keep ``model`` (built from ``choice``) for the next :func:`take_translator` of the same choice."""
    key = _kept_key(choice)
    if key is None:
        return
    with _kept_lock:
        _kept.clear()
        _kept[key] = model


def take_translator(choice: ModelChoice, device: str = "cpu") -> Any:
    """The kept translator of ``choice`` if the file is unchanged (taken out until :func:`keep_translator` puts it
    back), else a newly built one."""
    key = _kept_key(choice)
    with _kept_lock:
        model = _kept.pop(key, None) if key is not None else None
    return model if model is not None else build_translator(choice, device)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


def cores_but_one(limit: int | None = None) -> int:
    """Every core of this machine but one, at least 1 and at most ``limit``: the torch thread count that leaves
    the GUI's event loop a free core (:func:`gui_core_left`, and the app at start)."""
    n = max(1, (os.cpu_count() or 2) - 1)
    return n if limit is None else max(1, min(int(limit), n))


@contextlib.contextmanager
def gui_core_left(threads: int | None = None):
    """Run torch with ``threads`` intra-op threads (None: every core but one) inside; restored after.

    With every core busy in torch, the GUI thread waits for a core on each turn of its event loop (napari
    stalls of 100+ ms under load); on a loaded CPU the oversubscribed threads also translate slower. An
    explicit ``threads`` is used as given; None never raises the count a user set lower. Nested and concurrent
    uses share one setting; the count from before the first is restored when the last ends.
    """
    global _threads_users, _threads_before
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f'Argument "threads" must be None or a positive integer, got {threads!r}.')
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
        _threads_users += 1
        n = threads if threads is not None else cores_but_one(limit=_threads_before)
        torch.set_num_threads(n)  # also this thread's OpenMP setting, which new threads do not inherit
    try:
        yield n
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def run_translation(job: Any, request: TranslateRequest):
    """Build the translator and translate (a job function for :func:`napari_medtrans.qt.workers.start_job`).

    Progress goes to ``job.report_progress``, finished slices to ``job.report_partial((axis, start, stop,
    block))`` (slices ``start:stop`` along ``axis`` of the first input),
    and ``job.should_cancel`` stops it between batches.
    """
    with gui_core_left(request.threads):
        return _translate(job, request)


def _translate(job: Any, request: TranslateRequest):
    from ..core.engine import translate_volume
    from ..core.errors import TranslationCancelled
    from ..core.preprocess import acquisition_axis

    if job.should_cancel():  # cancelled before the thread started: do not build the model first
        raise TranslationCancelled(0, 0)
    translator = take_translator(request.choice, request.device)
    volumes: Mapping[str, Any] = {m: vol for m, (_name, vol) in request.inputs.items()}
    first = next(iter(volumes.values()))
    arg = first if len(volumes) == 1 else dict(volumes)
    axis = acquisition_axis(first)
    partial: Callable = lambda start, stop, block: job.report_partial((axis, start, stop, block))  # noqa: E731
    try:
        return translate_volume(
            arg,
            translator,
            axis=axis,
            device=request.device,
            steps=request.steps,
            samples=request.samples,
            seed=request.seed,
            batch_size=request.batch_size,
            progress=job.report_progress,
            should_cancel=job.should_cancel,
            on_partial=partial,
            override_modality=request.override_modality,
        )
    finally:
        keep_translator(request.choice, translator)  # for the next run of the same file


def preview_buffer(shape: tuple[int, int, int], axis: int) -> np.ndarray:
    """Zeros of ``shape`` in which every slice along ``axis`` is one contiguous piece of memory.

    Partial results arrive as blocks of slices along the acquisition axis. Fresh zeros are mapped lazily
    by the operating system, so the first write to a C-ordered buffer along its last axis touches (and
    faults in) every page of the volume at once: ~70 ms for 256 x 256 x 155 on the GUI thread. With the
    slices contiguous, each block touches only its own pages.
    """
    if axis not in (0, 1, 2) or len(shape) != 3:
        raise ValueError(f'Argument "axis" must be 0, 1 or 2 for a 3D shape, got axis={axis!r}, shape={shape!r}.')
    order = (axis,) + tuple(i for i in range(3) if i != axis)
    buffer = np.zeros(tuple(shape[i] for i in order), dtype=np.float32)
    return buffer.transpose(np.argsort(order))


def partial_volume(template, data: np.ndarray, done: np.ndarray, axis: int, method: str | None = None,
                   modality: str | None = None):
    """The finished slices of a cancelled run as a Volume marked synthetic and partial, or None if none finished.

    ``template`` gives the grid (an input); ``modality`` the output's contrast when known (else none is claimed).
    ``done`` flags the finished slices along ``axis``; the others stay 0 (blank). The provenance says
    ``partial: {slices_done, slices_total, axis, finished}``, which the DICOM export refuses and every title shows.
    """
    from ..core.volume import Volume

    done = np.asarray(done, dtype=bool)
    if not done.any():
        return None
    prov = {"partial": {"slices_done": int(done.sum()), "slices_total": int(done.size), "axis": int(axis),
                        "finished": [int(i) for i in np.flatnonzero(done)]}}
    if method:
        prov["method"] = method
    return Volume(np.array(data, dtype=np.float32, copy=True), template.affine.copy(), modality=modality,
                  synthetic=True, provenance=prov)


def partial_name(volume, input_label: str) -> str:
    """``SYNTHETIC (partial: 23 of 80 slices) from <input>``."""
    p = volume.provenance["partial"]
    return f"SYNTHETIC (partial: {p['slices_done']} of {p['slices_total']} slices) from {input_label}"


def merge_partials(payloads: Iterable[tuple[int, int, int, np.ndarray]]) -> list[tuple[int, int, int, np.ndarray]]:
    """Join ``(axis, start, stop, block)`` payloads that follow each other along the same axis into one."""
    merged: list[tuple[int, int, int, list[np.ndarray]]] = []
    for axis, start, stop, block in payloads:
        if merged and merged[-1][0] == axis and merged[-1][2] == start:
            merged[-1] = (axis, merged[-1][1], stop, merged[-1][3] + [block])
        else:
            merged.append((axis, start, stop, [block]))
    return [(axis, start, stop, blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=axis))
            for axis, start, stop, blocks in merged]
