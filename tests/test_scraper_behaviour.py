"""Scraper behaviour on real databases: regimes, thresholds, offset, maxage, aggregation, time zones, bad rows."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from scraperd import cli
from scraperd.dcsnames import parse_table
from scraperd.scrape.sampling import to_utc
from tests.conftest import wait_until
from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg
from tests.sourcedata import create_source, insert_rows

T0 = datetime(2011, 2, 1, 0, 0, 0)
SEED = {"seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:00:10"}
REGIMES = {"adtemp": "scraperd.regimes.adtemp:AdTemp", "pmthv": "scraperd.regimes.pmthv:PmtHv",
           "adlid": "scraperd.regimes.adlidsensor:AdLidSensor"}


def setup(make_db, tmp_path, regime, tables_rows, tz="Asia/Shanghai", **keys):
    src, tgt = make_db("src"), make_db("tgt")
    create_source(src.url)
    for table, rows in tables_rows.items():
        insert_rows(src.url, table, rows)
    section = {"regime": REGIMES[regime], "mode": "scraper", "source": url_text(src), "target": url_text(tgt),
               "interval": "10s", "sleep": "0s", "heartbeat": "0.01s", "maxage": "10m", "threshold": "1.0",
               "source_tz": tz, **SEED}
    section.update({k: str(v) for k, v in keys.items()})
    cfg = write_cfg(tmp_path / "scraper.cfg", {"s": section})
    return cfg, src, tgt


def temp_row(i, t, values):
    return {"id": i, "date_time": t, **{f"DBNS_SAB_Temp_PT{p}": v for p, v in zip(range(1, 6), values, strict=True)}}


def props(events):
    return events_named(events, "propagate")


# ------------------------------------------------------------------------------------------------------------
# regimes


def test_pmthv_writes_192_rows_per_seqno_with_every_ladder_col_ring(make_db, tmp_path):
    lcr = [(ld, c, r) for ld in range(1, 9) for c in range(1, 4) for r in range(1, 9)]
    rows_hv, rows_pw = [], []
    for i in range(1, 6):
        t = T0 + timedelta(seconds=10 * i)
        rows_hv.append({"id": i, "date_time": t, **{f"L{a}C{b}R{c}": 1000 + a * 100 + b * 10 + c + (5 * (i == 4))
                                                    for a, b, c in lcr}})
        rows_pw.append({"id": i, "date_time": t, **{f"L{a}C{b}R{c}": 1 for a, b, c in lcr}})
    cfg, src, tgt = setup(make_db, tmp_path, "pmthv", {"DBNS_AD1_HV": rows_hv, "DBNS_AD1_HVPw": rows_pw})
    events = run_section(cfg, "s", maxiter=20, catch_up=True)
    p = props(events)
    # row 4 moves every voltage by 5 V (> threshold 1.0), row 5 moves it back: two changes; AD2 has no rows
    assert [(e["source"], e["rows"]) for e in p] == [("DBNS_AD1_HV", 192)] * 2
    vld, pay = target_rows(tgt.engine, "DcsPmtHv")
    seqno = p[0]["seqno"]
    rows = [r for r in pay if r[0] == seqno]
    assert [r[1] for r in rows] == list(range(1, 193))  # ROW_COUNTER 1..192
    got = {(r[2], r[3], r[4]): (r[5], r[6]) for r in rows}
    assert set(got) == set(lcr)
    assert got[(3, 2, 8)] == (1000 + 328 + 5, 1)
    starts = {e["source"]: e for e in events_named(events, "startup")}
    assert (starts["DBNS_AD1_HV"]["sitemask"], starts["DBNS_AD1_HV"]["subsite"]) == (1, 1)
    assert (starts["DBNS_AD2_HV"]["sitemask"], starts["DBNS_AD2_HV"]["subsite"]) == (1, 2)


def test_pmthv_power_flag_change_is_a_change(make_db, tmp_path):
    names = [f"L{a}C{b}R{c}" for a in range(1, 9) for b in range(1, 4) for c in range(1, 9)]
    hv = [{"id": i, "date_time": T0 + timedelta(seconds=10 * i), **{n: 1500 for n in names}} for i in range(1, 5)]
    pw = [{"id": i, "date_time": T0 + timedelta(seconds=10 * i), **{n: 1 for n in names}} for i in range(1, 5)]
    pw[2]["L8C3R8"] = 0
    cfg, src, tgt = setup(make_db, tmp_path, "pmthv", {"DBNS_AD1_HV": hv, "DBNS_AD1_HVPw": pw})
    samples = events_named(run_section(cfg, "s", maxiter=20, catch_up=True), "sample")
    assert [(s["ids"], s["state"]) for s in samples if s["source"] == "DBNS_AD1_HV"] == [
        ([1], "notfull"), ([1, 2], "unchanged"), ([1, 3], "changed"), ([3, 4], "changed")]


def test_adtemp_threshold_is_strict(make_db, tmp_path):
    vals = [20.0, 21.0, 21.5, 22.25, 22.25]  # deltas from sv[0]: 1.0 (not >), 1.5 (>), then 0.75, 0.75
    rows = [temp_row(i, T0 + timedelta(seconds=10 * i), [v, 1, 1, 1, 1]) for i, v in enumerate(vals, start=1)]
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows})
    samples = events_named(run_section(cfg, "s", maxiter=20, catch_up=True), "sample")
    assert [(s["ids"], s["state"]) for s in samples] == [
        ([1], "notfull"), ([1, 2], "unchanged"), ([1, 3], "changed"), ([3, 4], "unchanged"), ([3, 5], "unchanged")]


def test_offset_reads_every_offset_plus_one_row(make_db, tmp_path):
    rows = [temp_row(i, T0 + timedelta(seconds=10 * i), [20, 1, 1, 1, 1]) for i in range(1, 60)]
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, offset=10, maxage="1h")
    samples = events_named(run_section(cfg, "s", maxiter=50, catch_up=True), "sample")
    # tcursor after the seed is 00:00:10 (row 1); skip 10 rows, read the 11th: ids 11, 22, 33, ...
    assert [s["ids"][-1] for s in samples] == [11, 22, 33, 44, 55]


def test_exactly_maxage_does_not_propagate_one_second_more_does(make_db, tmp_path):
    rows = [temp_row(1, T0 + timedelta(seconds=10), [20, 1, 1, 1, 1]),
            temp_row(2, T0 + timedelta(seconds=70), [20, 1, 1, 1, 1]),
            temp_row(3, T0 + timedelta(seconds=71), [20, 1, 1, 1, 1])]
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, maxage="1m")
    samples = events_named(run_section(cfg, "s", maxiter=10, catch_up=True), "sample")
    assert [(s["ids"], s["state"], s["proceed"]) for s in samples] == [
        ([1], "notfull", False), ([1, 2], "unchanged", False), ([1, 3], "overage", True)]


# ------------------------------------------------------------------------------------------------------------
# generic aggregation


def lid_rows(n, quality=lambda i: 1, start=T0, step=3):
    from scraperd.regimes.adlidsensor import QUANTITIES

    rows = []
    for i in range(1, n + 1):
        row = {"id": i, "date_time": start + timedelta(seconds=step * i), "Quality": quality(i)}
        for k, q in enumerate(QUANTITIES):
            row[q] = (i * 7 + k * 3) % 23 + (0.25 if "Temp" in q else 0)
        rows.append(row)
    return rows


def py_aggregates(rows, lo, hi, column):
    vals = [float(r[column]) for r in rows if lo <= r["date_time"] < hi and r["Quality"] != 0]
    if not vals:
        return None
    return {"avg": sum(vals) / len(vals), "min": min(vals), "max": max(vals), "std": statistics.pstdev(vals),
            "count": len(vals)}


def test_aggregates_equal_a_python_computation_over_the_same_rows(make_db, tmp_path):
    rows = lid_rows(200, quality=lambda i: 0 if i % 5 == 0 else 1)
    cfg, src, tgt = setup(make_db, tmp_path, "adlid", {"AD1_LidSensor": rows}, maxage="2m", offset=3,
                          aggregate="avg,min,max,std", aggregate_skips="id,date_time,Quality",
                          aggregate_filter="Quality != 0")
    events = run_section(cfg, "s", maxiter=200, catch_up=True)
    p = [e for e in props(events) if e["source"] == "AD1_LidSensor"]
    assert len(p) >= 3
    vld, pay = target_rows(tgt.engine, "DcsAdLidSensor")
    from scraperd.dbi import spec as specmod

    cols = ["SEQNO", "ROW_COUNTER"] + [c.name for c in specmod.find_spec("DcsAdLidSensor").columns]
    by_seqno = {r[0]: dict(zip(cols, r, strict=True)) for r in pay}
    samples = [s for s in events_named(events, "sample") if s["proceed"]]
    for s, e in zip(samples, p, strict=True):
        lo, hi = (datetime.strptime(x, "%Y-%m-%d %H:%M:%S") for x in s["range"])
        payload = by_seqno[e["seqno"]]
        for q in ("Temp_LS", "Ultrasonic_GdLS", "PS_Output_I"):
            want = py_aggregates(rows, lo, hi, q)
            for fn in ("avg", "min", "max", "std"):
                assert math.isclose(payload[f"{q}_{fn}"], want[fn], rel_tol=1e-5, abs_tol=1e-5), (q, fn)
            assert payload["count"] == want["count"]


def test_zero_samples_skip_the_propagation_with_a_warning(make_db, tmp_path):
    rows = lid_rows(60, quality=lambda i: 0)  # the filter removes everything
    cfg, src, tgt = setup(make_db, tmp_path, "adlid", {"AD1_LidSensor": rows}, maxage="30s",
                          aggregate="avg,min,max,std", aggregate_skips="id,date_time,Quality",
                          aggregate_filter="Quality != 0")
    events = run_section(cfg, "s", maxiter=100, catch_up=True)
    assert not [e for e in props(events) if e["source"] == "AD1_LidSensor"]
    warnings = events_named(events, "aggregate_empty")
    assert warnings and warnings[0]["log_level"] == "warning"
    vld, _ = target_rows(tgt.engine, "DcsAdLidSensor")
    assert len(vld) == 2  # the two seeds only


def test_zero_samples_with_aggregate_none_write_that_value(make_db, tmp_path):
    rows = lid_rows(30, quality=lambda i: 0)
    cfg, src, tgt = setup(make_db, tmp_path, "adlid", {"AD1_LidSensor": rows}, maxage="30s",
                          aggregate="avg,max", aggregate_skips="id,date_time,Quality",
                          aggregate_filter="Quality != 0", aggregate_none="-1")
    events = run_section(cfg, "s", maxiter=100, catch_up=True)
    p = [e for e in props(events) if e["source"] == "AD1_LidSensor"]
    assert p
    _, pay = target_rows(tgt.engine, "DcsAdLidSensor")
    from scraperd.dbi import spec as specmod

    cols = ["SEQNO", "ROW_COUNTER"] + [c.name for c in specmod.find_spec("DcsAdLidSensor").columns]
    row = dict(zip(cols, [r for r in pay if r[0] == p[0]["seqno"]][0], strict=True))
    assert row["Temp_LS_avg"] == -1 and row["Temp_LS_max"] == -1 and row["count"] == 0
    assert row["Temp_LS_std"] is None  # not configured


def test_filter_naming_an_unknown_column_is_a_config_error(make_db, tmp_path, capsys):
    cfg, *_ = setup(make_db, tmp_path, "adlid", {"AD1_LidSensor": lid_rows(5)},
                    aggregate="avg", aggregate_skips="id,date_time", aggregate_filter="Qualty != 0")
    assert cli.main(["-c", str(cfg), "run", "s", "--set", "maxiter=1"]) == 78
    assert "aggregate_filter: unknown column 'Qualty'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# time zones


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Zurich"])
def test_validity_times_are_utc_across_a_dst_change(make_db, tmp_path, tz):
    zone = ZoneInfo(tz)
    # rows every 10 minutes of real time around the 2011-03-27 spring change (02:00 -> 03:00 in Zurich)
    start_utc = datetime(2011, 3, 26, 23, 0, 0)
    rows = []
    for i in range(1, 25):
        utc = start_utc + timedelta(minutes=10 * i)
        local = utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None)
        rows.append(temp_row(i, local, [float(i * 2), 1, 1, 1, 1]))  # every row changes by 2 > 1
    seed_local = (start_utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None))
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, tz=tz, interval="1m",
                          seed_timestart=(seed_local - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"),
                          seed_timeend=seed_local.strftime("%Y-%m-%d %H:%M:%S"))
    events = run_section(cfg, "s", maxiter=40, catch_up=True)
    p = props(events)
    assert len(p) == 23  # every row after the first is a change
    for e, i in zip(p, range(2, 25), strict=True):
        want = start_utc + timedelta(minutes=10 * i)
        assert e["timestart"] == want.strftime("%Y-%m-%d %H:%M:%S")
        assert e["timeend"] == (want + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert to_utc(rows[-1]["date_time"], zone) == start_utc + timedelta(minutes=240)


# ------------------------------------------------------------------------------------------------------------
# bad rows


def test_bad_rows_null_values_zero_and_1970_dates_and_duplicates_do_not_crash(make_db, tmp_path, backend):
    rows = [temp_row(1, T0 + timedelta(seconds=10), [20, 1, 1, 1, 1]),
            temp_row(2, T0 + timedelta(seconds=10), [50, 1, 1, 1, 1]),    # duplicate date_time: ignored
            temp_row(3, T0 + timedelta(seconds=20), [None, 1, 1, 1, 1]),  # NULL probe: a change
            temp_row(4, T0 + timedelta(seconds=30), [None, None, None, None, None]),
            temp_row(5, datetime(1970, 1, 1, 8, 0, 0), [1, 1, 1, 1, 1]),  # a resetting DCS clock
            temp_row(6, T0 + timedelta(seconds=40), [21, 1, 1, 1, 1])]
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows})
    with src.engine.begin() as conn:  # a zero date, as old DCS rows have
        if backend == "mysql":
            conn.exec_driver_sql("SET SESSION sql_mode = ''")
        conn.exec_driver_sql("INSERT INTO DBNS_SAB_Temp (id, date_time) VALUES (7, '0000-00-00 00:00:00')")
    events = run_section(cfg, "s", maxiter=20, catch_up=True)
    samples = events_named(events, "sample")
    assert [s["ids"] for s in samples] == [[1], [1, 3], [3, 4], [4, 6]]
    dup = events_named(events, "duplicate_date_time")
    assert [d["id"] for d in dup] == [2]
    bad = events_named(events, "bad_row")
    assert any(b.get("rows") == 2 for b in bad)  # the zero and the 1970 row, reported at start-up
    assert any(b.get("null_columns") for b in bad)  # NULL probes written as NULL, with a warning
    vld, pay = target_rows(tgt.engine, "DcsAdTemp")
    assert len(vld) == 4
    assert pay[1][2] is None  # Temp_PT1 of the record propagated from row 3


# ------------------------------------------------------------------------------------------------------------
# start-up, seeding, stopping


def test_empty_target_without_seeding_exits_78_and_says_how_to_seed(make_db, tmp_path, capsys):
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": []}, seed_target_tables="False")
    assert cli.main(["-c", str(cfg), "run", "s"]) == 78
    err = capsys.readouterr().err
    assert "seed_target_tables = True" in err and "seed_timestart" in err and "[s] seed_target_tables:" in err


def test_seeding_is_refused_for_offline_db(tmp_path, capsys):
    src = tmp_path / "fake_dcs.db"
    tgt = tmp_path / "offline_db.db"
    from sqlalchemy.engine import make_url

    create_source(make_url(f"sqlite:///{src}"))
    cfg = write_cfg(tmp_path / "s.cfg", {"s": {"regime": REGIMES["adtemp"], "source": f"sqlite:///{src}",
                                               "target": f"sqlite:///{tgt}", **SEED}})
    assert cli.main(["-c", str(cfg), "run", "s", "--set", "maxiter=1"]) == 78
    assert "seeding refused: the target database is offline_db" in capsys.readouterr().err


def test_log_samples_false_keeps_propagations_and_tune_only(make_db, tmp_path):
    rows = [temp_row(i, T0 + timedelta(seconds=10 * i), [i * 2, 1, 1, 1, 1]) for i in range(1, 8)]
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, log_samples="False")
    events = run_section(cfg, "s", maxiter=20, catch_up=True)
    assert not events_named(events, "sample")
    assert len(props(events)) == 6 and events_named(events, "tune")
    tune = events_named(events, "tune")[0]
    assert set(tune) >= {"maxlag_s", "lag_heartbeats", "sleep_s"}


def test_sigterm_finishes_the_write_logs_shutdown_and_exits_0(tmp_path):
    from sqlalchemy.engine import make_url

    src, tgt = make_url(f"sqlite:///{tmp_path / 'src.db'}"), make_url(f"sqlite:///{tmp_path / 'tgt.db'}")
    create_source(src)
    insert_rows(src, "DBNS_SAB_Temp", [temp_row(i, T0 + timedelta(seconds=10 * i), [20, 1, 1, 1, 1])
                                       for i in range(1, 5)])
    cfg = write_cfg(tmp_path / "s.cfg", {"s": {"regime": REGIMES["adtemp"], "source": str(src), "target": str(tgt),
                                               "sleep": "30s", "heartbeat": "30s", **SEED}})
    proc = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", "s"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def started() -> bool:
        line = proc.stdout.readline()
        lines.append(line)
        return '"event": "sample"' in line or not line

    wait_until(started, timeout=30, what="the first sample event")
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert '"event": "shutdown"' in out and '"reason": "SIGTERM"' in out


def test_dcs_table_names_give_sitemask_and_subsite():
    assert (parse_table("DBNS_AD1_HV").sitemask, parse_table("DBNS_AD1_HV").subsite) == (1, 1)
    assert (parse_table("DBNS_AD2_HVPw").sitemask, parse_table("DBNS_AD2_HVPw").subsite) == (1, 2)
    assert (parse_table("DBNS_SAB_Temp").sitemask, parse_table("DBNS_SAB_Temp").subsite) == (32, 1)
    assert (parse_table("AD2_LidSensor").sitemask, parse_table("AD2_LidSensor").subsite) == (1, 2)
    assert (parse_table("FARS_RPC_X").sitemask, parse_table("FARS_RPC_X").subsite) == (4, 7)


def test_faker_writes_ids_and_times_from_faker_timestart(make_db, tmp_path):
    src = make_db("src")
    cfg = write_cfg(tmp_path / "f.cfg", {"f": {"regime": REGIMES["adtemp"], "mode": "faker", "source": url_text(src),
                                               "faker_timestart": "2011-02-01 00:00:00", "interval": "10s",
                                               "sleep": "0s", "faker_dropsrc": "True", "profile": "modulo_ramp"}})
    run_section(cfg, "f", maxiter=12)
    run_section(cfg, "f", maxiter=3, faker_dropsrc="False")  # a restart continues the ids
    with src.engine.connect() as conn:
        t = sa.Table("DBNS_SAB_Temp", sa.MetaData(), autoload_with=conn)
        got = conn.execute(sa.select(t.c.id, t.c.date_time, t.c.DBNS_SAB_Temp_PT2).order_by(t.c.id)).all()
    assert [r[0] for r in got] == list(range(1, 16))
    assert got[5][1] == T0 + timedelta(seconds=60)
    assert [float(r[2]) for r in got[:3]] == [21.0, 22.0, 23.0]  # modulo_ramp: 20 + id % 10
    run_section(cfg, "f", maxiter=1)  # faker_dropsrc drops and recreates: ids start again
    with src.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM DBNS_SAB_Temp")).scalar() == 1


def test_random_walk_profile_is_reproducible_across_restarts(make_db, tmp_path):
    dbs = [make_db("a"), make_db("b")]
    cfgs = [write_cfg(tmp_path / f"{i}.cfg", {"f": {"regime": REGIMES["adtemp"], "mode": "faker",
                                                    "source": url_text(d), "faker_timestart": "2011-02-01 00:00:00",
                                                    "sleep": "0s", "profile": "random_walk", "faker_seed": "7"}})
            for i, d in enumerate(dbs)]
    run_section(cfgs[0], "f", maxiter=10)
    run_section(cfgs[1], "f", maxiter=4)
    run_section(cfgs[1], "f", maxiter=6)
    q = sa.text("SELECT * FROM DBNS_SAB_Temp ORDER BY id")
    with dbs[0].engine.connect() as c0, dbs[1].engine.connect() as c1:
        a, b = c0.execute(q).all(), c1.execute(q).all()
    assert a == b and len({r[2] for r in a}) > 1


def test_a_vanished_source_table_or_column_is_an_error_event_and_a_retry(make_db, tmp_path, backend):
    import threading

    import structlog

    from scraperd import config
    from scraperd.scrape import daemon

    rows = [temp_row(i, T0 + timedelta(seconds=10 * i), [i * 2, 1, 1, 1, 1]) for i in range(1, 6)]
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, sleep="0.05s", heartbeat="0.05s",
                          reconnect_max_wait="0.2s")
    loaded = config.load_section(cfg, "s")
    stop = threading.Event()
    rename = "RENAME TABLE DBNS_SAB_Temp TO {}" if backend == "mysql" else "ALTER TABLE DBNS_SAB_Temp RENAME TO {}"
    with structlog.testing.capture_logs() as events:
        worker = threading.Thread(target=daemon.run, args=(loaded, stop), daemon=True)
        worker.start()
        try:
            wait_until(lambda: len(events_named(events, "propagate")) >= 3, timeout=20, what="first propagations")
            with src.engine.begin() as conn:
                conn.exec_driver_sql(rename.format("DBNS_SAB_Temp_away"))
            wait_until(lambda: len(events_named(events, "db_retry")) >= 2, timeout=20, what="retries")
            assert worker.is_alive()
            assert events_named(events, "source_error")[0]["log_level"] == "error"
            with src.engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE DBNS_SAB_Temp_away RENAME TO DBNS_SAB_Temp"
                                     if backend == "sqlite" else "RENAME TABLE DBNS_SAB_Temp_away TO DBNS_SAB_Temp")
            n = len(events_named(events, "startup"))
            wait_until(lambda: len(events_named(events, "startup")) > n, timeout=20, what="start-up after the fix")
            insert_rows(src.url, "DBNS_SAB_Temp", [temp_row(6, T0 + timedelta(seconds=60), [40, 1, 1, 1, 1])])
            wait_until(lambda: any(e["ids"][-1] == 6 for e in events_named(events, "sample")), timeout=20,
                       what="the new row sampled")
        finally:
            stop.set()
            worker.join(20)
    assert not worker.is_alive()
    assert events_named(events, "shutdown")


def test_changed_finds_aggregates_filled_as_the_manual_promises(make_db, tmp_path, monkeypatch):
    from scraperd.regimes import adtemp

    seen = []
    original = adtemp.AdTempScraper.changed

    def spying(self, sv):
        seen.append(sv[-1].aggd)
        return original(self, sv)

    monkeypatch.setattr(adtemp.AdTempScraper, "changed", spying)
    rows = [temp_row(i, T0 + timedelta(seconds=10 * i), [20 + (i % 3), 1, 1, 1, 1]) for i in range(1, 12)]
    cfg, *_ = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, aggregate="avg,max",
                    aggregate_skips="id,date_time")
    run_section(cfg, "s", maxiter=20, catch_up=True)
    assert seen and all(a is not None and "DBNS_SAB_Temp_PT1_avg" in a and a["count"] >= 1 for a in seen)


def test_autumn_dst_repeated_hour_is_ignored_with_warnings_and_validities_stay_utc(make_db, tmp_path):
    zone, utc_zone = ZoneInfo("Europe/Zurich"), ZoneInfo("UTC")
    start_utc = datetime(2011, 10, 29, 23, 0, 0)  # 01:00 CEST; at 01:00 UTC the clocks go back 03:00 -> 02:00
    rows = []
    for i in range(1, 25):
        utc = start_utc + timedelta(minutes=10 * i)
        local = utc.replace(tzinfo=utc_zone).astimezone(zone).replace(tzinfo=None)
        rows.append(temp_row(i, local, [float(i * 2), 1, 1, 1, 1]))  # every row is a change
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, tz="Europe/Zurich", interval="1m",
                          seed_timestart="2011-10-30 00:55:00", seed_timeend="2011-10-30 01:00:00")
    events = run_section(cfg, "s", maxiter=40, catch_up=True)
    # the repeated hour's rows (ids 12..17, local 02:00..02:50 CET) repeat naive local times already seen
    assert [e["id"] for e in events_named(events, "duplicate_date_time")] == list(range(12, 18))
    kept = [r for r in rows if r["id"] not in range(12, 18)]
    got = [e["timestart"] for e in props(events)]
    want = [(r["date_time"].replace(tzinfo=zone).astimezone(utc_zone)).strftime("%Y-%m-%d %H:%M:%S")
            for r in kept[1:]]
    assert got == want
    # the first pass is summer time (UTC+2): local 02:00 CEST is 00:00 UTC; after it, 03:00 CET is 02:00 UTC
    assert "2011-10-30 00:00:00" in got and "2011-10-30 02:00:00" in got
