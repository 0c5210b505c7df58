"""The clinician's main window: worklist, linked viewer, translate / export panels, overlays, settings.

Long work runs in :mod:`napari_medtrans.qt.workers` jobs (loading, phantoms, translation, error maps, export);
their errors arrive as non-modal message boxes. Every synthetic volume is listed with a name starting
"SYNTHETIC" and shown under a red SYNTHETIC banner naming its method.

Contrasts: every pane's title names its volume's modality. The reference pane follows the synthetic one: a
new synthetic volume gets the acquired volume of its own contrast (on its grid) as reference, never itself.
The error map of a synthetic volume against a reference of another contrast is refused with a message
(:func:`napari_medtrans.core.compare.check_comparable`); an unknown contrast is allowed with a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.core.compare import modality_text, pick_reference, same_modality
from napari_medtrans.qt import translation, workers
from napari_medtrans.qt.export_panel import ExportPanel
from napari_medtrans.qt.translate_panel import TranslatePanel

from .imaging import robust_range
from .overlays import OVERLAYS, ColourBar, OverlayMixin
from .runtime import leave_a_core_to_the_gui, quiet_gc
from .settings import AppSettings
from .viewer import LinkedViewer
from .window_jobs import _load_files, _phantom
from .worklist import Worklist, load_case

__all__ = ["MainWindow", "NONE", "DEMO_MISSING", "leave_a_core_to_the_gui", "quiet_gc"]

# Re-exported: defined or imported here before the overlays (overlays.py) and the job functions (window_jobs.py)

NONE = "(none)"
PANE_TITLES = ("Source", "Synthetic", "Reference")
DEMO_MISSING = "demo model not installed"


#: The order contrasts fill the panes in when the translator does not say (T1 as source, T2 as reference: what a
#: radiologist reads first), before volumes without a known contrast (label maps, masks).
CLINICAL_ORDER = ("T1", "T2", "T1c", "FLAIR", "PD")


class MainWindow(OverlayMixin, QMainWindow):
    """The app's main window (see the module notes; the overlay methods are :class:`~.overlays.OverlayMixin`'s)."""

    def __init__(self, settings: AppSettings | None = None):
        super().__init__()
        self.settings = settings or AppSettings()
        self.setWindowTitle("medtrans-app")
        self.volumes: dict[str, object] = {}
        self.methods: dict[str, str] = {}  # synthetic name -> method
        self.made_from: dict[str, str] = {}  # synthetic name -> the names of the volumes it was made from
        self.maps: dict[str, dict] = {}  # synthetic name -> {map name: Volume}
        self.preview = None
        self.jobs: list = []
        self._boxes: list = []
        self._error_cache: dict = {}
        self._refused: tuple | None = None  # the last (synthetic, reference) pair refused, said once in a box
        self._error_pending: set = set()  # (synthetic, reference) pairs whose error map is being computed

        self.viewer = LinkedViewer(int(self.settings.get("panes", 3, int)))
        self.worklist = Worklist()
        self.translate_panel = TranslatePanel()
        self.export_panel = ExportPanel()
        self.translate_panel.volume_provider = self.volume
        self.export_panel.volume_provider = self.volume

        self.pane_boxes = [QComboBox() for _ in range(3)]
        for i, box in enumerate(self.pane_boxes):
            box.setToolTip(f"{PANE_TITLES[i]} pane")
            box.currentTextChanged.connect(lambda name, i=i: self.show_in_pane(i, name))
        self.pane_count = QComboBox()
        self.pane_count.addItems(["1 pane", "2 panes", "3 panes"])
        self.pane_count.setCurrentIndex(self.viewer.n_panes - 1)
        self.overlay_box = QComboBox()
        self.overlay_box.addItems(OVERLAYS)
        self.overlay_box.setToolTip("Overlay on the synthetic pane")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setToolTip("Overlay opacity")
        self.status_label = QLabel("")
        self.colour_bar = ColourBar()
        self.colour_bar.setVisible(False)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setVisible(False)

        # One row of pane choices (each box as wide as a third of the viewer), one of overlay controls.
        top = QHBoxLayout()
        top.addWidget(self.pane_count)
        for box in self.pane_boxes:
            top.addWidget(box, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        legend_row = QHBoxLayout()
        legend_row.addWidget(self.overlay_box)
        legend_row.addWidget(QLabel("Opacity"))
        legend_row.addWidget(self.opacity)
        legend_row.addWidget(self.colour_bar)
        legend_row.addWidget(self.legend, 1)
        layout.addLayout(legend_row)
        layout.addWidget(self.viewer, 1)
        self.setCentralWidget(central)
        self.docks: dict[str, QDockWidget] = {}
        for title, widget, area in (("Worklist", self.worklist, Qt.DockWidgetArea.RightDockWidgetArea),
                                    ("Translate", self.translate_panel, Qt.DockWidgetArea.RightDockWidgetArea),
                                    ("Export", self.export_panel, Qt.DockWidgetArea.RightDockWidgetArea)):
            self.docks[title] = self.add_dock(title, widget, area)
        self.statusBar().addWidget(self.status_label, 1)
        self._make_menus()
        from .segment import AppSegmentation

        self.segmentation = AppSegmentation(self)  # SAM2 / MedSAM2 dock (segment.py)
        # The panels share one column as tabs, so the window fits a 1366 x 768 screen with room for the panes.
        self.tabifyDockWidget(self.docks["Worklist"], self.docks["Translate"])
        self.tabifyDockWidget(self.docks["Translate"], self.docks["Export"])
        self.tabifyDockWidget(self.docks["Export"], self.docks["Segment"])
        self.docks["Translate"].raise_()

        self.pane_count.currentIndexChanged.connect(self._on_pane_count)
        self.overlay_box.currentIndexChanged.connect(lambda _i: self.update_overlay())
        self.opacity.valueChanged.connect(self._on_opacity)
        self.worklist.case_chosen.connect(self.open_case)
        self.worklist.add_files_requested.connect(self._pick_files)
        self.worklist.add_folder_requested.connect(self._pick_folder)
        self.translate_panel.started.connect(self._on_translation_started)
        self.translate_panel.partial_ready.connect(self._on_partial)
        self.translate_panel.translated.connect(self._on_translated)
        self.translate_panel.stopped.connect(self._on_translation_stopped)
        preset = self.settings.get("preset", "Default", str)
        if self.viewer.preset_box.findText(preset) >= 0:
            self.viewer.preset_box.setCurrentText(preset)
        geometry = self.settings.get("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        workers.set_error_handler(self.show_error)
        leave_a_core_to_the_gui()
        self._refresh_sources()
        quiet_gc()

    def add_dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        """A dock whose panel scrolls when the screen is too short for it (its height never sets the window's)."""
        scroll = QScrollArea()
        scroll.setWidget(widget)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(scroll)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    # -- menus ------------------------------------------------------------------------------------------
    def _make_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction("Open file...", self._pick_files, "Ctrl+O")
        file_menu.addAction("Open folder...", self._pick_folder, "Ctrl+Shift+O")
        self.recent_menu = file_menu.addMenu("Open recent")
        file_menu.addAction("Open phantom subject", lambda: self.load_phantom())
        file_menu.addSeparator()
        file_menu.addAction("Open reader study...", self._pick_study)
        file_menu.addSeparator()
        file_menu.addAction("Import weights...", self.translate_panel.import_weights)
        file_menu.addSeparator()
        file_menu.addAction("Quit", self.close, "Ctrl+Q")
        view = bar.addMenu("&View")
        for n in (1, 2, 3):
            view.addAction(f"{n} pane{'s' if n > 1 else ''}", lambda n=n: self.pane_count.setCurrentIndex(n - 1),
                           f"Ctrl+{n}")
        help_menu = bar.addMenu("&Help")
        help_menu.addAction("Keyboard and mouse", self._show_help)
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent():
            self.recent_menu.addAction(path, lambda p=path: self.open_paths([p]))
        self.recent_menu.setEnabled(bool(self.settings.recent()))

    def _show_help(self) -> None:
        from . import viewer

        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard and mouse", viewer.__doc__.split("\n\n", 2)[-1],
                          parent=self)
        box.setModal(False)
        box.show()
        self._boxes.append(box)

    # -- errors -----------------------------------------------------------------------------------------
    def show_error(self, message: str, _exc: BaseException | None = None) -> None:
        """Show a worker error as a non-modal message box (the event loop keeps running)."""
        self.status_label.setText(message)
        box = QMessageBox(QMessageBox.Icon.Warning, "medtrans-app", message, parent=self)
        box.setModal(False)
        box.show()
        self._boxes = [b for b in self._boxes if b.isVisible()] + [box]

    # -- opening ----------------------------------------------------------------------------------------
    def _pick_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open volumes", "", "NIfTI or DICOM (*.nii *.nii.gz *.dcm *)")
        self.open_paths(paths)

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a subject or DICOM folder")
        if folder:
            self.open_paths([folder])

    def _pick_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a reader study bundle")
        if folder:
            self.open_study(folder)

    def open_study(self, folder: str):
        """Open a reader bundle in a new reader window (sign-in first); returns the window or None."""
        from .reader import ReaderWindow

        window = ReaderWindow.from_bundle(folder, parent=None)
        if window is not None:
            window.show()
            self._reader = window
        return window

    def open_paths(self, paths) -> None:
        """Add paths to the worklist; open several files together (one case), else the first folder."""
        paths = [os.fspath(p) for p in paths if p]
        for p in paths:
            self.worklist.add(p)
            self.settings.add_recent(p)
        self._fill_recent()
        files = [p for p in paths if os.path.isfile(p)]
        if len(files) > 1 and len(files) == len(paths):
            self.status_label.setText(f"loading {len(files)} files ...")
            job = workers.start_job(_load_files, files, name=f"loading {len(files)} files")
            job.succeeded.connect(self.add_volumes)
            self.jobs.append(job)
        elif paths:
            self.open_case(paths[0])

    def open_case(self, path: str):
        """Load a case in a worker; its volumes are added when it finishes. Returns the job."""
        self.status_label.setText(f"loading {path} ...")
        job = workers.start_job(load_case, path, name=f"loading {path}")
        job.succeeded.connect(self.add_volumes)
        self.jobs.append(job)
        return job

    def load_phantom(self, seed: int = 1000, shape=(120, 144, 88)):
        """Make a phantom subject (T1, T2, FLAIR) in a worker and open it. Returns the job."""
        self.status_label.setText("making a phantom subject ...")
        job = workers.start_job(_phantom, seed, tuple(shape), name="phantom")
        job.succeeded.connect(self.add_volumes)
        self.jobs.append(job)
        return job

    def volume(self, name: str):
        """The volume called ``name`` (for the panels)."""
        from napari_medtrans.core.errors import MedtransError

        if name not in self.volumes:
            raise MedtransError(f"no volume called {name!r} is open")
        return self.volumes[name]

    def add_volumes(self, entries) -> None:
        """Add ``[(name, Volume), ...]`` and fill the panes still empty: the source is an acquired volume of the
        translator's input contrast, the reference one of the synthetic volume's contrast (or, before there is
        one, of the translator's output contrast when known, else another acquired volume)."""
        for name, vol in entries:
            self.volumes[name] = vol
        self._refresh_sources()
        acquired = [(n, v.modality) for n, v in entries if not getattr(v, "synthetic", False)]
        synthetic = [n for n, v in entries if getattr(v, "synthetic", False)]
        empty = [self.pane_boxes[i].currentText() in ("", NONE) for i in range(3)]
        acquired.sort(key=lambda nm: CLINICAL_ORDER.index(nm[1]) if nm[1] in CLINICAL_ORDER else len(CLINICAL_ORDER))
        if empty[0] and acquired:
            wanted = self.translate_panel.inputs.modalities()[:1] or ["T1"]
            same = [n for n, m in acquired if same_modality(m, wanted[0])]
            self.pane_boxes[0].setCurrentText((same or [acquired[0][0]])[0])
        if empty[1] and synthetic:
            self.pane_boxes[1].setCurrentText(synthetic[0])  # its reference follows (show_in_pane)
        shown = self.volumes.get(self.pane_boxes[1].currentText())
        if empty[2] and acquired and (shown is None or not shown.synthetic):
            source = self.pane_boxes[0].currentText()
            others = [(n, m) for n, m in acquired if n != source]
            output = self.translate_panel.output_modalities()[:1]
            if output:  # the model's output contrast: a reference of that contrast or none
                pick = pick_reference(("", output[0]), others)
            else:  # no model yet: T2, else the next in clinical order
                pick = pick_reference(("", "T2"), others) or (others[0][0] if others else None)
            if pick:
                self.pane_boxes[2].setCurrentText(pick)
        self.status_label.setText(f"{len(entries)} volume(s) loaded")

    def _match_reference(self, name: str) -> None:
        """Show in the reference pane an acquired volume of the synthetic volume ``name``'s contrast on its grid
        (:func:`~napari_medtrans.core.compare.pick_reference`), unless the one shown already is one."""
        synth = self.volumes.get(name)
        if synth is None or not synth.synthetic:
            return
        current = self.pane_boxes[2].currentText()
        ref = self.volumes.get(current)
        same = False
        if ref is not None and current != name and ref.same_grid(synth):
            same = same_modality(synth.modality, ref.modality)
        if same or (same is None and synth.modality is None):
            return  # already of its contrast, or its contrast is unknown and the choice stands
        candidates = [(n, v.modality) for n, v in self.volumes.items() if not v.synthetic and v.same_grid(synth)]
        pick = pick_reference((name, synth.modality), candidates)
        if pick:
            self.pane_boxes[2].setCurrentText(pick)

    def _refresh_sources(self) -> None:
        names = list(self.volumes)
        acquired = [n for n in names if not getattr(self.volumes[n], "synthetic", False)]
        synthetic = [n for n in names if n not in acquired]
        for box in self.pane_boxes:
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems([NONE] + names)
            for i, n in enumerate(names, start=1):
                tip = f"{n}: {modality_text(self.volumes[n].modality)}"
                if n in self.made_from:
                    tip += f", made from {self.made_from[n]}"
                box.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)
            box.setCurrentText(current if current in names else NONE)
            box.blockSignals(False)
        # a translation is made from acquired images: synthetic volumes are not offered as inputs
        self.translate_panel.set_sources([(n, self.volumes[n].modality) for n in acquired])
        self.export_panel.set_sources(synthetic + acquired, synthetic)
        if getattr(self, "segmentation", None) is not None:
            self.segmentation.set_sources(acquired + synthetic)

    # -- panes ------------------------------------------------------------------------------------------
    def _value_range(self, vol):
        """Window reference: the acquired volume of the same contrast when one is open, else the volume."""
        same = [v for v in self.volumes.values() if not v.synthetic and v.modality == vol.modality
                and v.shape == vol.shape]
        return robust_range((same[0] if same else vol).data)

    def show_in_pane(self, pane: int, name: str) -> None:
        """Show the volume ``name`` (or nothing) in pane ``pane``."""
        vol = self.volumes.get(name)
        if vol is None:
            self.viewer.set_volume(pane, None, "")
            return
        method = self.methods.get(name) if vol.synthetic else None
        if vol.synthetic and method is None:
            method = vol.provenance.get("method") or "unknown method"
        if pane == 1:
            self._match_reference(name)  # before the overlay: an error map needs the reference of its contrast
        title = f"{PANE_TITLES[pane]}: {name} · {modality_text(vol.modality)}"
        self.viewer.set_volume(pane, vol, title, synthetic_method=method, value_range=self._value_range(vol))
        if pane == 1 or (pane == 2 and self.overlay_box.currentIndex() == 2):
            self.update_overlay()

    def _on_pane_count(self, index: int) -> None:
        self.viewer.set_pane_count(index + 1)
        self.settings.set("panes", index + 1)

    # -- overlays: update_overlay and its helpers come from OverlayMixin (overlays.py) -------------------

    # -- translation ------------------------------------------------------------------------------------
    def _on_translation_started(self, request) -> None:
        from napari_medtrans.core.preprocess import acquisition_axis
        from napari_medtrans.core.volume import Volume

        _name, first = next(iter(request.inputs.values()))
        # Slices along the acquisition axis contiguous: each partial block then touches only its own memory.
        data = translation.preview_buffer(first.shape, acquisition_axis(first))
        self.preview = Volume(data, first.affine, modality=None, synthetic=True)
        self._preview_axis = acquisition_axis(first)
        self._preview_done = np.zeros(first.shape[self._preview_axis], dtype=bool)
        method = request.choice.value if request.choice.kind == "method" else Path(request.choice.value).stem
        self.viewer.set_volume(1, self.preview, "Synthetic: running ...", synthetic_method=method,
                               value_range=self._value_range(first))
        if self.viewer.n_panes < 2:
            self.pane_count.setCurrentIndex(1)

    def _on_partial(self, _request, axis, start, stop, block) -> None:
        if self.preview is None:
            return
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        self.preview.data[tuple(index)] = block
        self._preview_done[start:stop] = True
        self.viewer.panes[1].refresh()

    def _on_translated(self, request, result) -> None:
        """Add every output of the run (a multi-output model such as CDM makes T1c and FLAIR), each marked
        SYNTHETIC; the first is shown and offered for export."""
        self.preview = None
        outputs = dict(getattr(result, "outputs", None) or {}) or {result.volume.modality: result.volume}
        first = None
        for vol in outputs.values():
            method = vol.provenance.get("method") or request.choice.label
            # named by contrasts (the source volumes' own names are in the provenance and the tooltip), so the
            # name fits the pane boxes
            name = f"SYNTHETIC {vol.modality or ''} by {method} from {'+'.join(request.inputs)}".replace("  ", " ")
            n = 2
            base = name
            while name in self.volumes:
                name = f"{base} ({n})"
                n += 1
            self.volumes[name] = vol
            self.methods[name] = method
            self.made_from[name] = request.input_label
            # the maps belong to the run; each output keeps those of its own contrast and the shared ones
            self.maps[name] = dict(result.maps)
            first = first or name
        self._refresh_sources()
        self.export_panel.volume_box.setCurrentText(first)  # what was just made is what one exports
        self.pane_boxes[1].setCurrentText(first)  # its reference follows (show_in_pane)
        self.show_in_pane(1, first)
        extra = f" (+{len(outputs) - 1} more output{'s' if len(outputs) > 2 else ''})" if len(outputs) > 1 else ""
        self.status_label.setText(f"{first}{extra}: {result.seconds:.1f} s on {result.device}")

    def _on_translation_stopped(self, request, what: str) -> None:
        """A cancelled run keeps its finished slices as a volume marked partial (export refuses it)."""
        kept = None
        if what == "cancelled" and self.preview is not None:
            _name, first = next(iter(request.inputs.values()))
            kept = translation.partial_volume(first, self.preview.data, self._preview_done, self._preview_axis,
                                              request.choice.label,
                                              (request.choice.direction or "").partition("->")[2] or None)
        self.preview = None
        if kept is None:
            self.show_in_pane(1, self.pane_boxes[1].currentText())
            self.status_label.setText(f"translation {what}")
            return
        name = translation.partial_name(kept, request.input_label)
        self.volumes[name] = kept
        self.methods[name] = request.choice.label
        self._refresh_sources()
        self.pane_boxes[1].setCurrentText(name)
        self.show_in_pane(1, name)
        p = kept.provenance["partial"]
        self.status_label.setText(f"translation cancelled: the {p['slices_done']} finished slices of "
                                  f"{p['slices_total']} are kept as '{name}'")

    # -- demo -------------------------------------------------------------------------------------------
    def setup_demo(self, shape=(120, 144, 88)):
        """Open a phantom subject and select the shipped demo model (or say clearly that it is missing)."""
        from napari_medtrans.core.errors import WeightsError
        from napari_medtrans.translators.lookup import resolve_model

        self.translate_panel.refresh_models()  # list what is installed now, not at start-up
        try:
            path = resolve_model("demo")
        except WeightsError:
            self.demo_model = None
            self.show_error(f"{DEMO_MISSING}: resources/models/demo-t1-t2.safetensors is missing from this "
                            "installation; pick or load another model in the Translate panel (models marked "
                            "'untrained' have random weights and make meaningless images)")
        else:
            self.demo_model = str(path)
            self.translate_panel.add_model_file(path)
        return self.load_phantom(shape=shape)

    # -- closing ----------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.settings.set("geometry", self.saveGeometry())
        self.settings.set("preset", self.viewer.preset_box.currentText())
        workers.cancel_all(wait_ms=5000)
        previous = workers.set_error_handler(None)
        if previous != self.show_error:  # another window's handler: leave it in place
            workers.set_error_handler(previous)
        super().closeEvent(event)
