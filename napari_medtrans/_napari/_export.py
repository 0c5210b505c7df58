"""napari dock widget around :class:`~napari_medtrans.qt.export_panel.ExportPanel` (synthetic layers first)."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..qt.export_panel import ExportPanel
from ._common import get_volume, image_layer_items, install_error_handler, show_synthetic_banner, watch_layers, tabify_with_siblings

__all__ = ["ExportWidget"]


class ExportWidget(QWidget):
    """Export an image layer as a DICOM series of its source study (marked synthetic) or as NIfTI."""

    def __init__(self, napari_viewer):
        super().__init__()
        install_error_handler()
        tabify_with_siblings(self)
        self.viewer = napari_viewer
        self.panel = ExportPanel(self)
        self.panel.volume_provider = lambda name: get_volume(self.viewer, name)
        self.panel.exported.connect(self._on_exported)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.panel)
        watch_layers(self.viewer, self._refresh_sources, self)
        show_synthetic_banner(self.viewer)
        self._refresh_sources()

    def _refresh_sources(self, event=None) -> None:
        items = [(n, self.viewer.layers[n].metadata or {}) for n, _m in image_layer_items(self.viewer)]
        items = [(n, meta) for n, meta in items if not meta.get("preview")]
        synthetic = [n for n, meta in items if meta.get("synthetic") and "map" not in meta]
        self.panel.set_sources(synthetic + [n for n, _meta in items if n not in synthetic], synthetic)

    def _on_exported(self, paths: list) -> None:
        from napari.utils.notifications import show_info

        show_info(self.panel.status.text())
