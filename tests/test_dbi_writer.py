"""The DBI writer: SEQNO allocation, whole records in one transaction, concurrency and crashes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scraperd import databases
from scraperd.dbi.context import Context
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import END_OF_TIME, DbiTables, create_tables
from scraperd.dbi.writer import Record, write, write_many
from scraperd.errors import DataError
from tests.conftest import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestDB

REPO = Path(__file__).resolve().parents[1]
WRITE_LOOP = Path(__file__).with_name("dbi_write_loop.py")
T0 = datetime(2012, 1, 1)
CTX = Context(sitemask=1, subsite=1)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def vld_rows(db: TestDB, tables: DbiTables) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(tables.vld).order_by(tables.vld.c.SEQNO))]


def payload_rows(db: TestDB, tables: DbiTables) -> list[dict[str, Any]]:
    p = tables.payload
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(p).order_by(p.c.SEQNO, p.c.ROW_COUNTER))]


def localseqno(db: TestDB) -> dict[str, int]:
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT TABLENAME, LASTUSEDSEQNO FROM LOCALSEQNO")).all())


def set_localseqno(db: TestDB, name: str, value: int | None) -> None:
    """Set (or, with None, delete) a LOCALSEQNO row, as a hand fix or an old DBI database would."""
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM LOCALSEQNO WHERE TABLENAME = :n"), {"n": name})
        if value is not None:
            conn.execute(sa.text("INSERT INTO LOCALSEQNO VALUES (:n, :v)"), {"n": name, "v": value})


@pytest.fixture
def temp(db: TestDB) -> DbiTables:
    return create_tables(db.engine, find_spec("DcsAdTemp"))


@pytest.fixture
def pmthv(db: TestDB) -> DbiTables:
    return create_tables(db.engine, find_spec("DcsPmtHv"))


# ----------------------------------------------------------------------------------------------------------
# One record

def test_write_gives_consecutive_seqnos_and_row_counters_from_one(db: TestDB, temp: DbiTables) -> None:
    assert write(db.engine, temp, Record(minutes(0), minutes(1), CTX, [{"Temp_PT1": 1.0}, {"Temp_PT1": 2.0}])) == 1
    assert write(db.engine, temp, Record(minutes(1), minutes(2), CTX, [{"Temp_PT1": 3.0}])) == 2
    assert [(r["SEQNO"], r["ROW_COUNTER"], r["Temp_PT1"], r["Temp_PT2"]) for r in payload_rows(db, temp)] == [
        (1, 1, 1.0, None), (1, 2, 2.0, None), (2, 1, 3.0, None)]
    assert localseqno(db) == {"*": 0, "DcsAdTemp": 2}


def test_vld_row_holds_context_defaults_and_insertdate_is_utc_now(db: TestDB, temp: DbiTables) -> None:
    before = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    write(db.engine, temp, Record(minutes(0.5), END_OF_TIME, Context(sitemask=4, subsite=2), [{}],
                                  versiondate=datetime(2011, 5, 1, 12, 0, 0, 999)))
    after = datetime.now(UTC).replace(tzinfo=None)
    [vld] = vld_rows(db, temp)
    insertdate = vld.pop("INSERTDATE")
    assert before <= insertdate <= after and insertdate.microsecond == 0
    assert vld == {"SEQNO": 1, "TIMESTART": minutes(0.5), "TIMEEND": END_OF_TIME, "SITEMASK": 4, "SIMMASK": 1,
                   "SUBSITE": 2, "TASK": 0, "AGGREGATENO": -1, "VERSIONDATE": datetime(2011, 5, 1, 12)}


def test_star_row_is_used_when_the_table_has_no_localseqno_row(db: TestDB, temp: DbiTables) -> None:
    set_localseqno(db, "DcsAdTemp", None)
    set_localseqno(db, "*", 100)
    assert write(db.engine, temp, Record(minutes(0), minutes(1), CTX, [{}])) == 101
    assert localseqno(db) == {"*": 100, "DcsAdTemp": 101}


def test_seqno_repair_when_localseqno_is_behind_the_vld_table(db: TestDB, temp: DbiTables) -> None:
    for i in range(3):
        write(db.engine, temp, Record(minutes(i), minutes(i + 1), CTX, [{}]))
    set_localseqno(db, "DcsAdTemp", 1)
    with structlog.testing.capture_logs() as logs:
        assert write(db.engine, temp, Record(minutes(3), minutes(4), CTX, [{}])) == 4
    assert [e for e in logs if e["event"] == "seqno_repair"] == [
        {"event": "seqno_repair", "log_level": "warning", "table": "DcsAdTemp", "localseqno": 1, "max_seqno": 3}]
    assert localseqno(db)["DcsAdTemp"] == 4
    with structlog.testing.capture_logs() as logs:
        write(db.engine, temp, Record(minutes(4), minutes(5), CTX, [{}]))
    assert [e for e in logs if e["event"] == "seqno_repair"] == []


def test_record_without_rows_is_written_with_an_empty_record_warning(db: TestDB, temp: DbiTables) -> None:
    with structlog.testing.capture_logs() as logs:
        seqno = write(db.engine, temp, Record(minutes(0), minutes(1), CTX, []))
    assert [e for e in logs if e["event"] == "empty_record"] == [
        {"event": "empty_record", "log_level": "warning", "table": "DcsAdTemp", "seqno": seqno,
         "timestart": minutes(0), "timeend": minutes(1)}]
    assert len(vld_rows(db, temp)) == 1 and payload_rows(db, temp) == []


def test_payload_values_are_stored_as_their_column_types(db: TestDB, pmthv: DbiTables) -> None:
    write(db.engine, pmthv, Record(minutes(0), minutes(1), CTX, [
        {"ladder": 1, "col": Decimal("2"), "ring": 3.0, "voltage": Decimal("1234.567"), "pw": True},
        {"voltage": 9999.994, "pw": None},
        {"voltage": "-12.5"},
    ]))
    rows = [{k: v for k, v in r.items() if k not in ("SEQNO", "ROW_COUNTER")} for r in payload_rows(db, pmthv)]
    assert rows == [{"ladder": 1, "col": 2, "ring": 3, "voltage": 1234.57, "pw": 1},
                    {"ladder": None, "col": None, "ring": None, "voltage": 9999.99, "pw": None},
                    {"ladder": None, "col": None, "ring": None, "voltage": -12.5, "pw": None}]
    assert all(type(r["voltage"]) is float for r in rows)


def test_nan_statistic_is_stored_as_null(db: TestDB) -> None:
    lid = create_tables(db.engine, find_spec("DcsAdLidSensor"))
    write(db.engine, lid, Record(minutes(0), minutes(1), CTX, [{"Temp_LS_avg": 21.5, "Temp_LS_std": math.nan,
                                                                 "count": 1}]))
    [row] = payload_rows(db, lid)
    assert (row["Temp_LS_avg"], row["Temp_LS_std"], row["count"]) == (21.5, None, 1)


@pytest.mark.parametrize("row, message", [
    ({"voltage": "high"}, "record 0: DcsPmtHv.voltage: could not convert string to float: 'high'"),
    ({"voltage": 10000.0}, "record 0: DcsPmtHv.voltage: 10000.0 is out of range for decimal(6,2)"),
    ({"pw": 128}, "record 0: DcsPmtHv.pw: 128 is out of range for tinyint"),
    ({"ring": 2.5}, "record 0: DcsPmtHv.ring: 2.5 is not a whole number"),
    ({"voltage": math.inf}, "record 0: DcsPmtHv.voltage: inf is not finite"),
    ({"voltage": 9999.995}, "record 0: DcsPmtHv.voltage: 9999.995 is out of range for decimal(6,2)"),
    ({"Voltage": 1.0}, "record 0: DcsPmtHv has no column 'Voltage' (columns: ladder, col, ring, voltage, pw)"),
], ids=["not a number", "decimal out of range", "tinyint out of range", "fraction in an int", "infinity",
        "rounds out of range", "unknown column"])
def test_bad_payload_value_is_refused_and_nothing_is_written(db: TestDB, pmthv: DbiTables, row: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(DataError) as err:
        write(db.engine, pmthv, Record(minutes(0), minutes(1), CTX, [{"voltage": 1.0}, row]))
    assert str(err.value) == message
    assert vld_rows(db, pmthv) == [] and payload_rows(db, pmthv) == []
    assert localseqno(db)["DcsPmtHv"] == 0


@pytest.mark.parametrize("start, end, message", [
    (minutes(1), minutes(1), "record 0: validity [2012-01-01 00:01:00, 2012-01-01 00:01:00) is empty or outside "
                             "[1970-01-01 00:00:00, 2038-01-19 03:14:07]"),
    (minutes(0), END_OF_TIME + timedelta(seconds=1),
     "record 0: validity [2012-01-01 00:00:00, 2038-01-19 03:14:08) is empty or outside "
     "[1970-01-01 00:00:00, 2038-01-19 03:14:07]"),
    (minutes(0).replace(tzinfo=UTC), minutes(1),
     "record 0: timestart must be a naive datetime holding UTC, got "
     "datetime.datetime(2012, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)"),
], ids=["empty", "beyond end of time", "aware"])
def test_bad_validity_range_is_refused(db: TestDB, temp: DbiTables, start: datetime, end: datetime,
                                       message: str) -> None:
    with pytest.raises(DataError) as err:
        write(db.engine, temp, Record(start, end, CTX, [{}]))
    assert str(err.value) == message
    assert vld_rows(db, temp) == []


def test_fractional_seconds_are_dropped(db: TestDB, temp: DbiTables) -> None:
    write(db.engine, temp, Record(minutes(0).replace(microsecond=700000), minutes(1).replace(microsecond=1), CTX,
                                  [{}]))
    [vld] = vld_rows(db, temp)
    assert (vld["TIMESTART"], vld["TIMEEND"], vld["VERSIONDATE"]) == (minutes(0), minutes(1), minutes(0))


def test_writes_to_different_tables_have_their_own_seqnos(db: TestDB, temp: DbiTables, pmthv: DbiTables) -> None:
    assert write(db.engine, temp, Record(minutes(0), minutes(1), CTX, [{}])) == 1
    assert write(db.engine, pmthv, Record(minutes(0), minutes(1), CTX, [{}])) == 1
    assert write(db.engine, temp, Record(minutes(1), minutes(2), CTX, [{}])) == 2
    assert localseqno(db) == {"*": 0, "DcsAdTemp": 2, "DcsPmtHv": 1}


# ----------------------------------------------------------------------------------------------------------
# Batches

def test_write_many_gives_consecutive_seqnos_after_existing_ones(db: TestDB, temp: DbiTables) -> None:
    write(db.engine, temp, Record(minutes(0), minutes(1), CTX, [{}]))
    records = [Record(minutes(i), minutes(i + 1), CTX, [{"Temp_PT2": float(i)}] * (i % 3)) for i in range(1, 8)]
    assert write_many(db.engine, temp, records) == [2, 3, 4, 5, 6, 7, 8]
    assert [(r["SEQNO"], r["TIMESTART"]) for r in vld_rows(db, temp)] == [(i + 1, minutes(i)) for i in range(8)]
    payload = payload_rows(db, temp)
    assert [(r["SEQNO"], r["ROW_COUNTER"], r["Temp_PT2"]) for r in payload] == [(1, 1, None)] + [
        (i + 1, n, float(i)) for i in range(1, 8) for n in range(1, i % 3 + 1)]
    assert localseqno(db)["DcsAdTemp"] == 8
    assert write_many(db.engine, temp, []) == []


def refuse_vld_insert(db: TestDB, tables: DbiTables, seqno: int) -> None:
    """A trigger that makes the server refuse the Vld row of SEQNO seqno (a real failed statement)."""
    name = f"{tables.vld.name}_refuse"
    with db.engine.begin() as conn:
        if db.backend == "mysql":
            conn.exec_driver_sql(f"CREATE TRIGGER {name} BEFORE INSERT ON {tables.vld.name} FOR EACH ROW "
                                 f"BEGIN IF NEW.SEQNO = {seqno} THEN SIGNAL SQLSTATE '45000' "
                                 f"SET MESSAGE_TEXT = 'refused'; END IF; END")
        else:
            conn.exec_driver_sql(f"CREATE TRIGGER {name} BEFORE INSERT ON {tables.vld.name} "
                                 f"WHEN NEW.SEQNO = {seqno} BEGIN SELECT RAISE(ABORT, 'refused'); END")


def test_write_many_is_one_transaction(db: TestDB, temp: DbiTables) -> None:
    # The server refuses the batch's 3rd Vld row, after every payload row and two Vld rows of the
    # batch went in: none of them may remain.
    refuse_vld_insert(db, temp, 3)
    records = [Record(minutes(i), minutes(i + 1), CTX, [{"Temp_PT1": float(i)}]) for i in range(5)]
    with pytest.raises(sa.exc.DBAPIError, match="refused"):
        write_many(db.engine, temp, records)
    assert vld_rows(db, temp) == [] and payload_rows(db, temp) == []
    assert localseqno(db)["DcsAdTemp"] == 0


def test_a_seqno_holding_only_payload_rows_is_never_reused(db: TestDB, temp: DbiTables) -> None:
    # payload rows without their Vld row (a legacy target's crash, a hand fix), beyond LOCALSEQNO
    with db.engine.begin() as conn:
        conn.execute(sa.insert(temp.payload).values(SEQNO=3, ROW_COUNTER=1, Temp_PT1=-1.0))
    with structlog.testing.capture_logs() as logs:
        assert write_many(db.engine, temp, [Record(minutes(i), minutes(i + 1), CTX, [{}]) for i in range(2)]) == [4, 5]
    assert [e for e in logs if e["event"] == "seqno_repair"] == [
        {"event": "seqno_repair", "log_level": "warning", "table": "DcsAdTemp", "localseqno": 0, "max_seqno": 3}]
    assert [(r["SEQNO"], r["Temp_PT1"]) for r in payload_rows(db, temp)] == [(3, -1.0), (4, None), (5, None)]
    assert localseqno(db)["DcsAdTemp"] == 5


def test_write_many_refuses_a_bad_record_before_writing_any(db: TestDB, temp: DbiTables) -> None:
    records = [Record(minutes(i), minutes(i + 1), CTX, [{"Temp_PT1": 1.0 if i != 2 else "warm"}]) for i in range(5)]
    with pytest.raises(DataError, match=r"^record 2: DcsAdTemp.Temp_PT1: could not convert string to float"):
        write_many(db.engine, temp, records)
    assert vld_rows(db, temp) == [] and localseqno(db)["DcsAdTemp"] == 0


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements sent to the server inside the block (an executemany counts once)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_time_ordered_batch_costs_the_same_statements_for_any_length(db: TestDB, temp: DbiTables) -> None:
    write(db.engine, temp, Record(minutes(0), minutes(1), CTX, [{}]))
    counts = []
    for start, n in ((1, 3), (4, 300)):
        batch = [Record(minutes(start + i), minutes(start + i + 1), CTX, [{"Temp_PT1": 1.0}, {"Temp_PT1": 2.0}])
                 for i in range(n)]
        with statements(db.engine) as seen:
            write_many(db.engine, temp, batch)
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 8
    assert [r["VERSIONDATE"] for r in vld_rows(db, temp)] == [minutes(i) for i in range(304)]


# Overlay versioning in a batch must give what writing the records one at a time gives. Contexts
# overlap through their masks (sitemask 3 matches 1 and 2), ranges overlap, and some records carry
# their own versiondate.
contexts = st.sampled_from([Context(1, 1), Context(2, 1), Context(3, 1), Context(1, 2), Context(1, 1, task=1)])
records_st = st.builds(
    lambda ctx, start, length, vdate: Record(minutes(start), minutes(start + length) if length else END_OF_TIME,
                                             ctx, [{"Temp_PT1": float(start)}],
                                             None if vdate is None else minutes(vdate)),
    contexts, st.integers(0, 30), st.integers(0, 10), st.none() | st.integers(-5, 40))


def overlay_vlds(engine: sa.Engine, tables: DbiTables) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(tables.vld.c.SEQNO, tables.vld.c.TIMESTART, tables.vld.c.TIMEEND, tables.vld.c.SITEMASK,
                      tables.vld.c.SUBSITE, tables.vld.c.TASK, tables.vld.c.VERSIONDATE)
            .order_by(tables.vld.c.SEQNO))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(records_st, max_size=3), batch=st.lists(records_st, min_size=1, max_size=8))
def test_write_many_versiondates_equal_writing_one_at_a_time(before: list[Record], batch: list[Record]) -> None:
    spec = find_spec("DcsAdTemp")
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for name, batched in (("single", False), ("batched", True)):
            url = sa.engine.make_url(f"sqlite:///{tmp}/{name}.db")
            engine = databases.make_engine(url)
            tables = create_tables(engine, spec)
            for r in before:
                write(engine, tables, r)
            if batched:
                write_many(engine, tables, batch)
            else:
                for r in batch:
                    write(engine, tables, r)
            results.append(overlay_vlds(engine, tables))
            engine.dispose()
    assert results[0] == results[1]


def test_overlapping_batch_sees_its_own_earlier_records(db: TestDB, temp: DbiTables) -> None:
    write(db.engine, temp, Record(minutes(0), END_OF_TIME, CTX, [{}]))
    write_many(db.engine, temp, [Record(minutes(5), END_OF_TIME, CTX, [{}]),     # overlays the target's: 0 + 1
                                 Record(minutes(10), END_OF_TIME, CTX, [{}]),    # overlays the batch's: 1 + 1
                                 Record(minutes(2), minutes(3), CTX, [{}]),      # only the target's holds 2
                                 Record(minutes(7), minutes(8), CTX, [{}]),      # the batch's (5, EOT) wins
                                 Record(minutes(20), minutes(30), Context(2, 1), [{}])])  # no shared site bit
    assert [r["VERSIONDATE"] for r in vld_rows(db, temp)] == [
        minutes(0), minutes(1), minutes(2), minutes(1), minutes(2), minutes(20)]


# ----------------------------------------------------------------------------------------------------------
# Several processes, and crashes

def start_writer(db: TestDB, writer: int, count: int, *extra: str | Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(WRITE_LOOP), db.name, str(writer), str(count), *map(str, extra)],
                            cwd=REPO, env=env, stderr=subprocess.PIPE)


def write_together(db: TestDB, tmp_path: Path, writers: Sequence[int], count: int) -> None:
    """Writer processes that start writing at one instant (each waits for a go file), all exit 0."""
    go = tmp_path / "go"
    procs = [start_writer(db, w, count, "--ready", tmp_path / f"ready{w}", "--go", go) for w in writers]
    wait_until(lambda: all((tmp_path / f"ready{w}").exists() for w in writers), timeout=30,
               what=f"writers {list(writers)} ready")
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()


def check_whole_records(db: TestDB, tables: DbiTables, orphans: Collection[int] = ()) -> list[dict[str, Any]]:
    """Every Vld row has its complete payload and every payload row its Vld row, but for the SEQNOs
    `orphans` (on MyISAM: a write cut off between its payload and its Vld rows); LOCALSEQNO == max SEQNO."""
    vlds = vld_rows(db, tables)
    by_seqno: dict[int, list[dict[str, Any]]] = {}
    for row in payload_rows(db, tables):
        by_seqno.setdefault(row["SEQNO"], []).append(row)
    assert set(orphans).isdisjoint(v["SEQNO"] for v in vlds) and set(orphans) <= set(by_seqno)
    assert sorted(set(by_seqno) - set(orphans)) == [v["SEQNO"] for v in vlds], \
        "payload rows without Vld, or Vld without payload"
    for v in vlds:
        rows = by_seqno[v["SEQNO"]]
        k = rows[0]["col"]  # the writer put the record's row count in every row
        assert [(r["ROW_COUNTER"], r["ladder"], r["col"], r["ring"]) for r in rows] == [
            (n, n, k, v["SUBSITE"]) for n in range(1, k + 1)], f"SEQNO {v['SEQNO']} is incomplete"
    assert localseqno(db)[tables.name] == max([v["SEQNO"] for v in vlds] + list(orphans), default=0)
    return vlds


@pytest.mark.slow
def test_two_processes_writing_one_table_get_seqnos_1_to_1000(db: TestDB, pmthv: DbiTables,
                                                              tmp_path: Path) -> None:
    # Without the table's own LOCALSEQNO row both writers also race to create it (the deadlock-prone case).
    set_localseqno(db, "DcsPmtHv", None)
    write_together(db, tmp_path, (1, 2), 500)
    vlds = check_whole_records(db, pmthv)
    assert [v["SEQNO"] for v in vlds] == list(range(1, 1001))
    assert localseqno(db) == {"*": 0, "DcsPmtHv": 1000}
    for w in (1, 2):
        assert sorted(v["TIMESTART"] for v in vlds if v["SUBSITE"] == w) == [minutes(i) for i in range(500)]
    writers = [v["SUBSITE"] for v in vlds]
    switches = sum(1 for a, b in zip(writers, writers[1:], strict=False) if a != b)
    assert switches >= 2, "the writers did not overlap in time; the test proved nothing"


def test_writer_killed_inside_a_record_leaves_none_of_it(db: TestDB, pmthv: DbiTables, tmp_path: Path) -> None:
    paused = tmp_path / "paused"
    proc = start_writer(db, 1, 1000, "--pause-at", 25, "--paused", paused)
    try:
        wait_until(paused.exists, timeout=30, what="the writer inside its 25th record, payload rows inserted")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    vlds = check_whole_records(db, pmthv)
    assert [v["SEQNO"] for v in vlds] == list(range(1, 25))
    assert write(db.engine, pmthv, Record(minutes(0), minutes(1), Context(1, 9), [{"ladder": 1, "col": 1,
                                                                                  "ring": 9}])) == 25
    check_whole_records(db, pmthv)


def vld_count(db: TestDB, tables: DbiTables) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tables.vld)).scalar_one())


@pytest.mark.slow
def test_writer_killed_while_writing_leaves_only_whole_records(db: TestDB, pmthv: DbiTables) -> None:
    proc = start_writer(db, 1, 100000)
    try:
        wait_until(lambda: vld_count(db, pmthv) >= 20, timeout=30, what="20 Vld rows")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    vlds = check_whole_records(db, pmthv)
    last = vlds[-1]["SEQNO"]
    assert [v["SEQNO"] for v in vlds] == list(range(1, last + 1))
    assert write(db.engine, pmthv, Record(minutes(0), minutes(1), Context(1, 9), [{"ladder": 1, "col": 1,
                                                                                  "ring": 9}])) == last + 1
    check_whole_records(db, pmthv)
