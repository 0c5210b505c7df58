"""Reader studies: model, store (SQLAlchemy Core; SQLite WAL or PostgreSQL), blinding, bundles, analysis.

Typical use (what ``medtrans study`` does)::

    store = create_study("study.yaml", "study.db")          # codes, seeded reader orders, the key
    export_bundle(store, "bundle-alice", readers=["Alice"])  # blinded copy + images named by code
    ...                                                      # the reader scores in medtrans-app
    import_results(store, "bundle-alice")                    # merge; duplicates skipped by uid
    write_report(analyse(store), "report/")                  # HTML + CSV

Importing this package needs SQLAlchemy (``pip install 'napari-medtrans[study]'``).
"""

from .analysis import (
    StudyAnalysis,
    analyse,
    holm,
    kendall_w,
    krippendorff_alpha,
)
from .bundle import Bundle, ImportSummary, create_study, export_bundle, import_results, open_bundle
from .model import DEFAULT_CRITERIA, REAL, CaseSpec, Criterion, ImageSpec, StudySpec, load_config, parse_config
from .report import write_report
from .session import ReaderSession
from .simulate import simulate_readers
from .store import ScoreEntry, ScoreRow, StudyStore, database_url

__all__ = [
    "DEFAULT_CRITERIA", "REAL", "Criterion", "ImageSpec", "CaseSpec", "StudySpec", "load_config", "parse_config",
    "StudyStore", "ScoreEntry", "ScoreRow", "database_url", "ReaderSession",
    "Bundle", "ImportSummary", "create_study", "export_bundle", "import_results", "open_bundle",
    "StudyAnalysis", "analyse", "holm", "kendall_w", "krippendorff_alpha", "write_report", "simulate_readers",
]
