"""The run log of a training run: one row per log event in ``out_dir/log.jsonl`` and ``out_dir/log.csv``.

Rows hold the step, epoch, wall time, learning rate, the mean losses since the last row and the validation
metrics (``val_*``). On resume the rows after the resumed step are dropped, so a resumed run's log reads like
an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class _Logs:
    """log.jsonl and log.csv in ``out_dir``; on resume, rows after the resumed step are dropped."""

    VAL_KEYS = ("val_psnr", "val_ssim", "val_mae", "val_brain_psnr", "val_brain_ssim", "val_brain_mae")

    def __init__(self, out_dir: Path, fresh: bool, keep_until: int):
        self.jsonl = out_dir / "log.jsonl"
        self.csv = out_dir / "log.csv"
        self.fields: list[str] | None = None
        if fresh:
            for p in (self.jsonl, self.csv):
                p.unlink(missing_ok=True)
            return
        if self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if int(r.get("step", 0)) <= keep_until]
            self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if self.csv.exists():
            with self.csv.open(newline="") as fh:
                reader = csv.DictReader(fh)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if int(float(r.get("step") or 0)) <= keep_until]
            self._rewrite_csv(rows)

    def _rewrite_csv(self, rows) -> None:
        if self.fields is None:
            return
        with self.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.fields is None:
            losses = [k for k in row if k not in ("step", "epoch", "lr", "wall_time_s", "event") and
                      not k.startswith("val_")]
            self.fields = ["event", "step", "epoch", "wall_time_s", "lr", *losses, *self.VAL_KEYS]
            self._rewrite_csv([])
        with self.csv.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore").writerow(row)
