"""What the Segment panel runs in its workers: the requests, the model pool, and the job functions (segment,
compare, DICOM SEG export). No widgets here; :mod:`napari_medtrans.qt.segment_panel` wires them to buttons.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SegmentRequest", "EvaluateRequest", "SegmenterPool", "run_segmentation", "run_evaluation",
           "export_seg", "has_own_series"]


@dataclasses.dataclass
class SegmentRequest:
    """One segmentation job: ``mode`` is "slices" (each prompted slice in 2D) or "propagate"."""

    image: str
    volume: Any
    prompts: list
    mode: str = "slices"
    direction: str = "both"
    model: str = "medsam2"
    device: str = "auto"
    largest_component: bool = False


@dataclasses.dataclass
class EvaluateRequest:
    """The Table III comparison: ``images`` by name, the ground truth, its label values, the prompt mode, and
    the user's prompts (SlicePrompt objects in frame coordinates of the ground truth's grid) or None for prompts
    derived from the ground truth."""

    images: dict
    truth: Any
    labels: list | None
    mode: str = "slices"
    model: str = "medsam2"
    device: str = "auto"
    prompts: list | None = None

    @property
    def prompt_source(self) -> str:
        """"user" or "ground truth"."""
        return "user" if self.prompts else "ground truth"


class SegmenterPool:
    """Segmenters by (model, device), built on first use (in a worker) and kept with their caches."""

    def __init__(self, factory: Callable[[str, str], Any] | None = None):
        self._factory = factory
        self._items: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str, device: str):
        with self._lock:
            key = (model, device)
            if key not in self._items:
                if self._factory is not None:
                    self._items[key] = self._factory(model, device)
                else:
                    from ..segment import Segmenter

                    self._items[key] = Segmenter.from_name(model, device=device)
            return self._items[key]

    def release(self) -> None:
        """Free every model and cache."""
        with self._lock:
            for seg in self._items.values():
                seg.release()
            self._items.clear()


def run_segmentation(job, pool: SegmenterPool, request: SegmentRequest):
    """Job function: the SegmentationResult of ``request``."""
    seg = pool.get(request.model, request.device)
    kw = dict(largest_component=request.largest_component, progress=job.report_progress,
              should_cancel=job.should_cancel)
    if request.mode == "propagate":
        return seg.propagate(request.volume, request.prompts, direction=request.direction, **kw)
    return seg.segment_slices(request.volume, request.prompts, **kw)


def run_evaluation(job, pool: SegmenterPool, request: EvaluateRequest):
    """Job function: the SegEvalReport of ``request``."""
    from ..segment.evaluate import evaluate_segmentation

    return evaluate_segmentation(request.images, request.truth, pool.get(request.model, request.device),
                                 labels=request.labels, mode=request.mode, prompts=request.prompts or None,
                                 progress=job.report_progress, should_cancel=job.should_cancel)


def has_own_series(image) -> bool:
    """True when ``image`` carries the headers of its own DICOM series (a SEG can reference them as they are)."""
    src = image.source
    if src is None or src.kind != "dicom" or not src.dicom_datasets:
        return False
    return not image.synthetic or str(src.dicom_datasets[0].get("SyntheticData", "")).upper() == "YES"


def export_seg(job, image, mask, out: str, algorithm: str | None) -> str:
    """Job function: a DICOM SEG of ``mask`` (a label Volume on ``image``'s grid); returns what was written.

    A model's mask (modality "segmentation") becomes one segment named "segmentation"; any other label map
    (e.g. a napari Labels layer holding several values) one segment per value, named by the label map's own
    names where it has them (the phantom's "edema", "enhancing rim", "necrosis"), else "segment N".
    An image read from DICOM (and not synthetic) is referenced as it is (``out`` is the .dcm file); otherwise
    the image is exported as a DICOM series first and ``out`` is a folder holding ``image/`` and ``seg.dcm``.
    """
    from ..core.io.dicom_seg import export_dicom_seg, export_image_and_seg

    labels = {1: "segmentation"} if getattr(mask, "modality", None) == "segmentation" else None
    if has_own_series(image):
        return str(export_dicom_seg(mask, out, source=image, segment_labels=labels, algorithm=algorithm).path)
    _, seg = export_image_and_seg(image, mask, out, segment_labels=labels, algorithm=algorithm,
                                  method=image.provenance.get("method"))
    return str(seg.path)
