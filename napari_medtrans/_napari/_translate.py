"""napari dock widget around :class:`~napari_medtrans.qt.translate_panel.TranslatePanel`.

While a translation runs, a preview layer fills in slice by slice (``on_partial``); when it ends the preview
becomes the result layer, named ``SYNTHETIC <output> from <input> (<method>)``, and every map the translator
returned is added on the same grid (TSM as a colormapped overlay with a colour bar, spread over samples in
viridis). A cancelled run keeps its finished slices as ``SYNTHETIC (partial: k of n slices) from <input>`` (marked
partial: export refuses it); a failed one removes the preview.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QWidget

from ..qt.translate_panel import TranslatePanel
from ._common import add_volume_layer, follow_layers, image_layer_items, map_style, panel_dock
from ._layers import volume_layer_data

__all__ = ["TranslateWidget", "result_name"]


def result_name(request, result) -> str:
    """``SYNTHETIC T2 from <input names> (<method>)``."""
    method = result.volume.provenance.get("method") or request.choice.value
    return f"SYNTHETIC {result.volume.modality or 'image'} from {request.input_label} ({method})"


class TranslateWidget(QWidget):
    """Translate image layers with a model; results and maps appear as layers.

    ``layers_added(list)`` is emitted once the result and every map are in the viewer.
    """

    layers_added = Signal(list)

    def __init__(self, napari_viewer):
        super().__init__()
        panel_dock(self, napari_viewer, TranslatePanel)
        self.preview = None
        self._buffer: np.ndarray | None = None
        self._done: np.ndarray | None = None  # finished slices along the acquisition axis
        self._axis = 2
        self._range = [np.inf, -np.inf]
        self.result_layers: list = []
        self._pending: list = []
        self.panel.started.connect(self._on_started)
        self.panel.partial_ready.connect(self._on_partial)
        self.panel.translated.connect(self._on_translated)
        self.panel.stopped.connect(self._on_stopped)
        follow_layers(self)

    def _refresh_sources(self, event=None) -> None:
        # a translation is made from acquired images: synthetic layers are not offered as inputs
        self.panel.set_sources(image_layer_items(self.viewer, acquired_only=True))

    # -- preview --------------------------------------------------------------------------------------
    def _on_started(self, request) -> None:
        _name, first = next(iter(request.inputs.values()))
        self._buffer = np.zeros(first.shape, dtype=np.float32)
        self._done = None
        self._range = [np.inf, -np.inf]
        preview = first.derive(self._buffer, synthetic=True, provenance={"preview": True})
        self.preview = add_volume_layer(self.viewer, preview, f"SYNTHETIC (running) from {request.input_label}",
                                        metadata={"preview": True})
        # Unfinished slices (zeros, at or below the contrast minimum) are transparent: the image underneath stays
        # in view instead of a black canvas until the first slices arrive.
        self.preview.colormap = _preview_colormap()

    def _on_partial(self, request, axis: int, start: int, stop: int, block) -> None:
        if self.preview is None or self._buffer is None or self.preview not in self.viewer.layers:
            return
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        self._buffer[tuple(index)] = block
        if self._done is None or self._done.size != self._buffer.shape[axis]:
            self._done = np.zeros(self._buffer.shape[axis], dtype=bool)
            self._axis = axis
        self._done[start:stop] = True
        lo, hi = float(block.min()), float(block.max())
        self._range = [min(self._range[0], lo), max(self._range[1], hi)]
        if self._range[1] > self._range[0]:
            self.preview.contrast_limits = tuple(self._range)
        self.preview.refresh()

    def _remove_preview(self) -> None:
        if self.preview is not None and self.preview in self.viewer.layers:
            self.viewer.layers.remove(self.preview)
        self.preview = None
        self._buffer = None

    # -- results --------------------------------------------------------------------------------------
    def _on_translated(self, request, result) -> None:
        # The preview becomes the result: removing a layer makes napari run gc.collect() (~0.5 s) and adding
        # one builds its controls, so reusing it keeps the event loop free. Maps follow one per loop turn.
        name = result_name(request, result)
        data, kw, _kind = volume_layer_data(result.volume, name)
        layer = self.preview if self.preview is not None and self.preview in self.viewer.layers else None
        self.preview, self._buffer = None, None
        if layer is None:
            layer = self.viewer.add_image(data, **kw)
        else:
            layer.data = data
            layer.colormap = kw.get("colormap", "gray")
            layer.affine = kw["affine"]
            layer.metadata = kw["metadata"]
            layer.name = kw["name"]
            layer.reset_contrast_limits()
        self.result_layers = [layer]
        method = result.volume.provenance.get("method")
        pending = [(volume, f"SYNTHETIC {modality} from {request.input_label} ({method})", {})
                   for modality, volume in result.outputs.items() if volume is not result.volume]
        pending += [(volume, f"{map_name} of {name}",
                     dict(mark_synthetic=False, metadata={"map": map_name, "of": name}, **map_style(map_name)))
                    for map_name, volume in result.maps.items()]
        self._pending = pending
        QTimer.singleShot(0, self._add_next)

    def _add_next(self) -> None:
        if self._pending:
            volume, name, kwargs = self._pending.pop(0)
            layer = add_volume_layer(self.viewer, volume, name, **kwargs)
            if (kwargs.get("metadata") or {}).get("map", "").startswith("tsm"):
                _show_colorbar(layer)
            self.result_layers.append(layer)
        if self._pending:
            QTimer.singleShot(0, self._add_next)
        else:
            self.layers_added.emit(list(self.result_layers))

    def _on_stopped(self, request, reason: str) -> None:
        from ..qt.translation import partial_name, partial_volume

        layer = self.preview if self.preview is not None and self.preview in self.viewer.layers else None
        kept = None
        if reason == "cancelled" and layer is not None and self._done is not None:
            _name, first = next(iter(request.inputs.values()))
            kept = partial_volume(first, self._buffer, self._done, self._axis, request.choice.label,
                                  (request.choice.direction or "").partition("->")[2] or None)
        if kept is None:
            self._remove_preview()
            return
        layer.metadata = {**layer.metadata, "volume": kept, "preview": False}
        layer.colormap = "gray"  # unfinished slices show as what they are: blank
        layer.name = partial_name(kept, request.input_label)
        self.preview, self._buffer = None, None
        self.result_layers = [layer]

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.panel.cancel()
        super().closeEvent(event)


def _preview_colormap():
    """Gray, with the lowest value fully transparent (the preview's unfinished slices)."""
    from napari.utils.colormaps import Colormap

    return Colormap(colors=[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]],
                    controls=[0.0, 1e-3, 1.0], name="medtrans preview")


def _show_colorbar(layer) -> None:
    colorbar = getattr(layer, "colorbar", None)
    if colorbar is not None and hasattr(colorbar, "visible"):
        colorbar.visible = True
