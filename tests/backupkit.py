"""DBI table pairs filled with SQL for the backup tests, and the commands run as an operator runs them.

Two pairs: DcsNum (numeric payload: restore's LOAD DATA path on MySQL) and DcsText (strings with
quotes, backslashes, newlines, non-ASCII and NULLs: the statements path), `rows_per_seqno` payload
rows per SEQNO, LOCALSEQNO kept at the last SEQNO as a DBI writer keeps it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.conftest import TestDB

REPO = Path(__file__).resolve().parent.parent
PAIRS = ("DcsNum", "DcsText")
T0 = datetime(2011, 1, 1)

_PAYLOAD = {
    "DcsNum": "ladder TINYINT, voltage DECIMAL(6,2), temp FLOAT, precise DOUBLE, counts BIGINT",
    "DcsText": "label VARCHAR(64), note TEXT, temp FLOAT",
}


def _ddl(backend: str, table: str, engine_name: str = "InnoDB") -> list[str]:
    engine = f" ENGINE={engine_name}" if backend == "mysql" else ""
    return [
        f"CREATE TABLE {table} (SEQNO INT NOT NULL, ROW_COUNTER INT NOT NULL, {_PAYLOAD[table]}, "
        f"PRIMARY KEY (SEQNO, ROW_COUNTER)){engine}",
        f"CREATE TABLE {table}Vld (SEQNO INT NOT NULL PRIMARY KEY, TIMESTART DATETIME NOT NULL, "
        "TIMEEND DATETIME NOT NULL, SITEMASK TINYINT, SIMMASK TINYINT, SUBSITE INT, TASK INT, AGGREGATENO INT, "
        f"VERSIONDATE DATETIME NOT NULL, INSERTDATE DATETIME NOT NULL){engine}",
    ]


def create(db: TestDB, engine_name: str = "InnoDB") -> None:
    """The pairs and LOCALSEQNO (MySQL: of engine_name, e.g. MyISAM as a legacy DBI writer made them)."""
    with db.engine.begin() as conn:
        for t in PAIRS:
            for stmt in _ddl(db.backend, t, engine_name):
                conn.exec_driver_sql(stmt)
        engine = f" ENGINE={engine_name}" if db.backend == "mysql" else ""
        conn.exec_driver_sql(f"CREATE TABLE LOCALSEQNO (TABLENAME CHAR(64) NOT NULL PRIMARY KEY, LASTUSEDSEQNO INT){engine}")
        conn.exec_driver_sql("INSERT INTO LOCALSEQNO VALUES ('*', 0)")


def _payload(table: str, seqno: int, row: int) -> dict[str, Any]:
    if table == "DcsNum":
        return {"ladder": row % 9, "voltage": round(1500 + (seqno * 7 + row) % 300 + 0.25, 2),
                "temp": None if row == 3 else (seqno + row) / 7, "precise": (seqno * 1e-7 + row) / 3,
                "counts": seqno * 10**10 + row}
    text = ["plain", "it's", "back\\slash", "two\nlines", "tab\there", "ünïcödé ✓", "a),(b;", "", "nul\x00byte",
            "cr\r\nlf"][(seqno + row) % 10]
    return {"label": text if row != 2 else None, "note": f"{text} #{seqno}.{row}" * (1 + row % 3),
            "temp": -seqno / 3}


def grow(db: TestDB, upto: int, rows_per_seqno: int = 4) -> None:
    """Append records (Vld row, payload rows, LOCALSEQNO) to every pair until its last SEQNO is upto."""
    with db.engine.begin() as conn:
        for t in PAIRS:
            last = conn.exec_driver_sql(f"SELECT MAX(SEQNO) FROM {t}Vld").scalar() or 0
            seqnos = range(last + 1, upto + 1)
            if not seqnos:
                continue
            vld = sa.table(f"{t}Vld", *(sa.column(c) for c in (
                "SEQNO", "TIMESTART", "TIMEEND", "SITEMASK", "SIMMASK", "SUBSITE", "TASK", "AGGREGATENO",
                "VERSIONDATE", "INSERTDATE")))
            conn.execute(vld.insert(), [
                {"SEQNO": s, "TIMESTART": T0 + timedelta(minutes=s), "TIMEEND": T0 + timedelta(minutes=s + 1),
                 "SITEMASK": 32, "SIMMASK": 1, "SUBSITE": 1, "TASK": 0, "AGGREGATENO": -1,
                 "VERSIONDATE": T0 + timedelta(minutes=s), "INSERTDATE": datetime(2026, 1, 1) + timedelta(seconds=s)}
                for s in seqnos])
            cols = ["SEQNO", "ROW_COUNTER", *_payload(t, 1, 1)]
            payload = sa.table(t, *(sa.column(c) for c in cols))
            conn.execute(payload.insert(), [{"SEQNO": s, "ROW_COUNTER": r, **_payload(t, s, r)}
                                            for s in seqnos for r in range(1, rows_per_seqno + 1)])
            conn.exec_driver_sql(f"DELETE FROM LOCALSEQNO WHERE TABLENAME = '{t}'")
            conn.exec_driver_sql(f"INSERT INTO LOCALSEQNO VALUES ('{t}', {upto})")


def contents(db: TestDB, pairs: tuple[str, ...] = PAIRS) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every pair and of LOCALSEQNO, in key order (floats as the driver reads them)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db.engine.connect() as conn:
        for t in pairs:
            out[t] = [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY SEQNO, ROW_COUNTER")]
            out[f"{t}Vld"] = [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {t}Vld ORDER BY SEQNO")]
        out["LOCALSEQNO"] = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM LOCALSEQNO ORDER BY TABLENAME")]
    return out


def exact(db: TestDB, table: str) -> list[tuple[Any, ...]]:
    """Rows with every float as its exact stored value (MySQL: FLOAT cast to DOUBLE), for bit-equality."""
    with db.engine.connect() as conn:
        if db.backend == "mysql":
            cols = [r[0] for r in conn.exec_driver_sql(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND "
                f"TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION")]
            sel = ", ".join(f"CAST(`{c}` AS DOUBLE)" if c == "temp" else f"`{c}`" for c in cols)
        else:
            sel = "*"
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {sel} FROM {table} ORDER BY 1, 2")]


def url(db: TestDB) -> str:
    return db.url.render_as_string(hide_password=False)


def scraperd(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m scraperd ARGS` as an operator would run it (not a terminal: JSON events on stderr)."""
    return subprocess.run([sys.executable, "-m", "scraperd", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def spawn(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """scraperd ARGS in the background, stdout and stderr to log (a file: a full pipe would stall it)."""
    f = open(log, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "scraperd", *args], cwd=REPO, stdout=f, stderr=f)
    finally:
        f.close()
