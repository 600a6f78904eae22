"""`scraperd status` after a real run (last record, head, lag, exit codes) and `scraperd logs` on a real
log file (the manual's SV lines, filters, following across rotation)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scraperd import logview
from tests.conftest import wait_until
from tests.scrapekit import run_section, url_text, write_cfg
from tests.supervisorkit import SCRAPERD, cli_main

ADTEMP = "scraperd.regimes.adtemp:AdTemp"

# The manual's scraper log (scraper-sop.txt, "Testing Scraper Operation"), its SV lines 1 to 22.
MANUAL_SV = """\
SV 1   (6,)     2011-02-01 00:01:00 partial    notfull    (00:01:00 ++)  ==>
SV 2   (6, 7)   2011-02-01 00:01:00 full       unchanged  (00:01:00 00:01:10)  ==>
SV 3   (6, 8)   2011-02-01 00:01:00 full       unchanged  (00:01:00 00:01:20)  ==>
SV 4   (6, 9)   2011-02-01 00:01:00 full       unchanged  (00:01:00 00:01:30)  ==>
SV 5   (6, 10)  2011-02-01 00:01:00 full       unchanged  (00:01:00 00:01:40)  ==>
SV 6   (6, 11)  2011-02-01 00:01:00 full       unchanged  (00:01:00 00:01:50)  ==>
SV 7   (6, 12)  2011-02-01 00:01:00 full       unchanged  (00:01:00 00:02:00)  ==>
SV 8   (6, 13)  2011-02-01 00:01:00 full       overage    (00:01:00 00:02:10)  ==> PROCEED
SV 9   (13, 14) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:02:20)  ==>
SV 10  (13, 15) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:02:30)  ==>
SV 11  (13, 16) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:02:40)  ==>
SV 12  (13, 17) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:02:50)  ==>
SV 13  (13, 18) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:03:00)  ==>
SV 14  (13, 19) 2011-02-01 00:02:20 full       unchanged  (00:02:10 00:03:10)  ==>
SV 15  (13, 20) 2011-02-01 00:02:20 full       overage    (00:02:10 00:03:20)  ==> PROCEED
SV 16  (20, 21) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:03:30)  ==>
SV 17  (20, 22) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:03:40)  ==>
SV 18  (20, 23) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:03:50)  ==>
SV 19  (20, 24) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:04:00)  ==>
SV 20  (20, 25) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:04:10)  ==>
SV 21  (20, 26) 2011-02-01 00:03:30 full       unchanged  (00:03:20 00:04:20)  ==>
SV 22  (20, 27) 2011-02-01 00:03:30 full       overage    (00:03:20 00:04:30)  ==> PROCEED"""


def manual_cfg(path: Path, source: str, target: str, **scraper_keys: str) -> Path:
    """The manual's example: constant fake values every 10 s; the scraper propagates on maxage only."""
    scraper = {"regime": ADTEMP, "mode": "scraper", "target": target, "interval": "10s", "sleep": "0s",
               "heartbeat": "10s", "maxage": "1m", "threshold": "1.0", "seed_target_tables": "True",
               "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:01:00",
               "timefloor": "2010-01-01 00:00:00", **scraper_keys}
    return write_cfg(path, {
        "adtemp_faker": {"regime": ADTEMP, "mode": "faker", "profile": "constant",
                         "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0s"},
        "adtemp_scraper": scraper,
    }, defaults={"source": source, "source_tz": "Asia/Shanghai"})


@pytest.fixture
def no_supervisord(tmp_path: Path) -> Path:
    """A supervisord config whose socket nobody listens on."""
    conf = tmp_path / "deploy" / "supervisord.conf"
    conf.parent.mkdir()
    conf.write_text("[unix_http_server]\nfile = %(here)s/../var/run/supervisor.sock\n\n"
                    "[supervisorctl]\nserverurl = unix://%(here)s/../var/run/supervisor.sock\n")
    return conf


def status_of(cfg: Path, conf: Path, capsys, *args: str) -> tuple[int, str]:
    """`scraperd status`, reading log files next to the config (never the checkout's var/log)."""
    capsys.readouterr()
    rc = cli_main(["-c", str(cfg), "status", *args, "--supervisor-conf", str(conf),
                   "--logdir", str(cfg.parent / "log")])
    return rc, capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------
# status


def test_status_reports_last_record_head_lag_and_recent_propagations(make_db, tmp_path, no_supervisord, capsys):
    src, tgt = make_db("src"), make_db("tgt")
    cfg = manual_cfg(tmp_path / "scraper.cfg", url_text(src), url_text(tgt))
    run_section(cfg, "adtemp_faker", maxiter=40)     # ids 1..40: 00:00:10 .. 00:06:40 local
    run_section(cfg, "adtemp_scraper", maxiter=22)   # the seed and three records, the last ending 00:04:40
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "adtemp_scraper.log").write_text("")  # its log, without a late_row

    rc, out = status_of(cfg, no_supervisord, capsys, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["supervisord"]["reachable"] is False
    faker, scraper = doc["sections"]
    assert (faker["section"], faker["mode"], faker["state"]) == ("adtemp_faker", "faker", "-")
    assert faker["sources"] == [{"source": "DBNS_SAB_Temp", "head": "2011-02-01 00:06:40", "error": None}]
    assert (scraper["section"], scraper["mode"], scraper["state"], scraper["uptime_s"]) == \
        ("adtemp_scraper", "scraper", "-", None)
    (row,) = scraper["sources"]
    assert row == {
        "source": "DBNS_SAB_Temp", "sitemask": 32, "subsite": 1, "seqno": 4,
        "timestart": "2011-01-31 16:04:30", "timeend": "2011-01-31 16:04:40", "insertdate": row["insertdate"],
        "seed": False, "tcursor": "2011-02-01 00:04:40", "head": "2011-02-01 00:06:40",
        "lag_s": 120.0, "lag_heartbeats": 12.0, "propagations_1h": 3, "lagging": False, "error": None,
        "note": None, "late_rows_24h": 0}  # not the seed
    inserted = datetime.strptime(row["insertdate"], "%Y-%m-%d %H:%M:%S")
    assert abs(inserted - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)
    for entry in (faker, scraper):  # both ran in this process: their heartbeat files are there
        beat = entry["heartbeat"]
        assert beat is not None and beat["pid"] == os.getpid() and 0 <= beat["age_s"] < 60, beat
        assert beat["phase"] in ("reading", "writing") and beat["ts"].endswith("Z")
    assert faker["heartbeat"]["lag_s"] is None and scraper["heartbeat"]["lag_s"] == 120.0  # lag at its last tune

    rc, table = status_of(cfg, no_supervisord, capsys)
    assert rc == 0
    header, faker_line, scraper_line, footer, state = table.splitlines()
    assert header.split() == ["SECTION", "MODE", "STATE", "UPTIME", "BEAT", "SOURCE", "SEQNO", "TIMESTART(UTC)",
                              "INSERTDATE(UTC)", "HEAD(local)", "LAG", "HB", "PROP/1H", "LATE/24H", "NOTE"]
    faker_cells, scraper_cells = faker_line.split(), scraper_line.split()
    assert faker_cells[4].endswith("s") and faker_cells[5] == faker["heartbeat"]["phase"]  # BEAT: `0s writing`
    assert scraper_cells[4].endswith("s") and scraper_cells[5] == scraper["heartbeat"]["phase"]
    del faker_cells[4:6], scraper_cells[4:6]
    assert faker_cells == ["adtemp_faker", "faker", "-", "-", "DBNS_SAB_Temp", "2011-02-01", "00:06:40"]
    assert scraper_cells[:7] == ["adtemp_scraper", "scraper", "-", "-", "DBNS_SAB_Temp", "4", "2011-01-31"]
    assert scraper_line.split()[-5:] == ["00:06:40", "0:02:00", "12.0", "3", "0"]  # head, lag, hb, prop/1h, late
    assert footer.startswith("supervisord: not answering at unix://")
    assert state == "status: OK"

    # effective heartbeats are heartbeat × (offset+1); the lag is read against each scraper's own limit
    manual_cfg(cfg, url_text(src), url_text(tgt), offset="1", status_maxlag="1m")
    rc, out = status_of(cfg, no_supervisord, capsys, "adtemp_scraper", "--json")
    assert rc == 2  # CRITICAL
    doc = json.loads(out)
    assert (doc["state"], doc["sections"][0]["check_state"]) == ("CRITICAL", "CRITICAL")
    (row,) = doc["sections"][0]["sources"]
    assert (row["lag_heartbeats"], row["lagging"]) == (6.0, True)
    assert doc["lagging"] == ["adtemp_scraper:DBNS_SAB_Temp"]
    rc, table = status_of(cfg, no_supervisord, capsys)
    assert rc == 2
    assert "LAGGING (> 0:01:00)" in table
    assert table.splitlines()[-1] == "status: CRITICAL (1 lagging: adtemp_scraper)"
    manual_cfg(cfg, url_text(src), url_text(tgt), status_maxlag="2m")  # exactly 2 minutes is not more
    assert status_of(cfg, no_supervisord, capsys)[0] == 0


def test_an_averager_not_run_yet_is_a_note_not_a_failure(make_db, tmp_path, no_supervisord, capsys):
    src, tgt = make_db("src"), make_db("avg")
    lid = "scraperd.regimes.adlidsensor:AdLidSensor"
    avg = {"regime": lid, "mode": "averager", "aggregate": "avg,min,max,std", "aggregate_count": "count",
           "aggregate_skips": "id,date_time,Quality", "binsize": "1m", "territory": "1h"}
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "adlid_faker": {"regime": lid, "mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "interval": "10s",
                        "sleep": "0s"},
        "adlid_averager": {**avg, "target": url_text(tgt) if tgt.backend == "mysql"
                           else f"sqlite:///{tmp_path / 'never_made.db'}"},
    }, defaults={"source": url_text(src), "source_tz": "Asia/Shanghai"})
    run_section(cfg, "adlid_faker", maxiter=20)  # 200 s of rows: three complete minutes
    rc, out = status_of(cfg, no_supervisord, capsys, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["failing"] == []
    rows = doc["sections"][1]["sources"]
    assert [(r["source"], r["seqno"], r["note"], r["error"]) for r in rows] == [
        ("AD1_LidSensor", None, "not run yet", None), ("AD2_LidSensor", None, "not run yet", None)]
    rc, table = status_of(cfg, no_supervisord, capsys)
    assert rc == 0 and table.count("not run yet") == 2
    run_section(cfg, "adlid_averager")
    rc, out = status_of(cfg, no_supervisord, capsys, "adlid_averager", "--json")
    rows = json.loads(out)["sections"][0]["sources"]
    assert rc == 0 and [(r["seqno"], r["note"], r["error"]) for r in rows] == [(5, None, None), (6, None, None)]

    # "not run yet" never hides a source in trouble
    broken = write_cfg(tmp_path / "broken.cfg", {"adlid_averager": {
        **avg, "source": f"sqlite:///{tmp_path / 'no_source.db'}", "target": f"sqlite:///{tmp_path / 'no_target.db'}",
        "source_tz": "Asia/Shanghai"}})
    rc, out = status_of(broken, no_supervisord, capsys, "--json")
    doc = json.loads(out)
    # nothing at all could be read (its only section, and no supervisord): UNKNOWN
    assert rc == 3 and doc["failing"] == ["adlid_averager"] and doc["state"] == "UNKNOWN"
    assert all("no database file" in r["error"] and r["note"] is None for r in doc["sections"][0]["sources"])


def test_status_marks_a_seed_only_context_and_counts_it_as_not_lagging(tmp_path, no_supervisord, capsys):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    run_section(cfg, "adtemp_faker", maxiter=3)
    run_section(cfg, "adtemp_scraper", maxiter=1)
    rc, out = status_of(cfg, no_supervisord, capsys, "adtemp_scraper", "--json")
    (row,) = json.loads(out)["sections"][0]["sources"]
    assert (rc, row["seqno"], row["seed"], row["lag_s"]) == (0, 1, True, 0.0)
    assert "seed only" in status_of(cfg, no_supervisord, capsys, "adtemp_scraper")[1]


def test_status_never_creates_a_missing_database_and_says_which(tmp_path, no_supervisord, capsys):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 'no' / 's.db'}",
                     f"sqlite:///{tmp_path / 'no' / 't.db'}")
    rc, out = status_of(cfg, no_supervisord, capsys, "--json")
    assert rc == 3  # neither database, nor supervisord: nothing could be read
    doc = json.loads(out)
    assert doc["failing"] == ["adtemp_scraper"]
    assert doc["sections"][1]["sources"][0]["error"].startswith(f"no database file {tmp_path / 'no' / 't.db'}")
    assert not (tmp_path / "no").exists()


def test_status_lists_a_broken_section_and_exits_78(tmp_path, no_supervisord, capsys):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}",
                     maxage="10 minutes")
    capsys.readouterr()
    rc = cli_main(["-c", str(cfg), "status", "--supervisor-conf", str(no_supervisord)])
    out, err = capsys.readouterr()
    assert rc == 78
    assert any(line.startswith("adtemp_scraper") and "config error" in line for line in out.splitlines())
    assert "[adtemp_scraper] maxage: cannot parse '10 minutes'" in err


def test_status_masks_a_password_met_in_a_database_url(tmp_path, no_supervisord, capsys):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 's.db'}",
                     "mysql+mysqldb://nobody:s3cr3t-pw@127.0.0.1:1/none")
    run_section(cfg, "adtemp_faker", maxiter=1)
    for args in ((), ("--json",)):
        rc, out = status_of(cfg, no_supervisord, capsys, *args)
        assert rc == 2 and "s3cr3t-pw" not in out  # the faker's source was read: the target's failure is CRITICAL


# ----------------------------------------------------------------------------------------------------------
# logs


def test_logs_prints_sample_events_as_the_manuals_sv_lines(tmp_path, capsys):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    run_section(cfg, "adtemp_faker", maxiter=40)
    log = tmp_path / "adtemp_scraper.log"
    with log.open("w") as fh:  # a real scraper process writing JSON lines, as under supervisord
        subprocess.run([str(SCRAPERD), "-c", str(cfg), "run", "adtemp_scraper", "--set", "maxiter=22"],
                       stdout=fh, stderr=subprocess.STDOUT, check=True, timeout=60)
    capsys.readouterr()
    assert cli_main(["logs", "adtemp_scraper", "--logfile", str(log), "--event", "sample"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[line.index("SV "):] for line in lines] == MANUAL_SV.splitlines()
    assert all(line.split()[2] == "DBNS_SAB_Temp" for line in lines)  # date, time, source, SV ...

    assert cli_main(["logs", "adtemp_scraper", "--logfile", str(log)]) == 0
    everything = capsys.readouterr().out.splitlines()
    assert len(everything) == len(log.read_text().splitlines())
    (startup,) = [line for line in everything if " startup " in line]
    assert startup.split()[2:4] == ["info", "startup"]
    assert 'tcursor="2011-02-01 00:01:00"' in startup and "seqno=1" in startup and "section=" not in startup


def _event(ts: datetime, event: str, **kw) -> str:
    return json.dumps({"event": event, "section": "s", "level": "info",
                       "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **kw})


def test_logs_filter_by_event_and_since_keeping_other_lines_as_they_are(tmp_path, capsys):
    now = datetime.now(UTC)
    old, new = now - timedelta(hours=2), now - timedelta(minutes=1)
    log = tmp_path / "s.log"
    log.write_text("\n".join([
        "2001-01-01 00:00:00,000 supervisord noise before any event",
        _event(old, "startup", source="A", seqno=1),
        _event(old, "propagate", source="A", seqno=2, timestart="2011-01-31 16:02:10"),
        "Traceback (most recent call last):",
        _event(new, "propagate", source="A", seqno=3, timestart="2011-01-31 16:03:20"),
        "scraperd: internal error: RuntimeError: boom",
        _event(new, "shutdown", reason="SIGTERM"),
    ]) + "\n")

    def logs(*args: str) -> list[str]:
        capsys.readouterr()
        assert cli_main(["logs", "s", "--logfile", str(log), *args]) == 0
        return capsys.readouterr().out.splitlines()

    everything = logs()
    assert everything[0] == "2001-01-01 00:00:00,000 supervisord noise before any event"
    assert everything[3] == "Traceback (most recent call last):"
    assert everything[2] == (f"{old:%Y-%m-%d %H:%M:%S}  info     propagate source=A seqno=2 "
                             'timestart="2011-01-31 16:02:10"')
    assert [line.split()[3] for line in logs("--event", "propagate")] == ["propagate", "propagate"]
    assert [line.split()[3] for line in logs("--event", "startup,shutdown")] == ["startup", "shutdown"]
    recent = logs("--since", "10m")
    # a non-JSON line is dated by the event before it: the old traceback goes, the new error stays, and
    # what precedes every event (the one-line error of a section that never started) is always shown
    assert [line.split()[3] if line.startswith(str(now.year)) else line for line in recent] == [
        "2001-01-01 00:00:00,000 supervisord noise before any event", "propagate",
        "scraperd: internal error: RuntimeError: boom", "shutdown"]
    assert logs("--since", f"{now - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}") == recent


def test_logs_of_a_missing_file_is_one_line_and_exit_1(tmp_path, capsys):
    assert cli_main(["logs", "nosuch", "--logfile", str(tmp_path / "nosuch.log")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"scraperd: no log file {tmp_path / 'nosuch.log'}")


def test_logs_follow_reads_new_lines_across_rotation(tmp_path):
    log = tmp_path / "s.log"
    now = datetime.now(UTC)
    log.write_text(_event(now, "startup", seqno=1) + "\n")
    seen: list[str] = []
    polls = [0]
    stop = threading.Event()
    flt = logview.Filter(events=frozenset({"startup", "propagate", "shutdown"}))

    def polled() -> None:
        polls[0] += 1

    def two_more_polls() -> None:
        target = polls[0] + 2
        wait_until(lambda: polls[0] >= target, timeout=5, what="the follower to read again")

    t = threading.Thread(target=logview.follow, args=(log, flt, seen.append),
                         kwargs={"stop": stop, "poll_s": 0.02, "on_poll": polled}, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(seen) == 1, timeout=5, what="the existing line")
        with log.open("a") as fh:  # a line written in two pieces is printed once, whole
            fh.write(_event(now, "propagate", seqno=2)[:20])
            fh.flush()
            two_more_polls()
            assert len(seen) == 1
            fh.write(_event(now, "propagate", seqno=2)[20:] + "\n")
        wait_until(lambda: len(seen) == 2, timeout=5, what="the appended line")
        log.rename(tmp_path / "s.log.1")  # supervisord's rotation: rename, then a new file
        with (tmp_path / "s.log.1").open("a") as fh:
            fh.write(_event(now, "tune", sleep_s=1) + "\n")  # filtered out
        log.write_text(_event(now, "shutdown", reason="SIGTERM") + "\n")
        wait_until(lambda: len(seen) == 3, timeout=5, what="the line of the new file")
    finally:
        stop.set()
        t.join(timeout=5)
    assert [s.split()[3] for s in seen] == ["startup", "propagate", "shutdown"]
    assert "seqno=2" in seen[1]


def test_scraperd_status_and_logs_command_lines(tmp_path, no_supervisord):
    cfg = manual_cfg(tmp_path / "scraper.cfg", f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}")
    run_section(cfg, "adtemp_faker", maxiter=10)
    run_section(cfg, "adtemp_scraper", maxiter=3)
    st = subprocess.run([str(SCRAPERD), "-c", str(cfg), "status", "--json", "--supervisor-conf", str(no_supervisord)],
                        capture_output=True, text=True)
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["sections"][1]["sources"][0]["seqno"] == 1
    log = tmp_path / "x.log"
    log.write_text(_event(datetime.now(UTC), "startup", seqno=1) + "\n")
    lg = subprocess.run([str(SCRAPERD), "logs", "x", "--logfile", str(log)], capture_output=True, text=True)
    assert lg.returncode == 0 and " startup seqno=1" in lg.stdout
    for cmd in ("status", "logs"):
        helptext = subprocess.run([str(SCRAPERD), cmd, "--help"], capture_output=True, text=True).stdout
        assert "example" in helptext


def test_averager_sample_prints_as_the_manuals_replay_line():
    from scraperd.logview import sv_line

    event = {"event": "sample", "n": 1, "tcursor": "2012-02-29 15:00:00", "fullness": "full", "state": "replay",
             "range": ["2012-02-29 15:00:00", "2012-03-01 00:00:00"], "groups": 9, "rows": 100, "proceed": True}
    assert sv_line(event) == ("SV 1   2012-02-29 15:00:00=>00:00:00 full       replay     (15:00:00 00:00:00) [9]"
                              "  ==> PROCEED")
