"""Simulated readers: fill a study with answers whose truth is known, to try the analysis and the report.

Each method has a latent quality (1-5 scale). A reader's answer for a candidate is the quality plus a case
effect shared by every reader, a reader bias, and noise, rounded and clipped to the scale. Acquired-or-generated
answers follow a logistic curve in the latent quality (the acquired image gets the highest); rankings rank the
latent values rounded to half points, so near-equal candidates tie. Answers are saved through
:meth:`StudyStore.save_scores`, exactly as the app saves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .analysis import rank_with_ties
from .model import REAL
from .store import ScoreEntry, StudyStore

__all__ = ["default_qualities", "simulate_readers"]


def default_qualities(methods: Sequence[str]) -> dict[str, float]:
    """The acquired image 4.5; synthetic methods evenly from 4.0 down to 2.0 in the given order."""
    synth = [m for m in methods if m != REAL]
    out = {REAL: 4.5} if REAL in methods else {}
    for i, m in enumerate(synth):
        out[m] = 4.0 - (2.0 * i / max(len(synth) - 1, 1))
    return out


def simulate_readers(store: StudyStore, readers: int | Sequence[str] = 4, *, seed: int = 0,
                     quality: Mapping[str, float] | None = None, noise: float = 0.5,
                     case_sd: float = 0.4, reader_sd: float = 0.2) -> list[str]:
    """Sign in simulated readers and answer every criterion of every case (organiser's store only).

    Parameters
    ----------
    readers : int or sequence of str
        How many readers ("sim-1", ...) or their names.
    quality : mapping, optional
        Latent quality per method (default :func:`default_qualities` of ``store.methods()``).
    noise, case_sd, reader_sd : float
        Standard deviations of the per-answer noise, the per-case effect and the per-reader bias.

    Returns
    -------
    list of str
        The reader keys.
    """
    rng = np.random.default_rng(seed)
    key = store.key()
    quality = dict(quality or default_qualities(store.methods()))
    names = [f"sim-{i + 1}" for i in range(readers)] if isinstance(readers, int) else list(readers)
    criteria = store.criteria()
    # Every random draw is tied to (reader, case id, method), never to the blinded codes, the shuffled candidate
    # order or the reader's random case order, so one seed gives the same answers in every run.
    case_of = {code: k.case_id for code, k in key.items()}
    case_ids = sorted(set(case_of.values()))
    case_effect = {cid: rng.normal(0, case_sd) for cid in case_ids}
    case_effect = {c: case_effect[case_of[store.candidate_codes(c)[0]]] for c in store.case_codes()}
    methods = sorted({str(k.method) for k in key.values()})
    keys = []
    for ri, name in enumerate(names):
        reader = store.sign_in(name, allow_new=True)
        keys.append(reader.key)
        bias = rng.normal(0, reader_sd)
        for case in store.assignment(reader.key):
            latent = {code: quality[key[code].method] + case_effect[case.case_code] + bias
                      for code in case.candidates}
            draws = {code: np.random.default_rng([seed, ri, case_ids.index(case_of[code]),
                                                  methods.index(str(key[code].method))])
                     for code in case.candidates}
            entries = []
            for crit in criteria:
                if crit.kind == "scale":
                    for code in case.candidates:
                        v = np.clip(np.rint(latent[code] + draws[code].normal(0, noise)), crit.min_value,
                                    crit.max_value)
                        entries.append(ScoreEntry(case.case_code, code, crit.name, int(v), seconds=5.0))
                elif crit.kind == "realism":
                    for code in case.candidates:
                        p = 1.0 / (1.0 + np.exp(-3.0 * (latent[code] + draws[code].normal(0, noise) - 3.6)))
                        acquired = draws[code].random() < p
                        conf = int(np.clip(np.rint(1 + 4 * abs(p - 0.5) * 2), 1, 5))
                        entries.append(ScoreEntry(case.case_code, code, crit.name, int(acquired), conf, seconds=3.0))
                else:
                    values = [np.round(2 * (latent[c] + draws[c].normal(0, noise))) / 2 for c in case.candidates]
                    ranks = rank_with_ties(values, higher_is_better=True, method="min")
                    entries += [ScoreEntry(case.case_code, c, crit.name, int(r), seconds=8.0)
                                for c, r in zip(case.candidates, ranks)]
            store.save_scores(reader.key, entries)
    return keys
