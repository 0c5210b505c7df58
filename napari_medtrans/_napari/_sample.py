"""napari sample data: one phantom subject (T1, T2, FLAIR, labels) on one grid, with its geometry."""

from __future__ import annotations

from ._layers import volume_layer_data

__all__ = ["make_phantom_sample", "SAMPLE_SHAPE"]

#: The benchmark phantom's default grid: 1.5 x 1.5 x 2 mm voxels over 180 x 216 x 176 mm; about 4 s on one core.
SAMPLE_SHAPE = (120, 144, 88)


def make_phantom_sample(seed: int = 0, shape=SAMPLE_SHAPE) -> list[tuple]:
    """Layers of phantom subject ``seed``: T1, T2 (reference), FLAIR and the tissue labels (with a tumour)."""
    from ..phantom import make_subject

    subject = make_subject(seed, shape=shape, tumour=True, contrasts=("T1", "T2", "FLAIR"))
    layers = [
        volume_layer_data(subject.images[m], f"{m} {subject.subject_id}", visible=(m == "T1"))
        for m in ("T1", "T2", "FLAIR")
    ]
    layers.append(volume_layer_data(subject.labels, f"labels {subject.subject_id}", layer_type="labels",
                                    opacity=0.3, visible=False))
    return layers
