"""SIGKILL of a scraper under supervisord: supervisord restarts it (an unexpected exit), and the final
target is identical to one uninterrupted run over the same source."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_until
from tests.scrapekit import run_section, target_rows, url_text, write_cfg
from tests.supervisorkit import Supervisor, cli_main, private_supervisor, read_events
from tests.test_supervisor import ADTEMP, SEED, vld_count

N_ROWS = 300


@pytest.fixture
def sv():
    with private_supervisor() as s:
        yield s


def test_sigkill_under_supervisord_restarts_and_the_target_equals_an_uninterrupted_run(make_db, tmp_path,
                                                                                         sv: Supervisor):
    src, tgt, ref = make_db("src"), make_db("tgt"), make_db("ref")
    scraper = {"mode": "scraper", "regime": ADTEMP, "interval": "10s", "maxage": "1m", "threshold": "1.0",
               "heartbeat": "0.1s", "sleep": "0.1s", **SEED}
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": ADTEMP, "faker_timestart": "2011-02-01 00:00:00",
                         "profile": "modulo_ramp", "interval": "10s", "sleep": "0.02s", "maxiter": str(N_ROWS),
                         "supervisor_priority": "100"},
        "adtemp_scraper": {**scraper, "target": url_text(tgt)},
        "reference": {**scraper, "target": url_text(ref), "supervisor_autostart": "False"},
    }, defaults={"source": url_text(src), "source_tz": "Asia/Shanghai", "supervisor_startsecs": "1"})
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
    sv.start()
    first = sv.wait_state("adtemp_scraper", "RUNNING")
    wait_until(lambda: vld_count(tgt.engine, "DcsAdTemp") >= 5, timeout=30, what="5 Vld rows", interval=0.1)

    os.kill(first["pid"], signal.SIGKILL)
    again = wait_until(lambda: (i := sv.info("adtemp_scraper"))["statename"] == "RUNNING"
                       and i["pid"] != first["pid"] and i, timeout=30, what="supervisord to restart the scraper")
    assert again["pid"] != first["pid"]

    # the faker ends after N_ROWS rows (exit 0: EXITED, not restarted); the scraper reaches the last row
    sv.wait_state("adtemp_faker", "EXITED", timeout=60)
    log = sv.logdir / "adtemp_scraper.log"

    def restarted_sampled_the_last_row() -> bool:  # the killed one may have sampled it already: not enough
        events = read_events(log)
        starts = [i for i, e in enumerate(events) if e["event"] == "startup"]
        return len(starts) == 2 and any(e["event"] == "sample" and e["ids"][-1] == N_ROWS
                                        for e in events[starts[1]:])

    wait_until(restarted_sampled_the_last_row, timeout=60, what=f"the restarted scraper to sample row {N_ROWS}",
               interval=0.2)
    assert "adtemp_scraper: stopped" in sv.ctl("stop", "adtemp_scraper").stdout
    assert sv.info("adtemp_scraper")["exitstatus"] == 0
    assert [e["event"] for e in read_events(log)].count("startup") == 2

    run_section(cfg, "reference", catch_up=True)
    assert target_rows(tgt.engine, "DcsAdTemp") == target_rows(ref.engine, "DcsAdTemp")
