"""The replication check on real databases (SQLite files and MariaDB): a master written through the DBI
writer, replicas fed by the test (INSERT ... SELECT across databases), compared hop by hop."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from scraperd.dbi.context import Context
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import DbiTables, create_tables
from scraperd.dbi.writer import Record, write, write_many
from scraperd.monitor.replication import check_chain
from scraperd.monitor.results import CheckResult, State
from scraperd.status.compute import Databases
from tests.scrapekit import url_text

if TYPE_CHECKING:
    from tests.conftest import TestDB

SPECS = ("DcsAdTemp", "DcsPmtHv")
T0 = datetime(2012, 1, 1)
CTX = Context(sitemask=1, subsite=1)
HOUR = timedelta(hours=1)
INSERTED = datetime(2026, 1, 1, 12)


def dbi(db: TestDB, specs: Sequence[str] = SPECS) -> dict[str, DbiTables]:
    return {name: create_tables(db.engine, find_spec(name)) for name in specs}


def write_records(db: TestDB, tables: DbiTables, n: int) -> None:
    """n more one-minute records after the table's last, inserted (INSERTDATE) at INSERTED: the clock
    ticking between two writes never makes a lag."""
    with db.engine.connect() as conn:
        done = conn.execute(sa.select(sa.func.count()).select_from(tables.vld)).scalar() or 0
    write_many(db.engine, tables, [Record(T0 + timedelta(minutes=done + i), T0 + timedelta(minutes=done + i + 1),
                                          CTX, [{}]) for i in range(n)])
    set_insertdate(db, tables.name, INSERTED, above_seqno=done)


def master(db: TestDB, n: int = 5) -> dict[str, DbiTables]:
    tables = dbi(db)
    for t in tables.values():
        write_records(db, t, n)
    return tables


def _name(db: TestDB) -> str:
    return str(db.url.database)


def feed(src: TestDB, dst: TestDB, names: Sequence[str] = SPECS) -> None:
    """Replicate: dst's tables (and their LOCALSEQNO rows) become a copy of src's."""
    statements = []
    for name in names:
        for table in (name, f"{name}Vld"):
            statements += [f"DELETE FROM {{dst}}{table}", f"INSERT INTO {{dst}}{table} SELECT * FROM {{src}}{table}"]
        statements += [f"DELETE FROM {{dst}}LOCALSEQNO WHERE TABLENAME = '{name}'",
                       f"INSERT INTO {{dst}}LOCALSEQNO SELECT * FROM {{src}}LOCALSEQNO WHERE TABLENAME = '{name}'"]
    if src.backend == "mysql":
        with dst.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql.format(src=f"`{_name(src)}`.", dst=f"`{_name(dst)}`."))
        return
    conn = sqlite3.connect(str(dst.url.database), isolation_level=None)  # ATTACH refuses to run in a transaction
    try:
        conn.execute("ATTACH DATABASE ? AS src", (str(src.url.database),))
        conn.execute("BEGIN")
        for sql in statements:
            conn.execute(sql.format(src="src.", dst=""))
        conn.execute("COMMIT")
    finally:
        conn.close()


def set_insertdate(db: TestDB, table: str, when: datetime, above_seqno: int = 0) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table}Vld SET INSERTDATE = :t WHERE SEQNO > :n"),
                     {"t": when.strftime("%Y-%m-%d %H:%M:%S"), "n": above_seqno})


def engines(**hops: TestDB) -> Callable[[str], sa.Engine]:
    return lambda name: hops[name].engine


def by_table(results: list[CheckResult]) -> dict[tuple[str | None, str | None], CheckResult]:
    return {(r.context, r.table): r for r in results}


def test_a_chain_of_fewer_than_two_databases_checks_nothing():
    assert check_chain([], 100, HOUR, engines()) == []
    assert check_chain(["offline_db"], 100, HOUR, engines()) == []


def test_a_replica_in_step_is_ok_per_table_and_hop(make_db):
    m, r = make_db("m"), make_db("r")
    master(m)
    dbi(r)
    feed(m, r)
    results = check_chain(["offline_db", "slave1"], 100, HOUR, engines(offline_db=m, slave1=r))
    assert [(x.check, x.state, x.table, x.context, x.section) for x in results] == [
        ("replication", State.OK, "DcsAdTemp", "offline_db->slave1", None),
        ("replication", State.OK, "DcsPmtHv", "offline_db->slave1", None)]
    assert all(x.summary == "offline_db->slave1: in step: SEQNO 5, INSERTDATE 2026-01-01 12:00:00" for x in results)
    assert "LOCALSEQNO 5, max SEQNO 5" in results[0].details


def test_master_writing_on_makes_the_replica_warning_then_critical_by_the_seqno_limit(make_db):
    m, r = make_db("m"), make_db("r")
    tables = master(m)
    dbi(r)
    feed(m, r)
    write_records(m, tables["DcsAdTemp"], 3)
    chain, hops = ["offline_db", "slave1"], engines(offline_db=m, slave1=r)

    def states(max_seqnos: int) -> dict[str | None, State]:
        return {x.table: x.state for x in check_chain(chain, max_seqnos, HOUR, hops)}

    assert states(3) == {"DcsAdTemp": State.OK, "DcsPmtHv": State.OK}         # 3 behind: not more than 3
    assert states(2) == {"DcsAdTemp": State.WARNING, "DcsPmtHv": State.OK}    # more than 2, not more than 4
    assert states(1) == {"DcsAdTemp": State.CRITICAL, "DcsPmtHv": State.OK}   # more than twice 1
    temp = by_table(check_chain(chain, 2, HOUR, hops))[("offline_db->slave1", "DcsAdTemp")]
    assert temp.summary == "offline_db->slave1: 3 SEQNOs behind (8 vs 5)"
    assert temp.line().startswith("WARNING  replication DcsAdTemp offline_db->slave1: ")
    feed(m, r)  # replication catches up
    assert states(0) == {"DcsAdTemp": State.OK, "DcsPmtHv": State.OK}


def test_an_insertdate_lag_is_warning_then_critical_by_the_lag_limit(make_db):
    m, r = make_db("m"), make_db("r")
    tables = master(m)
    dbi(r)
    feed(m, r)
    write_records(m, tables["DcsAdTemp"], 3)
    set_insertdate(m, "DcsAdTemp", datetime(2026, 1, 1, 13, 5), above_seqno=5)
    chain, hops = ["offline_db", "slave1"], engines(offline_db=m, slave1=r)
    temp = by_table(check_chain(chain, 100, HOUR, hops))[("offline_db->slave1", "DcsAdTemp")]
    assert (temp.state, temp.summary) == (
        State.WARNING, "offline_db->slave1: 3 SEQNOs behind (8 vs 5), INSERTDATE 1:05:00 behind")
    temp = by_table(check_chain(chain, 100, timedelta(minutes=30), hops))[("offline_db->slave1", "DcsAdTemp")]
    assert temp.state is State.CRITICAL  # more than twice 30 minutes
    assert by_table(check_chain(chain, 100, 2 * HOUR, hops))[("offline_db->slave1", "DcsAdTemp")].state is State.OK


def test_a_replica_ahead_of_its_master_is_a_warning(make_db):
    m, r = make_db("m"), make_db("r")
    master(m)
    replica = dbi(r)
    feed(m, r)
    write(r.engine, replica["DcsPmtHv"], Record(T0 + timedelta(days=1), T0 + timedelta(days=2), CTX, [{}]))
    results = by_table(check_chain(["offline_db", "slave1"], 100, HOUR, engines(offline_db=m, slave1=r)))
    pmthv = results[("offline_db->slave1", "DcsPmtHv")]
    assert pmthv.state is State.WARNING
    assert pmthv.summary.startswith("offline_db->slave1: ahead of offline_db: SEQNO 6 vs 5: written to directly?")
    assert results[("offline_db->slave1", "DcsAdTemp")].state is State.OK


def test_a_table_missing_on_the_replica_is_critical(make_db):
    m, r = make_db("m"), make_db("r")
    master(m)
    dbi(r, ["DcsAdTemp"])
    feed(m, r, ["DcsAdTemp"])
    results = by_table(check_chain(["offline_db", "slave1"], 100, HOUR, engines(offline_db=m, slave1=r)))
    missing = results[("offline_db->slave1", "DcsPmtHv")]
    assert (missing.state, missing.summary) == (State.CRITICAL, "offline_db->slave1: table DcsPmtHv missing on "
                                                                "the replica")
    assert results[("offline_db->slave1", "DcsAdTemp")].state is State.OK


def test_three_hops_where_only_the_last_lags_name_that_hop(make_db):
    m, s1, s2 = make_db("m"), make_db("s1"), make_db("s2")
    tables = master(m)
    dbi(s1)
    dbi(s2)
    feed(m, s1)
    feed(s1, s2)
    write_records(m, tables["DcsAdTemp"], 3)
    feed(m, s1)  # slave1 follows its master, slave2 does not
    results = check_chain(["offline_db", "slave1", "slave2"], 2, HOUR, engines(offline_db=m, slave1=s1, slave2=s2))
    assert [(x.context, x.table, x.state) for x in results] == [
        ("offline_db->slave1", "DcsAdTemp", State.OK), ("offline_db->slave1", "DcsPmtHv", State.OK),
        ("slave1->slave2", "DcsAdTemp", State.WARNING), ("slave1->slave2", "DcsPmtHv", State.OK)]
    assert results[2].summary == "slave1->slave2: 3 SEQNOs behind (8 vs 5)"


def _unreachable(backend: str, tmp_path) -> str:
    if backend == "mysql":  # a closed port, with a password that must never be shown
        return "mysql+mysqldb://nobody:s3cr3t-pw@127.0.0.1:1/none"
    return f"sqlite:///{tmp_path / 'gone' / 'slave.db'}"


def test_an_unreachable_replica_is_one_critical_and_the_next_is_compared_with_the_last_reachable(
        make_db, backend, tmp_path):
    m, s2 = make_db("m"), make_db("s2")
    master(m)
    dbi(s2)
    feed(m, s2)
    gone = _unreachable(backend, tmp_path)
    chain = [url_text(m), gone, url_text(s2)]
    with Databases() as dbs:
        results = check_chain(chain, 100, HOUR, lambda name: dbs.engine(name, readonly=True))
    first, *rest = results
    assert (first.state, first.table, first.check) == (State.CRITICAL, None, "replication")
    assert "cannot be read" in first.summary and first.summary.startswith(f"{first.context}: replica ")
    assert all("s3cr3t-pw" not in " ".join(map(str, x.asdict().values())) for x in results)
    assert "\n" not in first.summary and "Traceback" not in first.summary
    assert [(x.table, x.state) for x in rest] == [("DcsAdTemp", State.OK), ("DcsPmtHv", State.OK)]
    assert {x.context for x in rest} == {f"{url_text(m)}->{url_text(s2)}"}
    assert not (tmp_path / "gone").exists()  # read only: nothing created


def test_an_unreachable_master_is_one_unknown(make_db, backend, tmp_path):
    r = make_db("r")
    dbi(r)
    gone = _unreachable(backend, tmp_path)
    with Databases() as dbs:
        results = check_chain([gone, url_text(r)], 100, HOUR, lambda name: dbs.engine(name, readonly=True))
    [only] = results
    assert (only.state, only.table, only.check) == (State.UNKNOWN, None, "replication")
    assert "nothing to compare" in only.summary and "s3cr3t-pw" not in only.summary + str(only.context)


def test_a_master_without_dbi_tables_is_unknown_not_in_step(make_db):
    m, r = make_db("m"), make_db("r")
    dbi(r)
    [only] = check_chain(["offline_db", "slave1"], 100, HOUR, engines(offline_db=m, slave1=r))
    assert only.state is State.UNKNOWN and "no DBI table" in only.summary


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_sqlite_chain_of_two_files_runs_without_a_server(make_db):
    m, r = make_db("m"), make_db("r")
    tables = master(m)
    dbi(r)
    feed(m, r)
    write_records(m, tables["DcsPmtHv"], 250)
    results = check_chain(["m.db", "r.db"], 100, HOUR, engines(**{"m.db": m, "r.db": r}))
    assert [(x.table, x.state) for x in results] == [("DcsAdTemp", State.OK), ("DcsPmtHv", State.CRITICAL)]
    assert results[1].summary == "m.db->r.db: 250 SEQNOs behind (255 vs 5)"
