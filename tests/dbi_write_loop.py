"""A writer process for the DBI concurrency and crash tests: write records to DcsPmtHv in a loop.

    python tests/dbi_write_loop.py URL WRITER COUNT [--ready F --go F] [--pause-at N --paused F]

Record i of writer W has SUBSITE = W, TIMESTART = 2012-01-01 + i min, and k = 1 + i % 3 payload rows
{ladder: row number, col: k, ring: W, voltage: i / 100, pw: 1}, so a reader can tell a complete
record from a partial one. --ready/--go make several writers start together: each touches its
ready file and waits for the go file. --pause-at N stops inside write N (its transaction, or its
LOCK TABLES on MyISAM), after its payload rows were inserted and before its Vld row, touches the
paused file and sleeps there (for a SIGKILL). The tables come from tables_for(), not
create_tables() (a test may have removed the table's LOCALSEQNO row on purpose), so the writer reads
their engines from the server at every write.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from scraperd import databases
from scraperd.dbi.context import Context
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import tables_for
from scraperd.dbi.writer import Record, write

START = datetime(2012, 1, 1)


def record(writer: int, i: int) -> Record:
    k = 1 + i % 3
    rows = [{"ladder": n, "col": k, "ring": writer, "voltage": i / 100, "pw": 1} for n in range(1, k + 1)]
    return Record(START + timedelta(minutes=i), START + timedelta(minutes=i + 1),
                  Context(sitemask=1, subsite=writer), rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("writer", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--ready", type=Path)
    ap.add_argument("--go", type=Path)
    ap.add_argument("--pause-at", type=int)
    ap.add_argument("--paused", type=Path)
    args = ap.parse_args()

    engine = databases.make_engine(sa.engine.make_url(args.url))
    tables = tables_for(find_spec("DcsPmtHv"))

    if args.pause_at:
        vld_inserts = 0

        @sa.event.listens_for(engine, "before_cursor_execute")
        def _pause(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            nonlocal vld_inserts
            if statement.lstrip().upper().startswith("INSERT INTO") and tables.vld.name.upper() in statement.upper():
                vld_inserts += 1
                if vld_inserts == args.pause_at:
                    args.paused.touch()
                    time.sleep(120)

    if args.ready:
        args.ready.touch()
        deadline = time.monotonic() + 30
        while not args.go.exists():
            if time.monotonic() > deadline:
                print("no go file within 30 s", file=sys.stderr)
                return 2
            time.sleep(0.005)

    for i in range(args.count):
        write(engine, tables, record(args.writer, i))
    return 0


if __name__ == "__main__":
    sys.exit(main())
