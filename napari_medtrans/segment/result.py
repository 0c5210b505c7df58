"""What a segmentation job returns (:class:`SegmentationResult`) and the propagation directions every segmenter
accepts; shared by the SAM2 segmenter (:mod:`.segmenter`, which re-exports both) and the project's prompt U-Net
(:mod:`.promptnet`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.volume import Volume
from .frames import Window
from .prompts import SlicePrompt

__all__ = ["DIRECTIONS", "SegmentationResult"]

DIRECTIONS = ("both", "forward", "backward")


@dataclasses.dataclass
class SegmentationResult:
    """A mask on the volume's grid and how it was made.

    Attributes
    ----------
    mask : ndarray of bool
        Same shape as the volume, indexed (i, j, k).
    slices : list of int
        Frames segmented, in the order the model produced them.
    prompts : list of SlicePrompt
        The prompts used (frame coordinates).
    model : str
        Model name.
    window : Window
        Intensity window applied before the model.
    seconds : float
        Wall time of the job.
    embeddings_computed, embeddings_reused : int
        Slices whose image embedding was computed / taken from the cache in this job.
    largest_component : bool
        Whether only the largest connected component was kept.
    """

    mask: np.ndarray
    slices: list[int]
    prompts: list[SlicePrompt]
    model: str
    window: Window
    seconds: float
    embeddings_computed: int
    embeddings_reused: int
    largest_component: bool = False

    def to_volume(self, volume: Volume, label: int = 1) -> Volume:
        """The mask as a label Volume on ``volume``'s grid (values 0 and ``label``), provenance recorded."""
        return volume.derive(
            self.mask.astype(np.float32) * float(label),
            modality="segmentation",
            provenance={
                "segmentation": {
                    "model": self.model,
                    "prompts": [dataclasses.asdict(p) for p in self.prompts],
                    "window": [self.window.lo, self.window.hi],
                    "largest_component": self.largest_component,
                    "segmented_image_synthetic": bool(volume.synthetic),
                }
            },
        )
