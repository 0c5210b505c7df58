"""The Qt binding keeps Python's reference counts straight.

PySide6 6.12.0 drops one reference to ``None`` on every call of a Qt method that returns nothing
(``QProgressBar.setValue``, ``QLabel.setText``, ``QWidget.update``, ...). A long translation updates its progress
bar thousands of times, so after a while the interpreter aborts ("Fatal Python error: none_dealloc") and the
workstation closes in the middle of the work. requirements.txt keeps that version out; this test notices if it
(or another release with the same fault) comes back.
"""

from __future__ import annotations

import sys

from qtpy.QtWidgets import QLabel, QProgressBar


def test_void_qt_calls_do_not_leak_references_to_none(qtbot):
    bar, label = QProgressBar(), QLabel()
    qtbot.addWidget(bar)
    qtbot.addWidget(label)
    bar.setMaximum(10_000)
    before = sys.getrefcount(None)
    for i in range(1_000):  # few enough that a faulty binding fails here instead of aborting
        bar.setValue(i)
        label.setText(str(i))
        bar.update()
    lost = before - sys.getrefcount(None)
    # a faulty binding loses 3000 here; allow for unrelated references released meanwhile
    assert lost < 500, f"{lost} references to None lost in 3000 Qt calls: this PySide6 build will crash the app"
