"""Translate whole datasets and evaluate them, the way papers report results.

``translate_dataset`` writes one synthetic NIfTI per subject and output modality, skipping outputs already
written so an interrupted run resumes, and under ``torchrun`` takes only its share of the subjects (subject
``i`` goes to rank ``i % world_size``), one GPU per process. ``evaluate_dataset`` builds on it and compares each
synthetic volume with the subject's real one inside the brain mask, next to the zero-parameter floors
(:mod:`.floors`: identity, unpaired histogram mapping, per-voxel lookup) fitted on the training subjects and
scored on the same subjects.

Directions. A two-modality checkpoint (HiFi-Syn, DisDiff) translates both ways; ``direction="T2->T1"`` runs the
direction it was not saved for. Its outputs are named after the source too (``T1_from_T2_synthetic.nii.gz``,
against ``T2_synthetic.nii.gz`` for the saved direction), so runs in the two directions into one folder never
skip or overwrite each other's files, and ``evaluate_dataset`` can report several directions in one table.

Maps. A translator may return, next to its image, maps of its own (``spec.maps``, ``TranslationOutput.maps``). Some
are **images of the output contrast**: intermediate results in the same [-1, 1] intensity space as the image, such
as EDTS-Trans's regression branch ``T2_bar`` and diffusion branch ``T2_tilde`` (Eq. 1, 3), which the method fuses
into its image (Eq. 4). Others are not: the TSM probability map (in [0, 1]), MRNet's masks, the spread of repeated
samples. Which is which is decided **by name**: a map is an image when its name is in :data:`IMAGE_MAPS`
(``"regression"``, ``"diffusion"``, ``"fused"``, ``"coarse"``, ``"refined"``: names the translators of this project
give only to images of the output; such a map must have one channel per output modality, else the run stops with an
error naming it); every other map is left alone unless asked for by name (``maps=[...]``, ``medtrans evaluate --map
NAME``), which takes the caller's word that it is an image. ``translate_dataset`` writes each image map it is asked
for next to the synthetic image (:func:`map_path`), mapped into the output contrast's intensity range exactly as
the image is (clipped to [-1, 1], then the output range the engine used), and ``evaluate_dataset`` scores it like
the model, one row per subject with the method ``"map: <name>"`` (:func:`map_method`): a branch ablation
(regression vs diffusion vs fused) from one command, without Python.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core import io
from ..core.dataset import Dataset, load_dataset
from ..core.errors import MedtransError
from ..core.volume import Volume
from ..translators.lookup import demo_model_path, resolve_model, resources_dir, reverse_direction  # noqa: F401 - re-exported for callers of old

__all__ = [
    "resolve_model",
    "demo_model_path",
    "resources_dir",
    "dist_info",
    "output_path",
    "reverse_direction",
    "translate_dataset",
    "evaluate_dataset",
    "IMAGE_MAPS",
    "image_maps",
    "map_path",
    "map_method",
    "evaluate_floors",
    "EvaluationReport",
    "format_table",
]


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def dist_info() -> DistInfo:
    """Rank and world size from the environment ``torchrun`` sets (1 process when absent)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def _device_for_rank(device: str, info: DistInfo) -> str:
    """``device``, except that "auto" in a distributed run is the GPU of the process's local rank (or the CPU)."""
    if device == "auto" and info.world_size > 1:
        from ..core.device import resolve_device

        return str(resolve_device("auto", local_rank=info.local_rank))
    return device


def _safe_name(text: str, default: str, keep: str = "-_.") -> str:
    return "".join(c if (c.isalnum() or c in keep) else "_" for c in text).lstrip(".") or default


def evaluation_dir(data_root: str | os.PathLike, model: str | os.PathLike, precision: str) -> Path:
    """Where ``medtrans evaluate`` keeps a model's synthetic volumes: ``DATA/evaluation/<name>-<sha8>-<precision>``.

    The folder carries the checkpoint's hash and the precision, so outputs of another model (or of the same
    model at another precision) are never reused; every command that translates a dataset shares it.
    """
    import hashlib

    model = Path(model)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:8]
    return Path(data_root) / "evaluation" / f"{model.name.split('.')[0]}-{digest}-{precision}"


def output_path(out_dir: Path, subject_id: str, modality: str, source: str | None = None) -> Path:
    """Where the synthetic ``modality`` of ``subject_id`` goes. Subject ids are sanitised: never a path.

    ``<subject>/<modality>_synthetic.nii.gz``, or ``<subject>/<modality>_from_<source>_synthetic.nii.gz`` when
    ``source`` (the input modalities, ``"T2"`` or ``"T1+T2"``) is given: a direction the checkpoint was not
    saved for.
    """
    tag = "" if source is None else f"_from_{_safe_name(source, 'input', keep='-_+')}"
    return Path(out_dir) / _safe_name(subject_id, "subject") / f"{modality}{tag}_synthetic.nii.gz"


#: Names of maps that are images of the output contrast in the image's [-1, 1] space (module notes): scored by
#: ``evaluate_dataset`` by default. Anything else (``"tsm"``, ``"masks"``, ``"std"``, ...) only when named.
IMAGE_MAPS = ("regression", "diffusion", "fused", "coarse", "refined")


def image_maps(declared: Sequence[str], requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """Which of a translator's maps (``declared``, its ``spec.maps``) to treat as images of the output contrast.

    ``requested`` None: the declared maps whose name is in :data:`IMAGE_MAPS`, in the declared order. Otherwise
    exactly the requested names (an empty sequence: none), each of which must be declared.

    Raises
    ------
    ValueError
        A requested name the translator does not return; the message lists those it does.
    """
    declared = tuple(declared)
    if requested is None:
        return tuple(m for m in declared if m in IMAGE_MAPS)
    if isinstance(requested, str):
        requested = [requested]
    out = tuple(dict.fromkeys(str(m) for m in requested))
    unknown = [m for m in out if m not in declared]
    if unknown:
        raise ValueError(f"the translator returns no map {', '.join(repr(m) for m in unknown)}; it returns "
                         + (", ".join(repr(m) for m in declared) if declared else "no maps"))
    return out


def map_path(out_dir: Path, subject_id: str, modality: str, name: str, source: str | None = None) -> Path:
    """Where the image map ``name`` of the synthetic ``modality`` goes: beside :func:`output_path`'s file,
    ``<subject>/<modality>[_from_<source>]_map-<name>.nii.gz``."""
    return _map_path_for(output_path(out_dir, subject_id, modality, source), name)


def _map_path_for(output: Path, name: str) -> Path:
    stem = output.name[: -len("_synthetic.nii.gz")]
    return output.with_name(f"{stem}_map-{_safe_name(name, 'map')}.nii.gz")


def map_method(name: str) -> str:
    """The ``method`` of an image map's rows in an :class:`EvaluationReport` (``"map: regression"``)."""
    return f"map: {name}"


def _directions(direction: str | Sequence[str] | None) -> list[str | None]:
    if direction is None:
        return [None]
    from ..translators.checkpoint import format_direction, parse_direction

    items = [direction] if isinstance(direction, str) else list(direction)
    if not items:
        raise ValueError('Argument "direction" must name at least one direction, or be None.')
    return list(dict.fromkeys(format_direction(*parse_direction(d)) for d in items))


def translate_dataset(
    model: str | os.PathLike,
    data: str | os.PathLike | Dataset,
    out_dir: str | os.PathLike,
    *,
    split: str | Sequence[str] | None = None,
    device: str = "auto",
    precision: str = "auto",
    steps: int | None = None,
    samples: int = 1,
    seed: int | None = 0,
    overwrite: bool = False,
    direction: str | None = None,
    maps: Sequence[str] | None = (),
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, str, str, Path]]:
    """Translate every subject (of ``split``) of a dataset.

    Returns ``(subject_id, direction, output_modality, path)`` for the subjects of this rank, where direction
    reads like "T1->T2".

    Outputs already present are skipped unless ``overwrite``: an interrupted run resumes where it stopped.
    Each file is written under a temporary name and renamed, so a killed run leaves no half-written file.

    ``direction`` (``"T2->T1"``; None: the checkpoint's own) picks the direction of a two-modality checkpoint;
    outputs of a direction other than the saved one are named after their source too (:func:`output_path`).
    ``precision`` is the engine's (:func:`~napari_medtrans.core.engine.resolve_precision`).

    ``maps``: image maps to write too, one file per output modality at :func:`map_path` in the output's
    intensity range (module notes): names, None for those :func:`image_maps` picks by name, or ``()`` (default)
    for none. A subject counts as translated only when its images and these maps are all there.
    """
    records = _translate(model, data, out_dir, split=split, device=device, precision=precision, steps=steps,
                         samples=samples, seed=seed, overwrite=overwrite, direction=direction, maps=maps, log=log,
                         progress=progress)
    return [(r.subject, r.direction, r.modality, r.path) for r in records]


@dataclasses.dataclass(frozen=True)
class _Record:
    """One synthetic volume written by :func:`_translate` and the image maps written beside it."""

    subject: str
    direction: str
    modality: str
    path: Path
    maps: tuple[tuple[str, Path], ...] = ()


def _translate(model, data, out_dir, *, split, device, precision, steps, samples, seed, overwrite, direction,
               maps, log, progress) -> list[_Record]:
    """:func:`translate_dataset`, returning the map files too."""
    from ..core.engine import translate_volume
    from ..translators.checkpoint import load_translator, parse_direction, redirect_translator

    if direction is not None:
        parse_direction(direction)  # a typo fails before any work

    ds = data if isinstance(data, Dataset) else load_dataset(data)
    out_dir = Path(out_dir)
    info = dist_info()
    subjects = ds.split(split)[info.rank :: info.world_size]
    model_path = resolve_model(model)
    translator = None
    names: tuple[str, ...] = ()
    written: list[_Record] = []
    for n, subject in enumerate(subjects, 1):
        if translator is None:
            saved = load_translator(model_path)
            translator = saved if direction is None else redirect_translator(saved, direction, where=model_path)
            source = None if translator is saved else "+".join(translator.spec.inputs)
            names = _image_map_names(translator, maps, model_path, log)
        spec = translator.spec
        targets = {m: output_path(out_dir, subject.id, m, source) for m in spec.outputs}
        records = [_Record(subject.id, f"{'+'.join(spec.inputs)}->{m}", m, p,
                           tuple((name, _map_path_for(p, name)) for name in names))
                   for m, p in targets.items()]
        wanted = [p for r in records for p in (r.path, *(mp for _, mp in r.maps))]
        if not overwrite and all(p.exists() for p in wanted):
            log(f"[{n}/{len(subjects)}] {subject.id}: already translated, skipped")
            written.extend(records)
            continue
        missing = [m for m in spec.inputs if m not in subject.images]
        if missing:
            raise MedtransError(f"subject {subject.id} has no {', '.join(missing)} image", ds.root)
        inputs = {m: io.load(ds.path(subject.images[m]), modality=m) for m in spec.inputs}
        t0 = time.perf_counter()
        result = translate_volume(
            inputs if len(inputs) > 1 else inputs[spec.inputs[0]],
            translator,
            device=_device_for_rank(device, info),
            precision=precision,
            steps=steps,
            samples=samples,
            seed=seed,
        )
        outputs = getattr(result, "outputs", None) or {spec.outputs[0]: result.volume}
        for record in records:
            io.write_nifti(outputs[record.modality], record.path)
            for name, path in record.maps:
                io.write_nifti(_map_volume(result, spec, name, record.modality, outputs[record.modality]), path)
        written.extend(records)
        log(f"[{n}/{len(subjects)}] {subject.id}: {'+'.join(spec.inputs)} -> {'+'.join(spec.outputs)} "
            + (f"(and the maps {', '.join(names)}) " if names else "")
            + f"in {time.perf_counter() - t0:.1f} s")
        if progress is not None:
            progress(n, len(subjects))
    return written


def _image_map_names(translator, maps, where, log) -> tuple[str, ...]:
    """The image maps to write for ``translator``: named ones checked, the default ones by :data:`IMAGE_MAPS`."""
    spec = translator.spec
    try:
        names = image_maps(spec.maps, maps)
    except ValueError as exc:
        raise MedtransError(str(exc), where) from None
    # an image of the outputs has one channel per output; the channels are only known once it runs, so the
    # check happens in _map_volume (a map with another layout has names "<name>_<c>" for the wrong c)
    if maps is None and names:
        log(f"maps of {spec.method} scored as images of {'+'.join(spec.outputs)}: {', '.join(names)} "
            f"(not: {', '.join(m for m in spec.maps if m not in names) or 'none'})")
    return names


def _map_volume(result, spec, name: str, modality: str, image: Volume) -> Volume:
    """The image map ``name`` for output ``modality`` in that output's intensity range (as the engine maps the
    image: clipped to [-1, 1], then ``(m + 1) * (hi - lo) / 2 + lo``)."""
    n_out = len(spec.outputs)
    c = list(spec.outputs).index(modality)
    key = name if n_out == 1 else f"{name}_{c}"
    have = sorted(k for k in result.maps if k == name or k.startswith(f"{name}_"))
    if key not in result.maps or (n_out == 1 and len(have) != 1):
        raise MedtransError(f"map {name!r} of {spec.method} is not an image of its {n_out} output(s) "
                            f"{'+'.join(spec.outputs)} (it came as {', '.join(have) or 'nothing'}); "
                            "score only maps with one channel per output")
    m = result.maps[key]
    rng = image.provenance.get("output_range") or {}
    lo, hi = float(rng.get("lo", 0.0)), float(rng.get("hi", 1.0))
    data = (np.clip(m.data, -1.0, 1.0) + np.float32(1.0)) * np.float32((hi - lo) / 2.0) + np.float32(lo)
    prov = {**image.provenance, "map": name, "map_of": modality}
    return Volume(data.astype(np.float32), image.affine.copy(), modality=modality, source=image.source,
                  synthetic=True, provenance=prov)


MODEL = "model"


@dataclasses.dataclass
class EvaluationReport:
    """Per-subject metrics and their summary.

    ``rows``: dicts with subject, direction, method, psnr, ssim, mae. ``method`` is :data:`MODEL` for the model's
    own outputs, ``"map: <name>"`` for a map of the translator scored as an image of the output (a branch such
    as EDTS-Trans's ``"map: regression"``; module notes) and ``"floor: <name>"`` for the zero-parameter floors on
    the same subjects.
    """

    rows: list[dict]
    model: str
    split: str | None
    precision: str | None = None
    floor_subjects: int | None = None
    #: The :mod:`.protocols` name the rows were scored with ("project": whole volumes, one row per subject;
    #: a paper's protocol: one row per scored slice, with its "slice" index).
    protocol: str = "project"

    def summary(self, method: str = MODEL, tumour: bool | None = None) -> dict[str, dict[str, tuple[float, float]]]:
        """{direction: {metric: (mean, sd)}} over subjects for one method (sample sd, ddof=1; 0 for one subject).

        ``tumour``: only subjects whose label map has (True) or lacks (False) tumour labels; None: all.
        """
        out: dict[str, dict[str, tuple[float, float]]] = {}
        rows = [r for r in self.rows if r.get("method", MODEL) == method
                and (tumour is None or r.get("tumour") is tumour)]
        for direction in sorted({r["direction"] for r in rows}):
            sel = [r for r in rows if r["direction"] == direction]
            out[direction] = {}
            for metric in ("psnr", "ssim", "mae"):
                vals = np.array([r[metric] for r in sel], dtype=np.float64)
                sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                out[direction][metric] = (float(vals.mean()), sd)
        return out

    @property
    def methods(self) -> list[str]:
        """The model first, then its image maps, then the floors, in the order they were scored."""
        return list(dict.fromkeys([MODEL] + [r.get("method", MODEL) for r in self.rows]))

    def write_csv(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            fields = ["subject", "direction", "method", "tumour", "psnr", "ssim", "mae"]
            if any("slice" in r for r in self.rows):
                fields.insert(1, "slice")
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in self.rows:
                row = {k: r.get(k, MODEL) for k in w.fieldnames}
                row["tumour"] = "" if r.get("tumour") is None else ("yes" if r["tumour"] else "no")
                w.writerow(row)
        return path


def evaluate_dataset(
    model: str | os.PathLike,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str | None = "test",
    device: str = "auto",
    precision: str = "auto",
    steps: int | None = None,
    samples: int = 1,
    seed: int | None = 0,
    direction: str | Sequence[str] | None = None,
    floors: bool = True,
    maps: Sequence[str] | None = None,
    protocol: str = "project",
    log: Callable[[str], None] = print,
) -> EvaluationReport:
    """Translate the subjects of ``split`` into ``out_dir`` (resuming) and score them against the real images.

    ``protocol``: how images are scored (:mod:`.protocols`); the default, "project", is described here. A paper's
    protocol scores the slices it picks, one row per slice, the floors likewise.

    Metrics are computed on whole volumes inside the brain mask (the dataset's mask, else voxels where the
    reference is > 0). The data range for PSNR/SSIM is the reference's intensity range inside the mask.

    With ``floors`` (default), the zero-parameter floors of each direction (:mod:`.floors`) are fitted on the
    dataset's training subjects and scored on the same subjects, one row each per subject; a dataset without
    training subjects gets none (and the log says so).

    ``maps``: the translator's maps scored as images of the output contrast, one row each per subject with the
    method ``"map: <name>"``, after the model's rows and before the floors' (module notes). None (default): the
    maps :func:`image_maps` picks by name (EDTS-Trans: ``"regression"`` and ``"diffusion"``, not ``"tsm"``);
    ``()``: none; names: those maps.

    ``direction`` is one direction (``"T2->T1"``) or several (``["T1->T2", "T2->T1"]``: one row each in the
    table) of a two-modality checkpoint; None is the checkpoint's own direction.
    """
    from ..core.engine import resolve_device, resolve_precision
    from .protocols import get_protocol

    proto = get_protocol(protocol)  # an unknown name fails before any translation
    # resolved once, so the table names the precision every volume was translated in
    precision = resolve_precision(precision, resolve_device(_device_for_rank(device, dist_info())))
    ds = load_dataset(data)
    model_path = resolve_model(model)
    records: list[_Record] = []
    for d in _directions(direction):
        records += _translate(model_path, ds, out_dir, split=split, device=device, precision=precision,
                              steps=steps, samples=samples, seed=seed, overwrite=False, direction=d, maps=maps,
                              log=log, progress=None)
    by_id = {s.id: s for s in ds.subjects}
    rows, map_rows = [], []
    for record in records:
        subject = by_id[record.subject]
        if record.modality not in subject.images:
            continue  # no reference to compare with
        ref = io.load(ds.path(subject.images[record.modality]), modality=record.modality)
        mask = _mask_of(ds, subject, ref)
        tumour = _has_tumour(ds, subject)
        for method, path in ((MODEL, record.path), *((map_method(n), p) for n, p in record.maps)):
            synth = io.load(path, modality=record.modality)
            for scored in proto.score(synth.data, ref.data, mask, ref.affine):
                row = {"subject": record.subject, "direction": record.direction, "method": method, "tumour": tumour,
                       **scored}
                (rows if method == MODEL else map_rows).append(row)
    if not rows:
        raise MedtransError(f"no subject with a reference image in split {split!r}", ds.root)
    n_floor = None
    floor_rows: list[dict] = []
    if floors:
        floor_rows, n_floor = _floor_rows(ds, rows, log, proto)
    return EvaluationReport(rows=rows + map_rows + floor_rows, model=str(model_path), split=split,
                            precision=precision, floor_subjects=n_floor, protocol=proto.name)


def evaluate_floors(
    data: str | os.PathLike | Dataset,
    directions: Sequence[str],
    *,
    split: str | None = "test",
    protocol: str = "project",
    log: Callable[[str], None] = print,
) -> EvaluationReport:
    """The zero-parameter floors alone (no model) for ``directions`` (``"T1->T2"``, ``"T1+T2->T1c"``).

    Fitted on the training subjects, scored on the subjects of ``split`` that have the direction's images.
    """
    from ..translators.checkpoint import format_direction, parse_direction

    ds = data if isinstance(data, Dataset) else load_dataset(data)
    targets = []
    for d in directions:
        inputs, outputs = parse_direction(d)
        for out in outputs:
            label = format_direction(inputs, (out,)).replace(" ", "")
            targets += [{"subject": s.id, "direction": label} for s in ds.split(split)
                        if out in s.images and all(m in s.images for m in inputs)]
    if not targets:
        raise MedtransError(f"no subject in split {split!r} has the images of {', '.join(directions)}", ds.root)
    from .protocols import get_protocol

    proto = get_protocol(protocol)
    rows, n_fit = _floor_rows(ds, targets, log, proto)
    if not rows:
        raise MedtransError("no training subjects to fit the floors on", ds.root)
    return EvaluationReport(rows=rows, model="(none: floors only)", split=split, floor_subjects=n_fit,
                            protocol=proto.name)


def _mask_of(ds: Dataset, subject, ref) -> np.ndarray:
    return io.load(ds.path(subject.mask)).data > 0 if subject.mask else ref.data > 0


#: Label values that mean tumour (oedema, enhancing rim, necrosis), as the phantom writes them.
TUMOUR_LABELS = (4, 5, 6)


def _has_tumour(ds: Dataset, subject) -> bool | None:
    """Whether the subject's label map holds tumour labels; None without a label map."""
    if not subject.labels:
        return None
    path = ds.path(subject.labels)
    labels = ds.convert_labels(np.rint(io.load(path).data).astype(np.int32), path)
    return bool(np.isin(labels, TUMOUR_LABELS).any())


def _floor_rows(ds: Dataset, model_rows: list[dict], log: Callable[[str], None], proto=None
                ) -> tuple[list[dict], int | None]:
    """Rows of the floors for every direction and subject of ``model_rows``, fitted on the training split and
    scored with ``proto`` (a :class:`~.protocols.Protocol`; None: the project's)."""
    from .floors import FLOORS, fit_floors, predict_floor
    from .protocols import get_protocol

    proto = proto or get_protocol("project")

    train = ds.split("train")
    by_id = {s.id: s for s in ds.subjects}
    out: list[dict] = []
    n_fit = None
    for label in dict.fromkeys(r["direction"] for r in model_rows):
        source, target = label.split("->")
        inputs = source.split("+")
        usable = [s for s in train if target in s.images and all(m in s.images for m in inputs)]
        if not usable:
            log(f"floors: no training subject with {source} and {target}; floors of {label} not computed")
            continue

        def pairs(subjects=usable):
            for s in subjects:
                ref = io.load(ds.path(s.images[target]), modality=target)
                yield ({m: io.load(ds.path(s.images[m]), modality=m).data for m in inputs}, ref.data,
                       _mask_of(ds, s, ref))

        log(f"floors: fitting identity, histogram and lookup for {label} on {len(usable)} training subjects")
        model = fit_floors(pairs(), inputs, target)
        n_fit = len(usable)
        for subject_id in dict.fromkeys(r["subject"] for r in model_rows if r["direction"] == label):
            subject = by_id[subject_id]
            tumour = _has_tumour(ds, subject)
            ref = io.load(ds.path(subject.images[target]), modality=target)
            mask = _mask_of(ds, subject, ref)
            images = {m: io.load(ds.path(subject.images[m]), modality=m).data for m in inputs}
            for kind in FLOORS:
                pred = predict_floor(model, kind, images, mask)
                out += [{"subject": subject_id, "direction": label, "method": f"floor: {kind}", "tumour": tumour,
                         **scored} for scored in proto.score(pred, ref.data, mask, ref.affine)]
    return out, n_fit


def format_table(report: EvaluationReport, *, by_tumour: bool = False) -> str:
    """A paper-style table: per direction, the model, its image maps and its floors, mean +- sd over subjects.

    ``by_tumour`` adds the same table over the subjects with tumours and over those without (from the label
    maps), when the dataset has both."""
    from .protocols import get_protocol

    proto = get_protocol(report.protocol)
    n_slices = sum(1 for r in report.rows if r.get("method", MODEL) == MODEL and "slice" in r)
    lines = [
        f"model: {report.model}",
        f"split: {report.split or 'all'} ({len({r['subject'] for r in report.rows})} subjects"
        + (f", {n_slices} slices" if n_slices else "") + f"; {proto.description})"
        + (f"; inference precision {report.precision}" if report.precision else ""),
    ]
    if report.floor_subjects:
        lines.append(f"floors: zero-parameter, fitted on the {report.floor_subjects} training subjects "
                     "(identity rescaled, unpaired histogram mapping, per-voxel lookup)")
    shown = [m[len(map_method("")):] for m in report.methods if m.startswith(map_method(""))]
    if shown:
        lines.append(f"maps: {', '.join(shown)}: images the translator returns beside its output (e.g. its "
                     "branches before fusion), scored like the model")
    groups: list[tuple[str, bool | None]] = [("", None)]
    if by_tumour:
        for flag, name in ((True, "with a tumour"), (False, "without a tumour")):
            n = len({r["subject"] for r in report.rows if r.get("tumour") is flag})
            if n:
                groups.append((f"subjects {name} ({n})", flag))
    for title, flag in groups:
        lines += ["", *([title] if title else []),
                  f"{'direction':<16}{'method':<20}{'PSNR (dB)':>18}{'SSIM':>18}{'MAE':>20}"]
        summaries = {m: report.summary(m, flag) for m in report.methods}
        for direction in dict.fromkeys(d for summary in summaries.values() for d in summary):
            for method, summary in summaries.items():
                if direction not in summary:
                    continue
                m = summary[direction]
                p, s, a = m["psnr"], m["ssim"], m["mae"]
                lines.append(
                    f"{direction:<16}{method:<20}{p[0]:>11.2f} +- {p[1]:<4.2f}{s[0]:>11.4f} +- {s[1]:<5.4f}"
                    f"{_fmt(a[0]):>12} +- {_fmt(a[1]):<6}"
                )
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:.3g}"
    return f"{x:.4g}"
