"""Reader mode: a signed-in reader scores blinded cases in their own seeded order, by keyboard or mouse.

What the reader sees is built from codes only: "case 3 of 40", the source image by its contrast ("Source
T1"), and the candidates as "Image A", "Image B", ... in the reader's order. No method, file, subject or
acquired/generated hint appears in any title, label or tooltip (a test walks every widget's text).

Keys (see the reader's guide): 1-5 answer the highlighted question and move to the next; A / G answer
"acquired or generated?" (then 1-5 for the confidence); Tab / Shift+Tab move between questions; N / P next
or previous image; R the ranking; in the ranking, Alt+Up / Alt+Down move the selected image, T ties it with
the one above, Enter saves; Ctrl+Right / Ctrl+Left next or previous case; Ctrl+Z undoes the last answer (an
answer that replaced an earlier one brings the earlier one back; the audit trail keeps both). Every answer is
saved the moment it is given ("saved" in the status line); closing the window stops, signing in again resumes at
the first case not finished, on its first image and question without an answer.
"""

from __future__ import annotations

import time

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.qt import workers

from .viewer import LinkedViewer

__all__ = ["ReaderWindow", "SignInDialog", "RankingList", "ranks_from_order"]


def ranks_from_order(order: list[str], tied: set[str]) -> dict[str, int]:
    """Competition ranks from a display order: an item tied with the one above shares its rank."""
    ranks: dict[str, int] = {}
    for i, code in enumerate(order):
        ranks[code] = ranks[order[i - 1]] if i > 0 and code in tied else i + 1
    return ranks


def _load_images(job, paths: dict):
    from napari_medtrans.core import io

    return {code: io.load(path, modality=modality) for code, (path, modality) in paths.items()}


class SignInDialog(QDialog):
    """Asks the reader's name."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Reader sign-in")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("your name")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Sign in with your name to start or resume your reading."))
        layout.addWidget(self.name_edit)
        layout.addWidget(buttons)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

    def name(self) -> str:
        return self.name_edit.text().strip()


class RankingList(QListWidget):
    """Candidates in rank order; drag or Alt+Up/Down to move, T to tie with the one above."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setToolTip("Best at the top. Drag or Alt+Up/Down to move; T ties an image with the one above")
        self.tied: set[str] = set()
        self.model().rowsMoved.connect(lambda *_: self.relabel())

    def set_items(self, codes: list[str], letters: dict[str, str], ranks: dict[str, int] | None = None) -> None:
        """Show ``codes`` (sorted by ``ranks`` when given, ties restored)."""
        self.clear()
        self.tied = set()
        order = list(codes)
        if ranks:
            order.sort(key=lambda c: (ranks.get(c, len(codes) + 1), codes.index(c)))
            self.tied = {c for i, c in enumerate(order) if i > 0 and ranks.get(c) == ranks.get(order[i - 1])}
        for code in order:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, code)
            item.setData(Qt.ItemDataRole.UserRole + 1, letters[code])
            self.addItem(item)
        self.setCurrentRow(0)
        self.relabel()

    def dropEvent(self, event) -> None:  # noqa: N802
        super().dropEvent(event)
        self.relabel()

    def order(self) -> list[str]:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())]

    def ranks(self) -> dict[str, int]:
        return ranks_from_order(self.order(), self.tied)

    def relabel(self) -> None:
        ranks = self.ranks()
        for i in range(self.count()):
            item = self.item(i)
            code = item.data(Qt.ItemDataRole.UserRole)
            tie = "  (tied)" if code in self.tied and i > 0 else ""
            item.setText(f"{ranks[code]}.  Image {item.data(Qt.ItemDataRole.UserRole + 1)}{tie}")

    def move_current(self, step: int) -> None:
        row = self.currentRow()
        target = row + step
        if row < 0 or not 0 <= target < self.count():
            return
        item = self.takeItem(row)
        self.insertItem(target, item)
        self.setCurrentRow(target)
        self.relabel()

    def toggle_tie(self) -> None:
        item = self.currentItem()
        if item is None or self.currentRow() == 0:
            return
        code = item.data(Qt.ItemDataRole.UserRole)
        self.tied.symmetric_difference_update({code})
        self.relabel()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        alt = event.modifiers() & Qt.KeyboardModifier.AltModifier
        if alt and event.key() in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.move_current(-1 if event.key() == Qt.Key.Key_Up else 1)
        elif event.key() == Qt.Key.Key_T:
            self.toggle_tie()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class _Question(QGroupBox):
    """One per-image question: buttons 1..n (scale), or Acquired/Generated plus confidence 1-5 (realism)."""

    def __init__(self, criterion, on_answer):
        super().__init__(criterion.label)
        self.criterion = criterion
        self.setToolTip(criterion.question)
        self.setCheckable(False)
        self.on_answer = on_answer
        layout = QVBoxLayout(self)
        self.choice = QButtonGroup(self)
        self.choice.setExclusive(True)
        row = QHBoxLayout()
        if criterion.kind == "realism":
            for value, text in ((1, "Acquired (A)"), (0, "Generated (G)")):
                b = QRadioButton(text)
                self.choice.addButton(b, value)
                row.addWidget(b)
            layout.addLayout(row)
            row = QHBoxLayout()
            row.addWidget(QLabel("Confidence"))
            self.confidence = QButtonGroup(self)
            for v in range(1, 6):
                b = QRadioButton(str(v))
                self.confidence.addButton(b, v)
                row.addWidget(b)
            self.confidence.idClicked.connect(lambda v: self.on_answer(self, self.choice.checkedId(), v))
        else:
            self.confidence = None
            for v in range(criterion.min_value, criterion.max_value + 1):
                b = QRadioButton(str(v))
                self.choice.addButton(b, v)
                row.addWidget(b)
            self.choice.idClicked.connect(lambda v: self.on_answer(self, v, None))
        layout.addLayout(row)

    def show_answer(self, value, confidence) -> None:
        for group, v in ((self.choice, value), (self.confidence, confidence)):
            if group is None:
                continue
            group.setExclusive(False)
            for b in group.buttons():
                b.setChecked(v is not None and group.id(b) == int(v))
            group.setExclusive(True)

    def set_active(self, on: bool) -> None:
        self.setStyleSheet("QGroupBox { border: 2px solid #2a7ae2; margin-top: 1.2em; }" if on else "")


class ReaderWindow(QMainWindow):
    """The reader's window for one :class:`~napari_medtrans.study.session.ReaderSession`."""

    def __init__(self, session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.index = session.resume_index()
        self.candidate = 0
        self.question = 0
        self.images: dict = {}
        self.job = None
        self.opened_at = time.time()
        self.case_opened_at = time.time()
        self.per_image = [c for c in session.criteria if c.per_image]
        self.ranking = next((c for c in session.criteria if c.kind == "ranking"), None)
        #: Answers given in this window, newest last: (case index, image code, criterion, the answer it replaced).
        self.undo_stack: list[tuple[int, str, str, object]] = []

        self.viewer = LinkedViewer(2)
        self.viewer.set_reader_mode(True)
        self.progress_label = QLabel("")
        self.saved_label = QLabel("")
        self.image_buttons = QHBoxLayout()
        self.buttons: list[QPushButton] = []
        self.questions = [_Question(c, self._answered) for c in self.per_image]
        self.rank_list = RankingList()
        self.rank_save = QPushButton("Save ranking (Enter)")
        self.rank_button = QPushButton("Ranking (R)")
        self.rank_button.setEnabled(self.ranking is not None)
        prev_case, next_case = QPushButton("< Previous case"), QPushButton("Next case >")
        prev_case.setToolTip("Ctrl+Left")
        next_case.setToolTip("Ctrl+Right")
        stop = QPushButton("Stop (your answers are saved)")

        score_page = QWidget()
        sp = QVBoxLayout(score_page)
        for q in self.questions:
            sp.addWidget(q)
        sp.addStretch(1)
        rank_page = QWidget()
        rp = QVBoxLayout(rank_page)
        rp.addWidget(QLabel(self.ranking.label if self.ranking else ""))
        rp.addWidget(self.rank_list)
        rp.addWidget(self.rank_save)
        self.pages = QStackedWidget()
        self.pages.addWidget(score_page)
        self.pages.addWidget(rank_page)

        side = QVBoxLayout()
        side.addWidget(self.progress_label)
        side.addLayout(self.image_buttons)
        side.addWidget(self.pages, 1)
        side.addWidget(self.rank_button)
        nav = QHBoxLayout()
        nav.addWidget(prev_case)
        nav.addWidget(next_case)
        side.addLayout(nav)
        side.addWidget(stop)
        side.addWidget(self.saved_label)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.viewer, 3)
        panel = QWidget()
        panel.setLayout(side)
        panel.setMaximumWidth(360)
        layout.addWidget(panel, 1)
        self.setCentralWidget(central)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self.rank_save.clicked.connect(self.save_ranking)
        self.rank_button.clicked.connect(self.show_ranking)
        self.rank_list.currentItemChanged.connect(self._on_rank_selection)
        prev_case.clicked.connect(lambda: self.go_to_case(self.index - 1))
        next_case.clicked.connect(lambda: self.go_to_case(self.index + 1))
        stop.clicked.connect(self.close)
        for w in self.findChildren(QWidget):  # keys must reach the window, not a slider or a button
            if w is not self.rank_list:
                w.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        workers.set_error_handler(self.show_error)
        from .runtime import quiet_gc

        quiet_gc()
        self.go_to_case(self.index)

    # -- opening ----------------------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, folder, parent: QWidget | None = None, name: str | None = None):
        """Open a bundle, ask the reader's name (unless given) and return the window (None on cancel/error)."""
        from napari_medtrans.core.errors import MedtransError
        from napari_medtrans.study import ReaderSession, open_bundle

        try:
            bundle = open_bundle(folder)
            if name is None:
                dialog = SignInDialog(parent)
                if dialog.exec() != QDialog.DialogCode.Accepted or not dialog.name():
                    bundle.store.close()
                    return None
                name = dialog.name()
            session = ReaderSession(bundle.store, name, bundle.image_path)
        except MedtransError as exc:
            QMessageBox.warning(parent, "Reader study", str(exc))
            return None
        return cls(session, parent)

    def show_error(self, message: str, _exc=None) -> None:
        self.saved_label.setText(message)
        box = QMessageBox(QMessageBox.Icon.Warning, "Reader study", message, parent=self)
        box.setModal(False)
        box.show()
        self._box = box

    # -- navigation -------------------------------------------------------------------------------------
    def go_to_case(self, index: int) -> None:
        """Show case ``index`` (0-based) of the reader's order; images load in a worker."""
        s = self.session
        if not 0 <= index < s.total:
            return
        self.index = index
        self.candidate, self.question = self.first_unanswered(index)
        self.case_opened_at = time.time()
        case = s.case(index)
        letters = s.letters(index)
        while self.image_buttons.count():
            w = self.image_buttons.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.buttons = []
        for i, code in enumerate(case.candidates):
            b = QPushButton(f"Image {letters[code]}")
            b.setCheckable(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(lambda _c=False, i=i: self.show_candidate(i))
            self.image_buttons.addWidget(b)
            self.buttons.append(b)
        self.rank_list.set_items(list(case.candidates), letters, self._saved_ranks())
        self.pages.setCurrentIndex(0)
        self.setFocus()
        self.images = {}
        paths = {code: (s.image_path(code), modality) for code, modality in case.sources}
        paths.update({code: (s.image_path(code), None) for code in case.candidates})
        self.viewer.set_volume(0, None, "loading ...")
        self.viewer.set_volume(1, None, "loading ...")
        self.job = workers.start_job(_load_images, paths, name="loading the case")
        self.job.succeeded.connect(lambda images, index=index: self._on_loaded(index, images))
        self._update_labels()

    def first_unanswered(self, index: int) -> tuple[int, int]:
        """``(candidate, question)`` of the first image of case ``index`` with a question not answered, in the
        reader's order; ``(0, 0)`` when every image is answered."""
        case = self.session.case(index)
        for i, code in enumerate(case.candidates):
            for j, q in enumerate(self.questions):
                if self.session.answer(index, code, q.criterion.name) is None:
                    return i, j
        return 0, 0

    def _on_loaded(self, index: int, images: dict) -> None:
        if index != self.index:
            return
        self.images = images
        case = self.session.case(index)
        if case.sources:
            code, modality = case.sources[0]
            self.viewer.set_volume(0, images[code], f"Source {modality or ''}".strip())
        self.show_candidate(self.candidate)

    def show_candidate(self, i: int) -> None:
        """Show candidate ``i`` of the case (in the reader's order) and its answers."""
        case = self.session.case(self.index)
        i = max(0, min(i, len(case.candidates) - 1))
        self.candidate = i
        code = case.candidates[i]
        self.opened_at = time.time()
        letter = self.session.letters(self.index)[code]
        if code in self.images:
            self.viewer.set_volume(1, self.images[code], f"Image {letter}")
        for j, b in enumerate(self.buttons):
            b.setChecked(j == i)
        for q in self.questions:
            row = self.session.answer(self.index, code, q.criterion.name)
            q.show_answer(None if row is None else row.value, None if row is None else row.confidence)
        self._set_question(self.question)
        self._update_labels()

    def show_ranking(self) -> None:
        if self.ranking is None:
            return
        self.pages.setCurrentIndex(1)
        self.rank_list.setFocus()
        self._on_rank_selection(self.rank_list.currentItem(), None)

    def _on_rank_selection(self, item, _previous) -> None:
        if item is None or self.pages.currentIndex() != 1:
            return
        case = self.session.case(self.index)
        code = item.data(Qt.ItemDataRole.UserRole)
        if code in case.candidates:
            self.show_candidate(case.candidates.index(code))
            self.pages.setCurrentIndex(1)

    def _set_question(self, q: int) -> None:
        self.question = max(0, min(q, len(self.questions) - 1))
        for j, w in enumerate(self.questions):
            w.set_active(j == self.question)

    def _update_labels(self) -> None:
        s = self.session
        label = s.label(self.index)
        self.setWindowTitle(f"Reader study - {label}")
        done = s.completed()
        mark = "  (finished)" if s.is_complete(self.index) else ""
        self.progress_label.setText(f"{label}{mark}   -   {done} of {s.total} complete   -   reader {s.reader.name}")
        case = s.case(self.index)
        letters = s.letters(self.index)
        for b, code in zip(self.buttons, case.candidates):
            answered = all(s.answer(self.index, code, q.criterion.name) is not None for q in self.questions)
            b.setText(f"Image {letters[code]}{' *' if answered else ''}")

    # -- answering --------------------------------------------------------------------------------------
    def _answered(self, question: _Question, value, confidence) -> None:
        if question.criterion.kind == "realism" and (value is None or value < 0 or confidence is None):
            return  # waits for both parts
        self.save_answer(question.criterion.name, value, confidence)

    def save_answer(self, criterion: str, value, confidence=None) -> bool:
        """Save an answer for the current image; True once committed."""
        from napari_medtrans.core.errors import MedtransError

        code = self.session.case(self.index).candidates[self.candidate]
        previous = self.session.answer(self.index, code, criterion)
        try:
            self.session.score(self.index, code, criterion, value, confidence=confidence, opened_at=self.opened_at)
        except MedtransError as exc:
            self.show_error(str(exc))
            return False
        self.undo_stack.append((self.index, code, criterion, previous))
        self.saved_label.setText(f"saved ({time.strftime('%H:%M:%S')}; Ctrl+Z undoes)")
        self._update_labels()
        return True

    def undo(self) -> bool:
        """Undo the last answer given in this window: go back to its image and question and, when it replaced an
        earlier answer, save that one again. True when an earlier answer was restored."""
        from napari_medtrans.core.errors import MedtransError

        if not self.undo_stack:
            self.saved_label.setText("nothing to undo")
            return False
        index, code, criterion, previous = self.undo_stack.pop()
        if index != self.index:
            self.go_to_case(index)
        case = self.session.case(index)
        self.question = next((j for j, q in enumerate(self.questions) if q.criterion.name == criterion), 0)
        self.show_candidate(case.candidates.index(code))
        if previous is None:
            self.saved_label.setText("that was the first answer to this question: answer it again to change it")
            return False
        try:
            self.session.score(index, code, criterion, previous.value, confidence=previous.confidence,
                               opened_at=self.opened_at)
        except MedtransError as exc:
            self.show_error(str(exc))
            return False
        self.show_candidate(self.candidate)
        self.saved_label.setText(f"undone: the earlier answer is back ({time.strftime('%H:%M:%S')})")
        return True

    def save_ranking(self) -> bool:
        """Save the ranking shown; True once committed."""
        from napari_medtrans.core.errors import MedtransError

        if self.ranking is None:
            return False
        try:
            self.session.rank(self.index, self.rank_list.ranks(), self.ranking.name,
                              opened_at=self.case_opened_at)
        except MedtransError as exc:
            self.show_error(str(exc))
            return False
        self.saved_label.setText(f"ranking saved ({time.strftime('%H:%M:%S')})")
        self._update_labels()
        return True

    def _saved_ranks(self) -> dict[str, int] | None:
        if self.ranking is None:
            return None
        case = self.session.case(self.index)
        rows = {c: self.session.answer(self.index, c, self.ranking.name) for c in case.candidates}
        if any(r is None for r in rows.values()):
            return None
        return {c: int(r.value) for c, r in rows.items()}

    def _key_digit(self, digit: int) -> None:
        if not self.questions:
            return
        q = self.questions[self.question]
        crit = q.criterion
        if crit.kind == "realism":
            choice = q.choice.checkedId()
            if choice < 0 or not 1 <= digit <= 5:
                self.saved_label.setText("press A (acquired) or G (generated) first")
                return
            q.show_answer(choice, digit)
            ok = self.save_answer(crit.name, choice, digit)
        else:
            if not crit.min_value <= digit <= crit.max_value:
                return
            q.show_answer(digit, None)
            ok = self.save_answer(crit.name, digit)
        if ok:
            self._advance()

    def _advance(self) -> None:
        """After an answer: the next question, else the next image, else the ranking."""
        if self.question + 1 < len(self.questions):
            self._set_question(self.question + 1)
            return
        case = self.session.case(self.index)
        if self.candidate + 1 < len(case.candidates):
            self.question = 0
            self.show_candidate(self.candidate + 1)
        elif self.ranking is not None:
            self.show_ranking()

    def keyPressEvent(self, event) -> None:  # noqa: N802
        key, mods = event.key(), event.modifiers()
        ranking_page = self.pages.currentIndex() == 1
        if mods & Qt.KeyboardModifier.ControlModifier and key == Qt.Key.Key_Z:
            self.undo()
        elif mods & Qt.KeyboardModifier.ControlModifier and key in (Qt.Key.Key_Right, Qt.Key.Key_Left):
            self.go_to_case(self.index + (1 if key == Qt.Key.Key_Right else -1))
        elif ranking_page and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if self.save_ranking() and self.index + 1 < self.session.total:
                self.go_to_case(self.index + 1)
        elif ranking_page and key in (Qt.Key.Key_T, Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.rank_list.keyPressEvent(event)
            return
        elif ranking_page and key == Qt.Key.Key_Escape:
            self.pages.setCurrentIndex(0)
            self.setFocus()
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and not ranking_page:
            self._key_digit(key - Qt.Key.Key_0)
        elif key in (Qt.Key.Key_A, Qt.Key.Key_G) and not ranking_page and self.questions:
            q = self.questions[self.question]
            if q.criterion.kind == "realism":
                q.show_answer(1 if key == Qt.Key.Key_A else 0, None)
        elif key == Qt.Key.Key_Tab or key == Qt.Key.Key_Backtab:
            self._set_question(self.question + (-1 if key == Qt.Key.Key_Backtab else 1))
        elif key in (Qt.Key.Key_N, Qt.Key.Key_P):
            self.pages.setCurrentIndex(0)
            self.setFocus()
            self.show_candidate(self.candidate + (1 if key == Qt.Key.Key_N else -1))
        elif key == Qt.Key.Key_R:
            self.show_ranking()
        else:
            self.viewer.keyPressEvent(event)
            return
        event.accept()

    def focusNextPrevChild(self, _next: bool) -> bool:  # noqa: N802 - Tab moves between questions instead
        return False

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.job is not None and self.job.running:
            self.job.wait(10000)
        previous = workers.set_error_handler(None)
        if previous != self.show_error:
            workers.set_error_handler(previous)
        self.session.store.close()
        super().closeEvent(event)
