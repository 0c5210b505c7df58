"""Reader-study model and store: configuration, append-only scores, latest wins, schema migration, blinding.

Store tests run on SQLite and, when MEDTRANS_TEST_PG_URL points at a reachable PostgreSQL server, on
PostgreSQL too (each test in a schema of its own, dropped afterwards).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from napari_medtrans.core.errors import StudyError, UnknownChoiceError
from napari_medtrans.study import schema as S
from napari_medtrans.study.blinding import CODE_ALPHABET, candidate_letters, reader_order
from napari_medtrans.study.model import DEFAULT_CRITERIA, REAL, load_config, parse_config, reader_key
from napari_medtrans.study.store import ScoreEntry, StudyStore

def config(n_cases=3, methods=("edts", "cdm"), readers=("Alice",), **extra):
    return {"title": "pilot", "seed": 11, "target": "T2", "readers": list(readers),
            "cases": [{"id": f"sub-{i:03d}", "sources": {"T1": f"/data/sub-{i:03d}/T1.nii.gz"},
                       "real": f"/data/sub-{i:03d}/T2.nii.gz",
                       "candidates": {m: f"/synth/{m}/sub-{i:03d}.nii.gz" for m in methods}}
                      for i in range(n_cases)], **extra}


@pytest.fixture
def store(db_url):
    s = StudyStore(db_url, create=True)
    s.add_study(parse_config(config()))
    yield s
    s.close()


# -- configuration ----------------------------------------------------------------------------------------
def test_config_defaults_follow_hifi_syn_expert_study(tmp_path):
    spec = parse_config(config(), base=tmp_path)
    assert [c.name for c in spec.criteria] == ["structure", "diagnostic", "realism", "ranking"]
    assert [c.kind for c in spec.criteria] == ["scale", "scale", "realism", "ranking"]
    assert spec.methods() == [REAL, "edts", "cdm"]
    assert spec.cases[0].candidates[0].is_real and not spec.cases[0].candidates[1].is_real
    assert all(c.modality == "T2" for c in spec.cases[0].candidates)
    # Nothing readers see says "real" or "synthetic".
    for c in DEFAULT_CRITERIA:
        text = (c.label + " " + c.question).lower()
        assert " real " not in f" {text} " and "synthetic" not in text


def test_config_file_relative_paths_and_errors(tmp_path):
    (tmp_path / "s.yaml").write_text("seed: 3\ncases:\n  - id: a\n    real: a/T2.nii.gz\n"
                                     "    candidates: {m: a/m.nii.gz}\n")
    spec = load_config(tmp_path / "s.yaml")
    assert spec.cases[0].candidates[0].path == str(tmp_path / "a" / "T2.nii.gz")
    (tmp_path / "bad.yaml").write_text("seed: 3\ncases: []\n")
    with pytest.raises(StudyError, match="bad.yaml.*non-empty list"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("seeds: 3\ncases: [{id: a}]\n")
    with pytest.raises(StudyError, match="unknown key.*seeds"):
        load_config(tmp_path / "typo.yaml")
    with pytest.raises(StudyError, match="no 'real'"):
        parse_config({"cases": [{"id": "a", "candidates": {"m": "x"}}]})
    with pytest.raises(StudyError, match="reserved"):
        parse_config({"include_real": False, "cases": [{"id": "a", "candidates": {"real": "x", "m": "y"}}]})
    with pytest.raises(UnknownChoiceError, match="Did you mean 'ranking'"):
        parse_config({**config(), "criteria": ["structure", "rankin"]})
    with pytest.raises(StudyError, match="unique"):
        parse_config(config(readers=("Alice", " alice ")))
    with pytest.raises(StudyError, match="no such file|cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_reader_key_folds_case_and_spaces():
    assert reader_key("  Dr.  Alice   Smith ") == "dr. alice smith"
    with pytest.raises(StudyError):
        reader_key("   ")


# -- blinding ---------------------------------------------------------------------------------------------
def test_orders_are_seeded_per_reader_and_differ_between_readers():
    cases = [f"C{i}" for i in range(12)]
    cands = {c: [f"{c}-{j}" for j in range(4)] for c in cases}
    a1 = reader_order(7, "alice", cases, cands)
    assert a1 == reader_order(7, "alice", cases, cands)
    assert a1 != reader_order(7, "bob", cases, cands)
    assert a1 != reader_order(8, "alice", cases, cands)
    assert sorted(c for c, _ in a1) == sorted(cases)
    assert all(sorted(order) == sorted(cands[c]) for c, order in a1)
    assert candidate_letters(3) == ["A", "B", "C"] and candidate_letters(28)[-2:] == ["AA", "AB"]


def test_codes_are_random_distinct_and_reveal_nothing(store):
    key = store.key()
    codes = list(key)
    assert len(set(codes)) == len(codes) == 3 * 4
    assert all(len(c) == 6 and set(c) <= set(CODE_ALPHABET) for c in codes)
    cases = store.case_codes()
    assert len(set(cases)) == 3 and not set(cases) & set(codes)
    for code, k in key.items():
        assert k.case_id.upper() not in code
        assert not k.method or k.method.upper() not in code


def test_stored_candidate_order_is_shuffled(db_url):
    s = StudyStore(db_url, create=True)
    s.add_study(parse_config(config(n_cases=30)))
    key = s.key()
    first_is_real = [key[s.candidate_codes(c)[0]].is_real for c in s.case_codes()]
    assert 0 < sum(first_is_real) < 30  # never always first (p = 3**-30), nor never
    s.close()


def test_readers_get_their_seeded_order_and_stored_assignment(store):
    alice = store.sign_in("Alice")
    bob = store.sign_in("Bob", allow_new=True)  # the study lists Alice only: Bob is let in explicitly
    assert not alice.new and bob.new and bob.name == "Bob"
    a = store.assignment(alice.key)
    assert [c.position for c in a] == [1, 2, 3]
    st = {c: store.candidate_codes(c) for c in store.case_codes()}
    expected = reader_order(11, "alice", store.case_codes(), st)
    assert [(c.case_code, list(c.candidates)) for c in a] == expected
    assert all(len(c.sources) == 1 and c.sources[0][1] == "T1" for c in a)
    assert store.sign_in("  ALICE ").key == "alice"  # signing in again finds the same reader


def test_a_study_that_lists_its_readers_is_closed_unless_it_says_open(tmp_path):
    assert parse_config(config()).open_enrolment is False
    assert parse_config(config(open_enrolment=True)).open_enrolment is True
    assert parse_config(config(readers=())).open_enrolment is True  # nobody listed: anyone may sign in


def test_closed_enrolment_refuses_unknown_readers(db_url):
    s = StudyStore(db_url, create=True)
    s.add_study(parse_config(config(open_enrolment=False)))
    with pytest.raises(StudyError, match="no reader called 'Mallory'.*known readers: Alice"):
        s.sign_in("Mallory")
    assert s.sign_in("alice").key == "alice"
    s.close()


# -- scores -----------------------------------------------------------------------------------------------
def test_scores_are_appended_latest_wins_history_kept(store):
    r = store.sign_in("Alice")
    case = store.assignment(r.key)[0]
    code = case.candidates[0]
    first = store.save_scores(r.key, [ScoreEntry(case.case_code, code, "structure", 2, seconds=4.0)])
    second = store.save_scores(r.key, [ScoreEntry(case.case_code, code, "structure", 5, seconds=1.5)])
    latest = [x for x in store.latest_scores(r.key) if x.criterion == "structure"]
    assert [x.value for x in latest] == [5.0] and latest[0].uid == second[0].uid
    hist = store.history(r.key)
    assert [x.value for x in hist] == [2.0, 5.0] and hist[0].uid == first[0].uid
    assert hist[0].seconds == 4.0 and hist[1].saved_at >= hist[0].saved_at and hist[1].client
    with store.engine.connect() as conn:  # nothing was updated in place
        assert conn.execute(sa.select(sa.func.count()).select_from(S.scores)).scalar() == 2


def test_invalid_answers_are_refused_and_nothing_is_saved(store):
    r = store.sign_in("Alice")
    case = store.assignment(r.key)[0]
    code = case.candidates[0]
    bad = [
        (ScoreEntry(case.case_code, code, "structure", 6), "whole number from 1 to 5"),
        (ScoreEntry(case.case_code, code, "structure", 2.5), "whole number"),
        (ScoreEntry(case.case_code, code, "realism", 1), "confidence from 1 to 5"),
        (ScoreEntry(case.case_code, code, "realism", 0.5, 3), "1 \\(acquired\\) or 0"),
        (ScoreEntry(case.case_code, code, "beauty", 3), "unknown criterion 'beauty'"),
        (ScoreEntry("NOCASE", code, "structure", 3), "no case 'NOCASE'"),
        (ScoreEntry(case.case_code, "NOPE", "structure", 3), "not a candidate"),
        (ScoreEntry(case.case_code, code, "ranking", 1), "rank every image"),
    ]
    for entry, message in bad:
        with pytest.raises(StudyError, match=message):
            store.save_scores(r.key, [ScoreEntry(case.case_code, code, "diagnostic", 3), entry])
    with pytest.raises(StudyError, match="sign in first"):
        store.save_scores("nobody", [ScoreEntry(case.case_code, code, "structure", 3)])
    assert store.history() == []


def test_progress_and_resume_position(store):
    r = store.sign_in("Alice")
    cases = store.assignment(r.key)
    assert store.progress(r.key) == (0, 3, 1)
    entries = []
    c0 = cases[0]
    for code in c0.candidates:
        entries += [ScoreEntry(c0.case_code, code, "structure", 4), ScoreEntry(c0.case_code, code, "diagnostic", 3),
                    ScoreEntry(c0.case_code, code, "realism", 1, 4)]
    store.save_scores(r.key, entries)
    assert store.progress(r.key) == (0, 3, 1)  # the ranking is still missing
    ranks = {code: i + 1 for i, code in enumerate(c0.candidates)}
    ranks[c0.candidates[1]] = 1  # a tie
    store.save_scores(r.key, [ScoreEntry(c0.case_code, code, "ranking", v) for code, v in ranks.items()])
    assert store.progress(r.key) == (1, 3, 2)


# -- schema -----------------------------------------------------------------------------------------------
def test_schema_version_is_stored_and_old_databases_migrate(db_url):
    path = db_url  # a SQLite file, or a schema on the test PostgreSQL server
    s = StudyStore(path, create=True)
    assert s.schema_version() == S.SCHEMA_VERSION == 2
    s.add_study(parse_config(config()))
    r = s.sign_in("Alice")
    case = s.assignment(r.key)[0]
    s.save_scores(r.key, [ScoreEntry(case.case_code, case.candidates[0], "structure", 3)])
    with s.engine.begin() as conn:  # turn it into a version-1 database: no scores.client column
        conn.exec_driver_sql("ALTER TABLE scores DROP COLUMN client")
        conn.execute(S.meta.update().where(S.meta.c.key == "schema_version").values(value="1"))
    s.close()
    s = StudyStore(path)
    assert s.schema_version() == 2
    cols = {c["name"] for c in sa.inspect(s.engine).get_columns("scores")}
    assert "client" in cols
    old = s.history()
    assert [x.value for x in old] == [3.0] and old[0].client is None
    s.save_scores(r.key, [ScoreEntry(case.case_code, case.candidates[0], "structure", 4)])
    assert s.history()[-1].client
    s.close()


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "new.db"
    s = StudyStore(path, create=True)
    with s.engine.begin() as conn:
        conn.execute(S.meta.update().where(S.meta.c.key == "schema_version").values(value="99"))
    s.close()
    with pytest.raises(StudyError, match="schema version 99.*newer"):
        StudyStore(path)
    other = tmp_path / "other.db"
    eng = sa.create_engine(f"sqlite:///{other}")
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE x (a INT)")
    eng.dispose()
    with pytest.raises(StudyError, match="not a napari-medtrans study database"):
        StudyStore(other)
    with pytest.raises(StudyError, match="no study database here"):
        StudyStore(tmp_path / "absent.db")


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    s = StudyStore(tmp_path / "w.db", create=True)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert s.integrity_check() == "ok"
    s.close()


def test_blinded_store_has_no_key(store, tmp_path):
    with store.engine.begin() as conn:
        conn.execute(S.studies.update().values(blinded=True))
    with pytest.raises(StudyError, match="blinded reader copy"):
        store.key()


def test_config_json_keeps_method_order(store):
    assert store.methods() == [REAL, "edts", "cdm"]
    with store.engine.connect() as conn:
        cfg = json.loads(conn.execute(sa.select(S.studies.c.config)).scalar())
    assert cfg["methods"] == [REAL, "edts", "cdm"]
