"""Overlays on the main window's synthetic pane: the choices, their legends and colour bar, and how they are shown.

* :data:`OVERLAYS`, :data:`LEGENDS`, :data:`OVERLAY_LUTS`: the overlay kinds by index (none, the TSM, the error
  against the reference, the spread across diffusion samples), what their colours mean, their colour tables;
* :class:`ColourBar`: a horizontal colour bar with its low and high values;
* :class:`OverlayMixin`: the :class:`~medtrans_app.main_window.MainWindow` methods that apply the overlay choice
  (an error map is computed in a worker job; a cross-contrast error map is refused with a message).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QLinearGradient, QPainter
from qtpy.QtWidgets import QWidget

from napari_medtrans.core.compare import check_comparable
from napari_medtrans.core.errors import ModalityMismatchError
from napari_medtrans.qt import workers

from .imaging import colour_lut
from .window_jobs import _error_map

#: Overlays on the synthetic pane, by index: none, the TSM, the error against the reference, the spread across
#: diffusion samples. The TSM is not a trust map: it marks texture and structure, not where the image is right.
OVERLAYS = ("No overlay", "TSM: texture/structure map", "Error vs reference", "Spread across samples (SD)")
#: What each overlay's colours mean, shown beside its colour bar.
LEGENDS = (
    "",
    "TSM (EDTS-Trans Eq. 5-8): high where the synthetic image has texture and fine structure, low on flat "
    "regions. It is not a measure of error: a tumour can look as 'structured' as healthy tissue.",
    "Absolute difference from the reference, 0 to its 99th percentile.",
    "Standard deviation across the diffusion samples of this run: where the model is unsure. Run with "
    "samples > 1 to get it.",
)
#: One colour table per kind of overlay, the same as the plugin's (``map_style`` of its dock widgets).
OVERLAY_LUTS = (None, "viridis", "inferno", "viridis")


class ColourBar(QWidget):
    """A horizontal colour bar with its low and high values, for the synthetic pane's overlay."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lut: np.ndarray | None = None
        self.low_text, self.high_text = "", ""
        self.setMinimumSize(160, 18)
        self.setMaximumHeight(22)

    def set_scale(self, lut: np.ndarray | None, low: float = 0.0, high: float = 1.0) -> None:
        self.lut = lut
        self.low_text, self.high_text = f"{low:.3g}", f"{high:.3g}"
        self.setVisible(lut is not None)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802
        if self.lut is None:
            return
        painter = QPainter(self)
        metrics = painter.fontMetrics()
        left = metrics.horizontalAdvance(self.low_text) + 6
        right = self.width() - metrics.horizontalAdvance(self.high_text) - 6
        grad = QLinearGradient(left, 0, right, 0)
        for i in range(0, 256, 32):
            r, g, b = (int(v) for v in self.lut[i])
            grad.setColorAt(i / 255, QColor(r, g, b))
        r, g, b = (int(v) for v in self.lut[255])
        grad.setColorAt(1.0, QColor(r, g, b))
        painter.fillRect(left, 3, max(right - left, 1), self.height() - 6, grad)
        painter.drawText(0, 0, left - 3, self.height(), int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight),
                         self.low_text)
        painter.drawText(right + 3, 0, self.width() - right, self.height(), int(Qt.AlignmentFlag.AlignVCenter),
                         self.high_text)
        painter.end()


class OverlayMixin:
    """The overlay methods of the main window.

    They use the window's ``viewer``, ``volumes``, ``maps``, ``pane_boxes``, ``overlay_box``, ``opacity``,
    ``colour_bar``, ``legend``, ``status_label``, ``jobs``, ``show_error`` and its error-map bookkeeping
    (``_error_cache``, ``_error_pending``, ``_refused``).
    """

    def update_overlay(self):
        """Apply the overlay choice to the synthetic pane (an error map is computed in a worker)."""
        pane = self.viewer.panes[1]
        kind = self.overlay_box.currentIndex()
        name = self.pane_boxes[1].currentText()
        synth = self.volumes.get(name)
        self._set_legend(None)
        if kind == 0 or synth is None:
            pane.set_overlay(None)
            return None
        if kind in (1, 3):
            maps = self.maps.get(name, {})
            found = maps.get("tsm") if kind == 1 else next(
                (m for k, m in maps.items() if k == "std" or k == f"std_{synth.modality}"), None)
            if found is None:
                self.status_label.setText(
                    "this synthetic volume has no TSM map (its model does not make one)" if kind == 1 else
                    "this synthetic volume has no spread: translate it with samples > 1 (a diffusion model)")
                pane.set_overlay(None)
                return None
            data = np.asarray(getattr(found, "data", found), dtype=np.float32)
            high = 1.0 if kind == 1 else (float(np.percentile(data, 99)) or 1.0)
            lut = colour_lut(OVERLAY_LUTS[kind])
            pane.set_overlay(found, (0.0, high), lut, self.opacity.value() / 100)
            self._set_legend(kind, lut, 0.0, high)
            return None
        ref = self.volumes.get(self.pane_boxes[2].currentText())
        if ref is None or not synth.same_grid(ref):
            self.status_label.setText("choose a reference on the synthetic volume's grid for the error map")
            pane.set_overlay(None)
            return None
        key = (name, self.pane_boxes[2].currentText())
        try:
            notes = check_comparable(synth, ref)
        except ModalityMismatchError as exc:
            pane.set_overlay(None)
            message = f"no error map: {exc}"
            self.status_label.setText(message)
            if self._refused != key:  # said once per pair in a box; the status bar keeps saying it
                self._refused = key
                self.show_error(message, exc)
            return None
        self._refused = None
        if notes:
            self.status_label.setText("error map: " + "; ".join(notes))
        if key in self._error_cache:
            self._show_error_map(key, self._error_cache[key])
            return None
        if key in self._error_pending:
            return None  # shown when the job already computing it ends
        self._error_pending.add(key)
        job = workers.start_job(_error_map, synth, ref, name="error map")
        job.succeeded.connect(lambda err, key=key: self._show_error_map(key, err))
        job.finished.connect(lambda key=key: self._error_pending.discard(key))
        self.jobs.append(job)
        return job

    def _show_error_map(self, key, err) -> None:
        self._error_cache[key] = err
        synth = self.volumes.get(key[0])
        if (synth is None or (self.pane_boxes[1].currentText(), self.pane_boxes[2].currentText()) != key
                or self.overlay_box.currentIndex() != 2):
            return
        limit = float(np.percentile(err, 99)) or 1.0
        lut = colour_lut(OVERLAY_LUTS[2])
        self.viewer.panes[1].set_overlay(synth.derive(err), (0.0, limit), lut, self.opacity.value() / 100)
        self._set_legend(2, lut, 0.0, limit)

    def _set_legend(self, kind: int | None, lut=None, low: float = 0.0, high: float = 1.0) -> None:
        """Show the colour bar and the legend of overlay ``kind`` (None hides them)."""
        self.colour_bar.set_scale(lut if kind else None, low, high)
        self.legend.setText(LEGENDS[kind] if kind else "")
        self.legend.setVisible(bool(kind))

    def _on_opacity(self, value: int) -> None:
        self.viewer.panes[1].set_overlay_opacity(value / 100)
