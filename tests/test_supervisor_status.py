"""`scraperd status` exit codes and the fleet check against a real supervisord: a stopped scraper that is
not lagging is WARNING (1), a lagging one CRITICAL (2); a FATAL program and an unexpected EXITED are
CRITICAL (2), as supervisord itself judges them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scraperd import config
from scraperd.monitor.fleet import fleet_checks
from scraperd.monitor.results import State
from scraperd.status.compute import Databases, collect
from scraperd.status.results import FleetStatus
from tests.conftest import wait_until
from tests.scrapekit import run_section, write_cfg
from tests.supervisorkit import Supervisor, cli_main, private_supervisor, read_events
from tests.test_supervisor import ADTEMP, SEED

N_ROWS = 60  # ten minutes of 10 s rows


@pytest.fixture
def sv():
    with private_supervisor() as s:
        yield s


def status(cfg: Path, sv: Supervisor, capsys) -> tuple[int, dict, str]:
    """`scraperd status` twice: (exit code, the --json document, the table's last line)."""
    capsys.readouterr()
    rc = cli_main(["-c", str(cfg), "status", "--json", "--supervisor-conf", str(sv.conf), "--logdir", str(sv.logdir)])
    doc = json.loads(capsys.readouterr().out)
    assert cli_main(["-c", str(cfg), "status", "--supervisor-conf", str(sv.conf), "--logdir", str(sv.logdir)]) == rc
    return rc, doc, capsys.readouterr().out.splitlines()[-1]


def fleet_of(cfg: Path, sv: Supervisor) -> FleetStatus:
    cfgfile = config.read_file(cfg)
    with Databases() as dbs:
        return collect(cfgfile, list(cfgfile.sections), sv.conf, dbs, logdir=sv.logdir)


def test_a_stopped_scraper_is_a_warning_until_it_lags_then_critical(tmp_path, sv: Supervisor, capsys):
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": ADTEMP, "faker_timestart": "2011-02-01 00:00:00",
                         "profile": "modulo_ramp", "interval": "10s", "sleep": "0.02s", "maxiter": str(N_ROWS),
                         "supervisor_priority": "100"},
        "adtemp_scraper": {"mode": "scraper", "regime": ADTEMP, "interval": "10s", "maxage": "1m",
                           "threshold": "1.0", "heartbeat": "0.1s", "sleep": "0.1s", "status_maxlag": "5m", **SEED},
    }, defaults={"source": f"sqlite:///{tmp_path / 's.db'}", "target": f"sqlite:///{tmp_path / 't.db'}",
                 "source_tz": "Asia/Shanghai", "supervisor_startsecs": "1"})
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
    sv.start()
    sv.wait_state("adtemp_faker", "EXITED", timeout=60)  # maxiter reached: exit 0, expected
    wait_until(lambda: any(e["event"] == "sample" and e["ids"][-1] == N_ROWS
                           for e in read_events(sv.logdir / "adtemp_scraper.log")),
               timeout=60, what=f"the scraper to sample row {N_ROWS}", interval=0.2)
    rc, doc, last = status(cfg, sv, capsys)
    assert (rc, doc["state"], last) == (0, "OK", "status: OK")

    assert "adtemp_scraper: stopped" in sv.ctl("stop", "adtemp_scraper").stdout
    rc, doc, last = status(cfg, sv, capsys)
    by_name = {s["section"]: s for s in doc["sections"]}
    assert (rc, doc["state"], last) == (1, "WARNING", "status: WARNING (1 stopped: adtemp_scraper)")
    assert {n: (s["state"], s["check_state"]) for n, s in by_name.items()} == {
        "adtemp_faker": ("EXITED", "OK"), "adtemp_scraper": ("STOPPED", "WARNING")}
    assert (by_name["adtemp_faker"]["exitstatus"], by_name["adtemp_faker"]["unexpected_exit"]) == (0, False)
    assert doc["lagging"] == []
    # the fleet check itself leaves a deliberate stop to the freshness check
    assert [(r.section, r.state) for r in fleet_checks(fleet_of(cfg, sv))] == [
        ("adtemp_faker", State.OK), ("adtemp_scraper", State.OK)]

    run_section(cfg, "adtemp_faker", maxiter=N_ROWS)  # ten more minutes of source that nobody scrapes
    rc, doc, last = status(cfg, sv, capsys)
    assert (rc, doc["state"], doc["lagging"]) == (2, "CRITICAL", ["adtemp_scraper:DBNS_SAB_Temp"])
    assert last == "status: CRITICAL (1 lagging: adtemp_scraper; 1 stopped: adtemp_scraper)"


def faker(**keys: str) -> dict[str, str]:
    return {"mode": "faker", "regime": ADTEMP, "faker_timestart": "2011-02-01 00:00:00", "interval": "10s",
            "sleep": "0s", **keys}


def test_a_fatal_program_is_critical_for_status_and_the_fleet_check(tmp_path, sv: Supervisor, capsys):
    cfg = tmp_path / "scraper.cfg"
    defaults = {"source": f"sqlite:///{tmp_path / 's.db'}", "source_tz": "Asia/Shanghai"}
    write_cfg(cfg, {"adtemp_faker": faker(maxiter="1")}, defaults=defaults)
    run_section(cfg, "adtemp_faker")  # its source exists: only its program is in trouble
    # broken: exits 78 at each start, within startsecs, until supervisord gives up (FATAL)
    write_cfg(cfg, {"adtemp_faker": faker(interval="10 seconds", supervisor_startsecs="10",
                                           supervisor_startretries="1")}, defaults=defaults)
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
    sv.start()
    sv.wait_state("adtemp_faker", "FATAL", timeout=30)
    capsys.readouterr()
    assert cli_main(["-c", str(cfg), "status", "--supervisor-conf", str(sv.conf)]) == 78  # the config first
    [fatal] = fleet_checks(fleet_of(cfg, sv))
    assert (fatal.check, fatal.section, fatal.state) == ("fleet", "adtemp_faker", State.CRITICAL)
    assert fatal.summary == "FATAL: Exited too quickly (process log may have details)"

    write_cfg(cfg, {"adtemp_faker": faker()}, defaults=defaults)  # fixed, not yet restarted
    rc, doc, last = status(cfg, sv, capsys)
    [entry] = doc["sections"]
    assert (rc, doc["state"], entry["state"], entry["check_state"]) == (2, "CRITICAL", "FATAL", "CRITICAL")
    assert entry["spawnerr"] == "Exited too quickly (process log may have details)"
    assert last == "status: CRITICAL (1 FATAL: adtemp_faker)"


def test_an_unexpected_exit_is_critical_and_an_expected_one_ok(tmp_path, sv: Supervisor, capsys):
    cfg = write_cfg(tmp_path / "scraper.cfg", {"adtemp_faker": faker(maxiter="1"), "other_faker": faker(maxiter="1")},
                    defaults={"source": f"sqlite:///{tmp_path / 's.db'}", "source_tz": "Asia/Shanghai"})
    run_section(cfg, "adtemp_faker")
    for name, status_ in (("adtemp_faker", 3), ("other_faker", 0)):  # programs that exit at once, never restarted
        (sv.conf_d / f"{name}.ini").write_text(
            f"[program:{name}]\ncommand = /bin/sh -c 'exit {status_}'\nstartsecs = 0\nautorestart = false\n"
            "exitcodes = 0\n")
    sv.start()
    sv.wait_state("adtemp_faker", "EXITED")
    sv.wait_state("other_faker", "EXITED")
    assert "exited: adtemp_faker (exit status 3; not expected)" in sv.log.read_text()  # supervisord's own word
    assert "exited: other_faker (exit status 0; expected)" in sv.log.read_text()
    rc, doc, last = status(cfg, sv, capsys)
    by_name = {s["section"]: s for s in doc["sections"]}
    assert (rc, last) == (2, "status: CRITICAL (1 EXITED: adtemp_faker)")
    assert [(by_name[n]["exitstatus"], by_name[n]["unexpected_exit"], by_name[n]["check_state"])
            for n in ("adtemp_faker", "other_faker")] == [(3, True, "CRITICAL"), (0, False, "OK")]
    unexpected, expected = fleet_checks(fleet_of(cfg, sv))
    assert (unexpected.section, unexpected.state) == ("adtemp_faker", State.CRITICAL)
    assert unexpected.summary.startswith("EXITED with status 3, not expected (stopped ")
    assert (expected.section, expected.state) == ("other_faker", State.OK)
