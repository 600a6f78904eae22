"""source_delay: rows committed late (after rows dated later) and how a delay reads them in order.

A source_delay longer than the commit delay must read a late commit in order, giving what a
rebuild gives. On real SQLite and MariaDB, with a stopped clock where the horizon matters (source
rows are dated 2011).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from scraperd import cli, config
from scraperd.scrape import daemon, source
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
# the daemon


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



def status(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli.main(list(args))
    return rc, capsys.readouterr().out


def no_supervisord(tmp_path: Path) -> Path:
    """A supervisord config whose socket nobody listens on."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisorctl]\nserverurl = unix://{tmp_path / 'nobody.sock'}\n")
    return conf



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
