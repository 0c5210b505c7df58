"""`medtrans weights`: list, import, fetch and verify pretrained weights in the local store."""

from __future__ import annotations

import argparse
import sys
import time

NAME = "weights"
HELP = "list, import, fetch or verify pretrained weights (VGG16, SAM2.1, MedSAM2)"
DESCRIPTION = """\
Manage the local weights store used for TSM/LPIPS (VGG16) and segmentation (SAM2.1, MedSAM2).

The store is $MEDTRANS_HOME/weights when MEDTRANS_HOME is set, else the platform's user data folder.
Nothing is downloaded unless you run 'fetch'. Offline, download the file elsewhere and 'import' it.

examples:
  medtrans weights list
  medtrans weights import ~/Downloads/vgg16-397923af.pth
  medtrans weights import ./MedSAM2_latest.pt --name medsam2_latest
  medtrans weights fetch sam2.1_hiera_tiny
  medtrans weights fetch vgg16 --url https://mirror.example.org/vgg16-397923af.pth
  medtrans weights verify
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="show known weights and files in the store, and whether they are present")
    p = sub.add_parser("import", help="copy a local file into the store (works offline)")
    p.add_argument("path", metavar="PATH", help="the weights file to import")
    p.add_argument("--name", metavar="N", help="manifest name (see 'list') or a plain file name for other weights")
    p.add_argument("--overwrite", action="store_true", help="replace a different file of the same name")
    p = sub.add_parser("fetch", help="download known weights (checks sha256 when the owner publishes one)")
    p.add_argument("name", metavar="NAME", help="manifest name (see 'list')")
    p.add_argument("--url", metavar="URL", help="download from this http(s) URL (a mirror) instead")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network timeout in seconds (30)")
    p = sub.add_parser("verify", help="recompute sha256 of stored files and compare")
    p.add_argument("name", metavar="NAME", nargs="?", help="one name (default: every file in the store)")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _state(s) -> str:
    if not s.present:
        return "missing"
    return {True: "ok", False: "BAD", None: "present"}[s.verified]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


class _Bar:
    """A one-line text progress bar on stderr: [#####-----]  45%  12.3/27.0 MB  3.4 MB/s."""

    def __init__(self, label: str, stream=None, width: int = 30):
        # sys.stderr as it is now, not as it was when this module was imported (a test's closed capture stream)
        self.label, self.stream, self.width = label, stream if stream is not None else sys.stderr, width
        self.start = time.monotonic()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6)
        if total > 0:
            frac = min(done / total, 1.0)
            fill = int(frac * self.width)
            bar = "#" * fill + "-" * (self.width - fill)
            line = f"{self.label} [{bar}] {frac * 100:5.1f}%  {_size(done)}/{_size(total)}  {_size(int(rate))}/s"
        else:
            line = f"{self.label} {_size(done)}  {_size(int(rate))}/s"
        self.stream.write("\r" + line)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from ..core import weights as w

    if args.action == "list":
        statuses = w.list_weights()
        rows = [["NAME", "STATE", "SIZE", "LICENCE", "FILE"]]
        for s in statuses:
            licence = w.known_weights(s.name).licence.split(" (")[0] if s.known else "-"
            rows.append([s.name, _state(s), _size(s.size), licence, s.path.name])
        print(f"weights store: {w.store_dir()}")
        print(_table(rows))
        print("licences are as published by each owner; check them before clinical use.")
        missing = [s.name for s in statuses if not s.present]
        if missing:
            print(
                "get missing weights with 'medtrans weights fetch NAME' "
                "or 'medtrans weights import PATH --name NAME'."
            )
        return 0
    if args.action == "import":
        dest = w.import_weights(args.path, args.name, overwrite=args.overwrite)
        status = w.list_weights()
        s = next((x for x in status if x.path == dest), None)
        print(f"imported {args.path} -> {dest}" + (f" ({s.message})" if s else ""))
        return 0
    if args.action == "fetch":
        entry = w.known_weights(args.name)
        print(f"fetching {entry.name} from {args.url or entry.url}", file=sys.stderr)
        print(f"licence: {entry.licence}", file=sys.stderr)
        bar = _Bar(entry.filename)
        try:
            dest = w.fetch_weights(args.name, progress=bar, url=args.url, timeout=args.timeout)
        finally:
            bar.close()
        check = {"sha256": "sha256 verified", "sha256-prefix": "sha256 prefix verified"}.get(
            entry.check, "no published sha256; recorded its sha256"
        )
        print(f"saved {dest} ({check})")
        return 0
    if args.action == "verify":
        statuses = w.verify_weights(args.name)
        if not statuses:
            print(f"the weights store {w.store_dir()} holds no files")
            return 0
        rows = [["NAME", "STATE", "CHECKED AGAINST", "DETAIL"]]
        rows += [[s.name, _state(s), s.check, s.message] for s in statuses]
        print(_table(rows))
        bad = [s for s in statuses if s.verified is False or not s.present]
        return 1 if bad else 0
    raise ValueError(f"unknown action {args.action!r}; choose list, import, fetch or verify")
