"""Restart reproducibility: stopping and restarting anywhere gives the same target rows.

The manual promises that target entries depend on the source, not on how the scraper ran. Here
hypothesis draws the source rows (gaps, duplicate date_times, jumps past threshold, NULLs), the
settings (interval, maxage, offset) and the restart points; each run writes into its own target,
and every column but INSERTDATE must match one uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scraperd import databases
from scraperd.scrape import schedule
from tests.conftest import mysql_url, require_mysql
from tests.scrapekit import run_section, target_rows, write_cfg
from tests.sourcedata import create_source, insert_rows

T0 = datetime(2011, 2, 1, 0, 0, 0)


@st.composite
def temp_rows(draw):
    n = draw(st.integers(min_value=1, max_value=60))
    rows, t, value = [], T0 + timedelta(seconds=10), 20.0
    for i in range(1, n + 1):
        t += timedelta(seconds=draw(st.sampled_from([0, 1, 3, 10, 10, 10, 25, 70])))
        value += draw(st.sampled_from([0.0, 0.0, 0.2, -0.3, 1.5, -2.0]))
        probe = draw(st.sampled_from([round(value, 2)] * 9 + [None]))
        rows.append({"id": i, "date_time": t, **{f"DBNS_SAB_Temp_PT{p}": (probe if p == 1 else round(value + p, 2))
                                                   for p in range(1, 6)}})
    return rows


class Backend:
    """Creates and drops throwaway databases inside a hypothesis example."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dir = Path(tempfile.mkdtemp(prefix="scrt_"))
        self.made: list[sa.engine.URL] = []

    def new(self, tag: str) -> sa.engine.URL:
        if self.kind == "sqlite":
            url = sa.engine.make_url(f"sqlite:///{self.dir / (tag + uuid.uuid4().hex[:6] + '.db')}")
        else:
            url = mysql_url(f"scrt_{tag}_{uuid.uuid4().hex[:10]}")
            databases.ensure_database(url)
        self.made.append(url)
        return url

    def cleanup(self) -> None:
        for url in self.made:
            databases.drop_database(url)
        self.made.clear()


def cfg_for(path: Path, src: sa.engine.URL, tgt: sa.engine.URL, **keys) -> Path:
    keys = dict(keys)
    scraper = {"regime": keys.pop("regime", "scraperd.regimes.adtemp:AdTemp"), "mode": "scraper",
               "source": src.render_as_string(hide_password=False),
               "target": tgt.render_as_string(hide_password=False), "sleep": "0s", "heartbeat": "0.01s",
               "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
               "seed_timeend": "2011-02-01 00:00:10", "log_samples": "False"}
    scraper.update({k: str(v) for k, v in keys.items()})
    return write_cfg(path, {"adtemp_scraper": scraper})


def scrape(backend: Backend, src, keys, maxiters: list[int], table: str = "DcsAdTemp"):
    """Run the scraper into a fresh target with the given sequence of maxiter stops."""
    tgt = backend.new("tgt")
    cfg = cfg_for(backend.dir / f"{uuid.uuid4().hex[:6]}.cfg", src, tgt, **keys)
    for m in maxiters:
        run_section(cfg, "adtemp_scraper", maxiter=m, catch_up=True)
    engine = databases.make_engine(tgt)
    try:
        return target_rows(engine, table)
    finally:
        engine.dispose()


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("SCRAPERD_HYPOTHESIS_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=temp_rows(), interval=st.sampled_from(["5s", "10s", "20s"]), maxage=st.sampled_from(["30s", "1m", "2m"]),
       offset=st.integers(0, 3), batch=st.sampled_from([1, 3, 1000]),
       cuts=st.lists(st.integers(min_value=0, max_value=70), max_size=3))
def test_stopping_anywhere_and_restarting_gives_the_same_records(backend, rows, interval, maxage, offset, batch,
                                                                 cuts):
    if backend == "mysql":
        require_mysql()
    b = Backend(backend)
    try:
        src = b.new("src")
        create_source(src)
        insert_rows(src, "DBNS_SAB_Temp", rows)
        keys = {"interval": interval, "maxage": maxage, "offset": offset, "threshold": "1.0"}
        full = len(rows) + 2
        once = scrape(b, src, {**keys, "batch_size": 1000}, [full])
        restarted = scrape(b, src, {**keys, "batch_size": batch}, [*cuts, full])
        assert restarted == once
        assert len(once[0]) >= 1  # at least the seed
    finally:
        b.cleanup()


def _faker_rows(n: int) -> list[dict]:
    return [{"id": i, "date_time": T0 + timedelta(seconds=10 * i),
             **{f"DBNS_SAB_Temp_PT{p}": float((i // 4) % 5 * 2 + p) for p in range(1, 6)}} for i in range(1, n + 1)]


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kill_at=st.integers(min_value=1, max_value=395), flush=st.sampled_from([1, 7, 500]))
def test_sigkill_anywhere_then_restart_gives_the_same_records(backend, tmp_path, kill_at, flush):
    """A scraper process killed with SIGKILL at its kill_at-th sample (its uncommitted batch lost),
    then restarted: the same target as one uninterrupted run."""
    if backend == "mysql":
        require_mysql()
    b = Backend(backend)
    try:
        src = b.new("src")
        create_source(src)
        insert_rows(src, "DBNS_SAB_Temp", _faker_rows(400))
        keys = {"interval": "10s", "maxage": "30s", "threshold": "1.0", "batch_size": 7}
        once = scrape(b, src, keys, [410])
        tgt = b.new("tgt")
        cfg = cfg_for(b.dir / f"{uuid.uuid4().hex[:6]}.cfg", src, tgt, **keys)
        proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("scrape_paused.py")), str(cfg),
                                 "adtemp_scraper", str(kill_at), str(flush)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # its log lines, then PAUSED: alive, frozen right after that sample
            if line.strip() in ("PAUSED", "DONE"):
                break
        assert line.strip() == "PAUSED" and proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        run_section(cfg, "adtemp_scraper", maxiter=410, catch_up=True)
        engine = databases.make_engine(tgt)
        try:
            assert target_rows(engine, "DcsAdTemp") == once
        finally:
            engine.dispose()
    finally:
        b.cleanup()


@st.composite
def lid_rows(draw, pace=1):
    """Rows of one lid-sensor table: gaps (duplicates included), values, a bad Quality now and then."""
    from scraperd.regimes.adlidsensor import QUANTITIES

    n = draw(st.integers(min_value=0, max_value=40))
    rows, t = [], T0 + timedelta(seconds=draw(st.integers(1, 30)))
    for i in range(1, n + 1):
        t += timedelta(seconds=pace * draw(st.sampled_from([0, 3, 3, 3, 10, 40])))
        v = draw(st.integers(0, 5))
        rows.append({"id": i, "date_time": t, "Quality": draw(st.sampled_from([1, 1, 1, 0])),
                     **{q: v + k for k, q in enumerate(QUANTITIES)}})
    return rows


@pytest.mark.slow
@settings(max_examples=int(os.environ.get("SCRAPERD_HYPOTHESIS_EXAMPLES", "15")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ad1=lid_rows(), ad2=lid_rows(pace=4), maxage=st.sampled_from(["10s", "30s"]),
       cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=3),
       flush=st.sampled_from([1, 3, 500]))
def test_two_sources_restarted_anywhere_give_the_same_records_and_seqnos(backend, ad1, ad2, maxage, cuts, flush):
    """SEQNOs interleave two contexts (AD1, AD2): they too must not depend on where the run was cut."""
    if backend == "mysql":
        require_mysql()
    b = Backend(backend)
    try:
        src = b.new("src")
        create_source(src)
        insert_rows(src, "AD1_LidSensor", ad1)
        insert_rows(src, "AD2_LidSensor", ad2)
        keys = {"regime": "scraperd.regimes.adlidsensor:AdLidSensor", "interval": "10s", "maxage": maxage,
                "aggregate": "avg,max,std", "aggregate_skips": "id,date_time,Quality",
                "aggregate_filter": "Quality != 0", "aggregate_none": "-1", "batch_size": 5}

        def lid_scrape(stops):
            return scrape(b, src, keys, stops, table="DcsAdLidSensor")

        full = len(ad1) + len(ad2) + 2
        saved, schedule.FLUSH_RECORDS = schedule.FLUSH_RECORDS, flush  # commit batches of this many while behind
        try:
            once = lid_scrape([full])
            assert lid_scrape([*cuts, full]) == once
        finally:
            schedule.FLUSH_RECORDS = saved
        vld = once[0][2:]  # after the two seeds: SEQNOs follow (sample time, source), whatever the batching
        assert [r[0] for r in sorted(vld, key=lambda r: (r[1], r[5]))] == [r[0] for r in vld]
    finally:
        b.cleanup()
