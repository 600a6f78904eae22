"""SQLite keeps DATETIME as text: times written by hand and times with SQLAlchemy's '.000000' alike.

An operator (or another tool) may fill an SQLite source with sqlite3 and '2011-02-01 00:00:00' text,
SQLAlchemy's default writes '2011-02-01 00:00:00.000000'. Both must give the same records, restarts
included (sv0 is looked up by its exact date_time), and rows exactly on a boundary must fall on the
right side of it. The target is written as MySQL shows it: whole seconds, no fraction.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from scraperd import databases
from scraperd.regimes.adlidsensor import QUANTITIES
from tests.scrapekit import run_section, target_rows, write_cfg
from tests.sourcedata import create_source

T0 = datetime(2011, 2, 1)
PROBES = [f"DBNS_SAB_Temp_PT{p}" for p in range(1, 6)]


def temp_rows() -> list[dict]:
    """Rows on whole minutes and hours (boundaries), a repeated date_time, steps past threshold."""
    rows, t = [], T0
    steps = [0, 10, 10, 50, 0, 60, 10, 3590, 10, 10, 60, 60]
    for i in range(1, 61):
        t += timedelta(seconds=steps[i % len(steps)])
        rows.append({"id": i, "date_time": t, **{p: round(20 + (i // 3) % 4 * 1.5 + k, 2) for k, p in enumerate(PROBES)}})
    return rows


def fill(url: sa.engine.URL, table: str, rows: list[dict], *, fraction: bool) -> None:
    """Insert with plain sqlite3, date_time as text with or without '.000000'."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if fraction else "%Y-%m-%d %H:%M:%S"
    cols = list(rows[0])
    con = sqlite3.connect(str(url.database))
    with con:
        con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [[r[c].strftime(fmt) if c == "date_time" else r[c] for c in cols] for r in rows])
    con.close()


def scraper_cfg(path: Path, src: sa.engine.URL, tgt: sa.engine.URL) -> Path:
    return write_cfg(path, {"adtemp_scraper": {
        "regime": "scraperd.regimes.adtemp:AdTemp", "mode": "scraper", "source": str(src), "target": str(tgt),
        "sleep": "0s", "heartbeat": "0.01s", "interval": "10s", "maxage": "2m", "threshold": "1.0",
        "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
        "seed_timeend": "2011-02-01 00:00:10", "batch_size": "4", "log_samples": "False"}})


def scraped(tmp_path: Path, tag: str, fraction: bool, cuts: list[int]):
    src = sa.engine.make_url(f"sqlite:///{tmp_path / (tag + '_src.db')}")
    tgt = sa.engine.make_url(f"sqlite:///{tmp_path / (tag + '_tgt.db')}")
    create_source(src)
    fill(src, "DBNS_SAB_Temp", temp_rows(), fraction=fraction)
    cfg = scraper_cfg(tmp_path / f"{tag}.cfg", src, tgt)
    for m in [*cuts, 200]:
        run_section(cfg, "adtemp_scraper", maxiter=m, catch_up=True)
    engine = databases.make_engine(tgt)
    try:
        return target_rows(engine, "DcsAdTemp"), tgt
    finally:
        engine.dispose()


@pytest.mark.parametrize("fraction", [False, True])
def test_source_times_with_or_without_a_fraction_give_the_same_records(tmp_path, fraction):
    reference, tgt = scraped(tmp_path, "ref", False, [])
    got, _ = scraped(tmp_path, "got", fraction, [3, 8, 9, 17])  # restarts: sv0 found by its exact time
    assert got == reference
    vld, _pay = reference
    assert len(vld) > 5
    # the target as MySQL shows it: whole seconds, as text a raw reader can compare
    con = sqlite3.connect(str(tgt.database))
    texts = [r[0] for r in con.execute("SELECT TIMESTART FROM DcsAdTempVld ORDER BY SEQNO")]
    assert texts[0] == "2011-01-31 16:00:00"  # the seed: 2011-02-01 00:00 Shanghai
    assert all(len(t) == 19 for t in texts)
    assert con.execute("SELECT count(*) FROM DcsAdTempVld WHERE TIMESTART = '2011-01-31 16:00:00'").fetchone() == (1,)
    con.close()


@pytest.mark.parametrize("fraction", [False, True])
def test_averager_bins_take_a_row_on_their_start_whatever_its_text(tmp_path, fraction):
    src = sa.engine.make_url(f"sqlite:///{tmp_path / 'src.db'}")
    tgt = sa.engine.make_url(f"sqlite:///{tmp_path / 'tgt.db'}")
    create_source(src)
    times = [T0 + timedelta(minutes=m) for m in (0, 30, 59, 60, 90, 120, 121, 180)]  # on 00:00, 01:00, 02:00
    rows = [{"id": i, "date_time": t, "Quality": 1, **{q: i for q in QUANTITIES}} for i, t in enumerate(times, 1)]
    fill(src, "AD1_LidSensor", rows, fraction=fraction)
    cfg = write_cfg(tmp_path / "avg.cfg", {"adlid_averager": {
        "regime": "scraperd.regimes.adlidsensor:AdLidSensor", "mode": "averager", "source": str(src),
        "target": str(tgt), "aggregate": "avg,min,max", "aggregate_skips": "id,date_time,Quality"}})
    run_section(cfg, "adlid_averager")
    con = sqlite3.connect(str(tgt.database))
    got = con.execute("SELECT v.TIMESTART, v.TIMEEND, p.count, p.Temp_LS_min, p.Temp_LS_max FROM DcsAdLidSensorVld v "
                      "JOIN DcsAdLidSensor p ON p.SEQNO = v.SEQNO ORDER BY v.SEQNO").fetchall()
    con.close()
    # 03:00 is the partial last bin: it waits
    assert got == [("2011-01-31 16:00:00", "2011-01-31 16:59:00", 3, 1.0, 3.0),
                   ("2011-01-31 17:00:00", "2011-01-31 17:30:00", 2, 4.0, 5.0),
                   ("2011-01-31 18:00:00", "2011-01-31 18:01:00", 2, 6.0, 7.0)]


def test_a_target_written_with_fractions_is_cut_to_whole_seconds_at_start_up(tmp_path):
    # an SQLite target from before times were whole-second text: its rows would compare wrong at
    # their exact TIMESTART/TIMEEND against the times bound now; create_tables() rewrites them once
    from scraperd.dbi import reader
    from scraperd.dbi import spec as specmod
    from scraperd.dbi.context import Context
    from scraperd.dbi.tables import create_tables

    url = sa.engine.make_url(f"sqlite:///{tmp_path / 't.db'}")
    engine = databases.make_engine(url)
    tables = create_tables(engine, specmod.find_spec("DcsAdTemp"))
    con = sqlite3.connect(str(url.database))
    with con:
        con.execute("INSERT INTO DcsAdTempVld VALUES (1, '2011-01-31 16:00:00.000000', '2011-01-31 16:01:00.000000',"
                    " 32, 1, 1, 0, -1, '2011-01-31 16:00:00.000000', '2026-01-01 00:00:00.000000')")
        con.execute("INSERT INTO DcsAdTemp (SEQNO, ROW_COUNTER) VALUES (1, 1)")
    assert reader.context_query(engine, tables, datetime(2011, 1, 31, 16), Context(sitemask=32, subsite=1))[0] is None
    create_tables(engine, specmod.find_spec("DcsAdTemp"))  # what every scraper and averager start-up does
    vld, _ = reader.context_query(engine, tables, datetime(2011, 1, 31, 16), Context(sitemask=32, subsite=1))
    assert vld is not None and vld.seqno == 1
    assert reader.context_query(engine, tables, datetime(2011, 1, 31, 16, 1), Context(sitemask=32, subsite=1))[0] is None
    assert con.execute("SELECT TIMESTART, TIMEEND, VERSIONDATE, INSERTDATE FROM DcsAdTempVld").fetchall() == [
        ("2011-01-31 16:00:00", "2011-01-31 16:01:00", "2011-01-31 16:00:00", "2026-01-01 00:00:00")]
    con.close()
    engine.dispose()
