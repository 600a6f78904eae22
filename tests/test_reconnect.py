"""Outages: a TCP proxy between the scraper and MariaDB cuts the connection (source side, target side,
and during a COMMIT whose acknowledgement is lost). The process never exits, logs `db_retry`, and
the final target is identical to one uninterrupted run over the same source.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from scraperd import databases
from tests.conftest import MYSQL_HOST, MYSQL_PORT, mysql_url, require_mysql, wait_until
from tests.scrapekit import run_section, target_rows, write_cfg
from tests.tcpproxy import TcpProxy

OUTAGE_S = float(os.environ.get("SCRAPERD_OUTAGE_S", "20"))

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def via(proxy: TcpProxy, url: sa.engine.URL) -> str:
    return url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def dbs():
    require_mysql()
    made = [mysql_url(f"scrt_{tag}_{uuid.uuid4().hex[:8]}") for tag in ("src", "tgt", "ref")]
    for url in made:
        databases.ensure_database(url)
    yield made
    for url in made:
        databases.drop_database(url)


def test_outages_on_both_sides_and_a_lost_commit_ack_lose_and_duplicate_nothing(dbs, tmp_path):
    src, tgt, ref = dbs
    psrc = TcpProxy((MYSQL_HOST, MYSQL_PORT)).start()
    ptgt = TcpProxy((MYSQL_HOST, MYSQL_PORT)).start()
    common = {"regime": "scraperd.regimes.adtemp:AdTemp", "source_tz": "Asia/Shanghai"}
    scraper = {**common, "mode": "scraper", "interval": "10s", "maxage": "1m", "threshold": "1.0",
               "sleep": "0.2s", "heartbeat": "0.2s", "reconnect_max_wait": "2s", "seed_target_tables": "True",
               "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:00:10"}
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "faker": {**common, "mode": "faker", "source": src.render_as_string(hide_password=False),
                  "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0.05s",
                  "faker_dropsrc": "True", "profile": "modulo_ramp"},
        "scraper": {**scraper, "source": via(psrc, src), "target": via(ptgt, tgt)},
        "reference": {**scraper, "source": src.render_as_string(hide_password=False),
                      "target": ref.render_as_string(hide_password=False)},
    })
    log = tmp_path / "scraper.log"
    faker = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", "faker"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    src_engine = databases.make_engine(src)

    def source_rows() -> int:
        try:
            with src_engine.connect() as conn:
                return conn.execute(sa.text("SELECT COUNT(*) FROM DBNS_SAB_Temp")).scalar() or 0
        except sa.exc.DBAPIError:
            return 0

    wait_until(lambda: source_rows() > 10, timeout=30, what="the faker's first rows")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scraperd", "-c", str(cfg), "run", "scraper"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        def propagations() -> int:
            return sum(1 for e in events(log) if e.get("event") == "propagate")

        def outage(proxy: TcpProxy, what: str) -> None:
            before = propagations()
            proxy.cut()
            deadline = time.monotonic() + OUTAGE_S
            while time.monotonic() < deadline:
                assert proc.poll() is None, f"the scraper exited during the {what} outage"
                time.sleep(0.2)
            proxy.restore()
            wait_until(lambda: propagations() > before + 2, timeout=60, what=f"propagations after the {what} outage")

        wait_until(lambda: propagations() >= 3, timeout=60, what="first propagations")
        outage(psrc, "source")
        outage(ptgt, "target")
        # during a write: the COMMIT reaches the server, its acknowledgement never reaches the scraper
        ptgt.cut_on(b"COMMIT")
        assert ptgt.triggered.wait(30), "no COMMIT went through the target proxy"
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the scraper exited after the lost COMMIT acknowledgement"
            time.sleep(0.2)
        ptgt.restore()
        after = propagations()
        wait_until(lambda: propagations() > after + 2, timeout=60, what="propagations after the lost COMMIT ack")
        faker.send_signal(signal.SIGTERM)
        assert faker.wait(30) == 0
        last_id = source_rows()
        wait_until(lambda: any(e.get("event") == "sample" and e["ids"][-1] >= last_id - 1 for e in events(log)),
                   timeout=120, what=f"the scraper to sample up to id {last_id}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        for p in (proc, faker):
            if p.poll() is None:
                p.kill()
        psrc.stop()
        ptgt.stop()
        src_engine.dispose()

    evs = events(log)
    retries = [e for e in evs if e.get("event") == "db_retry"]
    assert {e["db"] for e in retries} == {"source", "target"}
    assert all({"attempt", "wait_s", "error"} <= set(e) for e in retries)
    assert all(e["wait_s"] <= 2.0 for e in retries)  # reconnect_max_wait caps the backoff
    assert [e["event"] for e in evs].count("startup") >= 3  # rebuilt from the target after each outage
    assert evs[-1]["event"] == "shutdown"

    run_section(cfg, "reference", catch_up=True)
    got_engine, ref_engine = databases.make_engine(tgt), databases.make_engine(ref)
    try:
        got, want = target_rows(got_engine, "DcsAdTemp"), target_rows(ref_engine, "DcsAdTemp")
    finally:
        got_engine.dispose()
        ref_engine.dispose()
    # the uninterrupted reference may go on past the last row the scraper sampled before SIGTERM
    assert got[0] == want[0][: len(got[0])] and got[1] == want[1][: len(got[1])]
    assert len(got[0]) >= len(want[0]) - 1
    seqnos = [r[0] for r in got[0]]
    assert seqnos == list(range(1, len(seqnos) + 1))  # no gap, no duplicate


@pytest.mark.parametrize(("message", "retried"), [
    ("database is locked", True), ("unable to open database file", True), ("disk I/O error", True),
    ("no such table: DcsAdTempVld", False), ('near "SELEC": syntax error', False)])
def test_transient_sqlite_errors_are_retried_and_bad_statements_are_not(message, retried):
    import sqlite3

    from scraperd import retry

    error = sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    assert retry.is_disconnect(error) is retried
