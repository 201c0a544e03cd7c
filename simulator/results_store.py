"""The results store of a sweep: one SQLite file, one row per point, one transaction per point.

A row holds the point id, its axis values, the SHA-256 of its resolved scenario, its metrics, the
pass/fail of each constraint, the objective values, the one-line error of a point that could not
run, the wall time, and the detail the comparison page draws (TTFT/TPOT quantiles, the capacity
curve). SQLite commits each row atomically to the file (rollback journal, ``synchronous=FULL``),
so a sweep killed with ``kill -9`` keeps every row it committed and none half-written; ``--resume``
then runs only the points whose row is missing (or records an internal error: a fixed bug reruns).
JSON columns keep NaN as ``NaN`` (Python's json).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

from simulator.core.errors import HwsimError

FILE_NAME = "results.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    point_id INTEGER PRIMARY KEY,
    scenario_hash TEXT NOT NULL,
    axes TEXT NOT NULL,
    metrics TEXT NOT NULL,
    constraints TEXT NOT NULL,
    passed INTEGER NOT NULL,
    objectives TEXT NOT NULL,
    error TEXT,
    wall_s REAL NOT NULL,
    detail TEXT NOT NULL
);
"""
JSON_COLUMNS = ("axes", "metrics", "constraints", "objectives", "detail")


class ResultsStore:
    """One sweep's rows in ``DIR/results.sqlite``."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FILE_NAME
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise HwsimError(f"not a results store: {exc}", where=str(self.path)) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, **values: str) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def done(self) -> dict[int, str]:
        """{point id: scenario hash} of every stored row."""
        return dict(self.db.execute("SELECT point_id, scenario_hash FROM points"))

    def failed_internally(self) -> set[int]:
        """Ids of the rows whose point stopped on an internal error (a bug, not the point's own limit)."""
        return {i for (i,) in self.db.execute("SELECT point_id FROM points WHERE error LIKE 'internal error:%'")}

    def clear(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM points")
            self.db.execute("DELETE FROM meta")

    def put(self, row: dict[str, Any]) -> None:
        """Store one point's row in its own transaction."""
        values = {k: json.dumps(row[k], sort_keys=k != "axes") if k in JSON_COLUMNS else row.get(k)
                  for k in ("point_id", "scenario_hash", *JSON_COLUMNS, "passed", "error", "wall_s")}
        values["passed"] = int(bool(values["passed"]))
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO points (point_id, scenario_hash, axes, metrics, constraints, "
                            "passed, objectives, error, wall_s, detail) VALUES (:point_id, :scenario_hash, :axes, "
                            ":metrics, :constraints, :passed, :objectives, :error, :wall_s, :detail)", values)

    def rows(self) -> list[dict[str, Any]]:
        """Every row by point id, JSON columns decoded."""
        cur = self.db.execute("SELECT point_id, scenario_hash, axes, metrics, constraints, passed, objectives, "
                              "error, wall_s, detail FROM points ORDER BY point_id")
        names = [d[0] for d in cur.description]
        out = []
        for values in cur:
            row = dict(zip(names, values))
            for k in JSON_COLUMNS:
                row[k] = json.loads(row[k])
            row["passed"] = bool(row["passed"])
            out.append(row)
        return out


def read_rows(directory: Path) -> list[dict[str, Any]]:
    path = Path(directory) / FILE_NAME
    if not path.exists():
        raise HwsimError(f"no results store ({FILE_NAME}) here", where=str(directory))
    with ResultsStore(directory) as store:
        return store.rows()


def flat_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flat record per row (columns: point_id, axes, passed, constraints, objectives, metrics)."""
    flat = []
    for r in rows:
        rec: dict[str, Any] = {"point_id": r["point_id"], "scenario_hash": r["scenario_hash"]}
        rec.update({k: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
                    for k, v in r["axes"].items()})
        rec["passed"] = r["passed"]
        rec["error"] = r["error"]
        rec.update({f"constraint: {k}": v for k, v in r["constraints"].items()})
        rec.update({f"objective: {k}": v for k, v in r["objectives"].items()})
        rec.update(r["metrics"])
        rec["wall_s"] = r["wall_s"]
        flat.append(rec)
    columns: list[str] = []
    for rec in flat:
        columns += [k for k in rec if k not in columns]
    return columns, flat


def export(directory: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """Write results.csv (always) and results.parquet (when pyarrow is installed) beside the store."""
    columns, flat = flat_rows(rows)
    directory = Path(directory)
    written = [directory / "results.csv"]
    with open(written[0], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(flat)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    records = [{c: rec.get(c) for c in columns} for rec in flat]
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed types (an axis of 1 and "2/s"): as text
        mixed = {c for c in columns if len({type(r[c]) for r in records if r[c] is not None}) > 1}
        table = pa.Table.from_pylist([{c: str(v) if c in mixed and v is not None else v for c, v in r.items()}
                                      for r in records])
    pq.write_table(table, directory / "results.parquet")
    written.append(directory / "results.parquet")
    return written
