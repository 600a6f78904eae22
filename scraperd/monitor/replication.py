"""The replication check: is every replica of the DBI chain (offline_db master first, then each slave
replicated from the one before) in step with the hop before it?

    check_chain(["offline_db", "offline_db_slave1", "offline_db_slave2"], 100, timedelta(hours=1),
                lambda name: dbs.engine(name, readonly=True))
    -> [CheckResult(check="replication", state=State.WARNING, table="DcsAdTemp",
                    context="offline_db->offline_db_slave1",
                    summary="offline_db->offline_db_slave1: 130 SEQNOs behind (4120 vs 3990), "
                            "INSERTDATE 1:05:00 behind"), ...]

The DBI tables are the master's: every table T that has a TVld table beside it. On each hop, per
table, one statement reads three numbers (Head): T's LOCALSEQNO.LASTUSEDSEQNO, the highest SEQNO of
TVld and the INSERTDATE of that highest SEQNO's row. That INSERTDATE stands for the table's newest
one: INSERTDATE has no index, so max(INSERTDATE) would scan the whole Vld table at every round, while
the row of the largest SEQNO is a primary-key lookup; DBI allocates SEQNOs in the order records are
inserted, so the two agree but for writers racing within a second.

Hop i (i >= 1) is compared with hop i-1, per table, as `context="<prev>-><this>"` (config names, which
never hold a password: a URL is shown without it):

    SEQNOs behind   the larger shortfall of the two SEQNOs (LOCALSEQNO, max Vld SEQNO), each compared
                    only when both hops have it (an empty Vld table is 0)
    INSERTDATE lag  prev's newest INSERTDATE - this one's
    OK              both within replica_max_seqnos and replica_max_lag ("in step: ..." when equal)
    WARNING         behind by more than either limit, or AHEAD of the hop before (more SEQNOs: a
                    replica written to directly?)
    CRITICAL        behind by more than twice either limit, or the table missing on the replica

Unreachable hops, kept simple: a replica that cannot be read gives one CRITICAL result for its hop
(table None) and is then skipped, the next replica being compared with the last hop that could be
read (its context names that one: "offline_db->slave2"). Likewise a table missing on a replica is
CRITICAL there, and compared on the next replicas with the last hop that had it. A master that cannot be read gives one UNKNOWN result (context: the master's name) and
nothing else: there is nothing to compare with; so does a master without any DBI table. A chain of fewer than two databases gives no result.

Reads only, through the engines the caller gives (engine_for: read-only, by config name); every
error met becomes a result with a one-line reason (status.compute.brief), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from scraperd import databases
from scraperd.dbi.tables import LOCALSEQNO
from scraperd.monitor.results import CheckResult, State, worst
from scraperd.status.compute import READ_ERRORS, brief

CHECK = "replication"
TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Head:
    """How far one DBI table of one hop goes."""

    localseqno: int | None       # LOCALSEQNO.LASTUSEDSEQNO of the table; None: no such row
    seqno: int                   # the highest SEQNO of the Vld table (0 when it is empty)
    insertdate: datetime | None  # the INSERTDATE of that SEQNO's row; None when the table is empty

    def text(self) -> str:
        return (f"LOCALSEQNO {'-' if self.localseqno is None else self.localseqno}, max SEQNO {self.seqno}, "
                f"INSERTDATE {self.insertdate.strftime(TIME) if self.insertdate else '-'}")


Heads = dict[str, Head | None]  # table -> its head on one hop; None: the table is missing there


# ----------------------------------------------------------------------------------------------------------
# reading one hop


def dbi_tables(conn: Connection) -> list[str]:
    """The DBI tables of a database: each T with a TVld beside it, in name order."""
    names = set(sa.inspect(conn).get_table_names())
    return sorted(n for n in names if f"{n}Vld" in names and n != LOCALSEQNO)


def head_select(table: str, with_localseqno: bool) -> sa.Select[Any]:
    """One statement: the table's LOCALSEQNO row, its highest Vld SEQNO and that row's INSERTDATE."""
    vld = sa.table(f"{table}Vld", sa.column("SEQNO", sa.Integer()),
                   sa.column("INSERTDATE", databases.datetime_type()))
    ls = sa.table(LOCALSEQNO, sa.column("TABLENAME", sa.String()), sa.column("LASTUSEDSEQNO", sa.Integer()))
    newest = sa.select(vld.c.SEQNO, vld.c.INSERTDATE).order_by(vld.c.SEQNO.desc()).limit(1).subquery()
    localseqno: sa.ColumnElement[Any] = (
        sa.select(ls.c.LASTUSEDSEQNO).where(ls.c.TABLENAME == table).scalar_subquery() if with_localseqno
        else sa.null())
    return (sa.select(localseqno.label("localseqno"), sa.select(newest.c.SEQNO).scalar_subquery().label("seqno"),
                      sa.select(newest.c.INSERTDATE).scalar_subquery().label("insertdate")))


def read_heads(engine: Engine, tables: Sequence[str] | None = None) -> Heads:
    """The head of each named DBI table on one database (None for one it lacks); tables=None: all of
    its own DBI tables (the master's)."""
    with engine.connect() as conn:
        names = {n.lower(): n for n in sa.inspect(conn).get_table_names()}  # lower_case_table_names=1
        present = dbi_tables(conn) if tables is None else [
            t for t in tables if t.lower() in names and f"{t}Vld".lower() in names]
        with_localseqno = LOCALSEQNO.lower() in names
        out: Heads = dict.fromkeys(tables or (), None)
        for table in present:
            row = conn.execute(head_select(table, with_localseqno)).one()
            out[table] = Head(localseqno=row.localseqno, seqno=row.seqno or 0, insertdate=row.insertdate)
        return out


# ----------------------------------------------------------------------------------------------------------
# comparing two hops (pure)


def _duration(d: timedelta) -> str:
    return str(timedelta(seconds=int(d.total_seconds())))


def _state(amount: float, limit: float) -> State:
    if amount > 2 * limit:
        return State.CRITICAL
    return State.WARNING if amount > limit else State.OK


def compare(hop: str, table: str, prev: Head, this: Head | None, max_seqnos: int,
            max_lag: timedelta) -> CheckResult:
    """One table of one hop: this replica's head against the head of the hop before it."""
    result: dict[str, Any] = {"check": CHECK, "table": table, "context": hop}
    if this is None:
        return CheckResult(**result, state=State.CRITICAL, summary=f"{hop}: table {table} missing on the replica",
                           details=f"before: {prev.text()}")
    details = f"before: {prev.text()}\nreplica: {this.text()}"
    pairs = [("SEQNO", prev.seqno, this.seqno)]
    if prev.localseqno is not None and this.localseqno is not None:
        pairs.append(("LOCALSEQNO", prev.localseqno, this.localseqno))
    behind = max(pairs, key=lambda p: p[1] - p[2])
    ahead = max(pairs, key=lambda p: p[2] - p[1])
    lag = (prev.insertdate - this.insertdate if prev.insertdate is not None and this.insertdate is not None
           else timedelta(0))
    states, parts = [], []
    if ahead[2] > ahead[1]:
        states.append(State.WARNING)
        parts.append(f"ahead of {hop.rsplit('->', 1)[0]}: {ahead[0]} {ahead[2]} vs {ahead[1]}: written to directly?")
    if (n := behind[1] - behind[2]) > 0:
        states.append(_state(n, max_seqnos))
        label = "" if behind[0] == "SEQNO" else "LOCALSEQNO "
        parts.append(f"{n} SEQNOs behind ({label}{behind[1]} vs {behind[2]})")
    if lag > timedelta(0):
        states.append(_state(lag.total_seconds(), max_lag.total_seconds()))
        parts.append(f"INSERTDATE {_duration(lag)} behind")
    state = worst(states)
    if not parts:
        when = prev.insertdate.strftime(TIME) if prev.insertdate else "-"
        summary = f"in step: SEQNO {prev.seqno}, INSERTDATE {when}"
    else:
        summary = ", ".join(parts) + (" (within limits)" if state is State.OK else "")
    return CheckResult(**result, state=state, summary=f"{hop}: {summary}", details=details)


# ----------------------------------------------------------------------------------------------------------
# the chain


def check_chain(chain: Sequence[str], max_seqnos: int, max_lag: timedelta,
                engine_for: Callable[[str], Engine]) -> list[CheckResult]:
    """One result per DBI table of the master per replica hop (see the module docstring for the states,
    and for unreachable hops: CRITICAL for a replica, UNKNOWN for the master); [] for a chain under 2."""
    if len(chain) < 2:
        return []
    shown = {name: databases.describe_text(name) for name in chain}  # a URL's password never in a result
    master = chain[0]
    try:
        last: Heads = read_heads(engine_for(master))
    except READ_ERRORS as exc:
        return [CheckResult(check=CHECK, state=State.UNKNOWN, context=shown[master], unreadable=True,
                            summary=f"master {shown[master]} cannot be read, nothing to compare: {brief(exc)}")]
    tables = sorted(last)
    if not tables:  # a wrong database named as master must not pass for a chain in step
        return [CheckResult(check=CHECK, state=State.UNKNOWN, context=shown[master],
                            summary=f"master {shown[master]} holds no DBI table (T beside TVld): nothing to compare")]
    heads_of: dict[str, Head] = {t: h for t, h in last.items() if h is not None}
    seen_at = dict.fromkeys(tables, master)  # the last hop that had each table (its head in heads_of)
    reachable = master  # the last hop that could be read
    results: list[CheckResult] = []
    for name in chain[1:]:
        try:
            heads = read_heads(engine_for(name), tables)
        except READ_ERRORS as exc:
            hop = f"{shown[reachable]}->{shown[name]}"
            results.append(CheckResult(check=CHECK, state=State.CRITICAL, context=hop, unreadable=True,
                                       summary=f"{hop}: replica {shown[name]} cannot be read: {brief(exc)}"))
            continue
        reachable = name
        for table in tables:
            hop = f"{shown[seen_at[table]]}->{shown[name]}"
            results.append(compare(hop, table, heads_of[table], heads[table], max_seqnos, max_lag))
            if (head := heads[table]) is not None:
                heads_of[table], seen_at[table] = head, name
    return results
