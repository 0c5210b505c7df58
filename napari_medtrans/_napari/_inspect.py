"""napari dock widget around :class:`~napari_medtrans.qt.inspect_panel.InspectPanel`.

Synthetic layers are offered first as "synthetic" (the newest by default), acquired layers as "reference",
each with its modality (``layer.metadata["modality"]``): the panel shows both contrasts, defaults to a
reference of the synthetic layer's contrast (never the layer itself) and refuses cross-contrast comparisons.
Labels layers are offered as masks and translator maps (TSM, spread) as trust maps. The error maps appear as layers on the
synthetic grid: absolute error in magma over [0, p99] and signed error in a diverging colormap over
[-p99, p99]. Moving through slices updates the slice metrics; clicking the plot moves to that slice.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QWidget

from ..qt.inspect_panel import InspectPanel
from ._common import add_volume_layer, follow_layers, image_layer_items, panel_dock
from ._layers import index_to_world, world_to_index

__all__ = ["InspectWidget"]


class InspectWidget(QWidget):
    """Error maps, metrics per volume and slice, a per-slice plot and trust against error."""

    def __init__(self, napari_viewer):
        super().__init__()
        panel_dock(self, napari_viewer, InspectPanel)
        self.error_layers: list = []
        self.panel.inspected.connect(self._on_inspected)
        self.panel.slice_requested.connect(self.go_to_slice)
        self.viewer.dims.events.point.connect(self._on_point)
        self.destroyed.connect(lambda *_: _disconnect(napari_viewer.dims.events.point, self._on_point))
        follow_layers(self)

    def _refresh_sources(self, event=None) -> None:
        synthetic, maps, acquired = [], [], []
        for name, modality in image_layer_items(self.viewer):
            meta = self.viewer.layers[name].metadata or {}
            if meta.get("preview"):
                continue
            if "map" in meta:
                maps.append(name)
            elif meta.get("synthetic"):
                synthetic.append((name, modality))
            else:
                acquired.append((name, modality))
        trust = [n for n in maps if n.startswith(("tsm", "std"))]
        masks = [n for n, _m in image_layer_items(self.viewer, kinds=("labels",))]
        self.panel.set_sources(synthetic + acquired, acquired, masks, trust)

    def _on_inspected(self, inspection) -> None:
        for layer in self.error_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        name = self.panel.synthetic_box.currentText()
        limit = inspection.error_limit
        self.error_layers = [
            add_volume_layer(self.viewer, inspection.abs_error, f"abs error of {name}", mark_synthetic=False,
                             colormap="magma", contrast_limits=(0.0, limit), metadata={"map": "abs error"}),
            add_volume_layer(self.viewer, inspection.signed_error, f"signed error of {name}", mark_synthetic=False,
                             colormap="PiYG", contrast_limits=(-limit, limit), metadata={"map": "signed error"},
                             visible=False),
        ]
        self._on_point()

    def _grid(self):
        inspection = self.panel.inspection
        return None if inspection is None else inspection.abs_error

    def _on_point(self, event=None) -> None:
        volume = self._grid()
        if volume is None or len(self.viewer.dims.point) < 3:
            return
        index = world_to_index(volume, self.viewer.dims.point)
        self.panel.set_current_slice(int(np.rint(index[self.panel.inspection.axis])))

    def go_to_slice(self, k: int) -> None:
        """Move the viewer to slice ``k`` along the inspected volume's slice axis."""
        volume = self._grid()
        if volume is None or len(self.viewer.dims.point) < 3:
            return
        point = np.asarray(self.viewer.dims.point, dtype=np.float64)
        index = world_to_index(volume, point)
        index[self.panel.inspection.axis] = k
        world = index_to_world(volume, index)
        ndim = len(point)
        for axis, value in zip(range(ndim - 3, ndim), world):
            if axis not in self.viewer.dims.displayed:
                self.viewer.dims.set_point(axis, float(value))


def _disconnect(emitter, callback) -> None:
    try:
        emitter.disconnect(callback)
    except (TypeError, ValueError, RuntimeError):
        pass
