"""The source side: reflect DCS tables, build the row and head queries, fetch SourceRows.

Source tables are reflected (no hand-written source schema). A regime's source is one table or
tables joined on `id`; colliding columns of joined tables get a prefix (P_id, P_L1C1R1, ...).
Functions here take a connection and return rows; they decide nothing.

Every date_time condition is a half-open range (>= a, < b), DCS times being whole seconds. On
SQLite, where a DATETIME is text, that compares right whether a time was stored as
'2011-02-01 00:00:00' (sqlite3, by hand, this code) or with '.000000' (SQLAlchemy's default).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import NoSuchTableError

from scraperd import databases
from scraperd.dbi.tables import END_OF_TIME
from scraperd.errors import ConfigError, SourceError
from scraperd.regimes.base import Source
from scraperd.retry import is_disconnect
from scraperd.scrape import aggregate
from scraperd.scrape.sampling import SourceRow, to_local

SECOND = timedelta(seconds=1)  # DCS times are whole seconds: `<= t` is written `< t + SECOND`, `> t` `>= t + SECOND`
EPOCH_GUARD = datetime(1971, 1, 1)  # zero dates and 1970 stamps of a resetting DCS sort below this
FUTURE_TOLERANCE = timedelta(days=1)  # a DCS clock ahead by less than this is still believed


def now_local(tz: ZoneInfo) -> datetime:
    """The source's now: the real clock in source_tz, in whole seconds (as DCS stamps are)."""
    return to_local(datetime.now(UTC).replace(tzinfo=None, microsecond=0), tz)


def horizon(tz: ZoneInfo, interval: timedelta = timedelta(0), delay: timedelta = timedelta(0)) -> datetime:
    """The latest local date_time sampled now. A row dated later (a DCS clock gone wrong) waits until
    real time reaches it, so it neither drags tcursor into the future nor changes what is written; and
    nothing is sampled whose validity would end after DBI's end of time.

    delay (source_delay): only rows at least that far behind now, so that a row committed up to that
    late is still read in order; without one, a DCS clock up to FUTURE_TOLERANCE ahead is believed."""
    now = now_local(tz)
    latest = now - delay if delay else now + FUTURE_TOLERANCE
    return min(latest, to_local(END_OF_TIME - interval, tz))


@dataclass
class SourceTable:
    """A reflected source: its tables, the select of its joined columns, and its key columns."""

    source: Source
    tables: tuple[sa.Table, ...]
    columns: tuple[sa.ColumnElement[Any], ...]
    names: tuple[str, ...]

    @property
    def main(self) -> sa.Table:
        return self.tables[0]

    @property
    def date_time(self) -> sa.Column[Any]:
        return self.main.c.date_time

    @property
    def id(self) -> sa.Column[Any]:
        return self.main.c.id

    def select(self) -> sa.Select[Any]:
        q = sa.select(*self.columns)
        if len(self.tables) > 1:
            joined: Any = self.main
            for t in self.tables[1:]:
                joined = joined.join(t, t.c.id == self.main.c.id)
            q = q.select_from(joined)
        return q


def reflect(conn: sa.Connection, source: Source) -> SourceTable:
    """Reflect the source's tables; SourceError when one is missing or lacks id/date_time."""
    md = databases.reflecting(sa.MetaData())
    tables = []
    for name in source.tables:
        try:
            with warnings.catch_warnings():
                # SQLite tables made from a mysqldump's text say int(11): SQLAlchemy warns, and reads INTEGER
                warnings.filterwarnings("ignore", "Could not instantiate type", sa.exc.SAWarning)
                t = sa.Table(name, md, autoload_with=conn)
        except NoSuchTableError:
            raise SourceError(f"source table {name} does not exist") from None
        for needed in ("id", "date_time"):
            if needed not in t.c:
                raise SourceError(f"source table {name} has no column {needed!r}")
        tables.append(t)
    columns: list[sa.ColumnElement[Any]] = []
    names: list[str] = []
    for i, t in enumerate(tables):
        for c in t.columns:
            label = c.name if (i == 0 or c.name not in names) else source.join_prefix + c.name
            columns.append(c.label(label) if label != c.name else c)
            names.append(label)
    return SourceTable(source=source, tables=tuple(tables), columns=tuple(columns), names=tuple(names))


def _rows(result: sa.CursorResult[Any], names: Sequence[str]) -> list[SourceRow]:
    # one fetchall, not a fetch per row; names are the select's own labels, one per column
    return [SourceRow(zip(names, r, strict=True)) for r in result.all()]


def rows_from(conn: sa.Connection, st: SourceTable, tcursor: datetime, after: datetime | None,
              limit: int, until: datetime) -> list[SourceRow]:
    """Up to `limit` rows with tcursor <= date_time <= until (and > after), in (date_time, id) order."""
    q = st.select().where(st.date_time >= tcursor, st.date_time < until + SECOND)
    if after is not None:
        q = q.where(st.date_time >= after + SECOND)
    q = q.order_by(st.date_time, st.id).limit(limit)
    return _rows(conn.execute(q), st.names)


def row_at(conn: sa.Connection, st: SourceTable, when: datetime) -> SourceRow | None:
    """The first row (by id) whose date_time is exactly `when`: sv[0] restored at start-up."""
    q = st.select().where(st.date_time >= when, st.date_time < when + SECOND).order_by(st.id).limit(1)
    rows = _rows(conn.execute(q), st.names)
    return rows[0] if rows else None


def first_row_time(conn: sa.Connection, st: SourceTable, at: datetime, filter_sql: str | None) -> datetime | None:
    """The date_time of the first row at or after `at` that the aggregate filter keeps.

    ORDER BY date_time LIMIT 1, not MIN(): the server walks the date_time index from `at` and stops
    at the first row the filter keeps, where MIN() under a filter would read every later row."""
    q = aggregate.filtered(sa.select(st.date_time).where(st.date_time >= at), filter_sql)
    return conn.execute(q.order_by(st.date_time).limit(1)).scalar()


def head(conn: sa.Connection, st: SourceTable, until: datetime) -> datetime | None:
    """The source's latest date_time up to the horizon (for the lag, and the averager's last bin)."""
    # a bare MAX() is answered from the index alone; the bounded one only when a future row exists
    latest = conn.execute(sa.select(sa.func.max(st.date_time))).scalar()
    if latest is None or latest <= until:
        return latest
    return conn.execute(sa.select(sa.func.max(st.date_time)).where(st.date_time < until + SECOND)).scalar()


def max_id(conn: sa.Connection, st: SourceTable) -> int:
    """The highest id of the main table (0 when empty): answered from the primary key alone."""
    return int(conn.execute(sa.select(sa.func.max(st.id))).scalar() or 0)


def id_indexed(st: SourceTable) -> bool:
    """Whether an id range of the main table is an index range (the id primary key, in DCS tables)."""
    keys = [st.main.primary_key.columns, *(ix.columns for ix in st.main.indexes)]
    return any(next(iter(cols), None) is st.id for cols in keys)


def ids_after(conn: sa.Connection, st: SourceTable, after: int, limit: int) -> list[tuple[int, datetime | None]]:
    """(id, date_time) of up to `limit` main-table rows with id > after, by id: a primary-key range."""
    q = sa.select(st.id, st.date_time).where(st.id > after).order_by(st.id).limit(limit)
    return [(int(i), dt) for i, dt in conn.execute(q)]


def has_twin_before(conn: sa.Connection, st: SourceTable, row_id: int, dt: datetime) -> bool:
    """Whether a main-table row with a smaller id has exactly this date_time (so this one is an ignored
    duplicate, in any run): one date_time index look-up."""
    q = sa.select(st.id).where(st.date_time >= dt, st.date_time < dt + SECOND, st.id < row_id).limit(1)
    return conn.execute(q).first() is not None


def inserted_after(conn: sa.Connection, st: SourceTable, row: SourceRow, upto_id: int,
                   since: datetime) -> list[tuple[int, datetime]]:
    """(id, date_time), by id, of main-table rows inserted after `row` (id above its, up to upto_id) yet
    dated before it, at or after `since`: no ORDER BY/LIMIT, so that the server may walk whichever of
    the two ranges (ids after the row, or [since, row's date_time)) is shorter."""
    q = sa.select(st.id, st.date_time).where(st.id > row.id, st.id <= upto_id, st.date_time >= since,
                                             st.date_time < row.date_time)
    return sorted((int(i), dt) for i, dt in conn.execute(q))


def count_bad_dates(conn: sa.Connection, st: SourceTable, until: datetime) -> tuple[int, int]:
    """(rows with zero, 1970 or NULL date_time, rows dated after `until`): reported once at start-up."""
    old = sa.select(sa.func.count()).select_from(st.main).where(
        sa.or_(st.date_time < EPOCH_GUARD, st.date_time.is_(None)))
    future = sa.select(sa.func.count()).select_from(st.main).where(st.date_time >= until + SECOND)
    return int(conn.execute(old).scalar() or 0), int(conn.execute(future).scalar() or 0)


CHECK_TIME = datetime(2000, 1, 1)  # an empty range [CHECK_TIME, CHECK_TIME): the check reads no row


@contextmanager
def filter_errors() -> Iterator[None]:
    """Around a query run once at start-up over an empty range: a failing statement (not a lost
    connection) is the operator's aggregate_filter at fault, so it is a config error naming it (the
    daemon's Loaded.placing() adds file and section)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if is_disconnect(exc):
            raise
        raise ConfigError(f"query fails: {str(exc.orig).splitlines()[0]}", key="aggregate_filter") from None


def warn_bad_dates(conn: sa.Connection, st: SourceTable, until: datetime, log: Any) -> None:
    """One `bad_row` warning per kind of unusable date_time, at start-up."""
    old, future = count_bad_dates(conn, st, until)
    if old:
        log.warning("bad_row", source=st.source.name, rows=old, reason="date_time NULL, zero or 1970",
                    action="ignored")
    if future:
        log.warning("bad_row", source=st.source.name, rows=future, reason=f"date_time after {until}",
                    action="not sampled until real time reaches it")


def aggregates(conn: sa.Connection, st: SourceTable, spec: aggregate.AggregateSpec, lo: datetime,
               hi: datetime) -> dict[str, Any]:
    """The aggregate dict over lo <= date_time < hi of the main table."""
    row = conn.execute(aggregate.statement(st.main, spec, lo, hi)).mappings().first()
    return aggregate.shape(dict(row) if row is not None else None, spec)
