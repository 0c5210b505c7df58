"""Reader bundles that lie: import checks every row and every file of a returned bundle and refuses the whole
bundle, listing every problem, when anything is wrong (nothing is merged).

Each test builds a real bundle, answers one case the way the app does, then tampers with it the way a careless
or hostile reader, a bad zip tool or a broken disk could. A test that imports a tampered bundle checks that the
organiser's database is left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medtrans.core.errors import StudyError
from napari_medtrans.study import (
    ReaderSession,
    create_study,
    export_bundle,
    import_results,
    open_bundle,
    parse_config,
)
from napari_medtrans.study import schema as S

FUTURE = 4102444800.0  # 2100-01-01


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """Two cases of tiny random images: one source, the acquired target and two methods each."""
    root = tmp_path_factory.mktemp("hostile-images")
    rng = np.random.default_rng(0)
    cases = []
    for i in range(2):
        paths = {}
        for name in ("T1", "T2", "m1", "m2"):
            paths[name] = str(root / f"c{i}-{name}.nii.gz")
            nib.save(nib.Nifti1Image(rng.random((8, 8, 4)).astype(np.float32), np.eye(4)), paths[name])
        cases.append({"id": f"c{i}", "sources": {"T1": paths["T1"]}, "real": paths["T2"],
                      "candidates": {"m1": paths["m1"], "m2": paths["m2"]}})
    return {"title": "hostile", "seed": 5, "target": "T2", "readers": ["Alice", "Bob"], "cases": cases}


@pytest.fixture
def master(config, tmp_path):
    store = create_study(parse_config({**config, "open_enrolment": True}), tmp_path / "study.db",
                         log=lambda s: None)
    yield store
    store.close()


@pytest.fixture
def closed_master(config, tmp_path):
    store = create_study(parse_config({**config, "open_enrolment": False}), tmp_path / "closed.db",
                         log=lambda s: None)
    yield store
    store.close()


def answer_case(session: ReaderSession, index: int = 0) -> None:
    """Answer every criterion of one case (3 candidates x 4 criteria = 12 rows)."""
    case = session.case(index)
    for code in case.candidates:
        session.score(index, code, "structure", 4)
        session.score(index, code, "diagnostic", 3)
        session.score(index, code, "realism", 1, confidence=2)
    session.rank(index, {c: k + 1 for k, c in enumerate(case.candidates)})


def answered(master, folder: Path, reader: str = "Alice") -> Path:
    """A bundle for ``reader`` with the first case of their order answered."""
    path = export_bundle(master, folder, readers=[reader], log=lambda s: None)
    bundle = open_bundle(path)
    answer_case(ReaderSession(bundle.store, reader, bundle.image_path))
    bundle.store.close()
    return path


def add_score(db: Path, like: str = "structure", **changes) -> int:
    """Append a copy of a stored ``like`` row with ``changes`` (and a new uid) straight into a bundle's database;
    returns the new row's id."""
    db = db / "study.db" if db.is_dir() else db
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM scores WHERE criterion = ? ORDER BY id LIMIT 1", (like,)).fetchone())
    row.pop("id")
    row.update(uid=secrets.token_hex(16), **changes)
    with con:
        cur = con.execute(f"INSERT INTO scores ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          list(row.values()))
    con.close()
    return int(cur.lastrowid)


def sql(db: Path, statement: str, *params) -> None:
    con = sqlite3.connect(db / "study.db" if db.is_dir() else db)
    with con:
        con.execute(statement, params)
    con.close()


def state(master) -> tuple:
    """What an import could change in the organiser's database."""
    return (len(master.history()), sorted(r.key for r in master.readers()),
            sorted((r["reader_key"], r["case_code"]) for r in master.table_rows(S.assignments)))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(master, source, *expected: str) -> StudyError:
    """Import ``source``; check that it is refused with every ``expected`` text and that nothing changed."""
    before = state(master)
    with pytest.raises(StudyError) as info:
        import_results(master, source)
    message = str(info.value)
    assert message.startswith(f"{source}: "), message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    assert state(master) == before
    return info.value


def outside_copy(master, tmp_path: Path, reader: str = "Bob") -> Path:
    """Another answered blinded copy, outside any bundle, in SQLite's plain (rollback) journal mode."""
    other = answered(master, tmp_path / f"other-{reader}", reader)
    out = tmp_path / "elsewhere.db"
    shutil.copy(other / "study.db", out)
    con = sqlite3.connect(out)
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    return out


# -- rows ----------------------------------------------------------------------------------------------------
def test_the_five_rows_once_merged_are_refused_together(master, tmp_path):
    """The bundle of the report: 12 good rows plus 5 bad ones was merged as "17 scores added"."""
    bundle = answered(master, tmp_path / "b")
    ids = [add_score(bundle, value=999),
           add_score(bundle, criterion="overall"),
           add_score(bundle, reader_key="ghost"),
           add_score(bundle, like="realism", confidence=99),
           add_score(bundle, saved_at=FUTURE)]
    err = refused(master, bundle, "refused", "nothing merged", "5 problems",
                  f"score row {ids[0]}: value 999 outside 1-5 for criterion 'structure'",
                  f"score row {ids[1]}: unknown criterion 'overall'",
                  f"reader 'ghost' (score row {ids[2]}) is not registered",
                  f"score row {ids[3]}: confidence 99 outside 1-5",
                  f"score row {ids[4]}: saved in the future")
    assert len(err.data["problems"]) == 5
    # Once the bad rows are gone, the same bundle merges.
    sql(bundle, f"DELETE FROM scores WHERE id IN ({', '.join(map(str, ids))})")
    assert import_results(master, bundle).added == 12


@pytest.mark.parametrize("like, changes, expected", [
    ("structure", {"value": 999}, "value 999 outside 1-5 for criterion 'structure'"),
    ("structure", {"value": 2.5}, "value 2.5 is not a whole number"),
    ("structure", {"value": float("inf")}, "value inf is not a finite number"),
    ("structure", {"value": "four"}, "value 'four' is not a number"),
    ("structure", {"criterion": "overall"}, "unknown criterion 'overall'"),
    ("structure", {"reader_key": "ghost"}, "reader 'ghost'"),
    ("realism", {"confidence": 99}, "confidence 99 outside 1-5"),
    ("realism", {"confidence": None}, "needs a confidence"),
    ("realism", {"value": 0.5}, "1 (acquired) or 0 (generated)"),
    ("ranking", {"value": 7}, "rank 7 outside 1-3"),
    ("structure", {"saved_at": FUTURE}, "saved in the future"),
    ("structure", {"saved_at": 0.0}, "saved before the study was created"),
    ("structure", {"opened_at": FUTURE}, "opened in the future"),
    ("structure", {"seconds": -5.0}, "seconds -5 is negative"),
    ("structure", {"image_code": None}, "names no image"),
    ("structure", {"image_code": "../../../etc/passwd"}, "image code '../../../etc/passwd' is not a valid code"),
    ("structure", {"case_code": "ZZZZZZ"}, "no case 'ZZZZZZ'"),
], ids=["value-999", "half-value", "inf", "text", "criterion", "reader", "confidence-99", "no-confidence",
        "realism-half", "rank-7", "future", "epoch", "opened-future", "negative-seconds", "no-image",
        "path-code", "case"])
def test_one_bad_row_refuses_the_whole_bundle(master, tmp_path, like, changes, expected):
    bundle = answered(master, tmp_path / "b")
    row = add_score(bundle, like=like, **changes)
    err = refused(master, bundle, "1 problem:", expected, f"score row {row}")
    assert err.data["problems"] and len(err.data["problems"]) == 1


# -- files ---------------------------------------------------------------------------------------------------
def test_a_symlinked_study_db_is_refused_and_left_untouched(master, tmp_path):
    bundle = answered(master, tmp_path / "b")
    outside = outside_copy(master, tmp_path)
    (bundle / "study.db").unlink()
    (bundle / "study.db").symlink_to(outside)
    before = digest(outside)
    refused(master, bundle, "study.db is a symbolic link")
    with pytest.raises(StudyError, match="study.db is a symbolic link"):
        open_bundle(bundle)
    assert digest(outside) == before and not Path(f"{outside}-wal").exists()


def test_a_symlink_anywhere_in_the_bundle_is_refused(master, tmp_path):
    bundle = answered(master, tmp_path / "b")
    image = next((bundle / "images").iterdir())
    image.unlink()
    image.symlink_to("/etc/hostname")
    refused(master, bundle, f"images/{image.name} is a symbolic link")
    with pytest.raises(StudyError, match="is a symbolic link"):
        open_bundle(bundle)


def test_the_database_field_cannot_redirect_an_import(master, tmp_path):
    """bundle.json names another database: the bundle's own study.db is imported, the other is not read."""
    bundle = answered(master, tmp_path / "b")
    outside = outside_copy(master, tmp_path)
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "database": str(outside)}))
    before = digest(outside)
    summary = import_results(master, bundle)
    assert summary.added == 12 and {r.reader_key for r in master.history()} == {"alice"}
    # Nor does the reader's app follow it to a file: only a shared database's URL may stand there.
    with pytest.raises(StudyError, match="'database' must be the URL of a shared database"):
        open_bundle(bundle)
    assert digest(outside) == before


@pytest.mark.parametrize("target", ["outside", "postgresql://reader:secret@db.invalid/blinded"])
def test_a_bundle_without_its_own_database_is_refused(master, tmp_path, target):
    bundle = answered(master, tmp_path / "b")
    outside = outside_copy(master, tmp_path)
    target = str(outside) if target == "outside" else target
    (bundle / "study.db").unlink()
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "database": target}))
    before = digest(outside)
    err = refused(master, bundle, "has no study.db", "import-results")
    assert "secret" not in str(err) and digest(outside) == before


def zipped(bundle: Path, out: Path, extra: dict[str, bytes] = (), links: dict[str, str] = (),
           skip: tuple[str, ...] = ()) -> Path:
    """A zip of a bundle folder, plus ``extra`` members and ``links`` (symbolic link members: name -> target)."""
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(bundle.rglob("*")):
            name = p.relative_to(bundle).as_posix()
            if p.is_file() and name not in skip:
                zf.write(p, name)
        for name, data in dict(extra).items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in dict(links).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            info.create_system = 3
            zf.writestr(info, target)
    return out


@pytest.mark.parametrize("member", ["../../evil.txt", "/tmp/evil.txt", "images/../../evil.txt",
                                    "C:/Windows/evil.txt", "..\\..\\evil.txt"])
def test_zip_members_outside_the_bundle_are_refused(master, tmp_path, member):
    bundle = answered(master, tmp_path / "b")
    archive = zipped(bundle, tmp_path / "back.zip", extra={member: b"x"})
    refused(master, archive, f"member {member!r} points outside the bundle")


def test_symlink_members_of_a_zip_are_refused(master, tmp_path):
    bundle = answered(master, tmp_path / "b")
    outside = outside_copy(master, tmp_path)
    archive = zipped(bundle, tmp_path / "link-db.zip", links={"study.db": str(outside)}, skip=("study.db",))
    refused(master, archive, "member 'study.db' is a symbolic link")
    image = next((bundle / "images").iterdir()).name
    archive = zipped(bundle, tmp_path / "link-img.zip", links={f"images/{image}": "/etc/hostname"},
                     skip=(f"images/{image}",))
    refused(master, archive, f"member 'images/{image}' is a symbolic link")


def damage(db: Path, how: str) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2] if how == "truncated" else os.urandom(len(data)))


@pytest.mark.parametrize("how", ["garbage", "truncated"])
@pytest.mark.parametrize("form", ["folder", "file", "zip"])
def test_a_damaged_database_is_a_clear_error(master, tmp_path, how, form):
    """No SQLAlchemy traceback: one StudyError naming the damaged file (the zip, for a zip)."""
    bundle = answered(master, tmp_path / "b")
    damage(bundle / "study.db", how)
    source = {"folder": bundle, "file": bundle / "study.db",
              "zip": zipped(bundle, tmp_path / "back.zip") if form == "zip" else None}[form]
    named = source if form == "zip" else bundle / "study.db"
    before = state(master)
    with pytest.raises(StudyError) as info:
        import_results(master, source)
    assert str(info.value).startswith(f"{named}: ") and ("damaged" in str(info.value) or
                                                         "cannot be read" in str(info.value)), str(info.value)
    assert state(master) == before
    if form == "folder":
        with pytest.raises(StudyError, match="study.db.*(damaged|cannot be read|cannot open)"):
            open_bundle(bundle)


def test_a_file_that_is_no_database_is_a_clear_error(master, tmp_path):
    junk = tmp_path / "results.db"
    junk.write_bytes(b"SQLite format 3\0" + os.urandom(5000))
    refused(master, junk, "results.db")


# -- image codes -------------------------------------------------------------------------------------------------
def test_image_codes_are_checked_before_they_become_paths(master, tmp_path):
    bundle = export_bundle(master, tmp_path / "b", readers=["Alice"], log=lambda s: None)
    opened = open_bundle(bundle)
    good = opened.store.candidate_codes(opened.store.case_codes()[0])[0]
    assert opened.image_path(good) == bundle / "images" / f"{good}.nii.gz"
    for bad in ("../../../etc/passwd", "..", ".", "", "a/b", "/etc/passwd", "x" * 65, "-rf", "C:evil"):
        with pytest.raises(StudyError, match="not a valid image code"):
            opened.image_path(bad)
    opened.store.close()
    sql(bundle, "UPDATE images SET code = '../../../secret' WHERE code = ?", good)
    with pytest.raises(StudyError, match=r"'\.\./\.\./\.\./secret'.*not a valid image code"):
        open_bundle(bundle)


# -- readers ---------------------------------------------------------------------------------------------------
def test_a_closed_study_binds_a_bundle_to_its_reader(closed_master, tmp_path):
    bundle = answered(closed_master, tmp_path / "alice", "Alice")
    # Bob is a reader of the study, but this bundle was not made for him.
    opened = open_bundle(bundle)
    with pytest.raises(StudyError, match="no reader called 'Bob'.*takes no new readers"):
        ReaderSession(opened.store, "Bob", opened.image_path)
    opened.store.close()
    # The reader opens the door in the bundle's own files and lets Bob in anyway.
    sql(bundle, "UPDATE studies SET open_enrolment = 1")
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "readers": ["Alice", "Bob"]}))
    opened = open_bundle(bundle)
    answer_case(ReaderSession(opened.store, "Bob", opened.image_path))
    opened.store.close()
    refused(closed_master, bundle, "reader 'bob' (score rows", "bundle was made for Alice",
            "takes no new readers")
    # Alice's own bundle still merges.
    assert import_results(closed_master, answered(closed_master, tmp_path / "alice2", "Alice")).added == 12


def test_a_closed_study_takes_no_new_reader_from_a_bundle(closed_master, tmp_path):
    bundle = answered(closed_master, tmp_path / "alice", "Alice")
    sql(bundle, "UPDATE studies SET open_enrolment = 1")
    opened = open_bundle(bundle)
    answer_case(ReaderSession(opened.store, "Mallory", opened.image_path))
    opened.store.close()
    refused(closed_master, bundle, "reader 'mallory'", "not a reader of this study", "takes no new readers")


def test_a_closed_study_refuses_a_bundle_it_did_not_export(closed_master, tmp_path):
    bundle = answered(closed_master, tmp_path / "alice", "Alice")
    manifest = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "bundle_id": secrets.token_hex(16)}))
    refused(closed_master, bundle, "was not exported from this study database")


def test_an_open_study_still_lets_new_readers_in(master, tmp_path):
    """With open enrolment anyone may sign into a bundle; their order is the study's own."""
    bundle = answered(master, tmp_path / "alice", "Alice")
    opened = open_bundle(bundle)
    carol = ReaderSession(opened.store, "Carol", opened.image_path)
    answer_case(carol)
    opened.store.close()
    # The assignment in the bundle is the reader's to edit; the organiser's copy is computed, not copied.
    sql(bundle, "UPDATE assignments SET position = position + 100 WHERE reader_key = 'carol'")
    summary = import_results(master, bundle)
    assert summary.added == 24 and summary.readers_added == 1
    assert [c.case_code for c in master.assignment("carol")] == [c.case_code for c in carol.cases]
    assert [c.position for c in master.assignment("carol")] == [1, 2]


def test_a_reader_row_whose_key_is_not_its_name_is_refused(master, tmp_path):
    bundle = answered(master, tmp_path / "alice", "Alice")
    opened = open_bundle(bundle)
    answer_case(ReaderSession(opened.store, "Carol", opened.image_path))
    opened.store.close()
    sql(bundle, "UPDATE readers SET name = 'Dave' WHERE reader_key = 'carol'")
    refused(master, bundle, "reader 'carol' is named 'Dave'")
