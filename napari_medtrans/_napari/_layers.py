"""Volumes as napari layers and back, geometry included.

Convention
----------
napari world coordinates are **DICOM patient coordinates (LPS, mm) in (z, y, x) order**: world axis 0 runs
towards the patient's Superior, axis 1 Posterior, axis 2 Left. napari's default 2D view (the last two world
axes, rows downward and columns rightward) is then the radiological axial view: anterior at the top, the
patient's right on the left of the screen, and the slider moves from inferior to superior.

A Volume's data (indexed i, j, k, affine to RAS) is shown without copying: the layer's data is a transposed
view ``volume.data.transpose(perm)`` whose axes follow the world axes as closely as the volume allows
(:func:`display_axes`), and its ``affine`` is ``WORLD_FROM_RAS @ volume.affine @ P(perm)``. Every layer made
here therefore overlays exactly with every other (T1, synthetic T2, reference, maps, error maps), whatever the
orientation each was stored in. ``layer.metadata["volume"]`` is the source Volume,
``layer.metadata["axes"]`` the permutation, ``layer.metadata["synthetic"]`` the synthetic flag.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InvalidVolumeError
from ..core.volume import SourceInfo, Volume

__all__ = [
    "WORLD_FROM_RAS",
    "RAS_FROM_WORLD",
    "display_axes",
    "layer_affine",
    "volume_layer_data",
    "layer_to_volume",
    "world_to_index",
    "index_to_world",
]

#: RAS (x, y, z) to world (S, P, L).
WORLD_FROM_RAS = np.array([[0, 0, 1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
RAS_FROM_WORLD = np.linalg.inv(WORLD_FROM_RAS)


def display_axes(affine: np.ndarray) -> tuple[int, int, int]:
    """The permutation of a volume's (i, j, k) axes that lines them up with the world axes (S, P, L)."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(WORLD_FROM_RAS @ np.asarray(affine, dtype=np.float64))
    perm = [0, 0, 0]
    for volume_axis, (world_axis, _flip) in enumerate(ornt):
        perm[int(world_axis)] = volume_axis
    return tuple(perm)  # type: ignore[return-value]


def _perm_matrix(perm) -> np.ndarray:
    p = np.eye(4)
    p[:3, :3] = 0
    for n, a in enumerate(perm):
        p[a, n] = 1.0  # volume index a = layer index n
    return p


def layer_affine(volume: Volume, perm=None) -> np.ndarray:
    """The 4x4 napari affine (layer data index to world) of ``volume`` shown with axes ``perm``."""
    perm = display_axes(volume.affine) if perm is None else perm
    return WORLD_FROM_RAS @ volume.affine @ _perm_matrix(perm)


def volume_layer_data(
    volume: Volume, name: str, *, layer_type: str = "image", mark_synthetic: bool = True, **kwargs: Any
) -> tuple:
    """A napari LayerDataTuple ``(data, kwargs, layer_type)`` showing ``volume`` in place.

    With ``mark_synthetic`` (the default) a synthetic image's name starts with "SYNTHETIC" (prepended when
    missing); maps derived from a translation pass False and name themselves. Other keywords go to the layer.
    """
    perm = display_axes(volume.affine)
    data = volume.data.transpose(perm)
    if layer_type == "labels":
        data = np.rint(data).astype(np.int32)
    if mark_synthetic and volume.synthetic and not name.upper().startswith("SYNTHETIC"):
        name = f"SYNTHETIC {name}"
    meta = dict(kwargs.pop("metadata", {}))
    meta.update(volume=volume, axes=perm, synthetic=bool(volume.synthetic), modality=volume.modality)
    kw = dict(name=name, affine=layer_affine(volume, perm), metadata=meta)
    kw.update(kwargs)
    return data, kw, layer_type


def _layer_transform(layer) -> np.ndarray:
    """The full 4x4 data-to-world transform of a 3D layer (scale, translate, rotate, shear and affine)."""
    origin = np.asarray(layer.data_to_world([0.0, 0.0, 0.0]), dtype=np.float64)
    m = np.eye(4)
    for n in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[n] = 1.0
        m[:3, n] = np.asarray(layer.data_to_world(unit), dtype=np.float64) - origin
    m[:3, 3] = origin
    return m


def layer_to_volume(layer) -> Volume:
    """The Volume a 3D image or labels layer shows, on the layer's current geometry.

    For layers made by :func:`volume_layer_data` the original Volume's modality, source headers, synthetic flag
    and provenance are kept and the data is back in its original (i, j, k) order (no copy). Other 3D layers
    become a Volume indexed like the layer's data.

    Raises
    ------
    InvalidVolumeError
        The layer is not 3D (names the layer).
    """
    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise InvalidVolumeError(f"layer {layer.name!r} is {data.ndim}D; a 3D image is needed")
    meta = getattr(layer, "metadata", {}) or {}
    original = meta.get("volume")
    perm = tuple(meta.get("axes", (0, 1, 2)))
    inverse = tuple(int(i) for i in np.argsort(perm))
    affine = RAS_FROM_WORLD @ _layer_transform(layer) @ np.linalg.inv(_perm_matrix(perm))
    data = data.transpose(inverse)
    if isinstance(original, Volume):
        return Volume(data=data, affine=affine, modality=original.modality, source=original.source,
                      synthetic=bool(meta.get("synthetic", original.synthetic)),
                      provenance=dict(original.provenance))
    return Volume(data=data, affine=affine, modality=meta.get("modality"), source=SourceInfo(kind="array"),
                  synthetic=bool(meta.get("synthetic", False)))


def world_to_index(volume: Volume, world_point) -> np.ndarray:
    """Continuous (i, j, k) index of a napari world point (S, P, L mm) in ``volume``."""
    point = np.asarray(world_point, dtype=np.float64)
    if point.size < 3:
        raise ValueError(f'Argument "world_point" needs 3 coordinates (S, P, L), got {point.tolist()}.')
    w = np.ones(4)
    w[:3] = point[-3:]
    return (np.linalg.inv(volume.affine) @ RAS_FROM_WORLD @ w)[:3]


def index_to_world(volume: Volume, index) -> np.ndarray:
    """napari world point (S, P, L mm) of a (i, j, k) index of ``volume``."""
    v = np.ones(4)
    v[:3] = np.asarray(index, dtype=np.float64)
    return (WORLD_FROM_RAS @ volume.affine @ v)[:3]
