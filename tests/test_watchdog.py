"""`scraperd watchdog`: the listener protocol, FATAL / unexpected-exit notifications, stuck heartbeats
restarted at most once per restart_backoff, `retrying` never restarted; gen-ini ALL emits the listener."""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scraperd import config, watchdog
from scraperd.supervisor import ini
from tests.conftest import wait_until
from tests.scrapekit import write_cfg


class FakeRPC:
    """supervisord's XML-RPC as far as the watchdog uses it."""

    def __init__(self, infos: list[dict[str, Any]]) -> None:
        self.infos, self.calls = infos, []
        self.supervisor = self

    def getAllProcessInfo(self) -> list[dict[str, Any]]:  # noqa: N802
        return self.infos

    def getProcessInfo(self, name: str) -> dict[str, Any]:  # noqa: N802
        return next(i for i in self.infos if i["name"] == name)

    def signalProcess(self, name: str, sig: str) -> bool:  # noqa: N802
        self.calls.append(("signal", name, sig))
        return True

    def stopProcess(self, name: str, wait: bool) -> bool:  # noqa: N802
        self.calls.append(("stop", name))
        return True

    def startProcess(self, name: str, wait: bool) -> bool:  # noqa: N802
        self.calls.append(("start", name))
        return True


def event(name: str, payload: str) -> str:
    return f"ver:3.0 server:supervisor serial:1 pool:scraperd_watchdog poolserial:1 eventname:{name} " \
           f"len:{len(payload)}\n{payload}"


def beat_file(run_dir: Path, section: str, pid: int, phase: str, age_s: float, sleep_s: float = 3.0) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    ts = (datetime.now(UTC) - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    (run_dir / f"{section}.heartbeat").write_text(json.dumps(
        {"section": section, "ts": ts, "pid": pid, "phase": phase, "lag_s": 0.0, "sleep_s": sleep_s}))


def make(tmp_path: Path, infos: list[dict[str, Any]], **keys: str) -> tuple[watchdog.Watchdog, FakeRPC, list[Any]]:
    run_dir = tmp_path / "run"
    cfg = write_cfg(tmp_path / "w.cfg", {
        "s1": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp", "source": "sqlite:///x.db"},
        "watchdog": {"mode": "watchdog", "tick": "5", **keys},
    }, defaults={"run_dir": str(run_dir)})
    cf = config.read_file(cfg)
    section, settings = watchdog.settings_of(cf)
    assert section == "watchdog" and settings.tick == 5
    rpc, sent = FakeRPC(infos), []
    return watchdog.Watchdog(settings, watchdog.programs_of(cf), lambda: rpc, sent.append), rpc, sent


def running(name: str = "s1", pid: int = 4242, started: float | None = None) -> dict[str, Any]:
    return {"name": name, "statename": "RUNNING", "pid": pid, "start": started or time.time() - 3600,
            "stdout_logfile": ""}


def test_the_protocol_acknowledges_every_event_and_notifies_fatal_once(tmp_path):
    wd, _rpc, sent = make(tmp_path, [running()])
    stdin = io.StringIO(event("PROCESS_STATE_FATAL", "processname:s1 groupname:s1 from_state:BACKOFF")
                        + event("PROCESS_STATE_EXITED", "processname:s1 groupname:s1 from_state:RUNNING "
                                "expected:0 pid:12")
                        + event("PROCESS_STATE_EXITED", "processname:s1 groupname:s1 from_state:RUNNING "
                                "expected:1 pid:13")
                        + event("PROCESS_STATE_FATAL", "processname:nosuch groupname:x from_state:BACKOFF"))
    stdout = io.StringIO()
    assert watchdog.serve(wd, stdin, stdout) == 0
    assert stdout.getvalue().count("READY\n") == 5 and stdout.getvalue().count("RESULT 2\nOK") == 4
    assert [(m.section, m.state) for m in sent] == [("s1", "FATAL"), ("s1", "EXITED")]


def test_a_failing_handler_still_acknowledges(tmp_path):
    wd, rpc, _sent = make(tmp_path, [running()])
    rpc.getAllProcessInfo = lambda: 1 / 0  # type: ignore[method-assign]
    stdout = io.StringIO()
    watchdog.serve(wd, io.StringIO(event("TICK_5", "when:1")), stdout)
    assert "RESULT 2\nOK" in stdout.getvalue()


def test_a_stuck_program_is_restarted_once_per_backoff(tmp_path):
    wd, rpc, sent = make(tmp_path, [running()], stuck_after="10s", restart_backoff="1h")
    beat_file(tmp_path / "run", "s1", 4242, "sleeping", age_s=5)
    wd.tick(time.time())
    assert not rpc.calls and not sent
    beat_file(tmp_path / "run", "s1", 4242, "sleeping", age_s=30)
    wd.tick(time.time())
    wait_until(lambda: ("start", "s1") in rpc.calls, timeout=5, what="the restart")
    assert rpc.calls == [("signal", "s1", "CONT"), ("stop", "s1"), ("start", "s1")]
    assert [(m.section, m.state) for m in sent] == [("s1", "stuck")]
    wd.tick(time.time())  # the same pid, still stuck: within restart_backoff
    time.sleep(0.2)
    assert len(rpc.calls) == 3 and len(sent) == 1


def test_a_restart_that_brings_no_heartbeat_is_reported_not_repeated(tmp_path):
    wd, rpc, sent = make(tmp_path, [running()], stuck_after="10s", restart_backoff="1s")
    beat_file(tmp_path / "run", "s1", 4242, "sleeping", age_s=30)
    now = time.time()
    wd.tick(now)
    wait_until(lambda: ("start", "s1") in rpc.calls, timeout=5, what="the restart")
    rpc.infos = [running(pid=5000, started=now)]  # the new process never beats
    for later in (now + 5, now + 20, now + 40, now + 80):
        wd.tick(later)
    time.sleep(0.2)
    assert [m.state for m in sent] == ["stuck", "restart_failed"]
    assert rpc.calls.count(("start", "s1")) == 1


def test_retrying_is_not_stuck(tmp_path):
    wd, rpc, sent = make(tmp_path, [running()], stuck_after="10s")
    beat_file(tmp_path / "run", "s1", 4242, "retrying", age_s=300)
    wd.tick(time.time())
    time.sleep(0.1)
    assert not rpc.calls and not sent


def test_stuck_after_defaults_to_three_sleeps_at_least_two_minutes(tmp_path):
    wd, _rpc, _sent = make(tmp_path, [])
    beat = watchdog.heartbeat.Beat("s1", datetime.now(UTC), 1, "sleeping", None, 300.0)
    assert wd.stuck_after(beat) == 900.0
    assert wd.stuck_after(None) == 120.0


def test_gen_ini_all_writes_the_event_listener(tmp_path):
    cfg = write_cfg(tmp_path / "w.cfg", {
        "s1": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp", "source": "sqlite:///x.db"}})
    written, _, _ = ini.generate(cfg, "ALL", outdir=tmp_path / "conf.d", logdir=tmp_path / "log")
    assert sorted(p.name for p in written) == ["s1.ini", "scraperd_watchdog.ini"]
    text = (tmp_path / "conf.d" / "scraperd_watchdog.ini").read_text()
    assert "[eventlistener:scraperd_watchdog]" in text and "events = PROCESS_STATE,TICK_60" in text
    assert f"-c {os.path.abspath(cfg)} watchdog" in text
    cfg.write_text(cfg.read_text() + "\n[watchdog]\nmode = watchdog\ntick = 5\n")
    written, _, _ = ini.generate(cfg, "ALL", outdir=tmp_path / "conf.d", logdir=tmp_path / "log")
    assert sorted(p.name for p in written) == ["s1.ini", "scraperd_watchdog.ini"]
    assert "events = PROCESS_STATE,TICK_5" in (tmp_path / "conf.d" / "scraperd_watchdog.ini").read_text()


# ----------------------------------------------------------------------------------------------------------
# under a real supervisord

import signal  # noqa: E402

import pytest  # noqa: E402

from tests.notifykit import HttpSink  # noqa: E402
from tests.scrapekit import run_section, url_text  # noqa: E402
from tests.supervisorkit import cli_main, private_supervisor, read_events  # noqa: E402

ADTEMP = "scraperd.regimes.adtemp:AdTemp"


@pytest.mark.slow
def test_a_sigstopped_scraper_is_notified_and_restarted(make_db, tmp_path, monkeypatch):
    monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
    src, tgt = make_db("src"), make_db("tgt")
    with HttpSink() as http, private_supervisor() as sv:
        cfg = write_cfg(tmp_path / "w.cfg", {
            "faker": {"mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0.5s"},
            "scraper": {"mode": "scraper", "target": url_text(tgt), "heartbeat": "1s", "maxage": "1m",
                        "interval": "10s", "sleep": "0.5s", "seed_target_tables": "True",
                        "seed_timestart": "2011-01-31 23:59:00", "seed_timeend": "2011-02-01 00:00:00",
                        "supervisor_stopwaitsecs": "5"},
            "broken": {"mode": "scraper", "maxage": "ten minutes", "supervisor_startsecs": "10"},
            "watchdog": {"mode": "watchdog", "tick": "5", "stuck_after": "8s", "restart_backoff": "1h",
                         "notify": "http", "http_url": http.url},
        }, defaults={"regime": ADTEMP, "source": url_text(src), "source_tz": "Asia/Shanghai",
                     "timefloor": "2010-01-01 00:00:00", "supervisor_startsecs": "1", "supervisor_startretries": "1"})
        assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
        sv.start()
        sv.wait_state("scraper", "RUNNING")
        sv.wait_state("broken", "FATAL", timeout=30)
        (fatal,) = wait_until(lambda: [p for p in http.messages if p.body["state"] == "FATAL"], timeout=20,
                              what="the FATAL notification")
        assert fatal.body["section"] == "broken" and "maxage" in fatal.body["details"]
        run_dir = tmp_path / "run"
        wait_until(lambda: (b := watchdog.heartbeat.read(run_dir / "scraper.heartbeat")) and b.phase == "sleeping",
                   timeout=30, what="the scraper's heartbeat")
        pid = sv.info("scraper")["pid"]
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        stuck = wait_until(lambda: [p for p in http.messages if p.body["state"] == "stuck"], timeout=40,
                           what="the stuck notification")
        assert stuck[0].body["section"] == "scraper"
        wait_until(lambda: (i := sv.info("scraper"))["statename"] == "RUNNING" and i["pid"] != pid, timeout=40,
                   what="the scraper restarted")
        assert time.monotonic() - t0 < 8 + 5 + 5 + 10  # stuck_after + a tick + stopwaitsecs + slack
        wait_until(lambda: (b := watchdog.heartbeat.read(run_dir / "scraper.heartbeat")) and b.pid != pid,
                   timeout=30, what="fresh heartbeats of the new process")
        assert sv.info("scraperd_watchdog")["statename"] == "RUNNING"
        assert [p.body["state"] for p in http.messages].count("FATAL") == 1
        events = read_events(sv.logdir / "scraperd_watchdog.log")
        assert [e for e in events if e.get("event") == "stuck"]
        sv.ctl("stop", "faker")
        sv.ctl("stop", "scraper")
    # the target equals one uninterrupted run over the same source rows
    ref = make_db("ref")
    cfg2 = write_cfg(tmp_path / "ref.cfg", {"scraper": {
        "mode": "scraper", "regime": ADTEMP, "source": url_text(src), "target": url_text(ref), "heartbeat": "1s",
        "maxage": "1m", "interval": "10s", "sleep": "0s", "seed_target_tables": "True",
        "seed_timestart": "2011-01-31 23:59:00", "seed_timeend": "2011-02-01 00:00:00", "source_tz": "Asia/Shanghai",
        "timefloor": "2010-01-01 00:00:00"}})
    from tests.scrapekit import target_rows
    cfg_live = write_cfg(tmp_path / "live.cfg", {"scraper": {
        "mode": "scraper", "regime": ADTEMP, "source": url_text(src), "target": url_text(tgt), "heartbeat": "1s",
        "maxage": "1m", "interval": "10s", "sleep": "0s", "source_tz": "Asia/Shanghai",
        "timefloor": "2010-01-01 00:00:00"}})
    run_section(cfg_live, "scraper", catch_up=True)  # the rest of the source, as after any stop
    run_section(cfg2, "scraper", catch_up=True)
    got, want = target_rows(tgt.engine, "DcsAdTemp"), target_rows(ref.engine, "DcsAdTemp")
    assert len(got[0]) > 3 and got == want


@pytest.mark.slow
def test_a_listener_crash_takes_neither_supervisord_nor_the_fleet_down(make_db, tmp_path, monkeypatch):
    monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
    src = make_db("src")
    with private_supervisor() as sv:
        cfg = write_cfg(tmp_path / "w.cfg", {
            "faker": {"mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0.5s"},
            "watchdog": {"mode": "watchdog", "tick": "5"},
        }, defaults={"regime": ADTEMP, "source": url_text(src), "supervisor_startsecs": "1"})
        assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
        sv.start()
        faker_pid = sv.wait_state("faker", "RUNNING")["pid"]
        listener_pid = sv.wait_state("scraperd_watchdog", "RUNNING")["pid"]
        os.kill(listener_pid, signal.SIGKILL)
        wait_until(lambda: (i := sv.info("scraperd_watchdog"))["statename"] == "RUNNING" and i["pid"] != listener_pid,
                   timeout=30, what="the listener restarted by supervisord")
        assert sv.answering() and sv.info("faker")["pid"] == faker_pid


@pytest.mark.mysql
@pytest.mark.slow
def test_a_scraper_retrying_through_a_cut_database_is_not_restarted(mariadb_server, tmp_path, monkeypatch):
    from scraperd import databases

    monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
    srv = mariadb_server
    databases.ensure_database(srv.url("scrt_tgt"))
    text = lambda u: u.render_as_string(hide_password=False)  # noqa: E731
    with private_supervisor() as sv:
        cfg = write_cfg(tmp_path / "w.cfg", {
            "faker": {"mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0s",
                      "maxiter": "50", "supervisor_autostart": "False"},
            "scraper": {"mode": "scraper", "target": text(srv.url("scrt_tgt")), "heartbeat": "1s", "maxage": "1m",
                        "interval": "10s", "sleep": "0.5s", "seed_target_tables": "True",
                        "seed_timestart": "2011-01-31 23:59:00", "seed_timeend": "2011-02-01 00:00:00",
                        "supervisor_autostart": "False"},
            "watchdog": {"mode": "watchdog", "tick": "5", "stuck_after": "6s", "restart_backoff": "1s"},
        }, defaults={"regime": ADTEMP, "source": text(srv.url("scrt_src")), "source_tz": "Asia/Shanghai",
                     "reconnect_max_wait": "1s", "timefloor": "2010-01-01 00:00:00", "supervisor_startsecs": "1"})
        run_section(cfg, "faker")
        assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
        sv.start()
        sv.ctl("start", "scraper")
        pid = sv.wait_state("scraper", "RUNNING")["pid"]
        run_dir = tmp_path / "run"
        wait_until(lambda: (b := watchdog.heartbeat.read(run_dir / "scraper.heartbeat")) and b.phase == "sleeping",
                   timeout=30, what="the scraper caught up")
        srv.stop()
        time.sleep(20)  # several ticks and stuck_afters with the database gone
        events = read_events(sv.logdir / "scraperd_watchdog.log")
        assert sv.info("scraper")["pid"] == pid, "restarted while it was retrying"
        assert [e for e in events if e.get("event") == "retrying"] and not [e for e in events if e.get("event") == "stuck"]
        srv.start()
