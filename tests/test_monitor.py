"""`scraperd monitor` on real databases: freshness, source, expected/missing, the one-shot's lines, JSON and
exit codes, the daemon's rounds, and the configuration of mode = monitor.

The fakers here write live rows (no faker_timestart: date_time is now in source_tz), so the ages the
checks judge are real ones; stale limits are a few seconds and the tests wait them out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from scraperd import cli
from tests.conftest import wait_until
from tests.scrapekit import run_section, url_text, write_cfg
from tests.supervisorkit import SCRAPERD, read_events

STALE = 3  # seconds


def fleet_cfg(tmp_path: Path, make_db: Any, **monitor: Any) -> Path:
    src, tgt = make_db("dcs"), make_db("tgt")
    return write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp"},
        "adtemp_scraper": {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp", "heartbeat": "1s",
                           "maxage": "1s", "seed_target_tables": "True", "seed_timestart": "2011-01-01 00:00:00",
                           "seed_timeend": "2011-01-01 00:00:01"},
        "monitor": {"mode": "monitor", "every": "1s", "stale_after": f"{STALE}s", "source_stale_after": "30s",
                    "checks": "freshness, source", "expected_file": str(tmp_path / "expected.txt"), **monitor},
    }, defaults={"source": url_text(src), "target": url_text(tgt), "source_tz": "Asia/Shanghai", "interval": "1s",
                 "sleep": "0s", "timefloor": "2010-01-01 00:00:00"})


def monitor(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    rc = cli.main(["-c", str(cfg), "monitor", *args])
    return rc, capsys.readouterr().out.splitlines()


def monitor_json(cfg: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    rc = cli.main(["-c", str(cfg), "monitor", "--json", *args])
    return rc, json.loads(capsys.readouterr().out)


def states(doc: dict[str, Any], check: str) -> list[str]:
    return [c["state"] for c in doc["checks"] if c["check"] == check]


def fake(cfg: Path, rows: int = 3) -> None:
    """Live DCS rows, one a second (date_time is now: rows of one second would be duplicates)."""
    run_section(cfg, "adtemp_faker", maxiter=rows, sleep="1s")


def scrape(cfg: Path) -> None:
    run_section(cfg, "adtemp_scraper", catch_up=True)


def test_fresh_target_and_source_are_ok_and_the_one_shot_prints_nagios_lines(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)
    scrape(cfg)
    rc, lines = monitor(cfg, capsys)
    assert rc == 0, lines
    assert lines[0].startswith("SCRAPERD OK - 0 critical, 0 unknown, 0 warning, 2 ok |"), lines
    assert any(line.startswith("OK       freshness adtemp_scraper DcsAdTemp sitemask=32,subsite=1") for line in lines)
    assert any(line.startswith("OK       source adtemp_faker DBNS_SAB_Temp: writing") for line in lines)


def test_a_scraper_that_stops_writing_goes_critical_and_recovers(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)
    scrape(cfg)
    time.sleep(STALE + 1.5)
    fake(cfg)  # the DCS goes on writing, the scraper does not
    rc, doc = monitor_json(cfg, capsys)
    assert rc == 2 and doc["state"] == "CRITICAL" and doc["exit_code"] == 2
    (fresh,) = [c for c in doc["checks"] if c["check"] == "freshness"]
    assert fresh["state"] == "CRITICAL" and fresh["summary"].startswith("stale: no record inserted for"), fresh
    assert (fresh["section"], fresh["table"]) == ("adtemp_scraper", "DcsAdTemp")
    assert states(doc, "source") == ["OK"]
    scrape(cfg)
    rc, doc = monitor_json(cfg, capsys)
    assert rc == 0 and states(doc, "freshness") == ["OK"], doc


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_a_silent_dcs_is_the_source_checks_critical_not_the_scrapers(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)
    scrape(cfg)
    time.sleep(STALE + 1.5)
    rc, doc = monitor_json(cfg, capsys, "--set", f"source_stale_after={STALE}s")
    assert rc == 2
    (src,) = [c for c in doc["checks"] if c["check"] == "source"]
    assert src["state"] == "CRITICAL" and src["summary"].startswith("silent: newest date_time"), src
    assert src["table"] == "DBNS_SAB_Temp"
    (fresh,) = [c for c in doc["checks"] if c["check"] == "freshness"]
    assert fresh["state"] == "WARNING" and "up to date with its source" in fresh["summary"], fresh


def test_a_target_that_cannot_be_read_is_critical_with_the_error(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)  # the scraper never ran: no target tables
    rc, doc = monitor_json(cfg, capsys)
    assert rc == 2
    (fresh,) = [c for c in doc["checks"] if c["check"] == "freshness"]
    assert fresh["state"] == "CRITICAL" and fresh["summary"].startswith("cannot tell:"), fresh


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_gen_expected_adds_only_and_missing_pairs_are_critical_until_a_record_comes(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db, expected_period="3s", checks="freshness, source, expected")
    fake(cfg)
    scrape(cfg)
    rc, lines = monitor(cfg, capsys, "--gen-expected")
    assert rc == 0 and lines[-1].startswith("1 pairs added, 0 already expected"), lines
    path = tmp_path / "expected.txt"
    (pair,) = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert pair.split("\t")[1:] == ["DcsAdTemp", "sitemask=32,subsite=1,simmask=1,task=0"]
    # an operator expects a context that never had a record (another subsite)
    path.write_text(path.read_text() + pair.replace("subsite=1", "subsite=7") + "\n")
    rc, lines = monitor(cfg, capsys, "--gen-expected")
    assert lines[-1].startswith("0 pairs added, 2 already expected"), lines
    rc, doc = monitor_json(cfg, capsys)
    by_context = {c["context"]: c for c in doc["checks"] if c["check"] == "expected"}
    assert by_context["sitemask=32,subsite=1,simmask=1,task=0"]["state"] == "OK"
    gone = by_context["sitemask=32,subsite=7,simmask=1,task=0"]
    assert gone["state"] == "CRITICAL" and gone["summary"].startswith("MISSING: no record at all"), gone
    time.sleep(4.5)  # the period passes with no new record: the present pair goes missing too
    rc, doc = monitor_json(cfg, capsys, "--set", "checks=expected")
    assert states(doc, "expected") == ["CRITICAL", "CRITICAL"], doc
    assert rc == 2
    fake(cfg)
    scrape(cfg)  # a later record clears it
    rc, doc = monitor_json(cfg, capsys, "--set", "checks=expected")
    assert sorted(states(doc, "expected")) == ["CRITICAL", "OK"], doc
    assert "subsite=7" in path.read_text()  # nothing removed automatically


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_an_expected_file_gone_wrong_is_unknown_and_the_other_checks_go_on(tmp_path, make_db, capsys):
    cfg = fleet_cfg(tmp_path, make_db, checks="freshness, source, expected")
    fake(cfg)
    scrape(cfg)
    path = tmp_path / "expected.txt"
    rc, doc = monitor_json(cfg, capsys)  # named (checks, expected_file) but never generated
    (result,) = [c for c in doc["checks"] if c["check"] == "expected"]
    assert rc == 3 and result["state"] == "UNKNOWN", doc["checks"]
    assert result["summary"] == f"no expected file {path}: run scraperd monitor --gen-expected"
    assert states(doc, "freshness") == ["OK"]
    path.write_text("# header\nonly two\tfields\n")  # an operator's edit gone wrong
    rc, doc = monitor_json(cfg, capsys)
    (result,) = [c for c in doc["checks"] if c["check"] == "expected"]
    assert rc == 3 and result["state"] == "UNKNOWN"
    assert result["summary"] == f"{path}: line 2: expected TARGET<TAB>TABLE<TAB>CONTEXT, got 'only two\\tfields'"
    path.write_text("renamed_db\tDcsAdTemp\tsitemask=32,subsite=1,simmask=1,task=0\n")  # a target no section has
    rc, doc = monitor_json(cfg, capsys)
    (result,) = [c for c in doc["checks"] if c["check"] == "expected"]
    assert rc == 3 and result["state"] == "UNKNOWN" and result["summary"].startswith("renamed_db (in "), result


@pytest.mark.parametrize("key,value,message", [
    ("checks", "freshnes", "checks: 'freshnes' is not a check (freshness, source, expected, replication, fleet) "
                           "(did you mean 'freshness'?)"),
    ("every", "5 minutes", "every: cannot parse '5 minutes' as a duration (use 10s, 1m, 1h)"),
    ("notify", "email", "mail_to: required when notify names email (or a route with an address)"),
    ("notify", "sms", "notify: 'sms' is not a channel (email, http)"),
    ("routes", "source dcs@lab.org", "routes: cannot parse route 'source dcs@lab.org' (use CHECK[, CHECK]: "
                                     "RECIPIENT[, RECIPIENT]; ...)"),
    ("sections", "nosuch", "sections: no section 'nosuch' in the file"),
    ("regime", "scraperd.regimes.adtemp:AdTemp", "regime: not used by mode = monitor (it is a scraper, faker, "
                                                 "averager key)"),
    ("routes", "sorce: dcs@lab.org", "routes: 'sorce' is not a check (freshness, source, expected, replication, "
                                     "fleet, progress, config, watchdog, *) (did you mean 'source'?)"),
    ("renotify", "0s", "renotify: must be at least 1s, got 0s"),
    ("every", "0s", "every: must be at least 1s, got 0s"),
    ("supervisor_conf", "/nonexistent/supervisord.conf", "supervisor_conf: no such file /nonexistent/supervisord.conf"),
])
def test_a_broken_monitor_section_is_one_line_and_exit_78(tmp_path, capsys, key, value, message):
    cfg = write_cfg(tmp_path / "scraper.cfg", {"monitor": {"mode": "monitor", key: value}})
    for argv in (["monitor"], ["run", "monitor"], ["check-config", "--no-connect"]):
        rc = cli.main(["-c", str(cfg), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 78, argv
        assert f"[monitor] {message}" in err[0], (argv, err)


def test_show_and_run_help_list_the_monitor_keys(tmp_path, capsys):
    cfg = write_cfg(tmp_path / "scraper.cfg", {"monitor": {"mode": "monitor", "every": "2m"}})
    assert cli.main(["-c", str(cfg), "show", "monitor"]) == 0
    out = capsys.readouterr().out
    assert "every                        2m" in out and "renotify                     12h" in out
    assert cli.main(["-c", str(cfg), "run", "monitor", "--help"]) == 0
    out = capsys.readouterr().out
    assert "replica_max_seqnos" in out and "stale_after" in out


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_the_daemon_runs_rounds_logs_changes_and_stops_on_sigterm(tmp_path, make_db):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)
    scrape(cfg)
    log = tmp_path / "monitor.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(SCRAPERD), "-c", str(cfg), "run", "monitor", "--set", "every=1h"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ})
    try:
        wait_until(lambda: any(e["event"] == "monitor_round" for e in read_events(log)), timeout=30,
                   what="the first monitor_round")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # the hour's wait ends at once
    finally:
        proc.kill()
    events = read_events(log)
    (first,) = [e for e in events if e["event"] == "monitor_round"]
    assert (first["state"], first["ok"], first["critical"]) == ("OK", 2, 0)  # no expected file yet: 2 checks
    assert [e["reason"] for e in events if e["event"] == "shutdown"] == ["SIGTERM"]
    assert not [e for e in events if e["event"] == "check_changed"]  # all OK from the start: nothing changed


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_the_daemon_logs_check_changed_once_per_change(tmp_path, make_db):
    cfg = fleet_cfg(tmp_path, make_db)
    fake(cfg)
    scrape(cfg)
    events = run_section_monitor(cfg, maxiter=STALE + 3, source_stale_after=f"{STALE}s")
    changed = [e for e in events if e["event"] == "check_changed"]
    # the DCS falls silent while the monitor watches: source OK -> CRITICAL, freshness OK -> WARNING, once each
    assert sorted((e["check"], e["previous_state"], e["state"]) for e in changed) == [
        ("freshness", "OK", "WARNING"), ("source", "OK", "CRITICAL")], [(e["check"], e["summary"]) for e in changed]
    rounds = [e for e in events if e["event"] == "monitor_round"]
    assert len(rounds) == STALE + 3 and rounds[0]["state"] == "OK" and rounds[-1]["state"] == "CRITICAL"


def run_section_monitor(cfg: Path, **overrides: Any) -> list[dict[str, Any]]:
    """The monitor daemon in this process for maxiter rounds; its events."""
    import structlog

    from scraperd import config
    from scraperd.monitor import daemon

    loaded = config.load_section(cfg, "monitor", {k: str(v) for k, v in overrides.items()})
    with structlog.testing.capture_logs() as events:
        assert daemon.run(loaded.of(config.MonitorSection)) == 0
    return events


def test_the_monitor_compares_its_chain_hop_by_hop(tmp_path, capsys):
    """A chain of two SQLite files: the replica a copy of the target, then left behind."""
    import shutil

    from tests.scrapekit import write_cfg as _write

    src, tgt, replica = (tmp_path / n for n in ("dcs.db", "tgt.db", "replica.db"))
    cfg = _write(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp"},
        "adtemp_scraper": {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp", "heartbeat": "1s",
                           "maxage": "1s", "seed_target_tables": "True", "seed_timestart": "2011-01-01 00:00:00",
                           "seed_timeend": "2011-01-01 00:00:01"},
        "monitor": {"mode": "monitor", "checks": "replication", "chain": f"sqlite:///{tgt}, sqlite:///{replica}",
                    "replica_max_seqnos": "0"},
    }, defaults={"source": f"sqlite:///{src}", "target": f"sqlite:///{tgt}", "interval": "1s", "sleep": "0s",
                 "timefloor": "2010-01-01 00:00:00"})
    fake(cfg)
    scrape(cfg)
    shutil.copy(tgt, replica)
    rc, lines = monitor(cfg, capsys)
    assert rc == 0 and lines[1].startswith(f"OK       replication DcsAdTemp sqlite:///{tgt}->sqlite:///{replica}"), lines
    fake(cfg)
    scrape(cfg)  # the master moves on, the replica does not
    rc, lines = monitor(cfg, capsys)
    assert rc in (1, 2) and "SEQNOs behind" in lines[1], lines


def test_every_check_has_a_recipient_or_the_section_is_refused(tmp_path, capsys):
    """notify = email with only a route for `source`: the other checks would go to nobody."""
    cfg = write_cfg(tmp_path / "scraper.cfg", {"monitor": {"mode": "monitor", "notify": "email",
                                                           "routes": "source: dcs@lab.org"}})
    assert cli.main(["-c", str(cfg), "monitor"]) == 78
    assert capsys.readouterr().err.strip() == (f"{cfg} [monitor] mail_to: required: the checks no route names need a "
                                               "recipient (or give a `*` route)")


def test_without_a_monitor_section_the_defaults_run_and_set_errors_are_one_line(tmp_path, capsys):
    cfg = write_cfg(tmp_path / "scraper.cfg", {"adtemp_scraper": {"mode": "scraper",
                                                                  "regime": "scraperd.regimes.adtemp:AdTemp"}},
                    defaults={"source": f"sqlite:///{tmp_path / 'dcs.db'}", "target": f"sqlite:///{tmp_path / 't.db'}"})
    assert cli.main(["-c", str(cfg), "monitor", "--set", "every=bogus"]) == 78
    assert capsys.readouterr().err.strip() == "--set every: cannot parse 'bogus' as a duration (use 10s, 1m, 1h)"
    assert cli.main(["-c", str(cfg), "monitor", "adtemp_scraper"]) == 78
    assert capsys.readouterr().err.strip().endswith("[adtemp_scraper] mode: is a scraper section, not a monitor section")


def test_an_unusable_state_file_or_secret_is_exit_78_before_any_check(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCRAPERD_SMTP_PASSWORD", raising=False)
    base = {"mode": "monitor", "checks": "freshness", "notify": "http", "http_url": "http://127.0.0.1:9/x"}
    cfg = write_cfg(tmp_path / "a.cfg", {"monitor": {**base, "state_file": "/proc/nope/state.sqlite"}})
    assert cli.main(["-c", str(cfg), "monitor"]) == 78
    out, err = capsys.readouterr()
    assert out == "" and err.strip().startswith(f"{cfg} [monitor] state_file: cannot open /proc/nope/state.sqlite")
    secret = {"mode": "monitor", "notify": "email", "mail_to": "ops@lab.org", "smtp_secret": "smtp",
              "secret_file": str(tmp_path / "missing.cnf")}
    cfg = write_cfg(tmp_path / "b.cfg", {"monitor": secret})
    for argv in (["monitor"], ["check-config", "--no-connect"]):
        assert cli.main(["-c", str(cfg), *argv]) == 78
        out, err = capsys.readouterr()
        assert "SCRAPERD" not in out
        assert f"{cfg} [monitor] smtp_secret: no secret file {tmp_path / 'missing.cnf'}" in err, err


@pytest.mark.parametrize("backend", ["sqlite"])  # sleeps out its stale limits: once is enough (MariaDB: above)
def test_json_stays_one_document_when_a_delivery_fails(tmp_path, make_db, capsys):
    """notify_failed goes to stderr: stdout holds the document alone."""
    from tests.notifykit import closed_port

    cfg = fleet_cfg(tmp_path, make_db, notify="http", http_url=f"http://127.0.0.1:{closed_port()}/hook",
                    notify_attempts="1", state_file=str(tmp_path / "state.sqlite"), http_timeout="1s")
    rc = cli.main(["-c", str(cfg), "monitor", "--json"])  # no target tables yet: CRITICAL, notified, refused
    out, err = capsys.readouterr()
    assert rc == 2 and json.loads(out)["state"] == "CRITICAL"
    assert '"notify_failed"' in err and "gave up" in err


def test_show_never_prints_a_password_of_chain_http_url_or_routes(tmp_path, capsys):
    cfg = write_cfg(tmp_path / "scraper.cfg", {"monitor": {
        "mode": "monitor", "chain": "mysql://root:TopSecret@127.0.0.1:1/a, sqlite:///b.db", "notify": "http",
        "http_url": "http://u:TopSecret@127.0.0.1:9/hook", "routes": "source: http://u:TopSecret@127.0.0.1:9/dcs"}})
    for argv in (["show", "monitor"], ["show", "monitor", "--json"], ["run", "monitor", "--help"]):
        assert cli.main(["-c", str(cfg), *argv]) == 0
        out = capsys.readouterr().out
        assert "TopSecret" not in out and "http://127.0.0.1:9/hook" in out, argv


@pytest.mark.mysql
def test_the_daemon_waits_out_a_server_restart_before_it_calls_a_target_unreadable(mariadb_server, tmp_path):
    """A target server restarting within reconnect_max_wait: db_retry events, no change of state; one that
    stays down: CRITICAL once the wait is over."""
    from scraperd import databases

    srv = mariadb_server
    databases.ensure_database(srv.url("scrt_mon_tgt"))
    target = srv.url("scrt_mon_tgt").render_as_string(hide_password=False)
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp"},
        "adtemp_scraper": {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp", "heartbeat": "1s",
                           "maxage": "1s", "seed_target_tables": "True", "seed_timestart": "2011-01-01 00:00:00",
                           "seed_timeend": "2011-01-01 00:00:01", "stale_after": "10m"},
        "monitor": {"mode": "monitor", "every": "1s", "checks": "freshness", "reconnect_max_wait": "25s"},
    }, defaults={"source": f"sqlite:///{tmp_path / 'dcs.db'}", "target": target, "interval": "1s", "sleep": "0s",
                 "timefloor": "2010-01-01 00:00:00"})
    fake(cfg)
    scrape(cfg)
    log = tmp_path / "monitor.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(SCRAPERD), "-c", str(cfg), "run", "monitor"], stdout=out,
                                stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def named(event: str) -> list[dict[str, Any]]:
            return [e for e in read_events(log) if e["event"] == event]

        wait_until(lambda: named("monitor_round"), timeout=30, what="a first round")
        srv.stop()
        wait_until(lambda: named("db_retry"), timeout=30, what="a db_retry while the server is down")
        srv.start()
        n = len(named("monitor_round"))
        wait_until(lambda: len(named("monitor_round")) > n + 1, timeout=40, what="rounds after the restart")
        assert named("check_changed") == []  # waited out: nothing changed, nothing to notify
        assert {r["state"] for r in named("monitor_round")} == {"OK"}
        srv.stop()  # down for good: CRITICAL once reconnect_max_wait is spent
        wait_until(lambda: named("check_changed"), timeout=60, what="the target called unreadable")
        (changed,) = named("check_changed")
        assert (changed["state"], changed["previous_state"]) == ("CRITICAL", "OK")
        assert changed["summary"].startswith("cannot tell:")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
