"""Heartbeats: every mode writes <run_dir>/<section>.heartbeat with its phase, throttled; long waits and
retries refresh it; a write that fails never stops a daemon; a scraper waiting out a stopped server
beats `retrying`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scraperd import databases, heartbeat, lifecycle
from tests.conftest import wait_until
from tests.scrapekit import events_named, run_section, url_text, write_cfg

ADTEMP = "scraperd.regimes.adtemp:AdTemp"
LID = "scraperd.regimes.adlidsensor:AdLidSensor"
FIELDS = ["section", "ts", "pid", "phase", "lag_s", "sleep_s"]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every heartbeat file write of this process, as the file held it right after."""
    seen: list[dict[str, Any]] = []
    real = heartbeat.Heart._write

    def spy(self: heartbeat.Heart) -> None:
        real(self)
        if self.path.exists():
            seen.append(json.loads(self.path.read_text()))

    monkeypatch.setattr(heartbeat.Heart, "_write", spy)
    return seen


def phases(seen: list[dict[str, Any]], section: str) -> set[str]:
    return {b["phase"] for b in seen if b["section"] == section}


def fleet_cfg(tmp_path: Path, src: Any, tgt: Any, run_dir: Path) -> Path:
    return write_cfg(tmp_path / "fleet.cfg", {
        "faker": {"mode": "faker", "regime": ADTEMP, "faker_timestart": "2011-02-01 00:00:00", "interval": "10s",
                  "sleep": "0.05s"},
        "scraper": {"mode": "scraper", "regime": ADTEMP, "interval": "10s", "maxage": "1m", "heartbeat": "10s",
                    "sleep": "0.05s", "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
                    "seed_timeend": "2011-02-01 00:00:10"},
        "averager": {"mode": "averager", "regime": LID, "territory": "1h", "binsize": "10m",
                     "aggregate": "avg,min,max", "aggregate_skips": "id,date_time,Quality"},
        "lidfaker": {"mode": "faker", "regime": LID, "faker_timestart": "2011-02-01 00:00:00", "interval": "2m",
                     "sleep": "0s"},
        "monitor": {"mode": "monitor", "every": "1s", "checks": "source", "sections": "faker",
                    "source_stale_after": "3650d"},
    }, defaults={"source": url_text(src), "target": url_text(tgt), "source_tz": "Asia/Shanghai",
                 "run_dir": str(run_dir), "timefloor": "2010-01-01 00:00:00"})


def test_every_mode_writes_its_heartbeat_file_with_its_phases(make_db, tmp_path, written):
    src, tgt = make_db("src"), make_db("tgt")
    run_dir = tmp_path / "beats"
    cfg = fleet_cfg(tmp_path, src, tgt, run_dir)
    run_section(cfg, "faker", maxiter=30)
    run_section(cfg, "scraper", maxiter=30)
    run_section(cfg, "lidfaker", maxiter=120)  # 4 hours of 2-minute rows
    run_section(cfg, "averager")
    from tests.test_monitor import run_section_monitor
    run_section_monitor(cfg, maxiter=2)

    for section in ("faker", "scraper", "averager", "lidfaker", "monitor"):
        doc = json.loads((run_dir / f"{section}.heartbeat").read_text())
        assert list(doc) == FIELDS and doc["section"] == section and doc["pid"] == os.getpid()
        assert doc["ts"].endswith("Z")
        beat = heartbeat.read(run_dir / f"{section}.heartbeat")
        assert beat is not None and beat.phase in heartbeat.PHASES and beat.age_s() < 60
    assert phases(written, "faker") >= {"starting", "writing", "sleeping"}
    assert phases(written, "scraper") >= {"starting", "reading", "writing", "sleeping"}
    assert phases(written, "averager") >= {"starting", "reading", "writing"}
    assert phases(written, "monitor") >= {"starting", "reading", "sleeping"}
    assert {b["sleep_s"] for b in written if b["section"] == "faker" and b["phase"] == "sleeping"} == {0.05}
    scraper_lags = [b["lag_s"] for b in written if b["section"] == "scraper" and b["lag_s"] is not None]
    assert scraper_lags and all(isinstance(x, float) and x >= 0 for x in scraper_lags)
    averager_lags = [b["lag_s"] for b in written if b["section"] == "averager" and b["lag_s"] is not None]
    assert averager_lags and averager_lags[-1] == 0.0 and max(averager_lags) > 0  # source time still to average
    assert {b["sleep_s"] for b in written if b["section"] == "monitor" and b["phase"] == "sleeping"} == {1.0}
    assert not list(run_dir.glob(".*.tmp"))  # written via a temp file, replaced: none left behind


def test_the_same_phase_is_written_at_most_every_second_a_new_phase_at_once(tmp_path, written):
    heart = heartbeat.Heart("s", tmp_path)
    for _ in range(10_000):  # a scraper catching up
        heart.beat("reading", lag_s=5.0)
    assert len(written) == 1
    heart.beat("writing")
    heart.beat("reading")
    assert [b["phase"] for b in written] == ["reading", "writing", "reading"]
    heart.written -= heartbeat.EVERY_S  # a second later
    heart.beat("reading", lag_s=1.5)
    assert len(written) == 4 and written[-1]["lag_s"] == 1.5


def test_catching_up_with_heartbeats_costs_no_measurable_time(tmp_path):
    heart = heartbeat.Heart("s", tmp_path)
    t0 = time.perf_counter()
    for i in range(100_000):
        heart.beat("reading" if i % 500 else "writing", lag_s=float(i))  # a commit every 500 records
    per_beat = (time.perf_counter() - t0) / 100_000
    assert per_beat < 20e-6, f"{per_beat * 1e6:.1f} µs per beat"


def test_a_long_wait_refreshes_the_heartbeat(tmp_path, written, monkeypatch):
    monkeypatch.setattr(heartbeat, "WAIT_BEAT_S", 0.1)
    stop = threading.Event()
    with heartbeat.beating("s", tmp_path):
        assert lifecycle.pause(stop, 0.55) is False
    sleeping = [b for b in written if b["phase"] == "sleeping"]
    assert len(sleeping) >= 4 and sleeping[0]["sleep_s"] == 0.55
    assert len({b["ts"] for b in sleeping}) == len(sleeping)


def test_read_gives_none_for_a_missing_or_foreign_file(tmp_path):
    assert heartbeat.read(tmp_path / "none.heartbeat") is None
    (tmp_path / "bad.heartbeat").write_text("{not json")
    assert heartbeat.read(tmp_path / "bad.heartbeat") is None
    (tmp_path / "x.heartbeat").write_text(json.dumps({"section": "x", "ts": "2026-01-01T00:00:00.000Z", "pid": 7,
                                                      "phase": "sleeping", "lag_s": None, "sleep_s": 3}))
    beat = heartbeat.read(tmp_path / "x.heartbeat")
    assert beat == heartbeat.Beat("x", datetime(2026, 1, 1, tzinfo=UTC), 7, "sleeping", None, 3.0)


def test_a_missing_run_dir_is_created(make_db, tmp_path):
    cfg = fleet_cfg(tmp_path, make_db("src"), make_db("tgt"), tmp_path / "a" / "b")
    run_section(cfg, "faker", maxiter=3)
    assert heartbeat.read(tmp_path / "a" / "b" / "faker.heartbeat") is not None


def test_a_failing_heartbeat_write_never_stops_a_daemon(make_db, tmp_path):
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("a file where the run directory should be")
    cfg = fleet_cfg(tmp_path, make_db("src"), make_db("tgt"), blocked)
    events = run_section(cfg, "faker", maxiter=40)
    (failed,) = events_named(events, "heartbeat_failed")  # once, not per beat
    assert failed["log_level"] == "warning" and failed["file"] == str(blocked / "faker.heartbeat")
    assert events_named(events, "shutdown")[-1]["iterations"] == 40
    events = run_section(cfg, "scraper", maxiter=20)
    assert len(events_named(events, "heartbeat_failed")) == 1 and events_named(events, "propagate")


# ----------------------------------------------------------------------------------------------------------
# a scraper waiting out a stopped server


@pytest.mark.mysql
@pytest.mark.slow
def test_a_scraper_waiting_out_a_stopped_server_beats_retrying(mariadb_server, tmp_path):
    srv = mariadb_server
    databases.ensure_database(srv.url("scrt_tgt"))
    run_dir = tmp_path / "beats"
    cfg = write_cfg(tmp_path / "s.cfg", {
        "faker": {"mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0s"},
        "scraper": {"mode": "scraper", "target": srv.url("scrt_tgt").render_as_string(hide_password=False),
                    "interval": "10s", "maxage": "1m", "heartbeat": "10s", "sleep": "0.2s",
                    "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
                    "seed_timeend": "2011-02-01 00:00:10"},
    }, defaults={"regime": ADTEMP, "source": srv.url("scrt_src").render_as_string(hide_password=False),
                 "source_tz": "Asia/Shanghai", "run_dir": str(run_dir), "reconnect_max_wait": "1s"})
    run_section(cfg, "faker", maxiter=50)
    path = run_dir / "scraper.heartbeat"
    with open(tmp_path / "scraper.log", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", "scraper"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def phase() -> str | None:
            beat = heartbeat.read(path)
            return beat.phase if beat is not None and beat.pid == proc.pid else None

        wait_until(lambda: phase() == "sleeping", timeout=30, what="the scraper caught up, sleeping")
        srv.stop()
        wait_until(lambda: phase() == "retrying", timeout=30, what="heartbeat phase retrying")
        first = heartbeat.read(path)
        assert first is not None
        wait_until(lambda: (b := heartbeat.read(path)) is not None and b.ts > first.ts and b.phase == "retrying",
                   timeout=15, what="a fresh retrying heartbeat while the server stays down")
        assert proc.poll() is None
        srv.start()
        wait_until(lambda: phase() in ("sleeping", "reading", "writing"), timeout=60,
                   what="the scraper back at work after the restart")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (tmp_path / "scraper.log").read_text()[-3000:]
