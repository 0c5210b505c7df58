"""Simulated readers: fill a study with answers whose truth is known, to try the analysis, its level and its power.

Each method has a latent quality on the 1-5 scale (plus an optional *effect*). Reader j's latent value for method m
on case k is

    quality[m] + effect[m] + case[k] + reader[j] + case_x_method[k, m] + reader_x_method[j, m] + noise

with independent normal terms: ``case`` (shared by every reader and method of a case), ``reader`` (a reader's
bias), ``case_x_method`` (a method works better on some cases than on others, for every reader),
``reader_x_method`` (a reader's own preference for a method, on every case) and the per-answer ``noise``. A scale
answer is the latent value rounded and clipped to the scale. Acquired-or-generated answers follow a logistic
curve in the latent value (with the default qualities the acquired image is the best) and the confidence grows
with the distance from a coin toss; rankings rank the latent values rounded to half points, so near-equal
candidates tie (readers give tied candidates the better rank).

:func:`simulate_records` returns the answers as unblinded records (what the analysis reads; fast, no database);
:func:`simulate_readers` saves the same answers through :meth:`StudyStore.save_scores`, exactly as the app
saves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..core.errors import StudyError
from .analysis import ScoreRecord, rank_with_ties
from .model import REAL, Criterion
from .store import ScoreEntry, StudyStore

__all__ = ["default_qualities", "simulate_records", "simulate_readers"]

SECONDS = {"scale": 5.0, "realism": 3.0, "ranking": 8.0}


def default_qualities(methods: Sequence[str]) -> dict[str, float]:
    """The acquired image 4.5; synthetic methods evenly from 4.0 down to 2.0 in the given order."""
    synth = [m for m in methods if m != REAL]
    out = {REAL: 4.5} if REAL in methods else {}
    for i, m in enumerate(synth):
        out[m] = 4.0 - (2.0 * i / max(len(synth) - 1, 1))
    return out


def simulate_records(readers: Sequence[str], case_ids: Sequence[str], methods: Sequence[str],
                     criteria: Sequence[Criterion], *, seed: int = 0, quality: Mapping[str, float] | None = None,
                     effects: Mapping[str, float] | None = None, noise: float = 0.5, case_sd: float = 0.4,
                     reader_sd: float = 0.2, case_method_sd: float = 0.0, reader_method_sd: float = 0.0,
                     case_methods: Mapping[str, Sequence[str]] | None = None) -> list[ScoreRecord]:
    """Every reader's answer to every criterion for every candidate of every case (see the module notes).

    Parameters
    ----------
    readers, case_ids : sequence of str
    methods : sequence of str
        Candidate methods of every case ("real" for the acquired image).
    criteria : sequence of Criterion
    seed : int
        One seed gives the same answers whatever the order of readers' cases and candidates.
    quality : mapping, optional
        Latent quality per method (default :func:`default_qualities`); a method not named gets 3.0.
    effects : mapping, optional
        Points added to a method's quality (``{"hifi": 0.3}``).
    noise, case_sd, reader_sd, case_method_sd, reader_method_sd : float
        Standard deviations of the per-answer noise, the case effect, the reader bias, and the case x method and
        reader x method interactions.
    case_methods : mapping, optional
        The methods of a case whose candidates are not all of ``methods`` (case id -> methods).

    Returns
    -------
    list of ScoreRecord
        Image ids are ``"<case>:<method>"``.
    """
    for name, v in (("noise", noise), ("case_sd", case_sd), ("reader_sd", reader_sd),
                    ("case_method_sd", case_method_sd), ("reader_method_sd", reader_method_sd)):
        if not v >= 0:
            raise StudyError(f'argument "{name}" must be a standard deviation >= 0, got {v}')
    methods = list(methods)
    unknown = sorted(set(effects or {}) - set(methods))
    if unknown:
        raise StudyError(f"effects name method(s) {', '.join(unknown)} that the study does not have; "
                         f"methods: {', '.join(methods)}")
    q = dict(default_qualities(methods) if quality is None else quality)
    base = {m: float(q.get(m, 3.0)) + float((effects or {}).get(m, 0.0)) for m in methods}
    rng = np.random.default_rng(seed)
    cases = sorted(case_ids)
    by_name = sorted(methods)
    # Draw order is fixed by sorted names, so neither the reader's case order nor the candidate order matters.
    case_effect = dict(zip(cases, rng.normal(0, case_sd, len(cases))))
    bias = rng.normal(0, reader_sd, len(readers))
    cm = rng.normal(0, case_method_sd, (len(cases), len(by_name)))
    rm = rng.normal(0, reader_method_sd, (len(readers), len(by_name)))
    out = []
    for ri, reader in enumerate(readers):
        for case in case_ids:
            ci = cases.index(case)
            latent, draws = {}, {}
            here = [m for m in methods if case_methods is None or m in case_methods.get(case, methods)]
            for m in here:
                mi = by_name.index(m)
                latent[m] = base[m] + case_effect[case] + bias[ri] + cm[ci, mi] + rm[ri, mi]
                draws[m] = np.random.default_rng([seed, ri, ci, mi])
            for crit in criteria:
                sec = SECONDS[crit.kind]
                if crit.kind == "scale":
                    for m in here:
                        v = np.clip(np.rint(latent[m] + draws[m].normal(0, noise)), crit.min_value, crit.max_value)
                        out.append(ScoreRecord(reader, case, f"{case}:{m}", m, crit.name, float(v), None, sec))
                elif crit.kind == "realism":
                    for m in here:
                        p = 1.0 / (1.0 + np.exp(-3.0 * (latent[m] + draws[m].normal(0, noise) - 3.6)))
                        acquired = draws[m].random() < p
                        conf = int(np.clip(np.rint(1 + 4 * abs(p - 0.5) * 2), 1, 5))
                        out.append(ScoreRecord(reader, case, f"{case}:{m}", m, crit.name, float(acquired), conf,
                                               sec))
                else:
                    values = [np.round(2 * (latent[m] + draws[m].normal(0, noise))) / 2 for m in here]
                    ranks = rank_with_ties(values, higher_is_better=True, method="min")
                    out += [ScoreRecord(reader, case, f"{case}:{m}", m, crit.name, float(rk), None, sec)
                            for m, rk in zip(here, ranks)]
    return out


def simulate_readers(store: StudyStore, readers: int | Sequence[str] = 4, *, seed: int = 0,
                     quality: Mapping[str, float] | None = None, effects: Mapping[str, float] | None = None,
                     noise: float = 0.5, case_sd: float = 0.4, reader_sd: float = 0.2, case_method_sd: float = 0.0,
                     reader_method_sd: float = 0.0) -> list[str]:
    """Sign in simulated readers and answer every criterion of every case (organiser's store only).

    Parameters
    ----------
    readers : int or sequence of str
        How many readers ("sim-1", ...) or their names.
    quality, effects, noise, case_sd, reader_sd, case_method_sd, reader_method_sd
        As :func:`simulate_records` (quality defaults to :func:`default_qualities` of ``store.methods()``).

    Returns
    -------
    list of str
        The reader keys.
    """
    key = store.key()
    names = [f"sim-{i + 1}" for i in range(readers)] if isinstance(readers, int) else list(readers)
    code_of = {(k.case_id, str(k.method)): code for code, k in key.items()}
    case_ids = sorted({k.case_id for k in key.values()})
    case_methods: dict[str, list[str]] = {}
    for case_id, method in code_of:
        case_methods.setdefault(case_id, []).append(method)
    records = simulate_records(names, case_ids, store.methods(), store.criteria(), seed=seed, quality=quality,
                               effects=effects, noise=noise, case_sd=case_sd, reader_sd=reader_sd,
                               case_method_sd=case_method_sd, reader_method_sd=reader_method_sd,
                               case_methods=case_methods)
    answers: dict[tuple[str, str], list[ScoreRecord]] = {}
    for rec in records:
        answers.setdefault((rec.reader, rec.case), []).append(rec)
    keys = []
    for name in names:
        reader = store.sign_in(name, allow_new=True)
        keys.append(reader.key)
        for case in store.assignment(reader.key):
            case_id = key[case.candidates[0]].case_id
            entries = [ScoreEntry(case.case_code, code_of[(case_id, r.method)], r.criterion,
                                  int(r.value), r.confidence, seconds=r.seconds)
                       for r in answers[(name, case_id)]]
            store.save_scores(reader.key, entries)
    return keys
