"""MyISAM targets (a legacy offline_db): writes under LOCK TABLES, SEQNOs never collide or repeat.

FOR UPDATE locks nothing on MyISAM and nothing rolls back, so the writer write-locks the three
tables for each write, as DBI did, and writes the payload rows before the Vld rows: a crash leaves
at worst payload rows without their Vld row, whose SEQNO is never used again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
import structlog

from scraperd import cli, databases
from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import DbiTables, create_tables, engines, tables_for
from scraperd.dbi.writer import Fence, Record, write, write_many
from scraperd.errors import WriteConflict
from tests.conftest import wait_until
from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg
from tests.sourcedata import create_source, insert_rows
from tests.test_dbi_writer import (
    check_whole_records,
    localseqno,
    payload_rows,
    refuse_vld_insert,
    start_writer,
    statements,
    vld_rows,
    write_together,
)
from tests.test_fenced_writes import _lid_rows, assert_stale_fences_write_nothing

if TYPE_CHECKING:
    from tests.conftest import TestDB

MYSQL = pytest.param("mysql", marks=pytest.mark.mysql)
T0 = datetime(2012, 1, 1)
CTX = Context(sitemask=1, subsite=1)
ALL = ("payload", "vld", "localseqno")


def to_myisam(db: TestDB, spec_name: str = "DcsPmtHv", which: Sequence[str] = ALL) -> DbiTables:
    """The spec's tables, made MyISAM (`which` of them), as a daemon's start-up then finds them."""
    tables = create_tables(db.engine, find_spec(spec_name))
    with db.engine.begin() as conn:
        for name in which:
            conn.exec_driver_sql(f"ALTER TABLE `{getattr(tables, name).name}` ENGINE=MyISAM")
    with structlog.testing.capture_logs():
        return create_tables(db.engine, find_spec(spec_name))


def locked_tables(db: TestDB) -> set[str]:
    """The tables of db some session holds a table lock on (or waits for), seen from another session."""
    with db.engine.connect() as conn:
        return {r[1] for r in conn.exec_driver_sql(f"SHOW OPEN TABLES FROM `{db.url.database}` WHERE In_use > 0")}


def waiting_for_lock(db: TestDB) -> bool:
    """Whether a session of db is waiting in LOCK TABLES."""
    with db.engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND INFO LIKE 'LOCK TABLES%' AND STATE LIKE '%lock%'")).scalar())


def hv_record(i: int, ctx: Context = CTX, k: int = 1) -> Record:
    return Record(T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1), ctx,
                  [{"ladder": n, "col": k, "ring": ctx.subsite, "voltage": i / 10, "pw": 1} for n in range(1, k + 1)])


# ----------------------------------------------------------------------------------------------------------
# Detection

@pytest.mark.parametrize("backend", [MYSQL])
def test_engines_are_read_at_create_tables_and_only_innodb_is_transactional(db: TestDB) -> None:
    innodb = create_tables(db.engine, find_spec("DcsPmtHv"))
    assert innodb.engines == {"DcsPmtHv": "InnoDB", "DcsPmtHvVld": "InnoDB", "LOCALSEQNO": "InnoDB"}
    assert innodb.transactional is True
    assert tables_for(find_spec("DcsPmtHv")).transactional is None  # not read: the writer asks
    mixed = to_myisam(db, which=("vld",))
    assert mixed.engines == {"DcsPmtHv": "InnoDB", "DcsPmtHvVld": "MyISAM", "LOCALSEQNO": "InnoDB"}
    assert mixed.transactional is False
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE DcsPmtHvVld ENGINE=Aria TRANSACTIONAL=1")  # crash-safe, no rollback
        assert engines(conn, innodb)["DcsPmtHvVld"] == "Aria"
    assert create_tables(db.engine, find_spec("DcsPmtHv")).transactional is False


@pytest.mark.parametrize("backend", [MYSQL])
@pytest.mark.parametrize("opened", ["create_tables", "tables_for"])
def test_myisam_writes_take_lock_tables_and_innodb_writes_do_not(db: TestDB, opened: str) -> None:
    innodb = create_tables(db.engine, find_spec("DcsAdTemp"))
    myisam = to_myisam(db, which=("payload", "vld"))  # LOCALSEQNO is shared: InnoDB, for DcsAdTemp
    if opened == "tables_for":
        innodb, myisam = tables_for(innodb.spec), tables_for(myisam.spec)
    record = Record(T0, T0 + timedelta(minutes=1), CTX, [{}])
    with statements(db.engine) as seen:
        write(db.engine, innodb, record)
    assert not [s for s in seen if "LOCK TABLES" in s]
    with statements(db.engine) as seen:
        write(db.engine, myisam, hv_record(0))
    locks = [s for s in seen if "LOCK TABLES" in s]
    assert locks == ["LOCK TABLES `DcsPmtHv` WRITE, `DcsPmtHvVld` WRITE, `LOCALSEQNO` WRITE", "UNLOCK TABLES"]
    assert seen.index(locks[0]) < min(i for i, s in enumerate(seen) if "LOCALSEQNO" in s and "SELECT" in s)
    inserts = [s for s in seen if s.startswith("INSERT")]
    assert [s.split()[2] for s in inserts] == ["`DcsPmtHv`", "`DcsPmtHvVld`"]  # payload first
    assert locked_tables(db) == set()


# ----------------------------------------------------------------------------------------------------------
# Several processes, and crashes

@pytest.mark.slow
@pytest.mark.parametrize("backend", [MYSQL])
@pytest.mark.parametrize("which", [ALL, ("payload", "vld")], ids=["all MyISAM", "LOCALSEQNO InnoDB"])
def test_three_writers_on_myisam_get_seqnos_1_to_900_each_record_whole(db: TestDB, tmp_path: Path,
                                                                       which: Sequence[str]) -> None:
    # Before LOCK TABLES: IntegrityError 1062 Duplicate entry for key 'PRIMARY' within a few writes.
    tables = to_myisam(db, which=which)
    write_together(db, tmp_path, (1, 2, 3), 300)
    vlds = check_whole_records(db, tables)
    assert [v["SEQNO"] for v in vlds] == list(range(1, 901))
    for w in (1, 2, 3):
        assert sorted(v["TIMESTART"] for v in vlds if v["SUBSITE"] == w) == [T0 + timedelta(minutes=i)
                                                                              for i in range(300)]
    writers = [v["SUBSITE"] for v in vlds]
    switches = sum(1 for a, b in zip(writers, writers[1:], strict=False) if a != b)
    assert switches >= 2, "the writers did not overlap in time; the test proved nothing"
    assert locked_tables(db) == set()


@pytest.mark.parametrize("backend", [MYSQL])
def test_writer_killed_between_payload_and_vld_on_myisam_leaves_an_orphan_whose_seqno_is_skipped(
        db: TestDB, tmp_path: Path) -> None:
    tables = to_myisam(db)
    paused = tmp_path / "paused"
    first = start_writer(db, 1, 1000, "--pause-at", 25, "--paused", paused)
    second = None
    try:
        wait_until(paused.exists, timeout=30, what="the writer inside its 25th record, payload rows inserted")
        assert locked_tables(db) == {"DcsPmtHv", "DcsPmtHvVld", "LOCALSEQNO"}
        # (no read here: a WRITE lock keeps every other session out, readers too, as under DBI)
        second = start_writer(db, 2, 50)
        wait_until(lambda: waiting_for_lock(db), timeout=30, what="the second writer waiting in LOCK TABLES")
    except BaseException:
        if second is not None:
            second.kill()
        raise
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert second is not None
    _, err = second.communicate(timeout=60)  # the kill released the lock
    assert second.returncode == 0, err.decode()
    vlds = check_whole_records(db, tables, orphans=[25])
    assert [v["SEQNO"] for v in vlds] == list(range(1, 25)) + list(range(26, 76))
    assert [(r["SEQNO"], r["ROW_COUNTER"], r["ring"]) for r in payload_rows(db, tables) if r["SEQNO"] == 25] == [
        (25, 1, 1)]  # record 24 of writer 1 has 1 + 24 % 3 = 1 row: all of it went in, its Vld row did not
    assert localseqno(db)["DcsPmtHv"] == 75
    assert locked_tables(db) == set()


@pytest.mark.parametrize("backend", [MYSQL])
@pytest.mark.parametrize("which", [ALL, ("payload", "vld")], ids=["all MyISAM", "LOCALSEQNO InnoDB"])
def test_failed_statement_under_lock_tables_unlocks_and_leaves_only_whole_visible_records(
        db: TestDB, which: Sequence[str]) -> None:
    tables = to_myisam(db, which=which)
    refuse_vld_insert(db, tables, 3)  # after all 5 records' payload rows and the Vld rows of 1 and 2
    with pytest.raises(sa.exc.DBAPIError, match="refused"):
        write_many(db.engine, tables, [hv_record(i, k=2) for i in range(5)])
    assert locked_tables(db) == set()
    assert [v["SEQNO"] for v in vld_rows(db, tables)] == [1, 2]  # MyISAM keeps what went in
    with structlog.testing.capture_logs() as logs:
        assert write(db.engine, tables, hv_record(9, Context(1, 9))) == 6
    # records 1 and 2 whole; 3..5 payload rows only, their SEQNOs skipped: kept from reuse by
    # LOCALSEQNO, or, when it is InnoDB and was rolled back, by the payload table's max SEQNO
    assert [v["SEQNO"] for v in check_whole_records(db, tables, orphans=[3, 4, 5])] == [1, 2, 6]
    repairs = [(e["localseqno"], e["max_seqno"]) for e in logs if e["event"] == "seqno_repair"]
    assert repairs == ([] if "localseqno" in which else [(0, 5)])


@pytest.mark.parametrize("backend", [MYSQL])
def test_a_write_on_a_stale_fence_on_myisam_writes_nothing(db: TestDB) -> None:
    assert_stale_fences_write_nothing(db.engine, to_myisam(db))
    assert locked_tables(db) == set()


@pytest.mark.parametrize("backend", [MYSQL])
def test_racing_fenced_writers_on_myisam_never_write_on_the_same_belief(db: TestDB) -> None:
    """Three threads each extend one context's chain of records 100 times, every write fenced on the
    last record the thread read. The fence check is atomic with the insert only under the lock:
    without it two threads pass the check on one belief and both write the next minute."""
    tables = to_myisam(db)
    conflicts: list[int] = []
    failures: list[BaseException] = []

    def extend(n: int) -> None:
        try:
            while n:
                seen = reader.max_seqno(db.engine, tables)  # first, as the daemons do (writer.Fence)
                last = reader.last_validity(db.engine, tables, CTX)
                i = 0 if last is None else int((last.timeend - T0).total_seconds()) // 60
                try:
                    write(db.engine, tables, hv_record(i), [Fence(CTX, None if last is None else last.seqno, seen)])
                    n -= 1
                except WriteConflict:
                    conflicts.append(1)
        except BaseException as exc:  # the test thread reports it
            failures.append(exc)

    threads = [threading.Thread(target=extend, args=(100,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    assert [v["TIMESTART"] for v in vld_rows(db, tables)] == [T0 + timedelta(minutes=i) for i in range(300)]
    assert conflicts, "the writers never raced; the test proved nothing"


# ----------------------------------------------------------------------------------------------------------
# Daemons: the start-up warning, and the same records as on InnoDB

def _temp_rows(n: int) -> list[dict[str, Any]]:
    t0 = datetime(2011, 2, 1)
    return [{"id": i, "date_time": t0 + timedelta(seconds=10 * i),
             **{f"DBNS_SAB_Temp_PT{p}": 20.0 + (i // 4) * 2 + p for p in range(1, 6)}} for i in range(1, n + 1)]


def _scraper_cfg(tmp_path: Path, src: TestDB, targets: dict[str, TestDB]) -> Path:
    keys = {"regime": "scraperd.regimes.adtemp:AdTemp", "mode": "scraper", "source": url_text(src),
            "interval": "10s", "sleep": "0s", "heartbeat": "0.01s", "maxage": "10m", "threshold": "1.0",
            "source_tz": "Asia/Shanghai", "seed_target_tables": "True",
            "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:00:10"}
    return write_cfg(tmp_path / "scraper.cfg", {name: {**keys, "target": url_text(db)} for name, db in targets.items()})


@pytest.mark.parametrize("backend", [MYSQL])
def test_scraper_on_myisam_warns_once_at_startup_and_writes_what_it_writes_on_innodb(make_db, tmp_path):
    src, myisam, innodb = make_db("src"), make_db("myisam"), make_db("innodb")
    create_source(src.url)
    insert_rows(src.url, "DBNS_SAB_Temp", _temp_rows(60))
    to_myisam(myisam, "DcsAdTemp")
    cfg = _scraper_cfg(tmp_path, src, {"on_myisam": myisam, "on_innodb": innodb})
    events = run_section(cfg, "on_myisam", catch_up=True)
    [warning] = events_named(events, "non_transactional_target")
    assert warning == {"event": "non_transactional_target", "log_level": "warning", "table": "DcsAdTemp",
                       "engines": {"DcsAdTemp": "MyISAM", "DcsAdTempVld": "MyISAM", "LOCALSEQNO": "MyISAM"},
                       "locking": "LOCK TABLES",
                       "crash_can_leave": "payload rows without their Vld row: invisible to context queries, "
                                          "their SEQNO never reused; never a Vld row without its payload"}
    assert events.index(warning) < events.index(events_named(events, "startup")[0])
    assert events_named(run_section(cfg, "on_innodb", catch_up=True), "non_transactional_target") == []
    want = target_rows(innodb.engine, "DcsAdTemp")
    assert len(want[0]) > 10
    assert target_rows(myisam.engine, "DcsAdTemp") == want


@pytest.mark.parametrize("backend", ["sqlite", MYSQL])
def test_scraper_on_innodb_or_sqlite_logs_no_non_transactional_warning(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    create_source(src.url)
    insert_rows(src.url, "DBNS_SAB_Temp", _temp_rows(20))
    events = run_section(_scraper_cfg(tmp_path, src, {"s": tgt}), "s", catch_up=True)
    assert events_named(events, "propagate") and events_named(events, "non_transactional_target") == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", [MYSQL])
def test_averager_on_myisam_warns_once_at_startup_and_writes_what_it_writes_on_innodb(make_db, tmp_path):
    src, myisam, innodb = make_db("src"), make_db("myisam"), make_db("innodb")
    create_source(src.url)
    for table in ("AD1_LidSensor", "AD2_LidSensor"):
        insert_rows(src.url, table, _lid_rows(1500))
    to_myisam(myisam, "DcsAdLidSensor")
    avg = {"mode": "averager", "regime": "scraperd.regimes.adlidsensor:AdLidSensor", "binsize": "1m",
           "territory": "1h", "aggregate": "avg,max", "aggregate_skips": "id,date_time,Quality",
           "source": url_text(src)}
    cfg = write_cfg(tmp_path / "avg.cfg", {"on_myisam": {**avg, "target": url_text(myisam)},
                                           "on_innodb": {**avg, "target": url_text(innodb)}})
    events = run_section(cfg, "on_myisam")
    assert [e["table"] for e in events_named(events, "non_transactional_target")] == ["DcsAdLidSensor"]
    assert events_named(run_section(cfg, "on_innodb"), "non_transactional_target") == []
    want = target_rows(innodb.engine, "DcsAdLidSensor")
    assert len(want[0]) > 100
    assert target_rows(myisam.engine, "DcsAdLidSensor") == want


# ----------------------------------------------------------------------------------------------------------
# check-config: the ENGINE column (connects unless --no-connect)

@pytest.mark.parametrize("backend", [MYSQL])
def test_check_config_connect_shows_each_targets_engine(make_db, tmp_path, capsys):
    myisam, innodb, mixed, empty = make_db("myisam"), make_db("innodb"), make_db("mixed"), make_db("empty")
    to_myisam(myisam, "DcsAdTemp")
    create_tables(innodb.engine, find_spec("DcsAdTemp"))
    to_myisam(mixed, "DcsAdTemp", which=("vld",))
    sqlite_url = f"sqlite:///{tmp_path / 'tgt.db'}"
    create_tables(databases.make_engine(sa.engine.make_url(sqlite_url)), find_spec("DcsAdTemp"))
    scraper = {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp", "source": sqlite_url}
    sections = {"on_myisam": myisam, "on_innodb": innodb, "on_mixed": mixed, "on_empty": empty}
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        **{name: {**scraper, "target": url_text(db)} for name, db in sections.items()},
        "on_sqlite": {**scraper, "target": sqlite_url},
        "on_new_sqlite": {**scraper, "target": f"sqlite:///{tmp_path / 'new.db'}"},
        "on_nothing": {**scraper, "target": "mysql+mysqldb://root:sekret@127.0.0.1:1/x"},
        "on_no_db": {**scraper, "target": url_text(innodb).replace(innodb.url.database, "scrt_no_such_db")},
        "on_no_driver": {**scraper, "target": "mysql+nosuchdriver://root@127.0.0.1/x"},
        "faker": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp", "source": sqlite_url},
    })
    assert cli.main(["-c", str(cfg), "check-config", "--no-connect"]) == 0
    assert "ENGINE" not in capsys.readouterr().out  # --no-connect: nothing connects

    assert cli.main(["-c", str(cfg), "check-config"]) == 0  # unreachable is no config error
    out = capsys.readouterr()
    header, *lines = out.out.splitlines()
    start = header.index("ENGINE")
    shown = {line.split()[0]: line[start:header.index("STATUS")].strip() for line in lines[:-1]}
    assert shown == {"on_myisam": "MyISAM (LOCK TABLES)", "on_innodb": "InnoDB",
                     "on_mixed": "DcsAdTemp=InnoDB DcsAdTempVld=MyISAM LOCALSEQNO=InnoDB (LOCK TABLES)",
                     "on_empty": "no tables yet", "on_sqlite": "sqlite", "on_new_sqlite": "no database yet",
                     "on_nothing": "unreachable", "on_no_db": "no database yet", "on_no_driver": "no driver",
                     "faker": ""}
    assert "scraperd: [on_nothing] target not reached: (200" in out.err and "sekret" not in out.err + out.out
    assert not (tmp_path / "new.db").exists()

    assert cli.main(["-c", str(cfg), "check-config", "--json"]) == 0
    rows = {r["section"]: r for r in json.loads(capsys.readouterr().out)["sections"]}
    assert rows["on_myisam"]["engines"] == {"DcsAdTemp": "MyISAM", "DcsAdTempVld": "MyISAM", "LOCALSEQNO": "MyISAM"}
    assert rows["on_sqlite"]["engine"] == "sqlite" and rows["on_nothing"]["engines"] is None


@pytest.mark.parametrize("backend", [MYSQL])
def test_the_warning_is_not_repeated_by_a_restart_inside_the_process(db: TestDB) -> None:
    """A reconnect or a write conflict runs start-up again (create_tables with what the last one found):
    the engines have not changed, so no second warning; a change of engine is warned again."""
    first = to_myisam(db)
    with structlog.testing.capture_logs() as events:
        again = create_tables(db.engine, find_spec("DcsPmtHv"), previous=first)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE `DcsPmtHvVld` ENGINE=InnoDB")
        create_tables(db.engine, find_spec("DcsPmtHv"), previous=again)
    warned = events_named(events, "non_transactional_target")
    assert len(warned) == 1 and warned[0]["engines"]["DcsPmtHvVld"] == "InnoDB"
