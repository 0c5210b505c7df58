"""napari writers: an image layer to NIfTI, or to a DICOM series (a derived series of its source study).

Both keep the layer's geometry: the volume is rebuilt from the layer's data and its full data-to-world
transform (:func:`~napari_medtrans._napari._layers.layer_to_volume`), with the modality, source headers,
synthetic flag and provenance of the Volume the layer was made from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._layers import layer_to_volume

__all__ = ["write_nifti_layer", "write_dicom_layer", "attributes_to_volume"]

_TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine")


def attributes_to_volume(data: Any, attributes: dict):
    """The Volume described by a layer's data and its ``as_layer_data_tuple`` attributes."""
    from napari.layers import Image

    kw = {k: attributes[k] for k in _TRANSFORM_KEYS if attributes.get(k) is not None}
    layer = Image(data, name=attributes.get("name", "image"), metadata=dict(attributes.get("metadata") or {}),
                  **kw)
    return layer_to_volume(layer)


def write_nifti_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one image layer as NIfTI (.nii or .nii.gz); synthetic volumes say so in the header."""
    from ..core.io import write_nifti

    p = Path(path)
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        p = p.with_name(p.name + ".nii.gz")
    return [str(write_nifti(attributes_to_volume(data, attributes), p))]


def write_dicom_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one image layer as a DICOM series into the folder ``path`` without its ``.dcm`` ending.

    The series joins the study of the layer's DICOM source (a new study otherwise) and is marked synthetic
    when the layer is (see :mod:`napari_medtrans.core.io.dicom_export`); maps (error, TSM) are refused.
    """
    from ..core.io.dicom_export import export_dicom_series

    p = Path(path)
    folder = p.with_name(p.name[: -len(".dcm")]) if p.name.lower().endswith(".dcm") else p
    # Saving a layer is an explicit request: an acquired layer is re-exported (not marked synthetic); error and
    # trust maps are still refused, they are not MR images.
    result = export_dicom_series(attributes_to_volume(data, attributes), folder, allow_non_synthetic=True)
    return [str(folder)] if result.files else []
