"""Build fake DCS source databases with chosen rows (for tests that need exact data)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from scraperd import databases, dcsddl


def create_source(url: URL) -> None:
    """An empty fake DCS database from etc/fake_dcs.sql."""
    dcsddl.recreate(url, dcsddl.DEFAULT_DDL)


def insert_rows(url: URL, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
    engine = databases.make_engine(url)
    try:
        with engine.begin() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            rows = list(rows)
            if rows:
                conn.execute(t.insert(), rows)
    finally:
        engine.dispose()
