"""gen-ini and the fleet under a real supervisord: files supervisord reads back exactly, programs that
run, stop cleanly (exit 0, no half record), end FATAL on a broken config, and never show a password."""

from __future__ import annotations

import configparser
import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from supervisor.datatypes import RestartWhenExitUnexpected
from supervisor.options import ServerOptions, UnhosedConfigParser

from scraperd import supervisor
from scraperd.dbi import spec as specmod
from scraperd.dbi.tables import tables_for
from tests.conftest import MYSQL_HOST, MYSQL_PORT, wait_until
from tests.scrapekit import url_text, write_cfg
from tests.supervisorkit import (
    REPO,
    SCRAPERD,
    Supervisor,
    cli_main,
    private_supervisor,
    read_events,
)

ADTEMP = "scraperd.regimes.adtemp:AdTemp"
PMTHV = "scraperd.regimes.pmthv:PmtHv"
EXPECTED_KEYS = {"command", "directory", "environment", "autostart", "autorestart", "exitcodes", "startsecs",
                 "startretries", "stopsignal", "stopwaitsecs", "stdout_logfile", "stdout_logfile_maxbytes",
                 "stdout_logfile_backups", "redirect_stderr", "priority"}
PASSWORD = "s3cr3t-pw"
SEED = {"seed_target_tables": "True", "seed_timestart": "2011-01-31 23:59:00", "seed_timeend": "2011-02-01 00:00:00"}


def supervisord_reads(ini: Path) -> dict:
    """The process config supervisord itself makes of a generated file."""
    opts = ServerOptions()
    opts.here = str(ini.parent)
    parser = UnhosedConfigParser()
    parser.read(str(ini))
    (group,) = opts.process_groups_from_parser(parser)
    (pc,) = group.process_configs
    return {"name": pc.name, "argv": shlex.split(pc.command), "directory": pc.directory,
            "environment": pc.environment, "autostart": pc.autostart, "autorestart": pc.autorestart,
            "exitcodes": pc.exitcodes, "startsecs": pc.startsecs, "startretries": pc.startretries,
            "stopsignal": pc.stopsignal, "stopwaitsecs": pc.stopwaitsecs, "stdout_logfile": pc.stdout_logfile,
            "stdout_logfile_maxbytes": pc.stdout_logfile_maxbytes,
            "stdout_logfile_backups": pc.stdout_logfile_backups, "redirect_stderr": pc.redirect_stderr,
            "priority": pc.priority}


def small_cfg(path: Path, **sections: dict) -> Path:
    base = {"adtemp_faker": {"mode": "faker", "regime": ADTEMP, "supervisor_priority": "100"},
            "adtemp_scraper": {"mode": "scraper", "regime": ADTEMP, "target": "sqlite:///var/t.db",
                               "supervisor_startsecs": "2", "supervisor_startretries": "7",
                               "supervisor_stopwaitsecs": "45", "supervisor_logfile_maxbytes": "1MB",
                               "supervisor_logfile_backups": "3", "supervisor_autostart": "False"}}
    base.update(sections)
    return write_cfg(path, {k: v for k, v in base.items() if v is not None},
                     defaults={"source": "sqlite:///var/s.db"})


# ----------------------------------------------------------------------------------------------------------
# gen-ini


def test_gen_ini_writes_each_key_supervisord_needs_with_section_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
    cfg = small_cfg(tmp_path / "scraper.cfg")
    out, logdir = tmp_path / "conf.d", tmp_path / "log"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out), "--logdir", str(logdir)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {out / 'adtemp_faker.ini'}",
                                                    f"wrote {out / 'adtemp_scraper.ini'}",
                                                    f"wrote {out / 'scraperd_watchdog.ini'}"]  # the event listener
    for name in ("adtemp_faker", "adtemp_scraper"):
        raw = configparser.RawConfigParser()
        raw.read(out / f"{name}.ini")
        assert raw.sections() == [f"program:{name}"]
        assert set(raw[f"program:{name}"]) == EXPECTED_KEYS
    faker = supervisord_reads(out / "adtemp_faker.ini")
    assert faker["argv"] == [str(SCRAPERD), "-c", str(cfg), "run", "adtemp_faker"]
    assert Path(faker["argv"][0]).is_absolute() and Path(faker["argv"][0]).exists()
    assert faker["directory"] == str(REPO)
    assert faker["environment"] == {"SCRAPER_CFG": str(cfg)}
    assert (faker["autostart"], faker["autorestart"], faker["exitcodes"]) == (True, RestartWhenExitUnexpected, [0])
    assert (faker["stopsignal"], faker["redirect_stderr"], faker["priority"]) == (signal.SIGTERM, True, 100)
    assert faker["stdout_logfile"] == str(logdir / "adtemp_faker.log")
    assert (faker["stdout_logfile_maxbytes"], faker["stdout_logfile_backups"]) == (50 * 1024 * 1024, 5)
    scraper = supervisord_reads(out / "adtemp_scraper.ini")
    assert (scraper["autostart"], scraper["startsecs"], scraper["startretries"], scraper["stopwaitsecs"]) == \
        (False, 2, 7, 45)
    assert (scraper["stdout_logfile_maxbytes"], scraper["stdout_logfile_backups"], scraper["priority"]) == \
        (1024 * 1024, 3, 999)
    assert logdir.is_dir()  # supervisord does not create a log file's directory


def test_gen_ini_quotes_odd_paths_so_supervisord_reads_them_back_exactly(tmp_path, monkeypatch):
    odd = tmp_path / "odd dir 100%" / "it's"
    odd.mkdir(parents=True)
    cfg = small_cfg(odd / "scraper,1.cfg")
    mycnf = tmp_path / 'my "cnf" 5%.cnf'
    monkeypatch.setenv("SCRAPERD_MYCNF", str(mycnf))
    out, logdir = tmp_path / "conf.d", tmp_path / "log 50%"
    assert cli_main(["-c", str(cfg), "gen-ini", "adtemp_faker", "-o", str(out), "--logdir", str(logdir)]) == 0
    got = supervisord_reads(out / "adtemp_faker.ini")
    assert got["argv"] == [str(SCRAPERD), "-c", str(cfg), "run", "adtemp_faker"]
    assert got["environment"] == {"SCRAPER_CFG": str(cfg), "SCRAPERD_MYCNF": str(mycnf)}
    assert got["stdout_logfile"] == str(logdir / "adtemp_faker.log")


def test_gen_ini_refuses_a_value_supervisord_cannot_read_back(tmp_path, monkeypatch, capsys):
    cfg = small_cfg(tmp_path / "scraper.cfg")
    monkeypatch.setenv("SCRAPERD_MYCNF", str(tmp_path / "it's \"both\".cnf"))
    out = tmp_path / "conf.d"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 78
    assert "both quote characters" in capsys.readouterr().err
    assert not out.exists()


def test_gen_ini_host_picks_only_the_sections_of_that_machine(tmp_path, capsys):
    cfg = small_cfg(tmp_path / "scraper.cfg",
                    pmthv_faker={"mode": "faker", "regime": PMTHV, "host": "dyb2"},
                    adtemp_faker={"mode": "faker", "regime": ADTEMP, "host": "dyb1"},
                    adtemp_scraper={"mode": "scraper", "regime": ADTEMP, "target": "sqlite:///t.db", "host": "DYB1"})
    out = tmp_path / "conf.d"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "--host", "dyb1", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["adtemp_faker.ini", "adtemp_scraper.ini",
                                                     "scraperd_watchdog.ini"]  # a watchdog on every host
    capsys.readouterr()
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "--host", "dyb9", "-o", str(tmp_path / "none")]) == 1
    assert "no section has host = 'dyb9' (hosts in" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_gen_ini_on_a_broken_config_writes_every_program_and_warns_each_error(tmp_path, capsys):
    cfg = small_cfg(tmp_path / "scraper.cfg",
                    adtemp_scraper={"mode": "scraper", "regime": ADTEMP, "target": "sqlite:///t.db",
                                    "maxage": "10 minutes", "supervisor_startretries": "9"},
                    pmthv_scraper={"mode": "scraper", "regime": PMTHV, "target": "sqlite:///t.db",
                                   "intervall": "10s"},
                    pmthv_faker={"mode": "faker", "regime": PMTHV, "supervisor_logfile_maxbytes": "lots"})
    out = tmp_path / "conf.d"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"scraperd: warning: {cfg} [adtemp_scraper] maxage: cannot parse '10 minutes' as a duration " \
           "(use 10s, 1m, 1h)" in err
    assert any("[pmthv_scraper] intervall: unknown key (did you mean 'interval'?)" in e for e in err)
    assert any("[pmthv_faker] supervisor_logfile_maxbytes: 'lots' is not a size" in e for e in err)
    assert "end FATAL" in err[-1]
    assert sorted(p.name for p in out.iterdir()) == ["adtemp_faker.ini", "adtemp_scraper.ini", "pmthv_faker.ini",
                                                     "pmthv_scraper.ini", "scraperd_watchdog.ini"]
    broken = supervisord_reads(out / "adtemp_scraper.ini")
    assert broken["startretries"] == 9 and broken["exitcodes"] == [0]  # its own supervisor keys still count
    assert supervisord_reads(out / "pmthv_faker.ini")["stdout_logfile_maxbytes"] == 50 * 1024 * 1024


def test_gen_ini_refuses_a_section_name_supervisord_cannot_use(tmp_path, capsys):
    cfg = small_cfg(tmp_path / "scraper.cfg", **{"adtemp scraper": {"mode": "scraper", "regime": ADTEMP,
                                                                   "target": "sqlite:///t.db"}})
    out = tmp_path / "conf.d"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 78
    assert "[adtemp scraper]: not usable as a supervisord program name" in capsys.readouterr().err
    assert not out.exists()


def test_gen_ini_all_removes_files_of_sections_gone_from_the_config(tmp_path, capsys):
    cfg = small_cfg(tmp_path / "scraper.cfg")
    out = tmp_path / "conf.d"
    out.mkdir()
    (out / "hand_made.ini").write_text("[program:hand_made]\ncommand = /bin/true\n")
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 0
    small_cfg(cfg, adtemp_scraper=None)
    capsys.readouterr()
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 0
    assert f"removed {out / 'adtemp_scraper.ini'}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["adtemp_faker.ini", "hand_made.ini", "scraperd_watchdog.ini"]


def test_gen_ini_names_the_mycnf_file_never_its_password(tmp_path, monkeypatch):
    mycnf = tmp_path / "my.cnf"
    mycnf.write_text(f"[dcs]\nhost = 127.0.0.1\nuser = u\npassword = {PASSWORD}\ndatabase = d\n")
    monkeypatch.setenv("SCRAPERD_MYCNF", str(mycnf))
    cfg = small_cfg(tmp_path / "scraper.cfg", adtemp_faker={"mode": "faker", "regime": ADTEMP, "source": "dcs"})
    out = tmp_path / "conf.d"
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(out)]) == 0
    texts = [p.read_text() for p in out.iterdir()]
    assert texts and all(PASSWORD not in t and str(mycnf) in t for t in texts)


def test_scraperd_gen_ini_command_line(tmp_path):
    cfg = small_cfg(tmp_path / "scraper.cfg")
    out = tmp_path / "conf.d"
    ok = subprocess.run([str(SCRAPERD), "-c", str(cfg), "gen-ini", "ALL", "-o", str(out)], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.splitlines()) == 3  # two programs and the watchdog
    small_cfg(cfg, adtemp_faker={"mode": "faker", "regime": ADTEMP, "sleep": "soon"})
    bad = subprocess.run([str(SCRAPERD), "-c", str(cfg), "gen-ini", "ALL", "-o", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 0
    assert bad.stderr.splitlines()[0] == f"scraperd: warning: {cfg} [adtemp_faker] sleep: cannot parse 'soon' as a " \
                                         "duration (use 10s, 1m, 1h)"
    assert (tmp_path / "x" / "adtemp_faker.ini").exists()
    unknown = subprocess.run([str(SCRAPERD), "-c", str(cfg), "gen-ini", "nosuch", "-o", str(tmp_path / "y")],
                             capture_output=True, text=True)
    assert unknown.returncode == 78 and "[nosuch]: no such section" in unknown.stderr
    helptext = subprocess.run([str(SCRAPERD), "gen-ini", "--help"], capture_output=True, text=True).stdout
    assert "supervisor_startretries" in helptext and "example" in helptext


# ----------------------------------------------------------------------------------------------------------
# the fleet under supervisord


@pytest.fixture
def sv():
    with private_supervisor() as s:
        yield s


@pytest.fixture
def mysql_user(backend):
    """A MariaDB identity with a password, allowed on the test databases (scrt_*)."""
    from scraperd import databases
    from tests.conftest import mysql_url

    eng = databases.make_engine(mysql_url())
    with eng.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER IF NOT EXISTS 'scraperd_t'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        conn.exec_driver_sql("GRANT ALL PRIVILEGES ON `scrt\\_%%`.* TO 'scraperd_t'@'127.0.0.1'")
    eng.dispose()
    return "scraperd_t"


def fleet_cfg(path: Path, source: str, target: str) -> Path:
    fast = {"interval": "10s", "sleep": "0.2s"}
    faker = {"mode": "faker", "faker_timestart": "2011-02-01 00:00:00", "profile": "modulo_ramp",
             "supervisor_priority": "100", **fast}
    scraper = {"mode": "scraper", "heartbeat": "1s", "maxage": "1m", "threshold": "1.0", **SEED, **fast}
    return write_cfg(path, {
        "adtemp_faker": {**faker, "regime": ADTEMP}, "adtemp_scraper": {**scraper, "regime": ADTEMP},
        "pmthv_faker": {**faker, "regime": PMTHV}, "pmthv_scraper": {**scraper, "regime": PMTHV},
    }, defaults={"source": source, "target": target, "source_tz": "Asia/Shanghai", "reconnect_max_wait": "1s",
                 "timefloor": "2010-01-01 00:00:00", "supervisor_startsecs": "1", "supervisor_startretries": "1",
                 "supervisor_stopwaitsecs": "20"})


def payload_counts(engine: sa.Engine, table: str) -> dict[int, int]:
    """SEQNO -> payload rows, for every Vld row (0 rows = a half record)."""
    t = tables_for(specmod.find_spec(table))
    with engine.connect() as conn:
        seqnos = [r[0] for r in conn.execute(sa.select(t.vld.c.SEQNO))]
        counts = dict(conn.execute(sa.select(t.payload.c.SEQNO, sa.func.count()).group_by(t.payload.c.SEQNO)).all())
    return {s: counts.get(s, 0) for s in seqnos}


def vld_count(engine: sa.Engine, table: str) -> int:
    t = tables_for(specmod.find_spec(table))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.vld)).scalar() or 0)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # tables not created yet (SQLite; MySQL 1146)
        return 0


def test_fleet_runs_under_supervisord_and_stops_cleanly(make_db, backend, tmp_path, monkeypatch, sv: Supervisor,
                                                        capsys, request):
    src, tgt = make_db("src"), make_db("tgt")
    if backend == "mysql":  # the programs reach MariaDB as a user with a password, named in a my.cnf
        request.getfixturevalue("mysql_user")
        mycnf = tmp_path / "my.cnf"
        mycnf.write_text("".join(f"[{name}]\nhost = {MYSQL_HOST}\nport = {MYSQL_PORT}\nuser = scraperd_t\n"
                                 f"password = {PASSWORD}\ndatabase = {db.url.database}\n\n"
                                 for name, db in (("t_src", src), ("t_tgt", tgt))))
        monkeypatch.setenv("SCRAPERD_MYCNF", str(mycnf))
        cfg = fleet_cfg(tmp_path / "scraper.cfg", "t_src", "t_tgt")
    else:
        monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
        cfg = fleet_cfg(tmp_path / "scraper.cfg", url_text(src), url_text(tgt))
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
    sv.start()
    names = ["adtemp_faker", "adtemp_scraper", "pmthv_faker", "pmthv_scraper"]
    for name in names:
        sv.wait_state(name, "RUNNING")
    ctl_status = sv.ctl("status").stdout
    assert all(f"{name}" in ctl_status for name in names) and ctl_status.count("RUNNING") == 5  # and the watchdog

    # rows flow: faker -> source -> scraper -> target (beyond the seeds: 1 adtemp, 2 pmthv contexts)
    wait_until(lambda: vld_count(tgt.engine, "DcsAdTemp") >= 4 and vld_count(tgt.engine, "DcsPmtHv") >= 6,
               timeout=30, what="records written by both scrapers", interval=0.2)

    capsys.readouterr()
    assert cli_main(["-c", str(cfg), "status", "--json", "--supervisor-conf", str(sv.conf)]) == 0
    status_out = capsys.readouterr().out
    doc = json.loads(status_out)
    assert doc["supervisord"]["reachable"] is True
    by_name = {s["section"]: s for s in doc["sections"]}
    assert {n: by_name[n]["state"] for n in names} == dict.fromkeys(names, "RUNNING")
    assert all(by_name[n]["uptime_s"] is not None for n in names)
    assert all(r["seqno"] for n in ("adtemp_scraper", "pmthv_scraper") for r in by_name[n]["sources"])
    # late rows are counted in the log file supervisord names for the program
    assert by_name["adtemp_scraper"]["log"] == {"file": str(sv.logdir / "adtemp_scraper.log"), "error": None}
    assert all(r["late_rows_24h"] == 0 for n in ("adtemp_scraper", "pmthv_scraper")
               for r in by_name[n]["sources"])
    assert cli_main(["-c", str(cfg), "status", "--supervisor-conf", str(sv.conf)]) == 0
    status_out += capsys.readouterr().out

    running_pids = {n: sv.info(n)["pid"] for n in names}
    cmdlines = {n: Path(f"/proc/{pid}/cmdline").read_bytes() for n, pid in running_pids.items()}
    environs = {n: Path(f"/proc/{pid}/environ").read_bytes() for n, pid in running_pids.items()}
    assert all(b" run " + n.encode() in cmdlines[n].replace(b"\0", b" ") + b" " for n in names)

    # stop: SIGTERM, exit 0, `shutdown` logged, never half a record
    stopped = sv.ctl("stop", "adtemp_scraper", "pmthv_scraper")
    assert "adtemp_scraper: stopped" in stopped.stdout and "pmthv_scraper: stopped" in stopped.stdout
    for name in ("adtemp_scraper", "pmthv_scraper"):
        info = sv.info(name)
        assert (info["statename"], info["exitstatus"]) == ("STOPPED", 0)
        shutdowns = [e for e in read_events(sv.logdir / f"{name}.log") if e["event"] == "shutdown"]
        assert shutdowns and shutdowns[-1]["reason"] == "SIGTERM"
    assert "STOPPED" in sv.ctl("status", "adtemp_scraper").stdout
    adtemp = payload_counts(tgt.engine, "DcsAdTemp")
    pmthv = payload_counts(tgt.engine, "DcsPmtHv")
    assert set(adtemp.values()) == {1}
    assert sorted(pmthv.values())[:2] == [1, 1]  # the two seeds (one per AD), then whole records only
    assert set(sorted(pmthv.values())[2:]) == {192}

    # supervisorctl tail shows the JSON events
    tail = sv.ctl("tail", "adtemp_scraper").stdout.splitlines()
    events = [json.loads(line) for line in tail[1:] if line.startswith("{")]  # the first may be cut
    assert {"propagate", "shutdown"} <= {e["event"] for e in events}
    assert all(e["section"] == "adtemp_scraper" for e in events)

    # no password anywhere: ini files, logs, status output, command lines, environments
    if backend == "mysql":
        seen = [p.read_text(errors="replace") for p in sv.conf_d.glob("*.ini")]
        seen += [p.read_text(errors="replace") for p in sv.logdir.glob("*.log*")]
        seen += [status_out, *(c.decode(errors="replace") for c in cmdlines.values()),
                 *(e.decode(errors="replace") for e in environs.values())]
        assert not [s for s in seen if PASSWORD in s]
        assert all(str(mycnf).encode() in e for e in environs.values())


def test_broken_section_goes_fatal_after_startretries_not_a_restart_storm(tmp_path, sv: Supervisor):
    cfg = tmp_path / "scraper.cfg"
    section = {"mode": "scraper", "regime": ADTEMP, "target": f"sqlite:///{tmp_path / 't.db'}",
               "supervisor_startsecs": "10", "supervisor_startretries": "2", **SEED}
    # a broken section: gen-ini writes its program anyway, which exits 78 at once, each start.
    # (startsecs well above a start-up: on a loaded machine a process that took over startsecs to
    # exit would count as started, and supervisord would begin its retries anew)
    write_cfg(cfg, {"adtemp_scraper": {**section, "maxage": "10 minutes"}},
              defaults={"source": f"sqlite:///{tmp_path / 's.db'}"})
    assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
    sv.start()
    sv.wait_state("adtemp_scraper", "FATAL", timeout=30)
    assert "FATAL" in sv.ctl("status", "adtemp_scraper").stdout
    log = (sv.logdir / "adtemp_scraper.log").read_text()
    line = f"{cfg} [adtemp_scraper] maxage: cannot parse '10 minutes' as a duration (use 10s, 1m, 1h)"
    assert log.splitlines() == [line] * 3  # the first start and two retries, then no more
    main_log = sv.log.read_text()
    assert main_log.count("exited: adtemp_scraper (exit status 78; not expected)") == 3
    assert "gave up: adtemp_scraper entered FATAL state, too many start retries too quickly" in main_log


def test_shipped_supervisord_conf_anchors_every_path_on_its_own_directory():
    serverurl, _user, _password = supervisor.supervisor_url(supervisor.SUPERVISORD_CONF)
    assert serverurl == f"unix://{REPO / 'var' / 'run' / 'supervisor.sock'}"
    raw = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    raw.read(supervisor.SUPERVISORD_CONF)
    assert raw["include"]["files"] == "conf.d/*.ini"
    assert all(raw["supervisord"][k].startswith("%(here)s/../var/") for k in ("pidfile", "logfile", "childlogdir"))
    assert "rpcinterface:supervisor" in raw and "supervisorctl" in raw
