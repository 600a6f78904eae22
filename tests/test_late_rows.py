"""Late source rows (committed after the scraper read past their date_time) and source_delay.

A late row is never read by the run that passed its date_time, while a rebuild reads it: it must
be reported (`late_row`, counted by `status`), and a source_delay longer than the commit delay
must read it in order, giving what a rebuild gives. The pure verdict (sampling.missed) is checked
against the sampling core by hypothesis; the rest on real SQLite and MariaDB, with a stopped clock
where the horizon matters (source rows are dated 2011).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import structlog
from hypothesis import given
from hypothesis import strategies as st

from scraperd import cli, config
from scraperd.regimes.base import Source
from scraperd.scrape import daemon, sampling, source
from scraperd.scrape.sampling import SourceRow
from tests.conftest import wait_until
from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg
from tests.sourcedata import create_source, insert_rows

T0 = datetime(2011, 2, 1, 0, 0, 0)
ADTEMP = "scraperd.regimes.adtemp:AdTemp"
TABLE = "DBNS_SAB_Temp"


def temp_row(i: int, t: datetime, value: float) -> dict:
    return {"id": i, "date_time": t, **{f"DBNS_SAB_Temp_PT{p}": value if p == 1 else 1.0 for p in range(1, 6)}}


# Rows 1..10 every 10 s from 00:00:10; PT1 steps from 20 to 30 at row 8 (00:01:20), a change: one
# record. The late row, id 11 at 00:00:55 with PT1 25, would make a rebuild write three records
# (at 00:00:55, 00:01:10 and 00:01:20) instead of that one.
ROWS = [temp_row(i, T0 + timedelta(seconds=10 * i), 20.0 if i < 8 else 30.0) for i in range(1, 11)]
LATE = temp_row(11, T0 + timedelta(seconds=55), 25.0)


def setup(make_db, tmp_path: Path, **keys: str):
    src, tgt = make_db("src"), make_db("tgt")
    create_source(src.url)
    insert_rows(src.url, TABLE, ROWS)
    cfg = write_cfg(tmp_path / "scraper.cfg", {"s": scraper_keys(src, tgt, **keys)})
    return cfg, src, tgt


def scraper_keys(src, tgt, **keys: str) -> dict[str, str]:
    return {"regime": ADTEMP, "mode": "scraper", "source": url_text(src), "target": url_text(tgt),
            "interval": "10s", "maxage": "10m", "threshold": "1.0", "sleep": "0.05s", "heartbeat": "0.05s",
            "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
            "seed_timeend": "2011-02-01 00:00:10", "source_tz": "Asia/Shanghai", **keys}


def rebuild(make_db, tmp_path: Path, src, **keys: str):
    """What a fresh run over today's source writes."""
    tgt = make_db("rebuilt")
    cfg = write_cfg(tmp_path / "rebuild.cfg", {"s": scraper_keys(src, tgt, **keys)})
    run_section(cfg, "s", catch_up=True)
    return target_rows(tgt.engine, "DcsAdTemp")


def sampled(events: list[dict], row_id: int) -> bool:
    return any(e["ids"][-1] == row_id for e in events_named(events, "sample"))


@contextmanager
def running(cfg: Path, **overrides: str) -> Iterator[list[dict]]:
    """A scraper at work in a thread (its events captured) until the block ends."""
    loaded = config.load_section(cfg, "s", overrides)
    stop = threading.Event()
    with structlog.testing.capture_logs() as events:
        worker = threading.Thread(target=daemon.run, args=(loaded, stop), daemon=True)
        worker.start()
        try:
            yield events
        finally:
            stop.set()
            worker.join(20)
    assert not worker.is_alive()


class Clock:
    """The source's now (source.now_local), stopped: the horizon moves only when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self, tz: ZoneInfo) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(T0 + timedelta(seconds=75))  # local time, between rows 7 and 8
    monkeypatch.setattr(source, "now_local", c)
    return c


# ------------------------------------------------------------------------------------------------------------
# the verdict, against the pure sampling core

TCURSOR0 = T0 + timedelta(seconds=10)


def run(rows: list[SourceRow], interval: timedelta, maxage: timedelta, offset: int,
        state: sampling.Sampler | None = None) -> tuple[list[tuple[datetime, int]], sampling.Sampler]:
    """Step rows (in the order given) from `state` (default: a fresh start): the propagations
    (sample time, id) and the state after them. PT1 moving by more than 1.0 is a change."""
    state = state or sampling.resume(TCURSOR0, None, offset)
    out = []
    for row in rows:
        state, collected, _ = sampling.step(state, row)
        if not collected:
            continue
        sv = state.sv
        changed = len(sv) == 2 and abs(sv[-1]["v"] - sv[0]["v"]) > 1.0
        if sampling.judge(state, changed, maxage).proceed:
            out.append((sv[-1].date_time, sv[-1].id))
            state = sampling.propagated(state, sampling.validity(sv[-1].date_time, interval, ZoneInfo("UTC")),
                                        ZoneInfo("UTC"))
    return out, state


def ordered(rows: list[SourceRow]) -> list[SourceRow]:
    return sorted(rows, key=lambda r: (r.date_time, r.id))


@st.composite
def histories(draw):
    """Rows in (date_time, id) order (duplicates, gaps), how many were stepped and how many more sit in
    the read buffer, and one late row (the largest id) dated anywhere."""
    n = draw(st.integers(min_value=1, max_value=25))
    rows, t, v = [], TCURSOR0, 20.0
    for i in range(1, n + 1):
        t += timedelta(seconds=draw(st.sampled_from([0, 1, 3, 10, 10, 25, 70])))
        v += draw(st.sampled_from([0.0, 0.0, 0.5, -0.5, 1.5, -2.0]))
        rows.append(SourceRow({"id": i, "date_time": t, "v": v}))
    stepped = draw(st.integers(min_value=0, max_value=n))
    buffered = draw(st.integers(min_value=0, max_value=n - stepped))
    dt = T0 + timedelta(seconds=draw(st.integers(0, int((t - T0).total_seconds()) + 30)))
    late = SourceRow({"id": n + 1, "date_time": dt, "v": draw(st.sampled_from([18.0, 20.0, 25.0]))})
    return rows, stepped, buffered, late


@given(h=histories(), interval=st.sampled_from([1, 10, 60]), maxage=st.sampled_from([30, 60, 600]),
       offset=st.integers(0, 2))
def test_a_late_row_judged_missed_is_never_read_and_any_other_leaves_what_a_rebuild_writes(h, interval, maxage,
                                                                                            offset):
    rows, stepped, buffered, late = h
    keys = (timedelta(seconds=interval), timedelta(seconds=maxage), offset)
    done, state = run(rows[:stepped], *keys)
    buffer = rows[stepped:stepped + buffered]  # read from the source, not yet stepped; then the late row commits
    read_to = buffer[-1].date_time if buffer else None
    verdict = sampling.missed(state, read_to, late.date_time)
    # the run goes on: the buffer, then every later read finds the late row among the others
    live = done + run(buffer + ordered(rows[stepped + buffered:] + [late]), *keys, state=state)[0]
    if verdict:
        assert live == run(rows, *keys)[0]  # never read: as if it were not there
    else:
        assert live == run(ordered(rows + [late]), *keys)[0]  # read in order, or skipped by a rebuild too


def test_only_a_row_behind_the_point_read_and_outside_the_tcursor_gap_is_missed():
    sv0 = SourceRow({"id": 8, "date_time": T0 + timedelta(seconds=80)})
    sv1 = SourceRow({"id": 10, "date_time": T0 + timedelta(seconds=100)})
    # propagated at 00:01:20, tcursor 00:01:30, rows read up to 00:01:40
    state = sampling.Sampler(tcursor=T0 + timedelta(seconds=90), sv=(sv0, sv1), offset=0, skip=0,
                             last_seen=sv1.date_time)

    def at(s: int, read_to: int | None = None) -> bool:
        read = T0 + timedelta(seconds=read_to) if read_to else None
        return sampling.missed(state, read, T0 + timedelta(seconds=s))

    assert at(55) and at(79)             # before the last record: a rebuild reads it
    assert at(95)                        # after tcursor, before the last row read
    assert not at(80) and not at(85)     # the gap [sv0, tcursor): a rebuild skips it too
    assert not at(100)                   # the twin of the last row read: ignored by a rebuild too
    assert not at(101)                   # still ahead: read in order
    assert at(105, read_to=110) and not at(111, read_to=110)  # the read buffer counts as read


# ------------------------------------------------------------------------------------------------------------
# the daemon


def test_a_row_committed_after_the_scraper_read_past_its_date_time_is_one_late_row_event(make_db, tmp_path, clock):
    cfg, src, tgt = setup(make_db, tmp_path, source_delay="0s")
    with running(cfg) as events:
        # source_delay 0 is the scraper as it always was: rows up to a day after now are read at once
        wait_until(lambda: sampled(events, 10), timeout=20, what="row 10 (00:01:40, after now 00:01:15) sampled")
        insert_rows(src.url, TABLE, [LATE])
        wait_until(lambda: events_named(events, "late_row"), timeout=20, what="a late_row event")
    (ev,) = events_named(events, "late_row")
    assert (ev["source"], ev["id"], ev["date_time"], ev["found"], ev["log_level"]) == \
        (TABLE, 11, "2011-02-01 00:00:55", "poll", "warning")
    assert ev["late_s"] == 20 and "rebuild would read it" in ev["action"]
    assert not sampled(events, 11)
    vld, _ = target_rows(tgt.engine, "DcsAdTemp")
    assert [r[1] for r in vld] == [datetime(2011, 1, 31, 16, 0), datetime(2011, 1, 31, 16, 1, 20)]  # seed, row 8
    assert len(rebuild(make_db, tmp_path, src)[0]) == 4  # what the issue is about: a rebuild writes more


def test_with_a_source_delay_the_late_commit_is_read_in_order_as_a_rebuild_reads_it(make_db, tmp_path, clock):
    cfg, src, tgt = setup(make_db, tmp_path, source_delay="30s")
    with running(cfg) as events:
        wait_until(lambda: sampled(events, 4), timeout=20, what="row 4 (00:00:40) sampled")
        insert_rows(src.url, TABLE, [LATE])  # 00:00:55: committed 20 s late, within the delay
        clock.now = T0 + timedelta(minutes=5)
        wait_until(lambda: sampled(events, 10), timeout=20, what="row 10 sampled once real time moved on")
    assert not events_named(events, "late_row")
    assert [e["ids"][-1] for e in events_named(events, "sample")] == [1, 2, 3, 4, 5, 11, 7, 8, 9, 10]
    assert target_rows(tgt.engine, "DcsAdTemp") == rebuild(make_db, tmp_path, src)


def test_source_delay_holds_rows_back_from_the_reads_and_from_the_lag(make_db, tmp_path, clock, capsys):
    cfg, src, tgt = setup(make_db, tmp_path, source_delay="40s")
    events = run_section(cfg, "s", catch_up=True)  # now 00:01:15: rows up to 00:00:35
    assert [e["ids"][-1] for e in events_named(events, "sample")] == [1, 2, 3]
    assert events_named(events, "tune")[-1]["maxlag_s"] == 20.0  # head 00:00:30 − tcursor 00:00:10, not 00:01:40
    rc, out = status(capsys, "-c", str(cfg), "status", "s", "--json",
                     "--supervisor-conf", str(no_supervisord(tmp_path)))
    (row,) = json.loads(out)["sections"][0]["sources"]
    assert (rc, row["head"], row["lag_s"]) == (0, "2011-02-01 00:00:30", 20.0)  # status sees the same lag
    tz = ZoneInfo("Asia/Shanghai")
    assert source.horizon(tz, timedelta(seconds=10)) == source.horizon(tz, timedelta(seconds=10), timedelta(0)) \
        == clock.now + source.FUTURE_TOLERANCE


def test_a_row_committed_late_while_no_scraper_ran_is_reported_at_start_up(make_db, tmp_path):
    cfg, src, tgt = setup(make_db, tmp_path)
    run_section(cfg, "s", catch_up=True)  # the seed and row 8's record
    insert_rows(src.url, TABLE, [LATE])
    events = run_section(cfg, "s", catch_up=True)
    (ev,) = events_named(events, "late_row")
    assert (ev["id"], ev["date_time"], ev["found"]) == (11, "2011-02-01 00:00:55", "startup")
    assert not sampled(events, 11)


def test_a_late_row_in_the_gap_after_the_last_record_is_not_reported(make_db, tmp_path):
    cfg, src, tgt = setup(make_db, tmp_path)
    with running(cfg) as events:
        wait_until(lambda: sampled(events, 10), timeout=20, what="row 10 sampled")
        insert_rows(src.url, TABLE, [temp_row(11, T0 + timedelta(seconds=85), 50.0),   # row 8 + 5 s < tcursor
                                     temp_row(12, T0 + timedelta(seconds=100), 50.0),  # the twin of row 10
                                     temp_row(13, T0 + timedelta(seconds=75), 50.0),   # before row 8: late
                                     temp_row(14, T0 + timedelta(seconds=50), 50.0)])  # row 5's twin: ignored
        wait_until(lambda: events_named(events, "late_row"), timeout=20, what="the late_row of row 13")
    assert [e["id"] for e in events_named(events, "late_row")] == [13]
    with src.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM {TABLE} WHERE id = 13")
    assert target_rows(tgt.engine, "DcsAdTemp") == rebuild(make_db, tmp_path, src)  # 11, 12, 14 change nothing


def test_a_reconnect_looks_at_the_rows_committed_meanwhile_once_without_repeating_reports(make_db, tmp_path):
    cfg, src, tgt = setup(make_db, tmp_path)
    scraper = daemon.ScraperDaemon(config.load_section(cfg, "s"), threading.Event(), until_caught_up=True)
    try:
        with structlog.testing.capture_logs() as events:
            assert scraper.loop(scraper.start()) == "caught_up"
            insert_rows(src.url, TABLE, [LATE])  # committed while the connection was down
            # what lifecycle does after a lost connection: resume from the target
            assert scraper.loop(scraper.start()) == "caught_up"
            assert scraper.loop(scraper.start()) == "caught_up"
    finally:
        scraper.close()
    (ev,) = events_named(events, "late_row")  # the id head was kept: seen by the next read, once
    assert (ev["id"], ev["found"]) == (11, "poll")


def test_a_source_whose_id_is_not_indexed_is_not_watched():
    md = sa.MetaData()
    plain = sa.Table("T", md, sa.Column("id", sa.Integer), sa.Column("date_time", sa.DateTime))
    keyed = sa.Table("K", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("date_time", sa.DateTime))
    indexed = sa.Table("I", md, sa.Column("id", sa.Integer, index=True), sa.Column("date_time", sa.DateTime))

    def st(t: sa.Table) -> source.SourceTable:
        return source.SourceTable(source=Source(t.name), tables=(t,), columns=tuple(t.c), names=tuple(t.c.keys()))

    assert not source.id_indexed(st(plain)) and source.id_indexed(st(keyed)) and source.id_indexed(st(indexed))


def test_many_late_rows_are_ten_events_and_one_summary(make_db, tmp_path):
    cfg, src, tgt = setup(make_db, tmp_path)
    with running(cfg) as events:
        wait_until(lambda: sampled(events, 10), timeout=20, what="row 10 sampled")
        seconds = [s for s in range(11, 50) if s % 10][:25]  # none the twin of a row (those are no loss)
        insert_rows(src.url, TABLE, [temp_row(100 + i, T0 + timedelta(seconds=s), 20.0) for i, s in enumerate(seconds)])
        wait_until(lambda: len(events_named(events, "late_row")) >= 11, timeout=20, what="11 late_row events")
    late = events_named(events, "late_row")
    assert [e.get("id") for e in late[:10]] == list(range(100, 110))
    assert (late[10]["rows"], late[10]["first_id"], late[10]["last_id"]) == (15, 110, 124)
    assert len(late) == 11


# ------------------------------------------------------------------------------------------------------------
# status, from the log file supervisord writes


def status(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(list(args))
    return rc, capsys.readouterr().out


def no_supervisord(tmp_path: Path) -> Path:
    """A supervisord config whose socket nobody listens on."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisorctl]\nserverurl = unix://{tmp_path / 'nobody.sock'}\n")
    return conf


def test_status_counts_the_late_rows_of_the_last_day_from_the_log_and_says_when_it_cannot(make_db, tmp_path,
                                                                                          capsys):
    cfg, src, tgt = setup(make_db, tmp_path)
    logdir = tmp_path / "log"
    logdir.mkdir()
    log = logdir / "s.log"
    with log.open("w") as out:  # as supervisord runs it: JSON lines on stdout, into the file
        proc = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", "s"], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        def logged() -> list[dict]:
            return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]

        wait_until(lambda: any(e["event"] == "sample" and e["ids"][-1] == 10 for e in logged()), timeout=30,
                   what="row 10 sampled")
        insert_rows(src.url, TABLE, [LATE])
        wait_until(lambda: any(e["event"] == "late_row" for e in logged()), timeout=30, what="a late_row line")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    (ev,) = [e for e in logged() if e["event"] == "late_row"]
    assert (ev["id"], ev["date_time"], ev["level"]) == (11, "2011-02-01 00:00:55", "warning")
    old = {"source": TABLE, "id": 3, "event": "late_row", "level": "warning", "ts": "2011-02-01T00:00:00Z"}
    log.write_text(json.dumps(old) + "\n" + log.read_text())  # a report older than a day is not counted

    base = ["-c", str(cfg), "status", "s", "--supervisor-conf", str(no_supervisord(tmp_path))]
    rc, out = status(capsys, *base, "--json", "--logdir", str(logdir))
    section = json.loads(out)["sections"][0]
    assert rc == 0 and section["log"] == {"file": str(log), "error": None}
    assert [(r["source"], r["late_rows_24h"]) for r in section["sources"]] == [(TABLE, 1)]
    rc, table = status(capsys, *base, "--logdir", str(logdir))
    header, line = table.splitlines()[:2]
    at = header.index("LATE/24H")
    assert line[at:].split()[0] == "1"

    # a log status cannot read is "-" and a reason, never 0
    elsewhere = tmp_path / "elsewhere"
    rc, out = status(capsys, *base, "--json", "--logdir", str(elsewhere))
    section = json.loads(out)["sections"][0]
    assert rc == 0 and section["log"]["error"] == f"no log file {elsewhere / 's.log'}"
    assert section["sources"][0]["late_rows_24h"] is None
    rc, table = status(capsys, *base, "--logdir", str(elsewhere))
    header, line = table.splitlines()[:2]
    assert line[header.index("LATE/24H"):].split()[0] == "-"
    assert f"s: LATE/24H not counted: no log file {elsewhere / 's.log'}" in table


# ------------------------------------------------------------------------------------------------------------
# the key


def test_source_delay_is_a_scraper_duration_with_the_usual_one_line_errors(tmp_path, capsys):
    common = {"regime": ADTEMP, "source": "sqlite:///var/src.db"}
    cfg = write_cfg(tmp_path / "scraper.cfg", {"s": {**common, "mode": "scraper", "target": "sqlite:///var/t.db"},
                                               "f": {**common, "mode": "faker", "source_delay": "1m"}})
    loaded = config.load_section(cfg, "s")
    assert (loaded.settings.source_delay, loaded.origin["source_delay"]) == (timedelta(0), "default")
    loaded = config.load_section(cfg, "s", config.parse_overrides(["source_delay=30s"]))
    assert (loaded.settings.source_delay, loaded.origin["source_delay"]) == (timedelta(seconds=30), "--set")

    assert cli.main(["-c", str(cfg), "show", "s", "--set", "source_delay=2m"]) == 0
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:] if ln.strip()}
    assert lines["source_delay"][1:] == ["2m", "--set"]
    assert cli.main(["-c", str(cfg), "show", "s"]) == 0
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[2:] if ln.strip()}
    assert lines["source_delay"][1:] == ["0s", "default"]

    assert cli.main(["-c", str(cfg), "run", "s", "--set", "source_delay=soon"]) == 78
    assert capsys.readouterr().err.strip() == \
        "--set source_delay: cannot parse 'soon' as a duration (use 10s, 1m, 1h)"
    bad = write_cfg(tmp_path / "bad.cfg", {"s": {**common, "mode": "scraper", "target": "sqlite:///var/t.db",
                                                 "source_delay": "-5s"}})
    assert cli.main(["-c", str(bad), "run", "s"]) == 78
    assert capsys.readouterr().err.strip() == \
        f"{bad} [s] source_delay: cannot parse '-5s' as a duration (use 10s, 1m, 1h)"
    assert cli.main(["-c", str(cfg), "run", "f"]) == 78  # the faker writes rows: it has no delay
    assert capsys.readouterr().err.strip() == \
        f"{cfg} [f] source_delay: not used by mode = faker (it is a scraper key)"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "source_delay" in capsys.readouterr().out
