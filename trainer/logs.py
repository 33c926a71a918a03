"""Training logs: one JSON line per record, plus CSV files of the scalar fields."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records of a kind (``train`` / ``val``) to ``log.jsonl`` and ``<kind>.csv``.

    The CSV columns are fixed by the first record of each kind; nested values go to the
    JSON log only.
    """

    def __init__(
        self, out_dir: str | Path, kinds: tuple[str, ...], resumed_at: int | None
    ) -> None:
        """A new run (``resumed_at`` None) starts the log files of ``kinds`` anew; a run
        resumed from the checkpoint of step ``resumed_at`` keeps the earlier records up
        to that step and drops the later ones, which a killed run logged after its last
        checkpoint and the resumed run logs again."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        files = ("log.jsonl", *(f"{kind}.csv" for kind in kinds))
        for name in files:
            path = self.out_dir / name
            if resumed_at is None or not path.exists():
                path.unlink(missing_ok=True)
            else:
                _keep_until(path, resumed_at)

    def write(self, kind: str, record: dict[str, Any]) -> None:
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"kind": kind, **record}) + "\n")
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
        path = self.out_dir / f"{kind}.csv"
        columns = self._columns.get(kind)
        if columns is None:
            if path.exists():
                with open(path) as f:
                    columns = next(csv.reader(f), list(scalars))
            else:
                columns = list(scalars)
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(columns)
            self._columns[kind] = columns
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, columns, extrasaction="ignore").writerow(scalars)


def read_records(out_dir: str | Path, kind: str) -> list[dict[str, Any]]:
    """The records of ``kind`` in a run's ``log.jsonl`` (none when it does not exist)."""
    path = Path(out_dir) / "log.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _keep_until(path: Path, step: int) -> None:
    """Rewrite a log file (JSON lines or CSV with a ``step`` column) without the records
    of steps after ``step``."""
    lines = path.read_text().splitlines()
    if path.suffix == ".jsonl":
        kept = [line for line in lines if json.loads(line)["step"] <= step]
    else:
        rows = list(csv.reader(lines))
        column = rows[0].index("step") if rows else 0
        kept = lines[:1] + [
            line for line, row in zip(lines[1:], rows[1:]) if int(row[column]) <= step
        ]
    path.write_text("".join(f"{line}\n" for line in kept))
