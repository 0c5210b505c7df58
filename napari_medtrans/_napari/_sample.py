"""napari sample data: one phantom subject (T1, T2, FLAIR, labels) on one grid, with its geometry."""

from __future__ import annotations

from ._layers import volume_layer_data

__all__ = ["make_phantom_sample", "SAMPLE_SHAPE"]

#: 1.5 x 1.5 x 2 mm voxels over a 192 x 192 x 160 mm head; about 3 s to make on one core.
SAMPLE_SHAPE = (128, 128, 80)


def make_phantom_sample(seed: int = 0, shape=SAMPLE_SHAPE) -> list[tuple]:
    """Layers of phantom subject ``seed``: T1, T2 (reference), FLAIR and the tissue labels (with a tumour)."""
    from ..core.phantom import make_subject

    subject = make_subject(seed, shape=shape, tumour=True, contrasts=("T1", "T2", "FLAIR"))
    layers = [
        volume_layer_data(subject.images[m], f"{m} {subject.subject_id}", visible=(m == "T1"))
        for m in ("T1", "T2", "FLAIR")
    ]
    layers.append(volume_layer_data(subject.labels, f"labels {subject.subject_id}", layer_type="labels",
                                    opacity=0.3, visible=False))
    return layers
