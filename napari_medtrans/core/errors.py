"""Exceptions that carry data.

Every error a user can meet while loading, translating or exporting is one of these. Each carries the
offending path (when there is one), a plain-language reason, and where it helps the valid choices, so a GUI
can render it without parsing the message (the habit of napari's ``ReaderPluginError``). ``str(err)`` always
names the file and the problem.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MedtransError",
    "VolumeReadError",
    "NotAVolumeError",
    "DicomReadError",
    "NoDicomError",
    "MultipleSeriesError",
    "GeometryError",
    "UnevenSpacingError",
    "InvalidVolumeError",
    "CheckpointError",
    "MethodMismatchError",
    "ConfigMismatchError",
    "UnsafeCheckpointError",
    "UnknownChoiceError",
    "WeightsError",
    "ChecksumError",
    "GeometryMismatchError",
    "TranslationCancelled",
    "suggest",
]


def suggest(value: str, choices: Sequence[str]) -> str | None:
    """Return the closest entry of ``choices`` to ``value`` (for "did you mean" hints), or None."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return match[0] if match else None


class MedtransError(Exception):
    """Base class. ``path`` is the file or folder concerned (or None), ``reason`` the problem in words."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, **data: Any):
        self.reason = reason
        self.path = os.fspath(path) if path is not None else None
        self.data = data
        super().__init__(self._format())

    def _format(self) -> str:
        if self.path is None:
            return self.reason
        return f"{self.path}: {self.reason}"


class VolumeReadError(MedtransError):
    """A file or folder could not be read as an MR volume."""


class NotAVolumeError(VolumeReadError):
    """The path exists but is neither NIfTI nor DICOM (or does not exist)."""


class DicomReadError(VolumeReadError):
    """A DICOM file is corrupt, truncated, or lacks what a volume needs."""


class NoDicomError(DicomReadError):
    """A folder holds no readable DICOM image."""


class MultipleSeriesError(DicomReadError):
    """A folder holds several series; the caller must pick one.

    ``series`` is a list of :class:`napari_medtrans.core.io.dicom.SeriesInfo` (UID, description, number of
    files, modality) in a stable order.
    """

    def __init__(self, path, series: Sequence[Any]):
        self.series = list(series)
        lines = "; ".join(
            f"{s.series_instance_uid} ({s.description or 'no description'}, {s.n_files} files)"
            for s in self.series
        )
        super().__init__(
            f"holds {len(self.series)} DICOM series; choose one with series_uid=... : {lines}", path
        )


class GeometryError(VolumeReadError):
    """Geometry is missing or unusable (no orientation, singular affine, ...)."""


class UnevenSpacingError(GeometryError):
    """Slices are not evenly spaced. ``spacings`` lists the gaps in mm. Nothing is resampled silently."""

    def __init__(self, path, spacings: Sequence[float]):
        self.spacings = [float(s) for s in spacings]
        lo, hi = min(self.spacings), max(self.spacings)
        typical = sorted(self.spacings)[len(self.spacings) // 2]
        odd = [(i, g) for i, g in enumerate(self.spacings) if abs(g - typical) > max(0.01, 0.01 * typical)]
        where = ", ".join(f"{g:.3f} mm between slices {i} and {i + 1}" for i, g in odd[:5])
        more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
        super().__init__(
            f"uneven slice spacing ({lo:.3f} to {hi:.3f} mm across {len(self.spacings) + 1} slices; typical "
            f"{typical:.3f} mm; odd gaps: {where}{more}); the series may have missing slices or mixed "
            "acquisitions. Resample it explicitly or pass allow_uneven=True to read it as-is",
            path,
        )


class InvalidVolumeError(VolumeReadError):
    """The voxel data is unusable: wrong number of dimensions, NaNs, empty, ..."""


class GeometryMismatchError(MedtransError):
    """Two volumes that must share a grid (multi-input translation, metrics) do not."""


class CheckpointError(MedtransError):
    """A checkpoint cannot be loaded: truncated, unknown format, missing metadata."""


class MethodMismatchError(CheckpointError):
    """A checkpoint was written by another method than the one asked for."""

    def __init__(self, path, expected: str, found: str):
        self.expected = expected
        self.found = found
        super().__init__(
            f"checkpoint is for method {found!r}, not {expected!r}", path, expected=expected, found=found
        )


class ConfigMismatchError(CheckpointError):
    """A checkpoint's tensors do not fit the model its config describes."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would run code was refused."""


class UnknownChoiceError(MedtransError, ValueError):
    """A name (translator, weights, device, ...) that is not among the valid choices."""

    def __init__(self, what: str, value: str, choices: Sequence[str]):
        self.what = what
        self.value = value
        self.choices = sorted(str(c) for c in choices)
        hint = suggest(value, self.choices)
        did_you_mean = f" Did you mean {hint!r}?" if hint else ""
        super().__init__(
            f"unknown {what} {value!r}; known: {', '.join(self.choices) or '(none)'}.{did_you_mean}"
        )


class WeightsError(MedtransError):
    """The weights store cannot provide a file (missing, not imported, wrong licence acknowledgement)."""


class ChecksumError(WeightsError):
    """A file's sha256 does not match the manifest."""


class TranslationCancelled(MedtransError):
    """The user cancelled a translation; no output was produced."""

    def __init__(self, done: int = 0, total: int = 0):
        self.done = done
        self.total = total
        super().__init__(f"translation cancelled after {done} of {total} slices; nothing was written")


class TranslatorError(MedtransError, ValueError):
    """A translator was given inputs its spec does not accept, or returned outputs that break its spec."""


class DeviceUnavailableError(MedtransError, RuntimeError):
    """The requested compute device (``"cuda"``, ``"cuda:1"``, ``"mps"``) is not available on this machine."""


__all__ += ["TranslatorError", "DeviceUnavailableError"]


class MissingDependencyError(MedtransError, ImportError):
    """An optional package that the requested feature needs is not installed.

    ``feature`` says what was asked for, ``package`` what is missing, ``extra`` the pip extra that installs it.
    """

    def __init__(self, feature: str, package: str, extra: str | None = None):
        self.feature = feature
        self.package = package
        self.extra = extra
        hint = f"pip install 'napari-medtrans[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            f"{feature} needs the optional package {package!r}, which is not installed; install it with: {hint}",
            package=package,
            extra=extra,
        )


__all__.append("MissingDependencyError")


class ExportError(MedtransError):
    """A volume cannot be exported where or how it was asked (output folder not empty, unusable source, ...)."""


__all__.append("ExportError")


class StudyError(MedtransError):
    """A reader study cannot do what was asked: bad configuration, unknown case or criterion, a score out of
    range, a reader bundle asked for its key, a database of another study or of a newer schema."""


__all__.append("StudyError")


class SegmentationCancelled(TranslationCancelled):
    """The user cancelled a segmentation; no mask was produced.

    A subclass of :class:`TranslationCancelled` so that workers treat it as a cancellation, not an error.
    """

    def __init__(self, done: int = 0, total: int = 0):
        self.done = done
        self.total = total
        MedtransError.__init__(self, f"segmentation cancelled after {done} of {total} slices; no mask was produced")


__all__.append("SegmentationCancelled")


class ModalityMismatchError(MedtransError, ValueError):
    """Two volumes of different contrasts were to be compared (error map, metrics): the numbers would mean
    nothing. ``synthetic`` and ``reference`` are the two modalities."""

    def __init__(self, synthetic: str, reference: str, path: str | os.PathLike | None = None):
        self.synthetic = synthetic
        self.reference = reference
        super().__init__(
            f"the reference is {reference} but the synthetic image is {synthetic}: an error map or metrics "
            f"across contrasts measure the contrast difference, not the translation; choose a {synthetic} "
            "reference",
            path,
            synthetic=synthetic,
            reference=reference,
        )


__all__.append("ModalityMismatchError")


class InputModalityError(TranslatorError):
    """A translator was given a volume whose own evidence (header, sidecar, DICOM tags, file name) says it is
    another contrast than the one the model takes. ``found``, ``expected`` and ``evidence`` say which."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None, *, found: str | None = None,
                 expected: str | None = None, evidence: str | None = None):
        self.found = found
        self.expected = expected
        self.evidence = evidence
        MedtransError.__init__(self, reason, path, found=found, expected=expected, evidence=evidence)


__all__.append("InputModalityError")


class OutputPathError(MedtransError):
    """An output file or folder cannot be written where it was asked: its parent is a file, the folder refuses
    new files (no permission, read-only, /proc), the name is too long, or it exists as the wrong kind. Checked
    before any work by :func:`napari_medtrans.core.io.paths.check_output_path`."""


__all__.append("OutputPathError")
