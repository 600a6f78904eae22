"""A real server restart: MariaDB stopped (clients get 2013, then 2002 at every connect) and started
again under a live faker, scraper and averager. Every mode waits it out, start-up included (the
averager is started while the server is down), none exits, and what they wrote equals a reference
run over the same source rows. The server is a private one (tests/mariadbserver.py): the shared
one never stops. Below it, the pieces: what a stopping or stopped server gives is retried, and
faker_dropsrc is done once per process even when its first attempt is cut half way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scraperd import databases, faker, retry
from scraperd.errors import Disconnected
from tests.conftest import wait_until
from tests.mariadbserver import MariaDBServer, free_port
from tests.scrapekit import events_named, run_section, target_rows, write_cfg
from tests.supervisorkit import read_events

OUTAGE_S = float(os.environ.get("SCRAPERD_OUTAGE_S", "20"))

COMMON = {"regime": "scraperd.regimes.adlidsensor:AdLidSensor", "source_tz": "Asia/Shanghai",
          "reconnect_max_wait": "2s"}
AGGREGATE = {"aggregate": "avg,min,max,std", "aggregate_count": "count", "aggregate_skips": "id,date_time,Quality",
             "aggregate_filter": "Quality != 0"}
ROWS_BEFORE = 40  # faker rows (2 min apart) before the outage: the averager's first cell (00:00-01:00) is complete


def text(url: sa.engine.URL) -> str:
    return url.render_as_string(hide_password=False)


def fleet_cfg(path: Path, srv: MariaDBServer) -> Path:
    src = text(srv.url("scrt_src"))
    scraper = {**COMMON, **AGGREGATE, "mode": "scraper", "source": src, "interval": "1m", "maxage": "10m",
               "threshold": "1.0", "sleep": "0.2s", "heartbeat": "0.2s", "seed_target_tables": "True",
               "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:00:10"}
    averager = {**COMMON, **AGGREGATE, "mode": "averager", "source": src, "territory": "1h", "binsize": "10m"}
    return write_cfg(path, {
        "faker": {**COMMON, "mode": "faker", "source": src, "faker_timestart": "2011-02-01 00:00:00",
                  "interval": "2m", "sleep": "0.1s", "faker_dropsrc": "True", "profile": "modulo_ramp"},
        "scraper": {**scraper, "target": text(srv.url("scrt_scraped"))},
        "scraper_ref": {**scraper, "target": text(srv.url("scrt_scraped_ref"))},
        # maxiter = 1: the live run, while the faker writes, averages only the first hour of both sources
        # (both heads are past 01:10 by then), so it cannot end one source a bin later than the other;
        # the run after the faker stopped appends the rest: the two equal one full run, SEQNOs included
        "averager": {**averager, "target": text(srv.url("scrt_averaged")), "maxiter": "1"},
        "averager_ref": {**averager, "target": text(srv.url("scrt_averaged_ref"))},
    })


class Run:
    """`scraperd run SECTION` as a subprocess, its output (JSON events) in a file."""

    def __init__(self, cfg: Path, section: str, log: Path, *args: str) -> None:
        self.name, self.log = section, log
        with open(log, "a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", section, *args],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        evs = read_events(self.log)
        return evs if name is None else [e for e in evs if e.get("event") == name]

    def alive(self, when: str) -> None:
        assert self.proc.poll() is None, \
            f"{self.name} exited {self.proc.returncode} {when}:\n{self.log.read_text()[-3000:]}"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


@pytest.mark.mysql
@pytest.mark.slow
def test_a_server_restart_under_the_fleet_is_waited_out_by_every_mode(mariadb_server, tmp_path):
    srv = mariadb_server
    for db in ("scrt_scraped", "scrt_scraped_ref", "scrt_averaged", "scrt_averaged_ref"):
        databases.ensure_database(srv.url(db))
    cfg = fleet_cfg(tmp_path / "fleet.cfg", srv)
    src_engine = databases.make_engine(srv.url("scrt_src"))

    def source_rows() -> int:
        try:
            with src_engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT COUNT(*) FROM AD2_LidSensor")).scalar() or 0)
        except sa.exc.DBAPIError:
            return 0

    runs: list[Run] = []
    try:
        fake = Run(cfg, "faker", tmp_path / "faker.log")
        runs.append(fake)
        wait_until(lambda: source_rows() >= ROWS_BEFORE // 2, timeout=30, what="the faker's first rows")
        scrape = Run(cfg, "scraper", tmp_path / "scraper.log")
        runs.append(scrape)
        wait_until(lambda: len(scrape.events("propagate")) >= 3, timeout=30, what="the scraper's first propagations")
        wait_until(lambda: source_rows() >= ROWS_BEFORE, timeout=30, what=f"{ROWS_BEFORE} source rows")

        rows_before = source_rows()
        srv.stop()
        propagated_before = len(scrape.events("propagate"))
        average = Run(cfg, "averager", tmp_path / "averager.log")  # its start-up meets a server that is down
        runs.append(average)
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            for run in runs:
                run.alive("while the server was down")
            time.sleep(0.2)
        for run in runs:
            assert run.events("db_retry"), f"{run.name} logged no db_retry while the server was down"
        srv.start()

        wait_until(lambda: source_rows() > rows_before + 20, timeout=60, what="the faker's rows after the restart")
        wait_until(lambda: len(scrape.events("propagate")) > propagated_before + 2, timeout=60,
                   what="the scraper's propagations after the restart")
        assert average.wait(60) == 0
        assert fake.stop() == 0
        assert scrape.stop() == 0
        for section, args in (("scraper", ["--catch-up"]), ("averager", ["--set", "maxiter=0"])):
            after = Run(cfg, section, tmp_path / f"{section}_after.log", *args)
            runs.append(after)
            assert after.wait(120) == 0, f"{section} {args}:\n{after.log.read_text()[-3000:]}"
    finally:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
        src_engine.dispose()

    for run in runs:
        assert not run.events("internal_error"), f"{run.name}: {run.events('internal_error')}"
        assert run.events()[-1]["event"] == "shutdown", f"{run.name} did not end with a clean shutdown"
    assert len(fake.events("faker_dropsrc")) == 1  # at the first start only, not at the reconnect
    assert len(fake.events("startup")) >= 2 and len(scrape.events("startup")) >= 4  # rebuilt after the restart
    order = [e["event"] for e in average.events()]
    assert order.index("db_retry") < order.index("startup"), "the averager's start-up did not wait for the server"
    assert events_named(average.events(), "shutdown")[-1]["records"] > 0

    run_section(cfg, "scraper_ref", catch_up=True)
    run_section(cfg, "averager_ref")
    for got_db, want_db in (("scrt_scraped", "scrt_scraped_ref"), ("scrt_averaged", "scrt_averaged_ref")):
        got_engine, want_engine = databases.make_engine(srv.url(got_db)), databases.make_engine(srv.url(want_db))
        try:
            got, want = target_rows(got_engine, "DcsAdLidSensor"), target_rows(want_engine, "DcsAdLidSensor")
        finally:
            got_engine.dispose()
            want_engine.dispose()
        assert len(got[0]) > 10, f"{got_db}: too few records to compare"
        assert got[0] == want[0], f"{got_db}: Vld rows differ from {want_db}"
        assert got[1] == want[1], f"{got_db}: payload rows differ from {want_db}"


# ----------------------------------------------------------------------------------------------------------
# the pieces: what a stopped server gives, and faker_dropsrc across a failed start-up


class _Orig(Exception):
    """A DB-API error as mysqlclient raises it: args = (code, message)."""


@pytest.mark.parametrize(("code", "message"), [
    (2002, "Can't connect to server on '127.0.0.1' (115)"), (2003, "Can't connect to MySQL server on '127.0.0.1'"),
    (2006, "Server has gone away"), (2013, "Lost connection to server during query"),
    (1053, "Server shutdown in progress"), (1927, "Connection was killed"),
    (4031, "The client was disconnected by the server because of inactivity")])
def test_what_a_stopping_or_stopped_server_gives_is_retried(code, message):
    error = sa.exc.OperationalError("SELECT 1", {}, _Orig(code, message))
    with pytest.raises(Disconnected) as caught, retry.side("target"):
        raise error
    assert caught.value.db == "target"


def test_connecting_to_a_server_that_is_down_is_retried():
    engine = databases.make_engine(sa.engine.make_url(f"mysql+mysqldb://root@127.0.0.1:{free_port()}/x"))
    try:
        with pytest.raises(Disconnected) as caught, retry.side("source"), engine.connect():
            pass
    finally:
        engine.dispose()
    assert isinstance(caught.value.error, sa.exc.OperationalError)
    assert caught.value.error.orig.args[0] in (2002, 2003)


def test_faker_dropsrc_is_done_once_even_when_its_first_attempt_is_cut_half_way(db, tmp_path, monkeypatch):
    cfg = write_cfg(tmp_path / "faker.cfg", {"f": {
        **COMMON, "mode": "faker", "source": text(db.url), "faker_timestart": "2011-02-01 00:00:00",
        "interval": "1m", "sleep": "0s", "faker_dropsrc": "True", "reconnect_max_wait": "1s"}})
    run_section(cfg, "f", maxiter=5)  # rows a drop removes
    real_drop, real_iterate = databases.drop_database, faker.FakerDaemon.iterate
    calls = {"drop": 0, "iterate": 0}

    def drop_then_lose_the_server(url: sa.engine.URL) -> None:  # dropped, not yet recreated
        real_drop(url)
        calls["drop"] += 1
        if calls["drop"] == 1:
            raise sa.exc.OperationalError("CREATE DATABASE", {}, _Orig(2013, "Lost connection to server"))

    def iterate_losing_the_server_once(self: faker.FakerDaemon, tables: list[sa.Table]) -> list[int]:
        calls["iterate"] += 1
        if calls["iterate"] == 2:  # in the loop, after the first row: start-up runs again
            raise Disconnected("source", ConnectionResetError())
        return real_iterate(self, tables)

    monkeypatch.setattr(databases, "drop_database", drop_then_lose_the_server)
    monkeypatch.setattr(faker.FakerDaemon, "iterate", iterate_losing_the_server_once)
    events = run_section(cfg, "f", maxiter=3)

    assert calls["drop"] == 2  # the cut attempt was done again, whole; the reconnect dropped nothing
    assert len(events_named(events, "faker_dropsrc")) == 1
    assert len(events_named(events, "db_retry")) == 2
    md = databases.reflecting(sa.MetaData())
    with db.engine.connect() as conn:
        table = sa.Table("AD1_LidSensor", md, autoload_with=conn)
        assert [r.id for r in conn.execute(sa.select(table.c.id).order_by(table.c.id))] == [1, 2, 3]
