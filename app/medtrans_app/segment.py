"""SAM2 / MedSAM2 in the app: the Segment panel as a dock, prompts from clicks on the axial panes, the mask as
a red overlay on the panes that show the segmented image.

With "Prompt by clicking" on, a left click on an axial pane adds a positive point, a negative point, or (in box
mode) one corner of a box: two clicks make the box. Prompts are kept in patient coordinates, so a click on
any pane applies to the image chosen in the panel, on that image's own grid.

The comparison (Compare in the panel) shows its masks the same way: each pane that displays a compared volume
gets that volume's mask as the overlay, and the pane's title names it (``medsam2 mask of T2 (real)``, as napari
names its Labels layers). A new comparison replaces the overlays of the previous one. A pane shows one mask:
whichever arrived last for its image (a segmentation of that image or a comparison that included it).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_medtrans.segment import FrameGeometry, SlicePrompt
from napari_medtrans.qt.segment_panel import SegmentPanel

__all__ = ["AppSegmentation", "MODES"]

MODES = ("positive point", "negative point", "box (two clicks)")
_RED = np.zeros((256, 3), np.uint8)
_RED[:, 0] = 255


class AppSegmentation(QObject):
    """The Segment dock of a :class:`~medtrans_app.main_window.MainWindow` and its click prompts."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.panel = SegmentPanel()
        self.panel.volume_provider = window.volume
        self.panel.prompt_provider = self.prompts_for
        self.click_box = QCheckBox("Prompt by clicking on an axial pane")
        self.mode_box = QComboBox()
        self.mode_box.addItems(list(MODES))
        self.clear_button = QPushButton("Clear prompts")
        self.prompt_label = QLabel("no prompt")
        self.points: list[tuple[np.ndarray, int]] = []  # (RAS mm, 1 positive / 0 negative)
        self.boxes: list[tuple[np.ndarray, np.ndarray]] = []  # two opposite corners, RAS mm
        self._corner: np.ndarray | None = None
        self.masks: dict[str, object] = {}  # image name -> label Volume (Segment slice(s) / Propagate)
        #: image name -> (label Volume, label) of the last comparison; names as the window knows them
        self.compared: dict[str, tuple[object, str]] = {}
        #: image name -> (label Volume, label) shown on panes displaying that image (the newest mask)
        self.overlays: dict[str, tuple[object, str]] = {}
        self._shown: dict[int, tuple[object, str]] = {}  # pane -> (DisplayVolume we set, label in its title)

        widget = QWidget()
        layout = QVBoxLayout(widget)
        row = QHBoxLayout()
        row.addWidget(self.mode_box, 1)
        row.addWidget(self.clear_button)
        layout.addWidget(self.click_box)
        layout.addLayout(row)
        layout.addWidget(self.prompt_label)
        layout.addWidget(self.panel, 1)
        self.dock = window.add_dock("Segment", widget, Qt.DockWidgetArea.RightDockWidgetArea)

        self.clear_button.clicked.connect(self.clear_prompts)
        self.panel.segmented.connect(self._on_segmented)
        self.panel.evaluated.connect(self._on_evaluated)
        for pane in window.viewer.panes:
            pane.installEventFilter(self)
        for box in window.pane_boxes:
            box.currentTextChanged.connect(self.show_masks)

    # -- sources ----------------------------------------------------------------------------------------
    def set_sources(self, names) -> None:
        """Every open volume can be segmented, compared, or be the ground truth."""
        self.panel.set_sources(list(names), list(names))

    # -- prompts ----------------------------------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt name
        if (event.type() == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton
                and self.click_box.isChecked()):
            self.click(self.window.viewer.panes.index(obj), event.position().x(), event.position().y())
        return False  # the pane still moves its crosshair

    def click(self, pane: int, x: float, y: float) -> bool:
        """Add the prompt of a click at widget position (x, y) of ``pane``; False when it is not a prompt."""
        from qtpy.QtCore import QPointF

        view = self.window.viewer
        p = view.panes[pane]
        name = self.window.pane_boxes[pane].currentText()
        volume = self.window.volumes.get(name)
        if volume is None or p.volume is None or view.state.plane != "axial":
            self.prompt_label.setText("prompts are taken on axial panes showing an image")
            return False
        col, row = p.to_image(QPointF(x, y))
        # pixel (c, r) spans [c, c + 1) on screen; SAM and voxel indices put its centre at c
        ijk = FrameGeometry.of(volume).frame_to_index(view.state.index, col - 0.5, row - 0.5)
        world = (volume.affine @ np.append(ijk, 1.0))[:3]
        mode = self.mode_box.currentIndex()
        if mode < 2:
            self.points.append((world, 1 if mode == 0 else 0))
        elif self._corner is None:
            self._corner = world
        else:
            self.boxes.append((self._corner, world))
            self._corner = None
        self._describe()
        return True

    def clear_prompts(self) -> None:
        self.points, self.boxes, self._corner = [], [], None
        self._describe()

    def _describe(self) -> None:
        pending = " (box: click the opposite corner)" if self._corner is not None else ""
        self.prompt_label.setText(f"{len(self.points)} point(s), {len(self.boxes)} box(es){pending}")

    def prompts_for(self, volume) -> list[SlicePrompt]:
        """The clicks as frame prompts of ``volume`` (one SlicePrompt per slice)."""
        geom = FrameGeometry.of(volume)
        inv = np.linalg.inv(volume.affine)

        def frame(world):
            return geom.index_to_frame((inv @ np.append(world, 1.0))[:3])

        per: dict[int, dict] = {}
        for world, label in self.points:
            s, x, y = frame(world)
            e = per.setdefault(s, {"points": [], "labels": [], "box": None})
            e["points"].append((x, y))
            e["labels"].append(label)
        for a, b in self.boxes:
            (s, x0, y0), (_, x1, y1) = frame(a), frame(b)
            per.setdefault(s, {"points": [], "labels": [], "box": None})["box"] = (x0, y0, x1, y1)
        return [SlicePrompt(s, points=e["points"], labels=e["labels"], box=e["box"]) for s, e in sorted(per.items())]

    # -- results ----------------------------------------------------------------------------------------
    def _on_segmented(self, request, result) -> None:
        mask = result.to_volume(request.volume)
        self.masks[request.image] = mask
        self.overlays[request.image] = (mask, f"segmentation of {request.image}")
        self.show_masks()

    def _on_evaluated(self, request, report) -> None:
        """Show a comparison's masks on the panes displaying the compared volumes, replacing the last one's.

        ``report.results`` holds one mask per compared image, keyed like ``request.images`` ("NAME (role)");
        the volume object tells which of the window's images it was (a volume re-opened since is left alone).
        """
        new: dict[str, tuple[object, str]] = {}
        for key, result in report.results.items():
            volume = request.images.get(key)
            for name in [n for n, v in self.window.volumes.items() if v is volume]:
                new[name] = (result.to_volume(volume), f"{report.model} mask of {key}")
        for name, entry in self.compared.items():  # the last comparison's overlays go
            if self.overlays.get(name) is entry:
                if name in self.masks:
                    self.overlays[name] = (self.masks[name], f"segmentation of {name}")
                else:
                    del self.overlays[name]
        self.compared = new
        self.overlays.update(new)
        self.show_masks()

    def show_masks(self, _name: str = "") -> None:
        """Overlay each pane's image with its mask and name the mask in the pane's title; a pane whose image
        has no mask loses the mask overlay it had from here (other overlays, e.g. a TSM map, stay)."""
        for i, (pane, box) in enumerate(zip(self.window.viewer.panes, self.window.pane_boxes)):
            entry = self.overlays.get(box.currentText())
            shown = self._shown.pop(i, None)
            if entry is not None:
                pane.set_overlay(entry[0], (0.0, 1.0), _RED, 0.4)
                self._shown[i] = (pane.overlay, entry[1])
                self._set_label(pane, shown, entry[1])
            elif shown is not None:
                if pane.overlay is shown[0]:  # still ours: not replaced by the window since
                    pane.set_overlay(None)
                self._set_label(pane, shown, "")

    @staticmethod
    def _set_label(pane, shown, label: str) -> None:
        """Put ``label`` in brackets after the pane's title (replacing the one we added before)."""
        title = pane.title
        if shown is not None and shown[1] and title.endswith(f"  [{shown[1]}]"):
            title = title[: -len(f"  [{shown[1]}]")]
        pane.title = f"{title}  [{label}]" if label else title
        pane.setToolTip(label)
        pane.update()
