"""The averager on SQLite and MariaDB: its records equal an independent computation, append runs
equal one full run, bins follow local midnight (DST included), --drop-target and SIGTERM behave.

The expected records are computed here in Python from the rows we inserted: bins cut from each
local midnight, the filter applied in Python, statistics from `statistics`, validity in UTC.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import structlog

from scraperd import averager, cli, config, databases, dcsddl, progress
from scraperd.dbi import spec as specmod
from scraperd.dbi import writer
from scraperd.dbi.context import Context
from scraperd.dbi.tables import create_tables, tables_for
from scraperd.errors import ConfigError
from scraperd.regimes.adlidsensor import QUANTITIES
from tests.scrapekit import events_named, target_rows, url_text, write_cfg

SECTION = "adlid_averager"
HOUR = timedelta(hours=1)
INT_COLUMNS = {"Ultrasonic_GdLS", "Ultrasonic_LS", "Capacitance_GdLS", "Capacitance_LS", "Capacitance_MO"}
FUNCTIONS = {"avg": statistics.fmean, "min": min, "max": max, "std": statistics.pstdev}
SHANGHAI = ZoneInfo("Asia/Shanghai")
AD1, AD2 = (1, 1), (1, 2)  # (SITEMASK, SUBSITE) of AD1_LidSensor and AD2_LidSensor


# ----------------------------------------------------------------------------------------------------------
# source rows


def make_source(db: Any) -> None:
    """An empty fake DCS database from etc/fake_dcs.sql (AD1_LidSensor, AD2_LidSensor, ...)."""
    dcsddl.recreate(db.url, dcsddl.DEFAULT_DDL)


def insert(db: Any, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
    rows = list(rows)
    with db.engine.begin() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        conn.execute(t.insert(), rows)


def lid_row(i: int, dt: datetime, quality: int = 1, nulls: Iterable[str] = ()) -> dict[str, Any]:
    """Row i: integers for the int(11) columns, two decimals for the decimal(6,2) ones; all from i."""
    row: dict[str, Any] = {"id": i, "date_time": dt, "Quality": quality}
    for k, q in enumerate(QUANTITIES):
        if q in nulls:
            row[q] = None
        elif q in INT_COLUMNS:
            row[q] = 200 + (i * 7 + k) % 23
        else:
            row[q] = round(((i * 13 + k * 5) % 397) / 100 - 1.5, 2)
    return row


def every(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out, t = [], start
    while t < end:
        out.append(t)
        t += step
    return out


# ----------------------------------------------------------------------------------------------------------
# the independent computation and the target as written


def local_bin(dt: datetime, binsize: timedelta) -> datetime:
    midnight = datetime.combine(dt.date(), dtime())
    return midnight + ((dt - midnight) // binsize) * binsize


def utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def expected(rows: list[dict[str, Any]], tz: ZoneInfo = SHANGHAI, binsize: timedelta = HOUR,
             keep: Callable[[dict[str, Any]], bool] = lambda r: r["Quality"] != 0) -> dict[tuple, dict]:
    """{(TIMESTART, TIMEEND): payload} of the complete, non-empty bins of rows."""
    head = max(r["date_time"] for r in rows)
    groups: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        start = local_bin(r["date_time"], binsize)
        if start + binsize <= head and keep(r):  # complete: a row exists at or after the bin's end
            groups[start].append(r)
    out = {}
    for rs in groups.values():
        pay: dict[str, Any] = {"count": len(rs)}
        for q in QUANTITIES:
            values = [float(r[q]) for r in rs if r[q] is not None]
            for fn, f in FUNCTIONS.items():
                pay[f"{q}_{fn}"] = f(values) if values else None
        ts = utc(min(r["date_time"] for r in rs), tz)
        te = max(utc(max(r["date_time"] for r in rs), tz), ts + timedelta(seconds=1))
        out[(ts, te)] = pay
    return out


def written(engine: sa.Engine, context: tuple[int, int] = AD1) -> dict[tuple, dict]:
    """{(TIMESTART, TIMEEND): payload} of one context, checking the record shape on the way."""
    t = tables_for(specmod.find_spec("DcsAdLidSensor"))
    v, p = t.vld.c, t.payload
    q = (sa.select(v.TIMESTART, v.TIMEEND, v.VERSIONDATE, v.SEQNO, p)
         .join_from(t.vld, p, p.c.SEQNO == v.SEQNO)
         .where(v.SITEMASK == context[0], v.SUBSITE == context[1]).order_by(v.SEQNO))
    out = {}
    with engine.connect() as conn:
        for r in conn.execute(q).mappings():
            assert r["VERSIONDATE"] == r["TIMESTART"], "the averager gives VERSIONDATE = TIMESTART"
            assert r["ROW_COUNTER"] == 1
            key = (r["TIMESTART"], r["TIMEEND"])
            assert key not in out, f"two records for {key}"
            out[key] = {c: r[c] for c in t.spec.column_names}
    return out


def assert_same(got: dict[tuple, dict], want: dict[tuple, dict]) -> None:
    assert sorted(got) == sorted(want)
    for key, pay in want.items():
        for col, value in pay.items():
            if value is None:
                assert got[key][col] is None, (key, col)
            else:
                # the target's FLOAT columns hold single precision; MySQL's AVG of an int has 4 decimals
                assert got[key][col] == pytest.approx(value, rel=1e-5, abs=1e-5), (key, col)


# ----------------------------------------------------------------------------------------------------------
# running


def averager_cfg(tmp_path: Path, src: Any, tgt: Any, name: str = "averager.cfg", **keys: Any) -> Path:
    section = {"regime": "scraperd.regimes.adlidsensor:AdLidSensor", "mode": "averager",
               "source": url_text(src), "target": url_text(tgt), "source_tz": "Asia/Shanghai",
               "territory": "1d", "binsize": "1h", "aggregate": "avg,min,max,std", "aggregate_count": "count",
               "aggregate_skips": "id,date_time,Quality", "aggregate_filter": "Quality != 0"}
    section.update({k: str(v) for k, v in keys.items()})
    return write_cfg(tmp_path / name, {SECTION: section})


def average(cfg: Path, drop_target: bool = False, on_event: Callable[[dict], None] | None = None,
            **overrides: Any) -> list[dict[str, Any]]:
    """Run the section in this process (as `scraperd run` does); return its events."""
    loaded = config.load_section(cfg, SECTION, {k: str(v) for k, v in overrides.items()})
    with structlog.testing.capture_logs() as events:
        if on_event is not None:
            def hook(_logger: Any, _name: str, event: dict) -> dict:
                on_event(event)
                return event
            structlog.configure(processors=[hook, *structlog.get_config()["processors"]])
        assert averager.run(loaded, drop_target=drop_target) == 0
    return events


# ----------------------------------------------------------------------------------------------------------
# the tests


def test_records_equal_an_independent_computation_and_partial_bins_wait(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    times = [t for t in every(day, day + timedelta(days=2, hours=5, minutes=3), timedelta(minutes=5))
             if not day + timedelta(hours=10) <= t < day + timedelta(hours=13)]           # three empty bins
    single = day + timedelta(days=1, hours=20)
    times = [t for t in times if not single < t < single + HOUR]                           # a one-row bin
    rows = []
    for i, t in enumerate(times, start=1):
        bad_hour = day + timedelta(days=1, hours=4) <= t < day + timedelta(days=1, hours=5)  # filter empties it
        null_hour = day + timedelta(hours=6) <= t < day + timedelta(hours=7)                 # Temp_LS all NULL
        rows.append(lid_row(i, t, quality=0 if bad_hour or (i % 4 == 0 and t != single) else 1,
                            nulls=(["Temp_LS"] if null_hour else []) + (["PS_Output_I"] if i % 5 == 0 else [])))
    ad2 = [lid_row(i, t) for i, t in enumerate(every(day, day + timedelta(hours=3, minutes=31),
                                                     timedelta(minutes=10)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    insert(src, "AD2_LidSensor", ad2)
    cfg = averager_cfg(tmp_path, src, tgt, timefloor="2010-01-01 00:00:00")

    events = average(cfg)

    want, got = expected(rows), written(tgt.engine, AD1)
    assert_same(got, want)
    assert_same(written(tgt.engine, AD2), expected(ad2))
    assert len(got) == 2 * 24 + 5 - 3 - 1          # minus the empty bins and the filtered-out one
    assert utc(day + timedelta(days=2, hours=5), SHANGHAI) not in {ts for ts, _ in got}  # partial: waits
    one_row = got[(utc(single, SHANGHAI), utc(single, SHANGHAI) + timedelta(seconds=1))]  # DBI: start < end
    assert one_row["count"] == 1 and one_row["Temp_GdLS_std"] == 0
    [null_hour] = [p for (ts, _), p in got.items() if ts == utc(day + timedelta(hours=6), SHANGHAI)]
    assert null_hour["Temp_LS_avg"] is None and null_hour["Temp_GdLS_avg"] is not None

    territory = {e["source"]: e for e in events_named(events, "territory")}
    assert territory["AD1_LidSensor"]["count"] == 3
    assert territory["AD1_LidSensor"]["bins"] == [["2011-02-01 00:00:00", "2011-02-02 00:00:00"],
                                                  ["2011-02-02 00:00:00", "2011-02-03 00:00:00"],
                                                  ["2011-02-03 00:00:00", "2011-02-03 05:00:00"]]
    assert territory["AD1_LidSensor"]["first"] == ["2011-02-01 00:00:00", "2011-02-02 00:00:00"]
    assert territory["AD1_LidSensor"]["last"] == ["2011-02-03 00:00:00", "2011-02-03 05:00:00"]
    samples = [e for e in events_named(events, "sample") if e["source"] == "AD1_LidSensor"]
    assert [(s["n"], s["range"], s["state"], s["proceed"]) for s in samples] == [
        (1, ["2011-02-01 00:00:00", "2011-02-02 00:00:00"], "replay", True),
        (2, ["2011-02-02 00:00:00", "2011-02-03 00:00:00"], "replay", True),
        (3, ["2011-02-03 00:00:00", "2011-02-03 05:00:00"], "replay", True)]
    assert [s["groups"] for s in samples] == [24 - 3, 24 - 1, 5]
    props = events_named(events, "propagate")
    assert len(props) == len(want) + len(expected(ad2))
    assert [p["seqno"] for p in props] == list(range(1, len(props) + 1))
    assert {p["rows"] for p in props} == {1}
    assert events[-1]["event"] == "shutdown" and events[-1]["reason"] == "done"

    # more rows arrive: the partial bin is complete now, and written once
    more = [lid_row(i, t) for i, t in enumerate(
        every(day + timedelta(days=2, hours=5, minutes=5), day + timedelta(days=2, hours=7, minutes=1),
              timedelta(minutes=5)), start=len(rows) + 1)]
    insert(src, "AD1_LidSensor", more)
    events = average(cfg)
    assert_same(written(tgt.engine, AD1), expected(rows + more))
    assert [s["range"] for s in events_named(events, "sample")] == [["2011-02-03 05:00:00", "2011-02-03 07:00:00"]]


def test_ids_out_of_date_time_order_give_the_same_records(make_db, tmp_path):
    # the grouped query narrows each territory bin by its span of ids: that must never lose a row
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    times = every(day, day + timedelta(days=2, minutes=1), timedelta(minutes=10))
    n = len(times)
    rows = [lid_row((i * 101) % n + 1, t, quality=0 if i % 6 == 0 else 1) for i, t in enumerate(times)]
    assert len({r["id"] for r in rows}) == n  # a permutation of 1..n
    insert(src, "AD1_LidSensor", rows)
    average(averager_cfg(tmp_path, src, tgt))
    assert_same(written(tgt.engine), expected(rows))


@pytest.mark.parametrize("key", ["timefloor", "seed_timestart"])
def test_an_empty_target_starts_at_timefloor_or_seed_timestart(make_db, tmp_path, key):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = [lid_row(i, t) for i, t in enumerate(every(day, day + timedelta(hours=3, minutes=1),
                                                      timedelta(minutes=10)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    floor = day + timedelta(hours=1, minutes=30)  # inside a bin: its rows before the floor do not count
    average(averager_cfg(tmp_path, src, tgt, **{key: f"{floor:%Y-%m-%d %H:%M:%S}"}))
    got = written(tgt.engine)
    assert_same(got, expected([r for r in rows if r["date_time"] >= floor]))
    assert sorted(p["count"] for p in got.values()) == [3, 6]


def test_aggregate_none_replaces_null_aggregates(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = [lid_row(i, t, nulls=["Temp_LS"]) for i, t in enumerate(every(day, day + timedelta(hours=2, minutes=1),
                                                                          timedelta(minutes=10)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    average(averager_cfg(tmp_path, src, tgt, aggregate_none="-1"))
    got = written(tgt.engine)
    assert len(got) == 2
    for pay in got.values():
        assert [pay[f"Temp_LS_{fn}"] for fn in FUNCTIONS] == [-1, -1, -1, -1]
        assert pay["count"] == 6 and pay["Temp_GdLS_avg"] is not None


def test_keys_the_target_lacks_are_not_computed_and_its_unfilled_columns_are_null(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = [lid_row(i, t) for i, t in enumerate(every(day, day + timedelta(hours=1, minutes=1),
                                                      timedelta(minutes=10)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    events = average(averager_cfg(tmp_path, src, tgt, aggregate="avg,sum"))
    [warning] = events_named(events, "aggregate_mismatch")
    assert warning["unused"][0] == "Ultrasonic_GdLS_sum" and warning["missing"][0] == "Ultrasonic_GdLS_min"
    [pay] = written(tgt.engine).values()
    want = next(iter(expected(rows).values()))
    assert pay["Temp_LS_avg"] == pytest.approx(want["Temp_LS_avg"], rel=1e-5)
    assert pay["Temp_LS_min"] is None and pay["count"] == 6


def two_sources(day: datetime, days: int = 4, ad2_days: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """AD1 every 7 minutes, AD2 every 11 (from 2 past): their bins hold different rows and counts."""
    ad2_end = day + timedelta(days=days if ad2_days is None else ad2_days)
    return {"AD1_LidSensor": [lid_row(i, t, quality=0 if i % 3 == 0 else 1) for i, t in
                              enumerate(every(day, day + timedelta(days=days), timedelta(minutes=7)), start=1)],
            "AD2_LidSensor": [lid_row(i, t, quality=0 if i % 5 == 0 else 1) for i, t in
                              enumerate(every(day + timedelta(minutes=2), ad2_end, timedelta(minutes=11)), start=1)]}


def assert_bin_source_order(engine: sa.Engine) -> None:
    """SEQNOs follow (bin, source): AD1 before AD2 within an hour, every hour before the next."""
    t = tables_for(specmod.find_spec("DcsAdLidSensor"))
    with engine.connect() as conn:
        vld = conn.execute(sa.select(t.vld.c.TIMESTART, t.vld.c.SUBSITE).order_by(t.vld.c.SEQNO)).all()
    keys = [(ts.replace(minute=0, second=0), subsite) for ts, subsite in vld]  # Shanghai: whole hours from UTC
    assert keys == sorted(keys) and {k[1] for k in keys} == {1, 2}


def test_append_runs_equal_one_full_run(make_db, tmp_path):
    # both sources grow between the runs, and some runs stop after one territory bin (maxiter=1)
    src, full, appended = make_db("src"), make_db("full"), make_db("appended")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = two_sources(day)
    cfg_full = averager_cfg(tmp_path, src, full, name="full.cfg")
    cfg_app = averager_cfg(tmp_path, src, appended, name="appended.cfg")
    # the sources grow in chunks that end inside bins; after each chunk the averager appends
    cuts = [day, day + timedelta(hours=5, minutes=35), day + timedelta(days=1, hours=13, minutes=40),
            day + timedelta(days=3, hours=2, minutes=45), day + timedelta(days=5)]
    for n, (lo, hi) in enumerate(zip(cuts, cuts[1:], strict=False)):
        for table, table_rows in rows.items():
            insert(src, table, [r for r in table_rows if lo <= r["date_time"] < hi])
        if n == 2:  # one cell (a territory bin of each source) per run until there is nothing left
            for _ in range(5):
                events = average(cfg_app, maxiter=1)
                if events[-1]["reason"] == "done":
                    break
                assert events[-1]["reason"] == "maxiter"
                assert sorted(e["source"] for e in events_named(events, "sample")) == [
                    "AD1_LidSensor", "AD2_LidSensor"]
        else:
            average(cfg_app)
    average(cfg_full)
    assert target_rows(appended.engine, "DcsAdLidSensor") == target_rows(full.engine, "DcsAdLidSensor")
    assert_same(written(full.engine, AD1), expected(rows["AD1_LidSensor"]))
    assert_same(written(full.engine, AD2), expected(rows["AD2_LidSensor"]))
    assert_bin_source_order(full.engine)


@pytest.mark.parametrize("territory", ["1d", "8h"])
def test_runs_cut_anywhere_equal_one_full_run_when_one_source_ends_early(make_db, tmp_path, territory):
    # AD2 stops a day and a half early: AD1 goes on to its own last complete bin, not held back,
    # and runs cut after every cell write exactly what one run writes
    src, full, cut = make_db("src"), make_db("full"), make_db("cut")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = two_sources(day, days=3, ad2_days=2)
    rows["AD2_LidSensor"] = [r for r in rows["AD2_LidSensor"] if r["date_time"] < day + timedelta(days=1, hours=13)]
    for table, table_rows in rows.items():
        insert(src, table, table_rows)
    average(averager_cfg(tmp_path, src, full, name="full.cfg", territory=territory))
    cfg_cut = averager_cfg(tmp_path, src, cut, name="cut.cfg", territory=territory)
    runs = 1
    while (events := average(cfg_cut, maxiter=1))[-1]["reason"] == "maxiter":
        runs += 1
        assert events[-1]["cells"] == 1 and runs < 40
    assert runs == {"1d": 3, "8h": 9}[territory]  # one run per cell: 71 complete hours of AD1
    assert target_rows(cut.engine, "DcsAdLidSensor") == target_rows(full.engine, "DcsAdLidSensor")
    assert_same(written(full.engine, AD1), expected(rows["AD1_LidSensor"]))
    assert_same(written(full.engine, AD2), expected(rows["AD2_LidSensor"]))
    assert_bin_source_order(full.engine)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 4])
def test_sigkill_between_batches_then_restart_equals_one_full_run(make_db, tmp_path, kill_after):
    src, full, killed = make_db("src"), make_db("full"), make_db("killed")
    make_source(src)
    rows = two_sources(datetime(2011, 2, 1), days=3)
    for table, table_rows in rows.items():
        insert(src, table, table_rows)
    average(averager_cfg(tmp_path, src, full, name="full.cfg"))
    cfg = averager_cfg(tmp_path, src, killed, name="killed.cfg")
    # batches of 7 records: a batch ends inside a cell, and inside an hour between AD1 and AD2
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("average_paused.py")), str(cfg),
                             SECTION, str(kill_after), "7"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "PAUSED" and proc.poll() is None, line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    vld, _ = target_rows(killed.engine, "DcsAdLidSensor")
    assert len(vld) == 7 * kill_after, "only the committed batches are there"
    events = average(cfg)
    [start_ad1, start_ad2] = events_named(events, "startup")
    assert start_ad1["seqno"] is not None and start_ad2["seqno"] is not None
    assert target_rows(killed.engine, "DcsAdLidSensor") == target_rows(full.engine, "DcsAdLidSensor")


@pytest.mark.parametrize("gap", ["no rows", "every row filtered out"])
def test_maxiter_runs_get_past_a_stretch_without_rows(make_db, tmp_path, gap):
    # 12 hours without a row that counts (territory 6h: two cells) between data; maxiter=2 a run:
    # every run must get somewhere, the last one says done, and the whole equals one full run
    src, full, cut = make_db("src"), make_db("full"), make_db("cut")
    make_source(src)
    d = datetime(2011, 2, 1)
    hole = (d + timedelta(hours=12), d + timedelta(hours=24))
    rows = [lid_row(i, t, quality=0 if hole[0] <= t < hole[1] else 1)
            for i, t in enumerate(every(d, d + timedelta(days=2), timedelta(minutes=10)), start=1)
            if gap != "no rows" or not hole[0] <= t < hole[1]]
    insert(src, "AD1_LidSensor", rows)
    average(averager_cfg(tmp_path, src, full, name="full.cfg", territory="6h"))
    cfg = averager_cfg(tmp_path, src, cut, name="cut.cfg", territory="6h")
    reasons = []
    while not reasons or reasons[-1][0] == "maxiter":
        events = average(cfg, maxiter=2)
        reasons.append((events[-1]["reason"], events[-1]["records"]))
        assert len(reasons) < 10, reasons
    assert all(records > 0 for _, records in reasons), reasons
    assert target_rows(cut.engine, "DcsAdLidSensor") == target_rows(full.engine, "DcsAdLidSensor")
    assert_same(written(full.engine), expected(rows))


def test_maxiter_counts_only_cells_whose_records_were_committed(make_db, tmp_path, monkeypatch):
    # the target is lost at the run's one commit: the reconnect plans those cells again, and
    # maxiter still lets them be written in this run
    src, ref, tgt = make_db("src"), make_db("ref"), make_db("tgt")
    make_source(src)
    for table, table_rows in two_sources(datetime(2011, 2, 1), days=4).items():
        insert(src, table, table_rows)
    monkeypatch.setattr(averager.daemon, "BATCH_SECONDS", 3600.0)
    average(averager_cfg(tmp_path, src, ref, name="ref.cfg"), maxiter=2)
    real, calls = writer.write_many, []

    def lost_first_time(*args: Any, **kw: Any) -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("Lost connection to server during query"))
        return real(*args, **kw)

    monkeypatch.setattr(writer, "write_many", lost_first_time)
    events = average(averager_cfg(tmp_path, src, tgt, reconnect_max_wait="1s"), maxiter=2)
    assert events_named(events, "db_retry") and events[-1]["reason"] == "maxiter"
    assert target_rows(tgt.engine, "DcsAdLidSensor") == target_rows(ref.engine, "DcsAdLidSensor")
    assert len(target_rows(ref.engine, "DcsAdLidSensor")[0]) == 2 * 2 * 24


def test_cells_take_every_sources_territory_bins_together():
    d = datetime(2011, 2, 1)
    day = timedelta(days=1)
    ad1 = [(d + timedelta(hours=5), d + day), (d + day, d + 2 * day), (d + 2 * day, d + 2 * day + timedelta(hours=3))]
    ad2 = [(d - day, d), (d, d + day)]
    got = [[(u.cell, u.source, u.n, u.lo, u.hi) for u in cell] for cell in averager.cells([ad1, ad2], day)]
    assert got == [[(d - day, 1, 1, d - day, d)],
                   [(d, 0, 1, d + timedelta(hours=5), d + day), (d, 1, 2, d, d + day)],
                   [(d + day, 0, 2, d + day, d + 2 * day)],
                   [(d + 2 * day, 0, 3, d + 2 * day, d + 2 * day + timedelta(hours=3))]]
    # one cell's groups in (bin, source) order; a bin index counts from its query's own lo
    u1, u2 = averager.Unit(d, 0, 1, d + timedelta(hours=5), d + day), averager.Unit(d, 1, 2, d, d + day)
    g = [{averager.BIN: b, "tag": (s, b)} for s, b in [(0, 0), (0, 2), (1, 3), (1, 5), (1, 9)]]
    ordered = averager.in_order([(u1, g[:2]), (u2, g[2:])], HOUR)
    assert [x["tag"] for _, x in ordered] == [(1, 3), (0, 0), (1, 5), (0, 2), (1, 9)]


def test_a_smaller_binsize_on_a_target_of_larger_records_is_warned(make_db, tmp_path):
    tgt, cfg = three_days_of_ad1(make_db, tmp_path, timedelta(minutes=10))
    assert not events_named(average(cfg, maxiter=1), "binsize_changed")
    assert not events_named(average(cfg, maxiter=1), "binsize_changed")  # a resume at the same binsize
    [warning] = events_named(average(cfg, binsize="10m"), "binsize_changed")
    assert warning["source"] == "AD1_LidSensor" and warning["binsize"] == "10m" and "--drop-target" in warning["action"]


def test_bins_follow_local_midnight_and_validities_are_utc(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    start = datetime(2011, 2, 1, 22, 0)  # Asia/Shanghai, UTC+8: local midnight is 16:00 UTC
    times = every(start, datetime(2011, 2, 2, 3, 0), timedelta(minutes=10)) + [datetime(2011, 2, 2, 3, 0)]
    insert(src, "AD1_LidSensor", [lid_row(i, t) for i, t in enumerate(times, start=1)])
    events = average(averager_cfg(tmp_path, src, tgt))
    assert sorted(written(tgt.engine)) == [(datetime(2011, 2, 1, h, 0), datetime(2011, 2, 1, h, 50))
                                           for h in (14, 15, 16, 17, 18)]
    assert [s["range"] for s in events_named(events, "sample")] == [
        ["2011-02-01 22:00:00", "2011-02-02 00:00:00"], ["2011-02-02 00:00:00", "2011-02-02 03:00:00"]]


def test_bins_follow_local_time_across_dst_changes(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    ny = ZoneInfo("America/New_York")

    def local_rows(utc_start: datetime, hours: int) -> list[dict[str, Any]]:
        # a DCS clock on local wall time: 20 min steps of real time
        stamps = [(utc_start + timedelta(minutes=20 * k)).replace(tzinfo=UTC).astimezone(ny).replace(tzinfo=None)
                  for k in range(hours * 3 + 1)]
        return [lid_row(i, t) for i, t in enumerate(stamps, start=1)]

    spring = local_rows(datetime(2011, 3, 13, 4, 0), 6)   # local 23:00 .. 06:00; 02:00-03:00 does not exist
    autumn = local_rows(datetime(2011, 11, 6, 4, 0), 5)   # local 00:00 .. 04:00; 01:00-02:00 happens twice
    insert(src, "AD1_LidSensor", spring)
    insert(src, "AD2_LidSensor", autumn)
    events = average(averager_cfg(tmp_path, src, tgt, source_tz="America/New_York"))
    got_spring, got_autumn = written(tgt.engine, AD1), written(tgt.engine, AD2)
    assert_same(got_spring, expected(spring, ny))
    assert_same(got_autumn, expected(autumn, ny))
    # no bin for the missing hour; the repeated hour is one local bin with two hours of rows
    assert sorted(ts for ts, _ in got_spring) == [datetime(2011, 3, 13, h) for h in range(4, 10)]
    assert sorted(p["count"] for p in got_autumn.values()) == [3, 3, 3, 6]
    assert [s["range"] for s in events_named(events, "sample") if s["source"] == "AD1_LidSensor"] == [
        ["2011-03-12 23:00:00", "2011-03-13 00:00:00"], ["2011-03-13 00:00:00", "2011-03-13 06:00:00"]]


def test_drop_target_recreates_the_tables(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = [lid_row(i, t) for i, t in enumerate(every(day, day + timedelta(hours=5, minutes=1),
                                                      timedelta(minutes=15)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    cfg = averager_cfg(tmp_path, src, tgt)
    average(cfg)
    first = target_rows(tgt.engine, "DcsAdLidSensor")
    # a stray record far ahead: a plain re-run resumes after it and writes nothing
    tables = create_tables(tgt.engine, specmod.find_spec("DcsAdLidSensor"))
    writer.write(tgt.engine, tables, writer.Record(datetime(2020, 1, 1), datetime(2020, 1, 2),
                                                   Context(sitemask=1, subsite=1), [{"count": 0}]))
    assert events_named(average(cfg), "propagate") == []
    events = average(cfg, drop_target=True)
    assert events[0]["event"] == "drop_target"
    assert target_rows(tgt.engine, "DcsAdLidSensor") == first


def test_drop_target_is_refused_for_offline_db(tmp_path, capsys):
    target = tmp_path / "offline_db.db"
    url = sa.engine.make_url(f"sqlite:///{target}")
    engine = databases.make_engine(url)
    tables = create_tables(engine, specmod.find_spec("DcsAdLidSensor"))
    writer.write(engine, tables, writer.Record(datetime(2011, 1, 1), datetime(2011, 1, 2),
                                               Context(sitemask=1, subsite=1), [{"count": 1}]))
    cfg = write_cfg(tmp_path / "averager.cfg", {SECTION: {
        "regime": "scraperd.regimes.adlidsensor:AdLidSensor", "mode": "averager", "aggregate": "avg",
        "source": f"sqlite:///{tmp_path / 'src.db'}", "target": f"sqlite:///{target}"}})
    saved = structlog.get_config()
    try:
        rc = cli.main(["-c", str(cfg), "run", SECTION, "--drop-target"])
    finally:
        structlog.configure(**saved)
        structlog.contextvars.clear_contextvars()
    assert rc == 78
    assert "offline_db" in capsys.readouterr().err
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.vld)).scalar() == 1
    engine.dispose()
    assert not (tmp_path / "src.db").exists(), "nothing connected before the refusal"


def test_sigterm_between_territory_bins_commits_the_finished_ones(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    rows = [lid_row(i, t) for i, t in enumerate(every(day, day + timedelta(days=1, minutes=1),
                                                      timedelta(minutes=20)), start=1)]
    insert(src, "AD1_LidSensor", rows)
    cfg = averager_cfg(tmp_path, src, tgt, territory="6h")

    def kill_at_second_sample(event: dict) -> None:
        if event["event"] == "sample" and event["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the real signal; the handler only sets the stop event

    before = signal.getsignal(signal.SIGTERM)
    events = average(cfg, on_event=kill_at_second_sample)
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"
    assert events[-1]["event"] == "shutdown" and events[-1]["reason"] == "SIGTERM"
    assert len(events_named(events, "sample")) == 2
    want = expected(rows)
    assert_same(written(tgt.engine), {k: v for k, v in want.items() if k[0] < utc(day + timedelta(hours=12), SHANGHAI)})
    average(cfg)
    assert_same(written(tgt.engine), want)


def three_days_of_ad1(make_db: Callable[[str], Any], tmp_path: Path, step: timedelta) -> tuple[Any, Path]:
    """AD1 rows every `step` over three days (and a minute) from 2011-02-01; the target and the config."""
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    day = datetime(2011, 2, 1)
    insert(src, "AD1_LidSensor", [lid_row(i, t) for i, t in enumerate(
        every(day, day + timedelta(days=3, minutes=1), step), start=1)])
    return tgt, averager_cfg(tmp_path, src, tgt)


def test_progress_events_when_not_on_a_terminal(make_db, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # as under supervisord, even with pytest -s
    _, cfg = three_days_of_ad1(make_db, tmp_path, HOUR)
    seen = events_named(average(cfg, maxiter=2), "progress")
    assert [(p["done"], p["total"]) for p in seen] == [(1, 2), (2, 2)]
    assert seen[-1]["eta_s"] == 0 and seen[-1]["rows_per_s"] > 0
    seen = events_named(average(cfg), "progress")
    assert [(p["done"], p["total"]) for p in seen] == [(1, 1)]


def test_progress_bar_on_a_terminal():
    class Tty:
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return True

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    tty = Tty()
    bar = progress.Progress(4, stream=tty)
    for _ in range(4):
        bar.advance(1000)
    bar.close()
    assert "4/4 bins" in tty.text and "rows/s" in tty.text and "ETA" in tty.text
    assert tty.text.endswith("\n")


def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run `python -m scraperd ARGS` with stdout and stderr on a pseudo-terminal; its exit code and output."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "scraperd", *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=60), out.decode(errors="replace")


def test_on_a_terminal_the_bar_shows_and_records_are_not_listed_one_by_one(make_db, tmp_path):
    tgt, cfg = three_days_of_ad1(make_db, tmp_path, timedelta(minutes=10))
    rc, out = run_on_a_terminal(["-c", str(cfg), "run", SECTION])
    assert rc == 0, out
    assert "3/3 bins" in out and "rows/s" in out, out
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)  # without the colours
    assert "shutdown" in plain and "records=72" in plain, plain
    assert "propagate" not in out  # 72 of them: at debug level on a terminal
    assert len(written(tgt.engine)) == 72
    # not on a terminal (supervisord, a pipe): JSON lines, every record's propagate event among them
    done = subprocess.run([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", SECTION, "--drop-target"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(events_named(events, "propagate")) == 72


def test_unusable_settings_are_config_errors_before_the_target_is_touched(tmp_path):
    src = SimpleNamespace(url=sa.engine.make_url(f"sqlite:///{tmp_path / 'src.db'}"))
    tgt = SimpleNamespace(url=sa.engine.make_url(f"sqlite:///{tmp_path / 'tgt.db'}"))
    make_source(src)
    for keys, key in [*STATIC_BAD_BINS,
                      ({"aggregate_filter": "Qualty != 0"}, "aggregate_filter"),
                      ({"aggregate_skips": "id,date_time,Quality,Nope"}, "aggregate_skips"),
                      ({"kls": "GDcsAdTemp"}, "aggregate")]:
        cfg = averager_cfg(tmp_path, src, tgt, **keys)
        with pytest.raises(ConfigError) as err:
            average(cfg)
        assert err.value.key == key, keys
    assert not (tmp_path / "tgt.db").exists()


STATIC_BAD_BINS = [({"territory": "90m"}, "territory"), ({"binsize": "1.5s"}, "binsize"),
                   ({"binsize": "0s"}, "binsize"), ({"binsize": "7m"}, "binsize"),
                   ({"territory": "5h", "binsize": "1h"}, "territory"), ({"binsize": "25h", "territory": "50h"}, "binsize")]


def files(tmp_path: Path) -> tuple[SimpleNamespace, SimpleNamespace]:
    return tuple(SimpleNamespace(url=sa.engine.make_url(f"sqlite:///{tmp_path / n}")) for n in ("s.db", "t.db"))


@pytest.mark.parametrize(("keys", "key"), STATIC_BAD_BINS)
def test_check_config_refuses_bins_that_run_would_refuse(tmp_path, capsys, keys, key):
    cfg = averager_cfg(tmp_path, *files(tmp_path),
                       **keys)
    assert cli.main(["-c", str(cfg), "check-config"]) == 78
    err = capsys.readouterr().err
    assert f"[{SECTION}] {key}: must " in err, err


def test_bins_of_whole_days_and_divisors_of_a_day_are_fine(tmp_path, capsys):
    for keys in [{"territory": "2d", "binsize": "1h"}, {"territory": "1d", "binsize": "10m"},
                 {"territory": "3d", "binsize": "1d"}, {"territory": "6h", "binsize": "90m"}]:
        cfg = averager_cfg(tmp_path, *files(tmp_path),
                           **keys)
        assert cli.main(["-c", str(cfg), "check-config"]) == 0, (keys, capsys.readouterr())


def test_the_grid_is_the_same_wherever_a_run_starts():
    size, territory = timedelta(hours=1), timedelta(days=1)
    assert averager.bin_floor(datetime(2011, 2, 1, 13, 59, 59), size) == datetime(2011, 2, 1, 13)
    assert averager.territory_bins(datetime(2011, 2, 1, 13), datetime(2011, 2, 3, 5), territory) == [
        (datetime(2011, 2, 1, 13), datetime(2011, 2, 2)), (datetime(2011, 2, 2), datetime(2011, 2, 3)),
        (datetime(2011, 2, 3), datetime(2011, 2, 3, 5))]
    assert averager.territory_bins(datetime(2011, 2, 1, 3), datetime(2011, 2, 1, 3), territory) == []
    # resuming: the last record's TIMESTART (UTC) lies in the last written bin; the next bin follows
    assert averager.resume_start(datetime(2011, 2, 1, 5, 0, 13), SHANGHAI, size) == datetime(2011, 2, 1, 14)
    # a one-row group at a bin's last second ends on the next bin's start: TIMESTART decides, not TIMEEND
    start, end = averager.validity(datetime(2011, 2, 1, 13, 59, 59), datetime(2011, 2, 1, 13, 59, 59), SHANGHAI)
    assert end == datetime(2011, 2, 1, 6, 0, 0)
    assert averager.resume_start(start, SHANGHAI, size) == datetime(2011, 2, 1, 14)
