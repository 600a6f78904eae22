"""The monitor end to end, every part real: a live faker and scraper and the monitor daemon under a
private supervisord, a real SMTP server (aiosmtpd, with a login) and a real HTTP receiver.

The story an operator lives: the scraper is stopped -> one CRITICAL mail and one POST, nothing more
on the next rounds, the same again once `renotify` has passed, and one recovery message when the
scraper is started again. With MONITOR_TRANSCRIPT=path the test writes what happened there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.notifykit import HttpSink, SmtpSink
from tests.scrapekit import write_cfg
from tests.supervisorkit import Supervisor, cli_main, private_supervisor, read_events

ADTEMP = "scraperd.regimes.adtemp:AdTemp"
PASSWORD = "mon-s3cret-pw"
STALE_S = 4
RENOTIFY_S = 15


@pytest.fixture
def sv():
    with private_supervisor() as s:
        yield s


def fleet(tmp_path: Path, sv: Supervisor, smtp: SmtpSink, http: HttpSink) -> Path:
    secret = tmp_path / "secret.cnf"
    secret.write_text(f"[smtp]\nuser = mon\npassword = {PASSWORD}\n")
    secret.chmod(0o600)
    return write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"mode": "faker", "regime": ADTEMP, "supervisor_priority": "100"},
        "adtemp_scraper": {"mode": "scraper", "regime": ADTEMP, "heartbeat": "1s", "maxage": "2s",
                           "seed_target_tables": "True", "seed_timestart": "2011-01-01 00:00:00",
                           "seed_timeend": "2011-01-01 00:00:01"},
        "monitor": {"mode": "monitor", "supervisor_autostart": "False", "every": "1s", "stale_after": f"{STALE_S}s", "renotify": f"{RENOTIFY_S}s",
                    "checks": "freshness, source, fleet", "supervisor_conf": str(sv.conf),
                    "state_file": str(tmp_path / "monitor-state.sqlite"),
                    "notify": "email, http", "smtp_host": "127.0.0.1", "smtp_port": str(smtp.port),
                    "smtp_secret": "smtp", "secret_file": str(secret), "mail_from": "scraperd@test.example",
                    "mail_to": "scraper-experts@lab.org", "http_url": http.url,
                    "routes": "source: dcs-experts@lab.org"},
    }, defaults={"source": f"sqlite:///{tmp_path / 'dcs.db'}", "target": f"sqlite:///{tmp_path / 'tgt.db'}",
                 "source_tz": "Asia/Shanghai", "interval": "1s", "sleep": "1s", "timefloor": "2010-01-01 00:00:00",
                 "supervisor_startsecs": "1", "supervisor_stopwaitsecs": "20"})


def fresh_record(target: Path) -> bool:
    """The scraper has written a record after its seed."""
    import sqlite3

    try:
        with sqlite3.connect(target) as conn:
            return bool(conn.execute("SELECT count(*) FROM DcsAdTempVld WHERE TIMESTART > '2020-01-01'").fetchone()[0])
    except sqlite3.Error:
        return False


def rounds(sv: Supervisor) -> list[dict[str, Any]]:
    return [e for e in read_events(sv.logdir / "monitor.log") if e["event"] == "monitor_round"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_stopped_scraper_is_notified_once_renotified_then_recovered(tmp_path, sv, monkeypatch):
    monkeypatch.delenv("SCRAPERD_SMTP_PASSWORD", raising=False)
    transcript: list[str] = []
    t0 = time.monotonic()

    def note(line: str) -> None:
        transcript.append(f"[{time.monotonic() - t0:6.1f}s] {line}")

    with SmtpSink(auth=("mon", PASSWORD)) as smtp, HttpSink() as http:
        cfg = fleet(tmp_path, sv, smtp, http)
        assert cli_main(["-c", str(cfg), "gen-ini", "ALL", "-o", str(sv.conf_d), "--logdir", str(sv.logdir)]) == 0
        sv.start()
        for name in ("adtemp_faker", "adtemp_scraper"):
            sv.wait_state(name, "RUNNING")
        wait_until(lambda: fresh_record(tmp_path / "tgt.db"), timeout=30, what="the scraper's first record")
        sv.ctl("start", "monitor")  # once the fleet flows: its first round is all OK
        sv.wait_state("monitor", "RUNNING")
        wait_until(lambda: any(r["state"] == "OK" for r in rounds(sv)), timeout=30, what="a round all OK")
        note("fleet RUNNING, monitor round OK; mails: 0, POSTs: 0")
        assert smtp.messages == [] and http.messages == []  # a first-ever OK is no news

        note(sv.ctl("stop", "adtemp_scraper").stdout.strip())
        [mail] = smtp.wait_for(1, timeout=STALE_S + 20)
        [post] = http.wait_for(1, timeout=10)
        note(f"mail to {mail.rcpt_tos}: {mail.message['Subject']}")
        note(f"POST {post.path}: {post.body}")
        assert "CRITICAL" in mail.message["Subject"] and "freshness" in mail.message["Subject"]
        assert mail.rcpt_tos == ["scraper-experts@lab.org"] and mail.login == "mon"
        assert set(post.body) == {"check", "state", "previous_state", "summary", "details", "section", "table",
                                  "context", "ts"}
        assert (post.body["check"], post.body["state"], post.body["previous_state"]) == ("freshness", "CRITICAL", "OK")
        assert (post.body["section"], post.body["table"]) == ("adtemp_scraper", "DcsAdTemp")
        assert post.body["summary"].startswith("stale: no record inserted for")
        first_at = time.monotonic()

        n_rounds = len(rounds(sv))
        wait_until(lambda: len(rounds(sv)) >= n_rounds + 4, timeout=30, what="four more rounds")
        note(f"{len(rounds(sv)) - n_rounds} more rounds, still CRITICAL; mails: {len(smtp.messages)}, "
             f"POSTs: {len(http.messages)}")
        assert len(smtp.messages) == 1 and len(http.messages) == 1  # nothing more while unchanged

        [_, again] = smtp.wait_for(2, timeout=RENOTIFY_S + 20)
        [_, post2] = http.wait_for(2, timeout=10)
        note(f"after {time.monotonic() - first_at:.0f}s (renotify {RENOTIFY_S}s): mail {again.message['Subject']}")
        note(f"POST {post2.body}")
        assert time.monotonic() - first_at >= RENOTIFY_S - 2
        assert (post2.body["state"], post2.body["previous_state"]) == ("CRITICAL", "CRITICAL")

        note(sv.ctl("start", "adtemp_scraper").stdout.strip())
        [*_, recovery] = smtp.wait_for(3, timeout=30)
        [*_, post3] = http.wait_for(3, timeout=10)
        note(f"mail {recovery.message['Subject']}")
        note(f"POST {post3.body}")
        assert (post3.body["check"], post3.body["state"], post3.body["previous_state"]) == ("freshness", "OK",
                                                                                            "CRITICAL")
        assert "OK" in recovery.message["Subject"]
        n_rounds = len(rounds(sv))
        wait_until(lambda: len(rounds(sv)) >= n_rounds + 3, timeout=30, what="three more rounds")
        assert len(smtp.messages) == 3 and len(http.messages) == 3
        note(f"{len(rounds(sv)) - n_rounds} more rounds, all OK; mails: 3, POSTs: 3")

    events = read_events(sv.logdir / "monitor.log")
    sent = [e for e in events if e["event"] == "notify_sent"]
    assert len(sent) == 6 and not [e for e in events if e["event"] == "notify_failed"]
    changed = [(e["check"], e["previous_state"], e["state"]) for e in events if e["event"] == "check_changed"]
    assert changed == [("freshness", "OK", "CRITICAL"), ("freshness", "CRITICAL", "OK")]
    for path in [*sv.logdir.iterdir(), *sv.conf_d.iterdir()]:  # the password is in the secret file only
        assert PASSWORD not in path.read_text(errors="replace"), path
    for e in events:
        if e["event"] in ("check_changed", "notify_sent"):
            note(f"log: {e['event']} " + " ".join(f"{k}={e.get(k)}" for k in (
                "check", "previous_state", "state", "channel", "recipient") if e.get(k) is not None))
    if os.environ.get("MONITOR_TRANSCRIPT"):
        Path(os.environ["MONITOR_TRANSCRIPT"]).write_text("\n".join(transcript) + "\n")


def test_the_one_shot_notifies_a_change_once_across_cron_runs(tmp_path, monkeypatch, capsys):
    """`scraperd monitor` from cron: the state file makes the second run of an unchanged state silent."""
    with HttpSink() as http:
        cfg = write_cfg(tmp_path / "scraper.cfg", {
            "adtemp_scraper": {"mode": "scraper", "regime": ADTEMP},
            "monitor": {"mode": "monitor", "checks": "freshness", "notify": "http", "http_url": http.url,
                        "state_file": str(tmp_path / "state.sqlite")},
        }, defaults={"source": f"sqlite:///{tmp_path / 'dcs.db'}", "target": f"sqlite:///{tmp_path / 'tgt.db'}"})
        (tmp_path / "tgt.db").touch()  # a target with no tables: CRITICAL, cannot tell
        assert cli_main(["-c", str(cfg), "monitor"]) == 2
        [post] = http.wait_for(1)
        assert (post.body["check"], post.body["state"], post.body["previous_state"]) == ("freshness", "CRITICAL", None)
        assert cli_main(["-c", str(cfg), "monitor"]) == 2
        time.sleep(0.5)
        assert len(http.messages) == 1
        assert cli_main(["-c", str(cfg), "monitor", "--no-notify"]) == 2
        assert len(http.messages) == 1
        assert "CRITICAL freshness adtemp_scraper" in capsys.readouterr().out
