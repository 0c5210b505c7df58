"""Issue 21 item 1 in napari: the four napari-medtrans docks share one column as tabs, and napari with all four
fits 1366 x 768 and 1920 x 1080 with every control of the raised dock inside the window and no text cut.
Screenshots go to docs/screenshots/.

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python -m pytest tests/napari/test_napari_screen_fit.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QDockWidget, QLabel, QLineEdit,
                            QProgressBar, QScrollArea, QSlider, QWidget)

pytestmark = pytest.mark.gui
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NAMES = ("Translate", "Inspect", "Export", "Segment")
CONTROLS = (QAbstractButton, QComboBox, QLabel, QSlider, QAbstractSpinBox, QLineEdit, QProgressBar)


def _visible_area(w, main):
    """The part of the window where ``w`` can be seen: its scroll area's viewport when it has one."""
    p = w.parentWidget()
    while p is not None and not isinstance(p, QScrollArea):
        p = p.parentWidget()
    target = p.viewport() if p is not None else w
    return QRect(target.mapTo(main, QPoint(0, 0)), target.size())


def _problems(dock, main) -> list[str]:
    frame = QRect(QPoint(0, 0), main.size())
    out = []
    for w in dock.findChildren(QWidget):
        if not isinstance(w, CONTROLS) or not w.isVisible() or not type(w).__module__.startswith(("PySide", "PyQt")):
            continue
        if w.objectName().startswith("qt_dockwidget") or not w.window() is main:
            continue
        if not frame.contains(_visible_area(w, main)):
            out.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} outside {_visible_area(w, main)}")
        fm = w.fontMetrics()
        if isinstance(w, QComboBox) and w.currentText() and fm.horizontalAdvance(w.currentText()) > w.width() - 24:
            out.append(f"combo text cut: {w.currentText()!r} in {w.width()} px")
        if isinstance(w, QAbstractButton) and w.text() and w.width() < w.minimumSizeHint().width() - 1:
            out.append(f"button text cut: {w.text()!r} in {w.width()} px")
    return out


def test_napari_docks_share_a_column_and_fit_ordinary_screens(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTRANS_HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-medtrans", "phantom")
    for name in NAMES:
        viewer.window.add_plugin_dock_widget("napari-medtrans", name)
        qtbot.wait(50)
    main = viewer.window._qt_window
    docks = {d.windowTitle().split(" (")[0].split(": ")[-1]: d for d in main.findChildren(QDockWidget)
             if any(type(c).__module__.startswith("napari_medtrans._napari") for c in d.findChildren(QWidget))}
    assert set(docks) == set(NAMES), list(docks)
    for name, dock in docks.items():  # one tab group: every medtrans dock shares its column with the other three
        others = set(main.tabifiedDockWidgets(dock))
        assert others == {d for n, d in docks.items() if n != name}, name
    for size in ((1366, 768), (1920, 1080)):
        main.resize(*size)
        qtbot.wait(200)
        assert (main.width(), main.height()) == size, (main.minimumSizeHint().width(), main.minimumSizeHint().height())
        problems = []
        for name in NAMES:
            docks[name].raise_()
            qtbot.wait(50)
            problems += [f"[{name}] {p}" for p in _problems(docks[name], main)]
        docks["Translate"].raise_()
        qtbot.wait(100)
        SHOTS.mkdir(parents=True, exist_ok=True)
        main.grab().save(str(SHOTS / f"napari-{size[0]}x{size[1]}.png"))
        assert not problems, "\n".join(problems)
