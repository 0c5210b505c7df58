"""Reader mode: a reader completes a blinded study by keyboard, stops and resumes, and no widget text ever
reveals a method, a subject, a file name, or whether an image is acquired.

Runs with QT_QPA_PLATFORM=offscreen as well as under xvfb.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtGui import QAction
from qtpy.QtWidgets import QAbstractButton, QComboBox, QGroupBox, QLabel, QLineEdit, QListWidget, QWidget

from medtrans_app.reader import ReaderWindow, SignInDialog, ranks_from_order
from medtrans_app.viewer import SlicePane
from napari_medtrans.core import io
from napari_medtrans.phantom import make_subject
from napari_medtrans.study import analyse, create_study, export_bundle, import_results, parse_config
from napari_medtrans.translators import list_translators

METHODS = ("hifisyn", "cyclegan")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An organiser's study of 2 phantom cases (acquired T2 + 2 'methods') and a bundle for Alice."""
    root = tmp_path_factory.mktemp("readerstudy")
    cases = []
    for i in range(2):
        s = make_subject(20 + i, shape=(24, 24, 6))
        d = root / f"patient-gamma{i}"
        d.mkdir()
        io.save(s.images["T1"], d / "t1_scan.nii.gz")
        io.save(s.images["T2"], d / "t2_scan.nii.gz")
        cands = {}
        for j, m in enumerate(METHODS):
            synth = s.images["T2"].derive(s.images["T2"].data * (1.0 + 0.05 * j), synthetic=True)
            cands[m] = str(d / f"{m}_result.nii.gz")
            io.save(synth, cands[m])
        cases.append({"id": f"patient-gamma{i}", "sources": {"T1": str(d / "t1_scan.nii.gz")},
                      "real": str(d / "t2_scan.nii.gz"), "candidates": cands})
    master = create_study(parse_config({"title": "leak check", "seed": 3, "target": "T2", "readers": ["Alice"],
                                        "open_enrolment": True, "cases": cases}), root / "study.db",
                          log=lambda s: None)
    key = master.key()
    forbidden = set(METHODS) | set(list_translators()) | {c["id"] for c in cases}
    for k in key.values():
        name = k.path.rsplit("/", 1)[-1]
        forbidden |= {name, name.split(".")[0]}
    yield master, root, sorted(forbidden)
    master.close()


@pytest.fixture
def bundle(study, tmp_path):
    return export_bundle(study[0], tmp_path / "bundle", readers=["Alice"], log=lambda s: None)


def widget_texts(*roots: QWidget) -> list[str]:
    """Every text a person can see or hover in these windows and their children."""
    out = []
    for root in roots:
        for w in [root] + root.findChildren(QWidget):
            out += [w.windowTitle(), w.toolTip(), w.statusTip(), w.whatsThis(), w.accessibleName(),
                    w.accessibleDescription()]
            if isinstance(w, (QLabel, QAbstractButton)):
                out.append(w.text())
            if isinstance(w, QLineEdit):
                out += [w.text(), w.placeholderText()]
            if isinstance(w, QGroupBox):
                out.append(w.title())
            if isinstance(w, QComboBox):
                out += [w.itemText(i) for i in range(w.count())]
            if isinstance(w, QListWidget):
                out += [w.item(i).text() for i in range(w.count())] + [w.item(i).toolTip() for i in range(w.count())]
            if isinstance(w, SlicePane):
                out += [w.title, w.banner]
        for a in root.findChildren(QAction):
            out += [a.text(), a.toolTip(), a.statusTip()]
    return [t for t in out if t]


def assert_no_leak(texts: list[str], forbidden: list[str]) -> None:
    joined = "\n".join(texts)
    for word in forbidden:
        assert word.lower() not in joined.lower(), f"{word!r} is visible to the reader"
    assert not re.search(r"\breal\b", joined, re.I), "the word 'real' is visible to the reader"
    assert not re.search(r"synth", joined, re.I), "'synthetic' is visible to the reader"


def wait_loaded(qtbot, window):
    if window.job is not None and window.job.running:
        with qtbot.waitSignal(window.job.finished, timeout=20000):
            pass
    qtbot.waitUntil(lambda: bool(window.images), timeout=20000)


def press(qtbot, window, *keys, mods=Qt.KeyboardModifier.NoModifier):
    """Type keys where a person's keys go: the focused widget (events it ignores reach the window)."""
    for k in keys:
        qtbot.keyClick(window.focusWidget() or window, k, mods)


def test_ranks_from_order_with_ties():
    assert ranks_from_order(["a", "b", "c", "d"], {"c"}) == {"a": 1, "b": 2, "c": 2, "d": 4}
    assert ranks_from_order(["a", "b"], {"a"}) == {"a": 1, "b": 2}  # the top cannot tie upwards


def test_ranking_list_follows_a_drag_and_keeps_ties(qtbot):
    from qtpy.QtCore import QModelIndex
    from qtpy.QtWidgets import QAbstractItemView

    from medtrans_app.reader import RankingList

    lst = RankingList()
    qtbot.addWidget(lst)
    assert lst.dragDropMode() == QAbstractItemView.DragDropMode.InternalMove
    lst.set_items(["x1", "x2", "x3"], {"x1": "A", "x2": "B", "x3": "C"})
    # A drag inside the list ends in the model's row move (what QListWidget's drop does with InternalMove).
    assert lst.model().moveRow(QModelIndex(), 2, QModelIndex(), 0)
    assert lst.order() == ["x3", "x1", "x2"] and lst.item(0).text() == "1.  Image C"
    lst.setCurrentRow(2)
    lst.toggle_tie()  # B ties with A
    assert lst.ranks() == {"x3": 1, "x1": 2, "x2": 2}
    assert lst.model().moveRow(QModelIndex(), 0, QModelIndex(), 3)  # C dragged to the bottom
    assert lst.ranks() == {"x1": 1, "x2": 1, "x3": 3} and lst.item(1).text() == "1.  Image B  (tied)"


def test_reader_completes_a_case_by_keyboard_and_nothing_leaks(qtbot, study, bundle):
    master, _, forbidden = study
    dialog = SignInDialog()
    qtbot.addWidget(dialog)
    assert_no_leak(widget_texts(dialog), forbidden)
    window = ReaderWindow.from_bundle(bundle, name="alice")
    qtbot.addWidget(window)
    window.show()
    wait_loaded(qtbot, window)
    assert window.windowTitle() == "Reader study - case 1 of 2"
    assert "case 1 of 2" in window.progress_label.text() and "0 of 2 complete" in window.progress_label.text()
    assert [b.text() for b in window.buttons] == ["Image A", "Image B", "Image C"]
    assert window.viewer.panes[0].title == "Source T1" and window.viewer.panes[1].title == "Image A"
    assert all(p.banner == "" for p in window.viewer.panes)
    texts = widget_texts(window)
    for i in range(3):  # every image: structure 4, diagnostic 3, acquired with confidence 5
        assert window.candidate == i
        press(qtbot, window, Qt.Key.Key_4, Qt.Key.Key_3, Qt.Key.Key_A, Qt.Key.Key_5)
        texts += widget_texts(window)
    assert "saved" in window.saved_label.text()
    assert window.pages.currentIndex() == 1  # the ranking follows the last image
    press(qtbot, window, Qt.Key.Key_Down)
    press(qtbot, window, Qt.Key.Key_Up, mods=Qt.KeyboardModifier.AltModifier)  # B to the top
    press(qtbot, window, Qt.Key.Key_Down, Qt.Key.Key_T)  # A ties with B
    texts += widget_texts(window)
    assert [window.rank_list.item(i).text() for i in range(3)] == ["1.  Image B", "1.  Image A  (tied)",
                                                                   "3.  Image C"]
    press(qtbot, window, Qt.Key.Key_Return)
    wait_loaded(qtbot, window)
    assert window.index == 1 and window.windowTitle() == "Reader study - case 2 of 2"
    assert "1 of 2 complete" in window.progress_label.text()
    texts += widget_texts(window)
    for _ in range(3):  # the last case, by keyboard too: the whole study is done
        press(qtbot, window, Qt.Key.Key_5, Qt.Key.Key_2, Qt.Key.Key_G, Qt.Key.Key_1)
    assert window.pages.currentIndex() == 1
    texts += widget_texts(window)
    press(qtbot, window, Qt.Key.Key_Return)
    assert "2 of 2 complete" in window.progress_label.text() and "(finished)" in window.progress_label.text()
    texts += widget_texts(window)
    assert_no_leak(texts, forbidden)
    window.close()

    summary = import_results(master, bundle)
    assert summary.added == 2 * (3 * 3 + 3)
    case_code = window.session.case(0).case_code
    letters = {v: k for k, v in window.session.letters(0).items()}
    latest = {(r.image_code, r.criterion): r for r in master.latest_scores("alice", case_code)}
    for code in letters.values():
        assert latest[(code, "structure")].value == 4 and latest[(code, "diagnostic")].value == 3
        assert latest[(code, "realism")].value == 1 and latest[(code, "realism")].confidence == 5
        assert latest[(code, "structure")].seconds is not None
    assert latest[(letters["B"], "ranking")].value == 1 and latest[(letters["A"], "ranking")].value == 1
    assert latest[(letters["C"], "ranking")].value == 3
    a = analyse(master)
    assert sorted(a.methods) == sorted(["real", *METHODS])


def test_stop_and_resume_where_the_reader_left_off(qtbot, study, bundle):
    # A reader who signs in for the first time in the bundle (open enrolment).
    window = ReaderWindow.from_bundle(bundle, name="Dana")
    qtbot.addWidget(window)
    wait_loaded(qtbot, window)
    first = window.session.case(0)
    press(qtbot, window, Qt.Key.Key_2)  # one answer, then stop
    code = first.candidates[0]
    window.close()

    again = ReaderWindow.from_bundle(bundle, name="  DANA")
    qtbot.addWidget(again)
    wait_loaded(qtbot, again)
    assert again.index == 0 and again.session.answer(0, code, "structure").value == 2
    assert again.questions[0].choice.checkedId() == 2  # the answer is shown again
    # Finish case 1 through the session (as the buttons would), then resume lands on case 2.
    s = again.session
    for c in first.candidates:
        for crit, value, conf in (("structure", 5, None), ("diagnostic", 5, None), ("realism", 0, 2)):
            s.score(0, c, crit, value, confidence=conf)
    s.rank(0, {c: 1 for c in first.candidates})
    again.close()
    third = ReaderWindow.from_bundle(bundle, name="dana")
    qtbot.addWidget(third)
    wait_loaded(qtbot, third)
    assert third.index == 1 and "case 2 of 2" in third.progress_label.text()
    third.close()


def test_reader_mode_shows_no_voxel_values_and_mouse_answers_save(qtbot, bundle):
    window = ReaderWindow.from_bundle(bundle, name="Bob")  # open enrolment: a new reader
    qtbot.addWidget(window)
    window.resize(900, 600)
    window.show()
    wait_loaded(qtbot, window)
    pane = window.viewer.panes[1]
    hit = pane.value_at(pane.rect().center().toPointF())
    assert hit is not None and hit[2] is None
    q = window.questions[1]
    q.choice.button(5).click()
    code = window.session.case(0).candidates[0]
    assert window.session.answer(0, code, "diagnostic").value == 5
    realism = window.questions[2]
    realism.choice.button(0).click()  # generated: waits for the confidence
    assert window.session.answer(0, code, "realism") is None
    realism.confidence.button(3).click()
    row = window.session.answer(0, code, "realism")
    assert row.value == 0 and row.confidence == 3
    window.close()


def test_closed_bundle_refuses_unknown_names(qtbot, study, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    from napari_medtrans.study import schema as S

    path = export_bundle(study[0], tmp_path / "closed", readers=["Alice"], log=lambda s: None)
    from napari_medtrans.study.store import StudyStore

    with StudyStore(path / "study.db") as s, s.engine.begin() as conn:
        conn.execute(S.studies.update().values(open_enrolment=False))
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    assert ReaderWindow.from_bundle(path, name="Mallory") is None
    assert "Mallory" in shown[0] and "takes no new readers" in shown[0]
    np.testing.assert_equal(len(shown), 1)


def test_resume_lands_on_the_first_unanswered_image_and_ctrl_z_brings_an_overwritten_answer_back(qtbot, bundle):
    """Issue 21 item 7: signing in again opens the first image and question without an answer (not Image A); a
    stray digit that replaced an answer is undone with Ctrl+Z (the earlier answer saved again, both kept)."""
    window = ReaderWindow.from_bundle(bundle, name="Erin")
    qtbot.addWidget(window)
    wait_loaded(qtbot, window)
    press(qtbot, window, Qt.Key.Key_4, Qt.Key.Key_3, Qt.Key.Key_A, Qt.Key.Key_5)  # Image A complete
    press(qtbot, window, Qt.Key.Key_2)  # Image B: structure only
    b = window.session.case(0).candidates[1]
    window.close()

    again = ReaderWindow.from_bundle(bundle, name="erin")
    qtbot.addWidget(again)
    wait_loaded(qtbot, again)
    assert (again.index, again.candidate, again.question) == (0, 1, 1)  # Image B, second question
    assert again.viewer.panes[1].title == "Image B"
    press(qtbot, again, Qt.Key.Key_Backtab, mods=Qt.KeyboardModifier.ShiftModifier)
    assert again.question == 0
    press(qtbot, again, Qt.Key.Key_5)  # a stray digit replaces the 2
    assert again.session.answer(0, b, "structure").value == 5 and again.question == 1
    press(qtbot, again, Qt.Key.Key_Z, mods=Qt.KeyboardModifier.ControlModifier)
    assert again.session.answer(0, b, "structure").value == 2
    assert (again.candidate, again.question) == (1, 0) and again.questions[0].choice.checkedId() == 2
    assert "undone" in again.saved_label.text()
    press(qtbot, again, Qt.Key.Key_Z, mods=Qt.KeyboardModifier.ControlModifier)
    assert "nothing to undo" in again.saved_label.text()
    trail = [r.value for r in again.session.store.history(again.session.reader.key)
             if r.image_code == b and r.criterion == "structure"]
    assert trail == [2, 5, 2]
    again.close()
