"""Crash safety of the study store: SIGKILL at random moments loses no reported score; concurrent writers
lose nothing. Runs on SQLite and, when MEDTRANS_TEST_PG_URL is reachable, on PostgreSQL.

The killing is done by a small driver process (single-threaded, so forking is safe) that forks a scoring
child, waits until it has signed in, lets it score for a random 0-150 ms, kills it with SIGKILL, and collects the
uids the child reported *after* each COMMIT through a pipe. The test then checks that every reported score is in
the database. (The clock starts after sign-in so that a loaded machine, where signing in takes most of 150 ms,
still kills in the middle of scoring.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from napari_medtrans.study.model import parse_config
from napari_medtrans.study.store import StudyStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs fork and SIGKILL")

RUNS = 60

SCORER = textwrap.dedent('''
    import os, random, sys
    from napari_medtrans.study.store import StudyStore, ScoreEntry

    def score_forever(url, reader, rng, report, ready=lambda: None):
        store = StudyStore(url)
        key = store.sign_in(reader).key
        cases = store.assignment(key)
        ready()
        while True:
            case = rng.choice(cases)
            if rng.random() < 0.3:  # a ranking: several rows in one transaction
                entries = [ScoreEntry(case.case_code, c, "ranking", rng.randint(1, len(case.candidates)))
                           for c in case.candidates]
            else:
                entries = [ScoreEntry(case.case_code, rng.choice(case.candidates), "structure", rng.randint(1, 5))]
            rows = store.save_scores(key, entries)
            report(rows[0].uid)
''')

DRIVER = SCORER + textwrap.dedent('''
    import json, signal, time
    url, out, runs, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    StudyStore(url).close()  # import the database driver once, before forking
    reported, kills = [], 0
    for run in range(runs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                score_forever(url, "crash", random.Random(run), lambda uid: os.write(w, (uid + "\\n").encode()),
                              ready=lambda: os.write(w, b"ready\\n"))
            finally:
                os._exit(3)
        os.close(w)
        os.read(r, 6)  # blocks until the child's b"ready\\n" (one write: atomic on a pipe) or its exit
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        kills += int(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
        with os.fdopen(r, "rb") as f:
            reported += [line for line in f.read().decode().split("\\n") if line]
    json.dump({"reported": reported, "kills": kills}, open(out, "w"))
''')

WRITER = SCORER + textwrap.dedent('''
    url, reader, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    done = []
    def report(uid):
        print(uid, flush=True)
        done.append(uid)
        if len(done) >= n:
            sys.exit(0)
    score_forever(url, reader, random.Random(reader), report)
''')


@pytest.fixture
def study_url(db_url):
    """A study with 4 cases x 4 candidates and readers 'crash', 'w0'..'w3' in a fresh database (both backends)."""
    spec = parse_config({"seed": 1, "readers": ["crash", "w0", "w1", "w2", "w3"],
                         "cases": [{"id": f"s{i}", "real": "r", "candidates": {m: m for m in "abc"}}
                                   for i in range(4)]})
    store = StudyStore(db_url, create=True)
    store.add_study(spec)
    store.close()
    return db_url


def test_sigkill_at_random_moments_loses_no_reported_score(study_url, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = tmp_path / "reported.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), study_url, str(out), str(RUNS), "7"], check=True, timeout=120)
    elapsed = time.perf_counter() - t0
    result = json.loads(out.read_text())
    reported = result["reported"]
    assert result["kills"] == RUNS, "every run must end by SIGKILL"
    assert len(reported) > RUNS, "the scorers saved too little to test anything"

    store = StudyStore(study_url)
    assert store.integrity_check() == "ok"
    rows = store.history("crash")
    saved = {r.uid for r in rows}
    lost = [u for u in reported if u not in saved]
    assert lost == [], f"{len(lost)} scores reported as saved are missing"
    # At most one transaction per run can be committed but not yet reported when the kill lands.
    first_uids = {u for u in reported}
    transactions = {}
    for r in rows:
        transactions.setdefault((r.saved_at, r.case_code, r.criterion), []).append(r)
    assert len(transactions) - len(first_uids) <= RUNS
    # Transactions are atomic: every stored ranking has a rank for each of the case's 4 candidates.
    for (_, _, criterion), group in transactions.items():
        if criterion == "ranking":
            assert len(group) == 4
    store.close()
    print(f"{RUNS} SIGKILLs, {len(reported)} reported scores, all present, in {elapsed:.1f} s")


def test_four_processes_scoring_at_once_lose_nothing(study_url, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 40
    procs = [subprocess.Popen([sys.executable, str(script), study_url, f"w{i}", str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    reported = {i: out.split() for i, (out, _) in enumerate(outputs)}
    store = StudyStore(study_url)
    assert store.integrity_check() == "ok"
    for i in range(4):
        uids = {r.uid for r in store.history(f"w{i}")}
        assert len(reported[i]) == n
        assert set(reported[i]) <= uids
        # Every transaction of this writer is there (one reported uid per transaction).
        assert len({(r.saved_at, r.case_code, r.criterion) for r in store.history(f"w{i}")}) == n
    store.close()
