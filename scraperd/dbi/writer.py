"""Write validity records: one Vld row and its payload rows, under a SEQNO from LOCALSEQNO.

DBI reserved the SEQNO under `LOCK TABLES`, released the lock, then wrote the Vld row and the
payload rows without a transaction: a crash between them left a Vld row without payload, and
concurrent writers were a known problem. Here one transaction holds it all:

    lock the table's LOCALSEQNO row (SELECT ... FOR UPDATE; SQLite: BEGIN IMMEDIATE)
    check the fences (below)
    SEQNO = max(LASTUSEDSEQNO, max(SEQNO) of <T>Vld and of <T>) + 1   (a larger max: seqno_repair)
    UPDATE LOCALSEQNO
    VERSIONDATE by the overlay rule when not given            (sees everything committed before us)
    INSERT the payload rows (ROW_COUNTER 1..n), INSERT the Vld row
    COMMIT

so a crash at any instant leaves the whole record or none of it, and writers of the same table in
several processes queue on one row lock (writers of other tables do not wait for them).

A target whose tables are not all InnoDB (a legacy MyISAM offline_db: no transaction, and FOR
UPDATE locks nothing) is written as DBI did, under `LOCK TABLES <T> WRITE, <T>Vld WRITE, LOCALSEQNO
WRITE` on one connection, held from the LOCALSEQNO read to the last insert and always released
(UNLOCK TABLES, or the connection is dropped, which releases it). The steps are the same ones, in
the same order, so the fence check stays atomic with the insert. Nothing is rolled back there: a
crash (or a failed statement) after the LOCALSEQNO update leaves at worst payload rows without their
Vld row, invisible to context queries, whose SEQNO LOCALSEQNO and max(SEQNO) of <T> keep from
reuse; never a Vld row without its payload, since payload rows go in first. tables.create_tables()
reads the engines at start-up (DbiTables.engines) and warns: non_transactional_target.

Fenced writes: a daemon passes, for every context it writes, a Fence: the context's last validity
record its state is based on, and the table's highest SEQNO it had seen before reading that record.
Under the LOCALSEQNO lock (LOCK TABLES on a non-transactional target), before anything is inserted,
the Vld rows written since (a primary-key range: cheap however large the table) are looked at; if
one belongs to a fenced context (another copy of the section wrote first), nothing is written and
WriteConflict says which. So two copies of a section never write a record twice.

Overlay rule (DBI's QueryOverlayVersionDate), used when a record's versiondate is None: run the
context query for the record's own context at its TIMESTART; in a gap VERSIONDATE = TIMESTART,
else the found record's VERSIONDATE + 60 s, so that a later write overlays the earlier ones.

Payload values are checked and converted per column (tables.convert_row) before the transaction
starts: a bad value is a DataError naming the column, and nothing is written.

Log events: seqno_repair (table, localseqno, max_seqno), empty_record (table, seqno, timestart,
timeend): DBI's "VLD entry but no data", allowed because it hides data that is now invalid.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.tables import (
    BEGINNING_OF_TIME,
    END_OF_TIME,
    DbiTables,
    convert_row,
    engines,
    is_transactional,
    seqno_row_insert,
)
from scraperd.errors import DataError, WriteConflict

log = structlog.get_logger(__name__)

OVERLAY_STEP = timedelta(seconds=60)
_TINYINT = range(-128, 128)
_INT = range(-(2 ** 31), 2 ** 31)


@dataclass(frozen=True)
class Fence:
    """What a writer's state rests on: no Vld row of `context` has a SEQNO above `seen`.

    `seen` is the table's highest SEQNO (reader.max_seqno) read before the context's last record was
    (so a record committed in between makes a conflict, never a miss), or the writer's own last SEQNO
    after each write; `seqno` is that last record (None: none), named by a conflict.
    """

    context: Context
    seqno: int | None
    seen: int

    def after(self, records: Sequence[Record], seqnos: Sequence[int]) -> Fence:
        """The fence once this process wrote `records` as `seqnos` in one write fenced on it: nobody
        else wrote the context up to the last of them, and its last record is the last written in it."""
        mine = [n for r, n in zip(records, seqnos, strict=True) if r.context == self.context]
        return Fence(self.context, mine[-1] if mine else self.seqno, seqnos[-1])


@dataclass(frozen=True)
class Record:
    """One validity record to write: its range [timestart, timeend) in naive UTC, context and payload."""

    timestart: datetime
    timeend: datetime
    context: Context
    rows: Sequence[Mapping[str, Any]]
    versiondate: datetime | None = None  # None: the overlay rule decides

    def fields(self, fmt: Callable[[datetime], str | None]) -> dict[str, Any]:
        """The record as the fields of a `propagate` event: rows, timestart, timeend (as fmt shows
        them), sitemask, subsite."""
        return {"rows": len(self.rows), "timestart": fmt(self.timestart), "timeend": fmt(self.timeend),
                "sitemask": self.context.sitemask, "subsite": self.context.subsite}


def utcnow() -> datetime:
    """Now, as the target stores it: naive UTC, whole seconds."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _second(t: Any, what: str, index: int) -> datetime:
    if not isinstance(t, datetime) or t.tzinfo is not None:
        raise DataError(f"record {index}: {what} must be a naive datetime holding UTC, got {t!r}")
    # DATETIME keeps whole seconds (MariaDB would truncate, MySQL round): drop the fraction here, once.
    return t.replace(microsecond=0)


@dataclass(frozen=True)
class _Checked:
    """A record whose times are whole seconds and whose payload rows are converted, ready to insert."""

    timestart: datetime
    timeend: datetime
    context: Context
    rows: list[dict[str, Any]]
    versiondate: datetime | None


def _check(tables: DbiTables, record: Record, index: int) -> _Checked:
    start = _second(record.timestart, "timestart", index)
    end = _second(record.timeend, "timeend", index)
    if not BEGINNING_OF_TIME <= start < end <= END_OF_TIME:
        raise DataError(f"record {index}: validity [{start}, {end}) is empty or outside "
                        f"[{BEGINNING_OF_TIME}, {END_OF_TIME}]")
    vdate = None if record.versiondate is None else _second(record.versiondate, "versiondate", index)
    c = record.context
    for name, value, allowed in (("sitemask", c.sitemask, _TINYINT), ("simmask", c.simmask, _TINYINT),
                                 ("subsite", c.subsite, _INT), ("task", c.task, _INT),
                                 ("aggregateno", c.aggregateno, _INT)):
        if not isinstance(value, int) or value not in allowed:
            raise DataError(f"record {index}: context {name}={value!r} is not an integer the Vld column holds")
    try:
        rows = [convert_row(tables, row) for row in record.rows]
    except DataError as exc:
        raise DataError(f"record {index}: {exc}") from None
    return _Checked(start, end, c, rows, vdate)


# ----------------------------------------------------------------------------------------------------------
# SEQNO reservation

def _lock_seqno_row(conn: Connection, tables: DbiTables) -> int | None:
    """Lock the table's own LOCALSEQNO row and return its value; None when the table has no row."""
    ls = tables.localseqno
    row = conn.execute(sa.select(ls.c.LASTUSEDSEQNO).where(ls.c.TABLENAME == tables.name)
                       .with_for_update()).first()
    return None if row is None else (row[0] or 0)


def _add_seqno_row(engine: Engine, tables: DbiTables) -> None:
    """Give the table its LOCALSEQNO row, a copy of '*', in a transaction of its own.

    Not inside the write transaction: on InnoDB a locking read of a missing key takes a gap lock,
    and two writers each holding that gap and then inserting the row deadlock. A copy of '*' keeps
    DBI's meaning ("the table's row, or '*' when absent"); create_tables normally made it already.
    """
    with engine.begin() as conn:
        for stmt in seqno_row_insert(tables):
            conn.execute(stmt)


def _reserve(conn: Connection, tables: DbiTables, last: int, n: int) -> int:
    """Reserve n SEQNOs after last (the locked LOCALSEQNO value) and any SEQNO in use; return the first."""
    used = [sa.func.coalesce(sa.select(sa.func.max(t.c.SEQNO)).scalar_subquery(), 0)
            for t in (tables.vld, tables.payload)]
    max_seqno = max(conn.execute(sa.select(*used)).one())
    if max_seqno > last:
        # Someone wrote rows without LOCALSEQNO (a restored dump, a hand fix, a MyISAM write whose
        # LOCALSEQNO update was lost): never reuse a SEQNO, not even one holding only payload rows.
        log.warning("seqno_repair", table=tables.name, localseqno=last, max_seqno=max_seqno)
        last = max_seqno
    ls = tables.localseqno
    conn.execute(sa.update(ls).where(ls.c.TABLENAME == tables.name).values(LASTUSEDSEQNO=last + n))
    return last + 1


# ----------------------------------------------------------------------------------------------------------
# Overlay versioning

def _versiondates(conn: Connection, tables: DbiTables, records: Sequence[_Checked],
                  seqnos: Sequence[int]) -> list[datetime]:
    """VERSIONDATE of each record, as if the records were written one after the other.

    The overlay winner for a record is the best of two candidates, by (VERSIONDATE, SEQNO): the
    target's answer to the context query, and the earlier records of this batch that the same query
    would have found had they been written first (they have the higher SEQNOs). When a context has
    several records in the batch, one query for its latest TIMEEND tells which records start after
    everything in the target, and those need no query of their own: the averager's time-ordered
    batches cost one query per context, not one per record.
    """
    overlaid = Counter(r.context for r in records if r.versiondate is None)
    target_end: dict[Context, datetime | None] = {}
    # Earlier batch records, grouped by the part of the context matched by equality; for each group
    # the latest end seen, so a record starting after it skips the scan.
    earlier: dict[tuple[int, int, int], list[tuple[_Checked, datetime, int]]] = defaultdict(list)
    earlier_end: dict[tuple[int, int, int], datetime] = {}
    out: list[datetime] = []
    for rec, seqno in zip(records, seqnos, strict=True):
        ctx, t = rec.context, rec.timestart
        key = (ctx.subsite, ctx.task, ctx.aggregateno)
        vdate = rec.versiondate
        if vdate is None:
            best: tuple[datetime, int] | None = None
            if overlaid[ctx] > 1 and ctx not in target_end:
                target_end[ctx] = reader.latest_timeend(conn, tables, ctx)
            end = target_end.get(ctx, END_OF_TIME)
            if end is not None and t < end:
                vld = reader.best_vld(conn, tables, t, ctx)
                if vld is not None:
                    best = (vld.versiondate, vld.seqno)
            if t < earlier_end.get(key, BEGINNING_OF_TIME):
                for other, other_vdate, other_seqno in earlier[key]:
                    if other.timestart <= t < other.timeend and other.context.serves(ctx):
                        best = max(best or (other_vdate, other_seqno), (other_vdate, other_seqno))
            vdate = t if best is None else best[0] + OVERLAY_STEP
        earlier[key].append((rec, vdate, seqno))
        earlier_end[key] = max(earlier_end.get(key, rec.timeend), rec.timeend)
        out.append(vdate)
    return out


# ----------------------------------------------------------------------------------------------------------
# Writing

def write(engine: Engine, tables: DbiTables, record: Record, fences: Sequence[Fence] = ()) -> int:
    """Write one validity record and its payload rows in one transaction; return its SEQNO."""
    return write_many(engine, tables, [record], fences)[0]


def _check_fences(conn: Connection, tables: DbiTables, fences: Sequence[Fence]) -> None:
    """WriteConflict when a Vld row of a fenced context was written after the fence's `seen`."""
    for f in fences:
        found = conn.execute(reader.written_after_select(tables, f.context, f.seen)).scalar()
        if found is not None:
            raise WriteConflict(tables.name, f.context.asdict(), f.seqno, found)


def write_many(engine: Engine, tables: DbiTables, records: Sequence[Record],
               fences: Sequence[Fence] = ()) -> list[int]:
    """Write records in one transaction with consecutive SEQNOs, in order; return the SEQNOs.

    One LOCALSEQNO update for the batch, one executemany for the payload rows and one for the Vld
    rows. fences: checked under the lock before anything is written (WriteConflict, nothing written).
    On a non-transactional target the transaction is LOCK TABLES (see the module docstring).
    """
    checked = [_check(tables, r, i) for i, r in enumerate(records)]
    if not checked:
        return []
    transactional = tables.transactional
    if transactional is None:  # tables_for()'s tables: ask the server (create_tables() did it once)
        with engine.connect() as conn:
            transactional = is_transactional(engines(conn, tables))
    locked = _transaction if transactional else _table_locks
    for attempt in range(2):
        with locked(engine, tables) as conn:
            last = _lock_seqno_row(conn, tables)
            if last is not None:
                _check_fences(conn, tables, fences)
                return _insert(conn, tables, checked, _reserve(conn, tables, last, len(checked)))
        # The table had no LOCALSEQNO row: nothing was written and the transaction (or lock) is over.
        if attempt == 0:
            _add_seqno_row(engine, tables)
    raise DataError(f"LOCALSEQNO has no row for {tables.name} even after adding one")


def _transaction(engine: Engine, tables: DbiTables) -> AbstractContextManager[Connection]:
    """InnoDB, SQLite: one transaction; its LOCALSEQNO row lock serialises the table's writers."""
    return engine.begin()


@contextmanager
def _table_locks(engine: Engine, tables: DbiTables) -> Iterator[Connection]:
    """MyISAM and other engines without transactions: the three tables write-locked, as DBI did.

    LOCK TABLES commits an open transaction, so it comes first; a transactional table among the
    three (mixed engines) is committed before UNLOCK TABLES, as the server's manual asks.
    """
    quote = engine.dialect.identifier_preparer.quote
    # identifiers from our own Table objects, quoted by the dialect: LOCK TABLES has no Core construct
    lock = "LOCK TABLES " + ", ".join(f"{quote(t.name)} WRITE" for t in (tables.payload, tables.vld,
                                                                         tables.localseqno))
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(lock)
            yield conn
            conn.commit()
        except BaseException:
            _unlock(conn, failed=True)
            raise
        _unlock(conn, failed=False)


def _unlock(conn: Connection, *, failed: bool) -> None:
    """UNLOCK TABLES: a connection going back to the pool must never keep its table locks. When the
    server cannot be told, the connection is dropped instead (the server releases a closed session's)."""
    if conn.invalidated:  # lost with its session, and its locks with it
        return
    try:
        if failed:
            conn.rollback()
        conn.exec_driver_sql("UNLOCK TABLES")
        conn.commit()
    except sa.exc.DBAPIError:
        conn.invalidate()
        if not failed:  # the write itself went through; the caller learns of the lost connection
            raise


def _insert(conn: Connection, tables: DbiTables, records: list[_Checked], first: int) -> list[int]:
    seqnos = list(range(first, first + len(records)))
    vdates = _versiondates(conn, tables, records, seqnos)
    inserted = utcnow()
    # Payload rows first: where there is no transaction (MyISAM), a write cut off here leaves payload
    # rows no context query finds, never a Vld row without its payload.
    payload = [{"SEQNO": seqno, "ROW_COUNTER": counter, **row}
               for r, seqno in zip(records, seqnos, strict=True)
               for counter, row in enumerate(r.rows, start=1)]
    if payload:
        conn.execute(sa.insert(tables.payload), payload)
    conn.execute(sa.insert(tables.vld), [
        {"SEQNO": seqno, "TIMESTART": r.timestart, "TIMEEND": r.timeend, "SITEMASK": r.context.sitemask,
         "SIMMASK": r.context.simmask, "SUBSITE": r.context.subsite, "TASK": r.context.task,
         "AGGREGATENO": r.context.aggregateno, "VERSIONDATE": vdate, "INSERTDATE": inserted}
        for r, seqno, vdate in zip(records, seqnos, vdates, strict=True)])
    for r, seqno in zip(records, seqnos, strict=True):
        if not r.rows:
            log.warning("empty_record", table=tables.name, seqno=seqno, timestart=r.timestart, timeend=r.timeend)
    return seqnos
