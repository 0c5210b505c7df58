"""Blinding: random codes for cases and images, and every reader's seeded order.

Codes are drawn from the operating system's random source, so they carry nothing about the method, the
subject or the order in which the study was written. A reader's order of cases, and of candidates within
each case, comes from a generator seeded with the study seed and the reader's key: the organiser's database
and a reader's bundle compute the same order, and two readers get independent orders.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["CODE_ALPHABET", "new_code", "new_codes", "reader_seed", "reader_order", "candidate_letters"]

#: Upper-case letters and digits without the look-alikes 0/O and 1/I.
CODE_ALPHABET = "".join(c for c in string.ascii_uppercase + string.digits if c not in "0O1I")


def new_code(length: int = 6) -> str:
    """One random code of ``length`` characters from :data:`CODE_ALPHABET`."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(int(length)))


def new_codes(n: int, taken: Iterable[str] = (), length: int = 6) -> list[str]:
    """``n`` distinct random codes, none of them in ``taken``."""
    used = set(taken)
    out: list[str] = []
    while len(out) < n:
        code = new_code(length)
        if code not in used:
            used.add(code)
            out.append(code)
    return out


def reader_seed(study_seed: int, key: str) -> int:
    """The seed of one reader's order: a hash of the study seed and the reader key (stable across machines)."""
    digest = hashlib.sha256(f"{int(study_seed)}:{key}".encode()).hexdigest()
    return int(digest[:16], 16)


def reader_order(
    study_seed: int,
    key: str,
    cases: Sequence[str],
    candidates: Mapping[str, Sequence[str]],
) -> list[tuple[str, list[str]]]:
    """A reader's order: ``[(case_code, [candidate codes in display order]), ...]``.

    Parameters
    ----------
    study_seed : int
    key : str
        The reader key (:func:`~napari_medtrans.study.model.reader_key`).
    cases : sequence of str
        Case codes in the study's stored order (the result does not depend on anything else).
    candidates : mapping of str to sequence of str
        Candidate codes of each case in their stored order.
    """
    rng = random.Random(reader_seed(study_seed, key))
    order = list(cases)
    rng.shuffle(order)
    out = []
    for case in order:
        cands = list(candidates[case])
        rng.shuffle(cands)
        out.append((case, cands))
    return out


def candidate_letters(n: int) -> list[str]:
    """Display names of the candidates of a case in reader order: "A", "B", ... (then "AA", "AB", ...)."""
    letters = string.ascii_uppercase
    out = []
    for i in range(int(n)):
        out.append(letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26])
    return out
