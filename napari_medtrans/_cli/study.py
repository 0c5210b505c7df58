"""`medtrans study`: create a blinded reader study, pack reader bundles, merge results, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "study"
HELP = "blinded reader studies: create, export-bundle, import-results, report (and simulate)"
DESCRIPTION = """\
Run a blinded reader study of synthetic images (after HiFi-Syn's expert study: structural preservation and
diagnostic value 1-5, a ranking with ties, and "acquired or generated?" with a confidence).

  create          build a study database from a YAML/JSON configuration (translating with its models if asked)
  export-bundle   pack what one or more readers need on another workstation: a blinded copy and images named
                  by random codes (no method, subject or file name); open it with `medtrans-app --study DIR`
  import-results  merge the scores of returned bundles (folders, zips, study.db files or a database URL);
                  rows already merged are skipped. A bundle is read, never written, and checked first: a
                  bundle with a bad row or file (a symbolic link, a zip member outside it, a value out of
                  range, an unknown reader, ...) is refused whole, with every problem listed. With
                  `open_enrolment: false` in the study's configuration, a bundle only brings the scores of
                  the readers it was made for.
  report          write report.html and CSV tables: first the multi-reader multi-case analysis
                  (Obuchowski-Rockette, Hillis's denominator, readers and cases random; --mrmc
                  fixed-readers / fixed-cases for the variants; --ddf hillis for Hillis's published degrees
                  of freedom instead of the default two-term Satterthwaite ones that count the case term
                  too, --ddf satterthwaite for DBM's): 95 %
                  CIs per method, global tests, pairwise
                  differences, the visual Turing test's AUC, sensitivity, specificity and balanced accuracy;
                  then descriptive tables (mean +- sd, rank distributions, Friedman and Wilcoxon over cases,
                  Krippendorff's alpha, Kendall's W)
  simulate        fill a study with simulated readers (to try the report, or the analysis's power and level
                  for a design: --equal, --effect METHOD=POINTS, --case-method-sd, --reader-method-sd)

examples:
  medtrans study create --config study.yaml --db study.db
  medtrans study export-bundle --db study.db --out bundle-alice --reader Alice
  medtrans study import-results --db study.db bundle-alice bundle-bob.zip
  medtrans study report --db study.db --out report/
  medtrans study simulate --db trial.db --readers 5 --equal --effect hifi=0.3 --case-method-sd 0.5
  medtrans study create --config study.yaml --db postgresql://user:pw@127.0.0.1/study
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a study database from a configuration file")
    c.add_argument("--config", required=True, type=Path, help="study YAML or JSON (see the organiser's guide)")
    c.add_argument("--db", default=None, help="SQLite file or database URL (default: study.db next to the config)")
    c.add_argument("--device", default="auto", help="where the config's models run (default: auto)")
    c.add_argument("--out", type=Path, default=None, help="where translated candidates go (default: the db folder)")

    e = sub.add_parser("export-bundle", help="pack a blinded reader bundle")
    e.add_argument("--db", required=True, help="the organiser's study database (file or URL)")
    e.add_argument("--out", required=True, type=Path, help="new or empty bundle folder")
    e.add_argument("--reader", action="append", default=None, metavar="NAME",
                   help="register this reader in the bundle (repeatable; default: every known reader)")
    e.add_argument("--shared-db", default=None, metavar="URL",
                   help="put the blinded copy in this shared database (PostgreSQL) instead of the folder")
    e.add_argument("--zip", action="store_true", help="also write OUT.zip")

    i = sub.add_parser("import-results", help="merge returned bundles into the study database")
    i.add_argument("--db", required=True, help="the organiser's study database (file or URL)")
    i.add_argument("sources", nargs="+", help="bundle folder, .zip, study.db or database URL")

    r = sub.add_parser("report", help="write report.html and CSV tables")
    r.add_argument("--db", required=True, help="the organiser's study database (file or URL)")
    r.add_argument("--out", required=True, type=Path, help="output folder")
    r.add_argument("--mrmc", default="random", choices=("random", "fixed-readers", "fixed-cases"),
                   help="which factors the MRMC analysis treats as random: both (default; conclusions for new "
                        "readers and cases), fixed-readers (for these readers only), fixed-cases (these cases only)")
    r.add_argument("--ddf", default="two-term", choices=("two-term", "satterthwaite", "hillis"),
                   help="MRMC denominator degrees of freedom: two-term (default; Satterthwaite over the reader and "
                        "case terms of Hillis's denominator, needed with few cases), satterthwaite (DBM's, "
                        "conservative without interaction) or hillis (as published; suits many cases)")

    s = sub.add_parser("simulate", help="answer the study with simulated readers")
    s.add_argument("--db", required=True, help="the organiser's study database (file or URL)")
    s.add_argument("--readers", type=int, default=4, help="number of simulated readers (default 4)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise", type=float, default=0.5, help="sd of each simulated answer (default 0.5)")
    s.add_argument("--equal", action="store_true",
                   help="every method starts at the same latent quality (3.0), so only --effect separates them")
    s.add_argument("--effect", action="append", default=[], metavar="METHOD=POINTS",
                   help="add POINTS to METHOD's latent quality (repeatable), e.g. hifi=0.3")
    s.add_argument("--case-sd", type=float, default=0.4, help="sd of the case effect shared by all (default 0.4)")
    s.add_argument("--reader-sd", type=float, default=0.2, help="sd of each reader's bias (default 0.2)")
    s.add_argument("--case-method-sd", type=float, default=0.0,
                   help="sd of the case x method interaction: a method suits some cases, for every reader "
                        "(default 0)")
    s.add_argument("--reader-method-sd", type=float, default=0.0,
                   help="sd of the reader x method interaction: a reader's own preference, on every case "
                        "(default 0)")


def _effects(items: list[str]) -> dict[str, float]:
    from ..core.errors import StudyError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise StudyError(f"--effect {item!r}: expected METHOD=POINTS, e.g. hifi=0.3")
    return out


def run(args: argparse.Namespace) -> int:
    from ..study import analyse, create_study, export_bundle, import_results, write_report
    from ..study.simulate import simulate_readers
    from ..study.store import StudyStore

    cmd = args.study_command
    if cmd == "create":
        db = args.db or str(args.config.resolve().parent / "study.db")
        store = create_study(args.config, db, device=args.device, out_dir=args.out)
        info = store.info()
        print(f"created study {info['study_id']} ({info['title']}): {info['cases']} cases, "
              f"{len(store.methods())} candidates per case, {info['readers']} readers registered, in {store.where}")
        store.close()
        return 0
    with StudyStore(args.db) as store:
        if cmd == "export-bundle":
            path = export_bundle(store, args.out, readers=args.reader, database=args.shared_db, zip_bundle=args.zip)
            print(f"wrote reader bundle {path}")
        elif cmd == "import-results":
            for source in args.sources:
                s = import_results(store, source)
                print(f"{source}: {s.added} scores added, {s.skipped} already present, "
                      f"{s.readers_added} new readers")
        elif cmd == "report":
            paths = write_report(analyse(store, mrmc=args.mrmc, ddf=args.ddf), args.out)
            print(f"wrote {paths['html']} and {len(paths) - 1} CSV tables in {args.out}")
        elif cmd == "simulate":
            effects = _effects(args.effect)
            quality = {m: 3.0 for m in store.methods()} if args.equal else None
            keys = simulate_readers(store, args.readers, seed=args.seed, noise=args.noise, quality=quality,
                                    effects=effects, case_sd=args.case_sd, reader_sd=args.reader_sd,
                                    case_method_sd=args.case_method_sd, reader_method_sd=args.reader_method_sd)
            truth = "every method at 3.0" if args.equal else "default qualities"
            truth += "".join(f", {m} {v:+.1f}" for m, v in effects.items())
            print(f"{len(keys)} simulated readers answered every case ({truth}; sd: noise {args.noise}, case "
                  f"{args.case_sd}, reader {args.reader_sd}, case x method {args.case_method_sd}, reader x method "
                  f"{args.reader_method_sd}): {', '.join(keys)}")
    return 0
