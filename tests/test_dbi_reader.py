"""The DBI reader: context queries (overlays, rollback, gaps, masks), last validity, payload order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.reader import VldRow, context_query, last_validity, payload
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import END_OF_TIME, DbiTables, create_tables
from scraperd.dbi.writer import Record, utcnow, write, write_many

if TYPE_CHECKING:
    from tests.conftest import TestDB

T0 = datetime(2012, 1, 1)
CTX = Context(sitemask=1, subsite=1)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def temp(db: TestDB) -> DbiTables:
    return create_tables(db.engine, find_spec("DcsAdTemp"))


def put(db: TestDB, tables: DbiTables, start: float, end: float | None, value: float, *,
        ctx: Context = CTX, versiondate: datetime | None = None) -> int:
    """Write a one-row record over [start, end) minutes after T0 (end None: end of time) with Temp_PT1 = value."""
    return write(db.engine, tables, Record(minutes(start), END_OF_TIME if end is None else minutes(end), ctx,
                                           [{"Temp_PT1": value}], versiondate))


def value_at(db: TestDB, tables: DbiTables, t: float, **kw: Any) -> float | None:
    rollback = kw.pop("rollback", None)
    vld, rows = context_query(db.engine, tables, minutes(t), Context(**({"sitemask": 1, "subsite": 1} | kw)),
                              rollback=rollback)
    assert (vld is None) == (rows == [])
    return None if vld is None else rows[0]["Temp_PT1"]


def test_context_query_returns_the_record_holding_t_and_its_payload(db: TestDB, temp: DbiTables) -> None:
    seqno = put(db, temp, 0, 10, 20.5)
    vld, rows = context_query(db.engine, temp, minutes(5), Context(sitemask=1, subsite=1))
    assert isinstance(vld, VldRow)
    assert (vld.seqno, vld.timestart, vld.timeend, vld.sitemask, vld.simmask, vld.subsite, vld.task,
            vld.aggregateno, vld.versiondate) == (seqno, minutes(0), minutes(10), 1, 1, 1, 0, -1, minutes(0))
    assert rows == [{"Temp_PT1": 20.5, "Temp_PT2": None, "Temp_PT3": None, "Temp_PT4": None, "Temp_PT5": None}]


def test_gaps_return_nothing(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, 10, 1.0)
    put(db, temp, 20, 30, 2.0)
    assert value_at(db, temp, -1) is None          # before everything
    assert value_at(db, temp, 0) == 1.0            # TIMESTART is inside
    assert value_at(db, temp, 10) is None          # TIMEEND is not: [TIMESTART, TIMEEND)
    assert value_at(db, temp, 15) is None          # between records
    assert value_at(db, temp, 29.99) == 2.0
    assert value_at(db, temp, 40) is None          # after everything
    assert context_query(db.engine, temp, minutes(15), Context(sitemask=1, subsite=1)) == (None, [])


def test_overlapping_records_resolve_to_the_highest_versiondate_not_the_latest_write(db: TestDB,
                                                                                   temp: DbiTables) -> None:
    put(db, temp, 0, None, 1.0, versiondate=minutes(100))
    put(db, temp, 0, None, 2.0, versiondate=minutes(50))   # written later, but an older version
    put(db, temp, 10, 20, 3.0, versiondate=minutes(200))
    assert value_at(db, temp, 5) == 1.0
    assert value_at(db, temp, 15) == 3.0
    assert value_at(db, temp, 25) == 1.0


def test_equal_versiondates_resolve_to_the_highest_seqno(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, None, 1.0, versiondate=minutes(100))
    put(db, temp, 0, None, 2.0, versiondate=minutes(100))
    put(db, temp, 0, 10, 3.0, versiondate=minutes(99))
    assert value_at(db, temp, 5) == 2.0


def test_overlay_rule_versiondate_is_timestart_in_a_gap_else_overlaid_plus_60s(db: TestDB, temp: DbiTables) -> None:
    first = put(db, temp, 0, None, 1.0)
    second = put(db, temp, 30, None, 2.0)
    third = put(db, temp, 10, None, 3.0)      # starts inside `first` only: first.VERSIONDATE + 60 s
    fourth = put(db, temp, 40, None, 4.0)     # inside all three: second and third tie at 0:01, third wins
    elsewhere = put(db, temp, 40, None, 5.0, ctx=Context(sitemask=2, subsite=1))  # nothing for site 2
    with db.engine.connect() as conn:
        vd = dict(conn.execute(sa.select(temp.vld.c.SEQNO, temp.vld.c.VERSIONDATE)).all())
    assert vd == {first: minutes(0), second: minutes(1), third: minutes(1), fourth: minutes(2),
                  elsewhere: minutes(40)}
    # A later write overlays the earlier ones from its start on, as the rule intends.
    assert [value_at(db, temp, t) for t in (5, 15, 35, 45)] == [1.0, 3.0, 3.0, 4.0]


def test_overlay_rule_looks_only_at_the_records_own_context(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, None, 1.0, ctx=Context(sitemask=1, subsite=1, task=1), versiondate=minutes(500))
    put(db, temp, 0, None, 1.0, ctx=Context(sitemask=1, subsite=2), versiondate=minutes(500))
    put(db, temp, 0, None, 1.0, ctx=Context(sitemask=1, subsite=1, aggregateno=3), versiondate=minutes(500))
    put(db, temp, 0, None, 1.0, ctx=Context(sitemask=1, subsite=1, simmask=2), versiondate=minutes(500))
    seqno = put(db, temp, 5, None, 2.0)
    vld, _ = context_query(db.engine, temp, minutes(6), Context(sitemask=1, subsite=1))
    assert vld is not None and (vld.seqno, vld.versiondate) == (seqno, minutes(5))


def test_rollback_hides_records_inserted_at_or_after_it(db: TestDB, temp: DbiTables) -> None:
    old = put(db, temp, 0, None, 1.0)
    with db.engine.begin() as conn:  # as if written on 2020-01-01, without waiting for the clock
        conn.execute(sa.update(temp.vld).where(temp.vld.c.SEQNO == old).values(INSERTDATE=datetime(2020, 1, 1)))
    put(db, temp, 0, None, 2.0)
    new_insert = utcnow()
    assert value_at(db, temp, 5) == 2.0
    assert value_at(db, temp, 5, rollback=new_insert + timedelta(seconds=1)) == 2.0
    assert value_at(db, temp, 5, rollback=datetime(2020, 1, 1, 0, 0, 1)) == 1.0
    assert value_at(db, temp, 5, rollback=datetime(2020, 1, 1)) is None  # strictly before


def test_masks_share_a_bit_while_subsite_task_and_aggregate_must_equal(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, None, 3.0, ctx=Context(sitemask=3, subsite=1, simmask=3))
    assert value_at(db, temp, 5, sitemask=1) == 3.0
    assert value_at(db, temp, 5, sitemask=2, simmask=2) == 3.0
    assert value_at(db, temp, 5, sitemask=4) is None
    assert value_at(db, temp, 5, simmask=4) is None
    assert value_at(db, temp, 5, subsite=2) is None
    assert value_at(db, temp, 5, task=1) is None
    assert value_at(db, temp, 5, aggregateno=0) is None


def test_context_query_accepts_a_connection(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, None, 1.0)
    with db.engine.connect() as conn:
        vld, rows = context_query(conn, temp, minutes(1), Context(sitemask=1, subsite=1))
    assert vld is not None and rows[0]["Temp_PT1"] == 1.0


def test_payload_rows_come_in_row_counter_order_keyed_by_spec_columns(db: TestDB) -> None:
    pmthv = create_tables(db.engine, find_spec("DcsPmtHv"))
    rows = [{"ladder": lad, "col": c, "ring": r, "voltage": 1000 + lad * 100 + c * 10 + r, "pw": 1}
            for lad in range(8, 0, -1) for c in (3, 2, 1) for r in range(1, 9)]
    seqno = write(db.engine, pmthv, Record(minutes(0), minutes(1), CTX, rows))
    assert payload(db.engine, pmthv, seqno) == rows
    assert payload(db.engine, pmthv, seqno + 1) == []


def test_last_validity_is_the_latest_timeend_of_exactly_that_context(db: TestDB, temp: DbiTables) -> None:
    assert last_validity(db.engine, temp, CTX) is None
    put(db, temp, 0, 10, 1.0)
    latest = put(db, temp, 10, 20, 2.0)
    put(db, temp, 5, 15, 3.0)                                  # written last, ends earlier
    put(db, temp, 30, 40, 4.0, ctx=Context(sitemask=3, subsite=1))  # masks overlap, context differs
    put(db, temp, 30, 40, 5.0, ctx=Context(sitemask=1, subsite=1, task=1))
    vld = last_validity(db.engine, temp, CTX)
    assert vld is not None and (vld.seqno, vld.timeend) == (latest, minutes(20))


def test_last_validity_breaks_timeend_ties_by_seqno_and_honours_timefloor(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, 20, 1.0)
    tie = put(db, temp, 10, 20, 2.0)
    vld = last_validity(db.engine, temp, CTX)
    assert vld is not None and vld.seqno == tie
    put(db, temp, 0, 30, 3.0)
    vld = last_validity(db.engine, temp, CTX, timefloor=minutes(5))
    assert vld is not None and vld.seqno == tie
    assert last_validity(db.engine, temp, CTX, timefloor=minutes(11)) is None


def test_last_validity_reads_the_timeend_index_instead_of_sorting(db: TestDB, temp: DbiTables) -> None:
    write_many(db.engine, temp, [Record(minutes(i), minutes(i + 1), Context(sitemask=1, subsite=1 + i % 4), [])
                                 for i in range(400)])
    stmt = reader.last_validity_select(temp, CTX)
    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        if db.backend == "mysql":
            conn.exec_driver_sql(f"ANALYZE TABLE {temp.vld.name}").all()
            plan = [dict(r._mapping) for r in conn.exec_driver_sql(f"EXPLAIN {sql}")]
            assert [p["key"] for p in plan] == ["TIMEEND"]
            assert "filesort" not in (plan[0]["Extra"] or "")
        else:
            plan = [r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            assert any(f"USING INDEX {temp.vld.name}_TIMEEND" in p for p in plan), plan
            assert not any("TEMP B-TREE" in p for p in plan), plan
