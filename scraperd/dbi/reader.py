"""Read a DBI target: the record valid at a time for a context, the last record of a context, payloads.

The context query is DBI's validity resolution reduced to what a scraper and its tests need: of
the Vld rows whose [TIMESTART, TIMEEND) holds t, whose SITEMASK and SIMMASK share a bit with the
context's, and whose SUBSITE, TASK and AGGREGATENO equal it, the one with the highest VERSIONDATE
wins. DBI left ties to whatever order the server returned (the cause of Daya Bay's "overlay
versioning bug"); here the higher SEQNO, i.e. the later write, wins a tie. A rollback date hides
rows inserted at or after it (INSERTDATE < rollback, strict, as DBI's rollback condition).

Unlike DBI there is no time gate, no cache and no trimming of the winner's range by its neighbours:
callers get the stored row. A gap is (None, []).

The same rule over a time range (what `scraperd query --range` shows) is overlapping_select(): every
row serving the context that overlaps [start, end), in priority order; which row answers where is
decided without the database (query/resolve.py). reflect_tables() opens a DBI pair as the database
holds it, for tables without a .spec (any table of an offline_db).

Each query is built by a function returning the statement and run by a function that takes a
Connection or an Engine; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from scraperd.dbi.context import Context
from scraperd.dbi.tables import DbiTables
from scraperd.errors import ConfigError, DataError

VLD_COLUMNS = ("SEQNO", "TIMESTART", "TIMEEND", "SITEMASK", "SIMMASK", "SUBSITE", "TASK", "AGGREGATENO",
               "VERSIONDATE", "INSERTDATE")


@dataclass(frozen=True)
class VldRow:
    """One row of a <T>Vld table."""

    seqno: int
    timestart: datetime
    timeend: datetime
    sitemask: int
    simmask: int
    subsite: int
    task: int
    aggregateno: int
    versiondate: datetime
    insertdate: datetime

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> VldRow:
        m = row._mapping
        return cls(*(m[c] for c in VLD_COLUMNS))


@contextmanager
def connected(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    """A Connection: the one given, or a new one from the Engine for the duration of the block."""
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            yield conn
    else:
        yield conn_or_engine


def _naive(t: datetime, what: str) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is not None:
        raise DataError(f"{what} must be a naive datetime holding UTC, got {t!r}")
    return t


def context_clause(tables: DbiTables, ctx: Context) -> sa.ColumnElement[bool]:
    """The Vld rows serving a context: masks share a bit; subsite, task and aggregate number equal
    (Context.serves, in SQL)."""
    v = tables.vld.c
    return sa.and_(
        v.SITEMASK.op("&")(ctx.sitemask) != 0,
        v.SIMMASK.op("&")(ctx.simmask) != 0,
        v.SUBSITE == ctx.subsite,
        v.TASK == ctx.task,
        # Legacy DBI rows may hold NULL here; DBI's own tools read NULL as -1, non-aggregated.
        sa.func.coalesce(v.AGGREGATENO, -1) == ctx.aggregateno,
    )


def exact_context(tables: DbiTables, ctx: Context) -> sa.ColumnElement[bool]:
    """The Vld rows written with exactly this context: the rows a scraper or averager owns."""
    v = tables.vld.c
    return sa.and_(v.SITEMASK == ctx.sitemask, v.SIMMASK == ctx.simmask, v.SUBSITE == ctx.subsite,
                   v.TASK == ctx.task, sa.func.coalesce(v.AGGREGATENO, -1) == ctx.aggregateno)


def _served(tables: DbiTables, ctx: Context, rollback: datetime | None) -> sa.Select[Any]:
    """The Vld rows serving a context, as seen at the rollback date, highest priority first."""
    v = tables.vld.c
    stmt = sa.select(tables.vld).where(context_clause(tables, ctx)).order_by(v.VERSIONDATE.desc(), v.SEQNO.desc())
    if rollback is not None:
        stmt = stmt.where(v.INSERTDATE < _naive(rollback, "rollback"))
    return stmt


def candidates_select(tables: DbiTables, t: datetime, ctx: Context, *,
                      rollback: datetime | None = None) -> sa.Select[Any]:
    """Every Vld row holding t for a context, the winner first (see the module docstring)."""
    v = tables.vld.c
    return _served(tables, ctx, rollback).where(v.TIMESTART <= _naive(t, "t"), v.TIMEEND > t)


def context_select(tables: DbiTables, t: datetime, ctx: Context, *,
                   rollback: datetime | None = None) -> sa.Select[Any]:
    """The winning Vld row at t for a context (see the module docstring), as a statement."""
    return candidates_select(tables, t, ctx, rollback=rollback).limit(1)


def ties_select(tables: DbiTables, t: datetime, ctx: Context, winner: VldRow, *,
                rollback: datetime | None = None) -> sa.Select[Any]:
    """The SEQNOs of the other rows holding t that share the winner's VERSIONDATE (DBI's "Non-unique
    versionDate"): the winner is theirs only by its higher SEQNO."""
    v = tables.vld.c
    rows = candidates_select(tables, t, ctx, rollback=rollback).where(
        v.VERSIONDATE == winner.versiondate, v.SEQNO != winner.seqno).subquery()
    return sa.select(rows.c.SEQNO).order_by(rows.c.SEQNO.desc())


def overlapping_select(tables: DbiTables, start: datetime, end: datetime, ctx: Context, *,
                       rollback: datetime | None = None) -> sa.Select[Any]:
    """Every Vld row serving a context whose [TIMESTART, TIMEEND) overlaps [start, end), highest
    priority first: those of them that answer the context query somewhere in the range."""
    v = tables.vld.c
    return _served(tables, ctx, rollback).where(v.TIMESTART < _naive(end, "end"), v.TIMEEND > _naive(start, "start"))


def neighbours_select(tables: DbiTables, t: datetime, ctx: Context, *, before: bool,
                      rollback: datetime | None = None) -> sa.Select[Any]:
    """The row serving a context that ends last at or before t (before=True), or starts first after t:
    where the records around a gap at t are."""
    v = tables.vld.c
    stmt = _served(tables, ctx, rollback).order_by(None)
    if before:
        return stmt.where(v.TIMEEND <= _naive(t, "t")).order_by(v.TIMEEND.desc(), v.SEQNO.desc()).limit(1)
    return stmt.where(v.TIMESTART > _naive(t, "t")).order_by(v.TIMESTART, v.SEQNO.desc()).limit(1)


def payload_select(tables: DbiTables, seqno: int) -> sa.Select[Any]:
    p = tables.payload
    return (sa.select(*(p.c[c] for c in tables.spec.column_names))
            .where(p.c.SEQNO == seqno).order_by(p.c.ROW_COUNTER))


def payload(conn_or_engine: Connection | Engine, tables: DbiTables, seqno: int) -> list[dict[str, Any]]:
    """The payload rows of one SEQNO in ROW_COUNTER order, as dicts keyed by the spec's column names."""
    with connected(conn_or_engine) as conn:
        return [dict(r._mapping) for r in conn.execute(payload_select(tables, seqno))]


def payloads(conn_or_engine: Connection | Engine, tables: DbiTables, seqnos: Sequence[int], *,
             chunk: int = 500) -> dict[int, list[dict[str, Any]]]:
    """The payload rows of several SEQNOs, each in ROW_COUNTER order, as dicts keyed by ROW_COUNTER
    and the spec's column names; a SEQNO without rows maps to []."""
    p = tables.payload
    columns = [p.c.ROW_COUNTER, *(p.c[c] for c in tables.spec.column_names)]
    out: dict[int, list[dict[str, Any]]] = {s: [] for s in seqnos}
    wanted = sorted(out)
    with connected(conn_or_engine) as conn:
        for i in range(0, len(wanted), chunk):
            part = wanted[i:i + chunk]
            stmt = (sa.select(p.c.SEQNO, *columns).where(p.c.SEQNO.in_(part))
                    .order_by(p.c.SEQNO, p.c.ROW_COUNTER))
            for row in conn.execute(stmt):
                m = dict(row._mapping)
                out[m.pop("SEQNO")].append(m)
    return out


def best_vld(conn: Connection, tables: DbiTables, t: datetime, ctx: Context, *,
             rollback: datetime | None = None) -> VldRow | None:
    """The winning Vld row at t for a context, without its payload."""
    row = conn.execute(context_select(tables, t, ctx, rollback=rollback)).first()
    return None if row is None else VldRow.from_row(row)


def context_query(conn_or_engine: Connection | Engine, tables: DbiTables, t: datetime, ctx: Context, *,
                  rollback: datetime | None = None) -> tuple[VldRow | None, list[dict[str, Any]]]:
    """The record valid at t (naive UTC) for a context, and its payload rows; (None, []) in a gap."""
    with connected(conn_or_engine) as conn:
        vld = best_vld(conn, tables, t, ctx, rollback=rollback)
        return (None, []) if vld is None else (vld, payload(conn, tables, vld.seqno))


def last_validity_select(tables: DbiTables, context: Context,
                         timefloor: datetime | None = None) -> sa.Select[Any]:
    """The latest Vld row written for exactly this context, as a statement.

    Ordered by (TIMEEND, SEQNO) descending with LIMIT 1: InnoDB's TIMEEND key ends in the primary
    key, and SQLite's in the rowid (SEQNO), so the server reads the key backwards and stops at the
    first row of the context instead of sorting the table.
    """
    v = tables.vld.c
    stmt = (sa.select(tables.vld).where(exact_context(tables, context))
            .order_by(v.TIMEEND.desc(), v.SEQNO.desc()).limit(1))
    if timefloor is not None:
        stmt = stmt.where(v.TIMESTART >= _naive(timefloor, "timefloor"))
    return stmt


def written_after_select(tables: DbiTables, context: Context, seqno: int) -> sa.Select[Any]:
    """The highest SEQNO above `seqno` holding a Vld row of exactly this context (NULL: none): a
    primary-key range over the rows written since, which stays short (writer.Fence)."""
    v = tables.vld.c
    return sa.select(sa.func.max(v.SEQNO)).where(v.SEQNO > seqno, exact_context(tables, context))


def max_seqno(conn_or_engine: Connection | Engine, tables: DbiTables) -> int:
    """The table's highest SEQNO in <T>Vld (0 when empty), from the primary key alone."""
    with connected(conn_or_engine) as conn:
        return int(conn.execute(sa.select(sa.func.max(tables.vld.c.SEQNO))).scalar() or 0)


def last_validity(conn_or_engine: Connection | Engine, tables: DbiTables, context: Context,
                  timefloor: datetime | None = None) -> VldRow | None:
    """The validity record of a context that ends last (ties: highest SEQNO); None when there is none.

    Scrapers resume from it. timefloor, when given, ignores records starting before it.
    """
    with connected(conn_or_engine) as conn:
        row = conn.execute(last_validity_select(tables, context, timefloor)).first()
        return None if row is None else VldRow.from_row(row)


def latest_timeend(conn: Connection, tables: DbiTables, ctx: Context) -> datetime | None:
    """The latest TIMEEND of the rows serving a context: no record holds a time at or after it."""
    v = tables.vld.c
    stmt = sa.select(v.TIMEEND).where(context_clause(tables, ctx)).order_by(v.TIMEEND.desc()).limit(1)
    return conn.execute(stmt).scalar()


def reflect_tables(conn: Connection, name: str) -> DbiTables:
    """The DBI pair <name>, <name>Vld as the database holds it (reflected: no .spec needed), for reading.

    The payload's columns other than SEQNO and ROW_COUNTER stand in for the spec's; SQLite DATETIMEs
    read as the whole-second text scraperd writes. ConfigError when either table is missing.
    """
    from scraperd import databases
    from scraperd.dbi.spec import Column, Spec
    from scraperd.dbi.tables import _localseqno

    insp = sa.inspect(conn)
    for table in (name, f"{name}Vld"):
        if not insp.has_table(table):
            raise ConfigError(f"no table {table}: {name} is not a DBI table here")
    metadata = databases.reflecting(sa.MetaData())
    payload = sa.Table(name, metadata, autoload_with=conn)
    vld = sa.Table(f"{name}Vld", metadata, autoload_with=conn)
    missing = [c for c in VLD_COLUMNS if c not in vld.c] + [c for c in ("SEQNO", "ROW_COUNTER") if c not in payload.c]
    if missing:
        raise ConfigError(f"{name} is not a DBI table: no column {', '.join(missing)}")
    columns = tuple(Column(name=c.name, codetype="", dbtype=str(c.type), description=c.comment or "")
                    for c in payload.columns if c.name not in ("SEQNO", "ROW_COUNTER"))
    spec = Spec(klass=f"G{name}", table=name, columns=columns, path="(reflected)")
    return DbiTables(spec=spec, payload=payload, vld=vld, localseqno=_localseqno(metadata), converters={})
