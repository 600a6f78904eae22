"""Fenced writes: two copies of one section write exactly what one run writes.

A write commits only if the context's last validity record is still the one the writer's state
rests on (checked under the LOCALSEQNO lock); otherwise nothing is written, `write_conflict` is
logged, and the daemon resumes from the target as at start-up.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

from scraperd import averager, config
from scraperd.dbi import writer
from scraperd.dbi.context import Context
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import DbiTables, create_tables
from scraperd.dbi.writer import Fence, Record
from scraperd.errors import WriteConflict
from tests.conftest import wait_until
from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg
from tests.sourcedata import create_source, insert_rows
from tests.supervisorkit import read_events
from tests.test_supervisor import vld_count

LID = "scraperd.regimes.adlidsensor:AdLidSensor"
SEED = {"seed_target_tables": "True", "seed_timestart": "2011-01-31 23:59:00", "seed_timeend": "2011-02-01 00:00:00"}
T0 = datetime(2012, 1, 1)
CTX = Context(sitemask=1, subsite=1)


def _record(i: int, ctx: Context = CTX) -> Record:
    return Record(T0 + timedelta(minutes=i), T0 + timedelta(minutes=i + 1), ctx,
                  [{"ladder": 1, "col": 1, "ring": 1, "voltage": i / 10, "pw": 1}])


def _vld_seqnos(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT SEQNO FROM DcsPmtHvVld ORDER BY SEQNO"))]


def assert_stale_fences_write_nothing(engine: sa.Engine, tables: DbiTables) -> None:
    """Writes on stale fences raise WriteConflict naming what they found and write nothing (empty DcsPmtHv)."""
    other = Context(sitemask=2, subsite=1)
    assert writer.write(engine, tables, _record(0), [Fence(CTX, None, 0)]) == 1
    with pytest.raises(WriteConflict) as caught:  # this writer still believes the context is empty
        writer.write_many(engine, tables, [_record(1), _record(1, other)],
                          [Fence(CTX, None, 0), Fence(other, None, 0)])
    assert (caught.value.table, caught.value.expected, caught.value.found) == ("DcsPmtHv", None, 1)
    assert caught.value.context == {"sitemask": 1, "subsite": 1, "simmask": 1, "task": 0, "aggregateno": -1}
    assert _vld_seqnos(engine) == [1]  # nothing of the batch, not even the other context's record
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM DcsPmtHv")).scalar() == 1
        assert conn.execute(sa.text("SELECT LASTUSEDSEQNO FROM LOCALSEQNO WHERE TABLENAME = 'DcsPmtHv'")).scalar() == 1
    assert writer.write(engine, tables, _record(1), [Fence(CTX, 1, 1)]) == 2  # the right belief writes
    with pytest.raises(WriteConflict) as caught:
        writer.write(engine, tables, _record(2), [Fence(CTX, 1, 1)])
    assert (caught.value.expected, caught.value.found) == (1, 2)
    # records of other contexts written since do not conflict; the one of the fenced context does
    assert writer.write(engine, tables, _record(2, other), [Fence(other, None, 2)]) == 3
    assert writer.write(engine, tables, _record(2), [Fence(CTX, 2, 2)]) == 4
    assert writer.write(engine, tables, _record(3, other), [Fence(other, 3, 3)]) == 5
    with pytest.raises(WriteConflict) as caught:
        writer.write(engine, tables, _record(3), [Fence(CTX, 2, 2), Fence(other, 3, 4)])
    assert caught.value.found == 4
    assert _vld_seqnos(engine) == [1, 2, 3, 4, 5]


def test_a_fence_after_a_write_rests_on_its_own_last_record_and_the_batch_end():
    other = Context(sitemask=2, subsite=1)
    batch = [_record(1), _record(1, other), _record(2), _record(3, other)]
    assert Fence(CTX, 4, 4).after(batch, [5, 6, 7, 8]) == Fence(CTX, 7, 8)
    assert Fence(other, None, 4).after(batch[:1], [5]) == Fence(other, None, 5)  # none of its own: seen moves


def test_a_write_on_a_stale_fence_writes_nothing_and_names_what_it_found(db):
    assert_stale_fences_write_nothing(db.engine, create_tables(db.engine, find_spec("DcsPmtHv")))


def _lid_cfg(tmp_path: Path, src, tgt, ref, **faker: str) -> Path:
    scraper = {"mode": "scraper", "regime": LID, "interval": "10s", "maxage": "30s", "heartbeat": "0.1s",
               "sleep": "0.1s", "aggregate": "avg,max", "aggregate_skips": "id,date_time,Quality",
               "aggregate_filter": "Quality != 0", "aggregate_none": "-1", **SEED}
    return write_cfg(tmp_path / "scraper.cfg", {
        "adlid_faker": {"mode": "faker", "regime": LID, "faker_timestart": "2011-02-01 00:00:00",
                        "profile": "modulo_ramp", "interval": "10s", "sleep": "0.02s", **faker},
        "adlid_scraper": {**scraper, "target": url_text(tgt)},
        "reference": {**scraper, "target": url_text(ref)},
    }, defaults={"source": url_text(src), "source_tz": "Asia/Shanghai"})


def _spawn(cfg: Path, section: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the daemon
        return subprocess.Popen([str(Path(sys.executable).with_name("scraperd")), "-c", str(cfg), "run", section],
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_live_copies_then_the_first_killed_write_what_one_run_writes_seqno_for_seqno(make_db, tmp_path):
    """Two copies of a two-source scraper (AD1 and AD2 interleave SEQNOs) race on one target while a
    faker adds rows; the first is SIGKILLed mid-run, the second carries on. The target equals one
    uninterrupted run, SEQNO for SEQNO."""
    src, tgt, ref = make_db("src"), make_db("tgt"), make_db("ref")
    n_rows = 250
    cfg = _lid_cfg(tmp_path, src, tgt, ref, maxiter=str(n_rows))
    create_source(src.url)
    first = _spawn(cfg, "adlid_scraper", tmp_path / "first.log")
    second = _spawn(cfg, "adlid_scraper", tmp_path / "second.log")
    procs = [first, second]
    try:
        # both copies in their loop before the first row: every record is raced (one seeds, the other
        # finds the seed or conflicts on it)
        for log in ("first.log", "second.log"):
            wait_until(lambda log=log: len(events_named(read_events(tmp_path / log), "startup")) >= 2, timeout=60,
                       what=f"{log}: both sources started", interval=0.1)
        faker = _spawn(cfg, "adlid_faker", tmp_path / "faker.log")
        procs.append(faker)
        # whichever copy wins the races: 20 records written while both are alive, then the first dies
        wait_until(lambda: vld_count(tgt.engine, "DcsAdLidSensor") >= 22, timeout=60,
                   what="20 records after the seeds", interval=0.1)
        assert first.poll() is None and second.poll() is None
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert faker.wait(timeout=120) == 0
        run_section(cfg, "reference", catch_up=True)  # the source is complete: one uninterrupted run of it
        want = target_rows(ref.engine, "DcsAdLidSensor")
        assert len(want[0]) > 40
        wait_until(lambda: vld_count(tgt.engine, "DcsAdLidSensor") >= len(want[0]), timeout=60,
                   what=f"the second copy to write {len(want[0])} Vld rows", interval=0.2)
        assert second.poll() is None  # it carried on alone
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert target_rows(tgt.engine, "DcsAdLidSensor") == want

    events = read_events(tmp_path / "first.log") + read_events(tmp_path / "second.log")
    conflicts = [e for e in events if e["event"] == "write_conflict"]
    assert conflicts, "two live copies writing the same records never met a conflict"
    assert {"section", "table", "context", "expected", "found"} <= set(conflicts[0])
    assert conflicts[0]["section"] == "adlid_scraper" and conflicts[0]["table"] == "DcsAdLidSensor"
    assert not [e for e in events if e["event"] == "internal_error"]


def _lid_rows(n: int) -> list[dict]:
    from scraperd.regimes.adlidsensor import QUANTITIES

    return [{"id": i, "date_time": datetime(2011, 2, 1) + timedelta(seconds=7 * i), "Quality": 1,
             **{q: (i // 5) % 4 + k for k, q in enumerate(QUANTITIES)}} for i in range(1, n + 1)]


def test_an_averager_whose_target_another_copy_filled_writes_nothing_twice(make_db, tmp_path):
    src, tgt, ref = make_db("src"), make_db("tgt"), make_db("ref")
    create_source(src.url)
    for table in ("AD1_LidSensor", "AD2_LidSensor"):
        insert_rows(src.url, table, _lid_rows(1500))
    avg = {"mode": "averager", "regime": LID, "binsize": "1m", "territory": "1h", "aggregate": "avg,max",
           "aggregate_skips": "id,date_time,Quality", "source": url_text(src)}
    cfg = write_cfg(tmp_path / "avg.cfg", {"avg": {**avg, "target": url_text(tgt)},
                                           "reference": {**avg, "target": url_text(ref)}})
    run_section(cfg, "reference")
    late = averager.Averager(config.load_section(cfg, "avg"), threading.Event())
    with structlog.testing.capture_logs():
        try:
            run = late.start()  # planned from an empty target ...
            assert sum(len(p.bins) for p in run.plans) > 0
            run_section(cfg, "avg")  # ... which another copy then fills
            with pytest.raises(WriteConflict):
                late.loop(run)
            # resumed from the target, as lifecycle does after a conflict: nothing left to do
            assert late.loop(late.start()) == "done"
        finally:
            late.close()
    assert target_rows(tgt.engine, "DcsAdLidSensor") == target_rows(ref.engine, "DcsAdLidSensor")
