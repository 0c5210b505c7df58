"""Linked slice panes: one shared view state (plane, slice, zoom, pan, window/level, crosshair), 1-3 panes.

:class:`ViewState` is the model; :class:`SlicePane` paints one volume (plus an optional coloured overlay) from
it and turns mouse gestures into changes of it; :class:`LinkedViewer` lays out the panes with a slice slider,
plane and window/level preset pickers and keyboard scrolling. Painting is a numpy window/level and one
``drawImage``: a 256 x 256 slice takes well under a millisecond per pane.

Mouse: wheel = slice, Ctrl+wheel = zoom, left = crosshair, middle drag = pan, right drag = window/level.
Keys: Up/Down or PageUp/PageDown = slice (x10), Home/End, +/- = zoom, 0 = reset view.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QImage, QPainter, QPen
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from .imaging import PLANES, PRESETS, DisplayVolume, blend_overlay, robust_range, window_to_uint8

__all__ = ["ViewState", "SlicePane", "LinkedViewer"]


class ViewState(QObject):
    """What linked panes share. ``changed`` fires on any change; ``slice_changed(int)`` on a new slice."""

    changed = Signal()
    slice_changed = Signal(int)

    def __init__(self):
        super().__init__()
        self.plane = "axial"
        self.index = 0
        self.n_slices = 1
        self.zoom = 1.0
        self.pan = (0.0, 0.0)
        self.level, self.width = PRESETS["Default"]
        self.crosshair: tuple[float, float] | None = None  # slice pixel coordinates (col, row)

    def set_index(self, index: int) -> None:
        index = int(np.clip(index, 0, max(self.n_slices - 1, 0)))
        if index != self.index:
            self.index = index
            self.slice_changed.emit(index)
            self.changed.emit()

    def set_window(self, level: float, width: float) -> None:
        self.level, self.width = float(level), float(max(width, 0.01))
        self.changed.emit()

    def set_zoom(self, zoom: float) -> None:
        self.zoom = float(np.clip(zoom, 0.25, 16.0))
        self.changed.emit()

    def set_pan(self, dx: float, dy: float) -> None:
        self.pan = (float(dx), float(dy))
        self.changed.emit()

    def set_crosshair(self, point: tuple[float, float] | None) -> None:
        self.crosshair = point
        self.changed.emit()

    def set_plane(self, plane: str) -> None:
        if plane != self.plane:
            self.plane = plane
            self.crosshair = None
            self.changed.emit()

    def reset(self) -> None:
        self.zoom, self.pan = 1.0, (0.0, 0.0)
        self.changed.emit()


class SlicePane(QWidget):
    """One volume on the shared view. Outside reader mode a synthetic pane carries a red SYNTHETIC banner
    with the method name (``set_volume(..., synthetic_method=...)``)."""

    hovered = Signal(object)  # (col, row, value) or None

    def __init__(self, state: ViewState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.volume: DisplayVolume | None = None
        self.value_range = (0.0, 1.0)
        self.title = ""
        self.synthetic_method: str | None = None
        self.reader_mode = False
        self.overlay: DisplayVolume | None = None
        self.overlay_range = (0.0, 1.0)
        self.overlay_lut: np.ndarray | None = None
        self.overlay_opacity = 0.5
        self.painted_index = -1
        self.paint_count = 0
        self._cache_key = None
        self._cache_image: QImage | None = None
        self._drag = None
        state.changed.connect(self.update)

    # -- content ----------------------------------------------------------------------------------------
    def set_volume(self, volume, title: str = "", *, synthetic_method: str | None = None,
                   value_range: tuple[float, float] | None = None) -> None:
        """Show ``volume`` (a Volume, or None to clear) with ``title``; ``synthetic_method`` marks it synthetic."""
        self.volume = None if volume is None else DisplayVolume.from_volume(volume)
        self.value_range = value_range or (robust_range(volume.data) if volume is not None else (0.0, 1.0))
        self.title = title
        self.synthetic_method = synthetic_method
        self.set_overlay(None)
        self.refresh()

    def set_overlay(self, volume, value_range=(0.0, 1.0), lut: np.ndarray | None = None,
                    opacity: float | None = None) -> None:
        """Blend ``volume`` (or None) over the image, coloured by ``lut`` over ``value_range``."""
        self.overlay = None if volume is None else DisplayVolume.from_volume(volume)
        self.overlay_range = value_range
        self.overlay_lut = lut
        if opacity is not None:
            self.overlay_opacity = float(opacity)
        self.refresh()

    def set_overlay_opacity(self, opacity: float) -> None:
        self.overlay_opacity = float(opacity)
        self.refresh()

    def refresh(self) -> None:
        """Forget the cached image (the voxels changed) and repaint."""
        self._cache_key = None
        self.update()

    @property
    def banner(self) -> str:
        """The warning painted on a synthetic pane ("" for acquired images and in reader mode)."""
        if self.synthetic_method is None or self.reader_mode:
            return ""
        return f"SYNTHETIC - {self.synthetic_method}"

    # -- geometry ---------------------------------------------------------------------------------------
    def _layout(self):
        """(image width, height, scale x, scale y, origin x, origin y) of the current slice on screen."""
        vol, plane = self.volume, self.state.plane
        img_h, img_w = vol.slice(plane, 0).shape
        px, py = vol.pixel_size(plane)
        fit = min(self.width() / (img_w * px), self.height() / (img_h * py))
        sx, sy = fit * px * self.state.zoom, fit * py * self.state.zoom
        ox = self.width() / 2 + self.state.pan[0] - img_w * sx / 2
        oy = self.height() / 2 + self.state.pan[1] - img_h * sy / 2
        return img_w, img_h, sx, sy, ox, oy

    def to_image(self, pos: QPointF) -> tuple[float, float] | None:
        if self.volume is None:
            return None
        _, _, sx, sy, ox, oy = self._layout()
        return (pos.x() - ox) / sx, (pos.y() - oy) / sy

    # -- painting ---------------------------------------------------------------------------------------
    def _image(self) -> QImage:
        st = self.state
        key = (st.plane, st.index, st.level, st.width, self.overlay_opacity, id(self.overlay))
        if key == self._cache_key and self._cache_image is not None:
            return self._cache_image
        gray = window_to_uint8(self.volume.slice(st.plane, st.index), self.value_range, st.level, st.width)
        if self.overlay is not None and self.overlay_lut is not None:
            rgb = np.ascontiguousarray(blend_overlay(gray, self.overlay.slice(st.plane, st.index),
                                                     self.overlay_range, self.overlay_lut, self.overlay_opacity))
            image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888)
        else:
            gray = np.ascontiguousarray(gray)
            image = QImage(gray.data, gray.shape[1], gray.shape[0], gray.strides[0],
                           QImage.Format.Format_Grayscale8)
        self._cache_image = image.copy()  # own the pixels: the numpy buffer goes away
        self._cache_key = key
        return self._cache_image

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt naming
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.volume is not None:
            img_w, img_h, sx, sy, ox, oy = self._layout()
            painter.drawImage(QRectF(ox, oy, img_w * sx, img_h * sy), self._image())
            if self.state.crosshair is not None:
                cx, cy = self.state.crosshair
                painter.setPen(QPen(QColor(255, 220, 0, 160), 1))
                painter.drawLine(QPointF(ox + (cx + 0.5) * sx, 0), QPointF(ox + (cx + 0.5) * sx, self.height()))
                painter.drawLine(QPointF(0, oy + (cy + 0.5) * sy), QPointF(self.width(), oy + (cy + 0.5) * sy))
            self.painted_index = self.state.index
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(QColor(230, 230, 230))
        painter.drawText(8, 18, self.title)
        if self.banner:
            painter.fillRect(QRectF(0, self.height() - 26, self.width(), 26), QColor(190, 0, 0, 220))
            painter.setPen(Qt.GlobalColor.white)
            painter.drawText(QRectF(0, self.height() - 26, self.width(), 26), Qt.AlignmentFlag.AlignCenter,
                             self.banner)
        if self.volume is not None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(8, 36, f"{self.state.index + 1}/{self.volume.n_slices(self.state.plane)}")
        painter.end()
        self.paint_count += 1

    # -- mouse ------------------------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.state.set_zoom(self.state.zoom * (1.15 ** steps))
        else:
            self.state.set_index(self.state.index + (1 if steps > 0 else -1))
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._drag = (event.button(), event.position(), self.state.pan, self.state.level, self.state.width)
        if event.button() == Qt.MouseButton.LeftButton:
            self.state.set_crosshair(self.to_image(event.position()))

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        if self._drag is not None:
            button, start, pan, level, width = self._drag
            dx, dy = pos.x() - start.x(), pos.y() - start.y()
            if button == Qt.MouseButton.MiddleButton:
                self.state.set_pan(pan[0] + dx, pan[1] + dy)
            elif button == Qt.MouseButton.RightButton:
                self.state.set_window(level - dy / max(self.height(), 1), width * (1.0 + dx / max(self.width(), 1)))
            elif button == Qt.MouseButton.LeftButton:
                self.state.set_crosshair(self.to_image(pos))
        self.hovered.emit(self.value_at(pos))

    def mouseReleaseEvent(self, _event) -> None:  # noqa: N802
        self._drag = None

    def value_at(self, pos: QPointF):
        """(col, row, voxel value) under ``pos``, or None outside the image (no value in reader mode)."""
        point = self.to_image(pos)
        if point is None:
            return None
        col, row = int(np.floor(point[0])), int(np.floor(point[1]))
        h, w = self.volume.slice(self.state.plane, self.state.index).shape
        if not (0 <= col < w and 0 <= row < h):
            return None
        if self.reader_mode:
            return col, row, None
        return col, row, float(self.volume.slice(self.state.plane, self.state.index)[row, col])


class LinkedViewer(QWidget):
    """1-3 :class:`SlicePane` sharing one :class:`ViewState`, a slice slider and view controls."""

    def __init__(self, n_panes: int = 3, parent: QWidget | None = None):
        from superqt import QLabeledSlider

        super().__init__(parent)
        self.state = ViewState()
        self.panes = [SlicePane(self.state) for _ in range(3)]
        self.slider = QLabeledSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Slice (wheel, Up/Down, PageUp/PageDown)")
        self.plane_box = QComboBox()
        self.plane_box.addItems(list(PLANES))
        self.plane_box.setToolTip("Viewing plane")
        self.preset_box = QComboBox()
        self.preset_box.addItems(list(PRESETS))
        self.preset_box.setToolTip("Window/level preset (right-drag on an image to adjust)")
        self.info = QLabel("")

        row = QHBoxLayout()
        for p in self.panes:
            row.addWidget(p)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Slice"))
        controls.addWidget(self.slider, 1)
        controls.addWidget(self.plane_box)
        controls.addWidget(self.preset_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row, 1)
        layout.addLayout(controls)
        layout.addWidget(self.info)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.slider.valueChanged.connect(self.state.set_index)
        self.state.slice_changed.connect(self._on_slice)
        self.plane_box.currentTextChanged.connect(self.set_plane)
        self.preset_box.currentTextChanged.connect(self.apply_preset)
        for p in self.panes:
            p.hovered.connect(self._on_hover)
        self.set_pane_count(n_panes)

    # -- configuration ----------------------------------------------------------------------------------
    def set_pane_count(self, n: int) -> None:
        """Show the first ``n`` (1-3) panes."""
        n = int(np.clip(n, 1, 3))
        for i, p in enumerate(self.panes):
            p.setVisible(i < n)
        self.n_panes = n

    def set_reader_mode(self, on: bool) -> None:
        """Reader mode: no SYNTHETIC banners, no voxel values (the reader judges blind)."""
        for p in self.panes:
            p.reader_mode = bool(on)
            p.update()

    def set_volume(self, pane: int, volume, title: str = "", **kwargs) -> None:
        """Show ``volume`` in pane ``pane`` (see :meth:`SlicePane.set_volume`) and update the slice range."""
        self.panes[pane].set_volume(volume, title, **kwargs)
        self._update_range()

    def set_plane(self, plane: str) -> None:
        self.state.set_plane(plane)
        self._update_range(centre=True)

    def apply_preset(self, name: str) -> None:
        level, width = PRESETS[name]
        self.state.set_window(level, width)

    def _update_range(self, centre: bool = False) -> None:
        sizes = [p.volume.n_slices(self.state.plane) for p in self.panes if p.volume is not None]
        n = max(sizes) if sizes else 1
        first = self.state.n_slices <= 1
        self.state.n_slices = n
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.blockSignals(False)
        if centre or first:
            self.state.index = -1
            self.state.set_index(n // 2)
        else:
            self.state.set_index(min(self.state.index, n - 1))

    def _on_slice(self, index: int) -> None:
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)

    def _on_hover(self, hit) -> None:
        if hit is None or hit[2] is None:
            self.info.setText("")
        else:
            self.info.setText(f"pixel ({hit[0]}, {hit[1]})  value {hit[2]:.4g}")

    # -- keyboard ---------------------------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:  # noqa: N802
        key = event.key()
        step = {Qt.Key.Key_Up: 1, Qt.Key.Key_Right: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_Left: -1,
                Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10}.get(key)
        if step is not None:
            self.state.set_index(self.state.index + step)
        elif key == Qt.Key.Key_Home:
            self.state.set_index(0)
        elif key == Qt.Key.Key_End:
            self.state.set_index(self.state.n_slices - 1)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.state.set_zoom(self.state.zoom * 1.25)
        elif key == Qt.Key.Key_Minus:
            self.state.set_zoom(self.state.zoom / 1.25)
        elif key == Qt.Key.Key_0:
            self.state.reset()
        else:
            super().keyPressEvent(event)
            return
        event.accept()
