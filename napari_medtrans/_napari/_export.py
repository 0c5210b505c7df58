"""napari dock widget around :class:`~napari_medtrans.qt.export_panel.ExportPanel` (synthetic layers first)."""

from __future__ import annotations

from qtpy.QtWidgets import QWidget

from ..qt.export_panel import ExportPanel
from ._common import follow_layers, image_layer_items, panel_dock

__all__ = ["ExportWidget"]


class ExportWidget(QWidget):
    """Export an image layer as a DICOM series of its source study (marked synthetic) or as NIfTI."""

    def __init__(self, napari_viewer):
        super().__init__()
        panel_dock(self, napari_viewer, ExportPanel)
        self.panel.exported.connect(self._on_exported)
        follow_layers(self)

    def _refresh_sources(self, event=None) -> None:
        items = [(n, self.viewer.layers[n].metadata or {}) for n, _m in image_layer_items(self.viewer)]
        items = [(n, meta) for n, meta in items if not meta.get("preview")]
        synthetic = [n for n, meta in items if meta.get("synthetic") and "map" not in meta]
        self.panel.set_sources(synthetic + [n for n, _meta in items if n not in synthetic], synthetic)

    def _on_exported(self, paths: list) -> None:
        from napari.utils.notifications import show_info

        show_info(self.panel.status.text())
