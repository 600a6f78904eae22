"""The notifier against real receivers (aiosmtpd, http.server on 127.0.0.1): what is sent when, to
whom, with which body; STARTTLS and AUTH with the password from the secret file or the env var (never
in a log); retries, giving up, and never blocking the checks."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from scraperd import config, logsetup
from scraperd.errors import ConfigError
from scraperd.monitor.results import CheckResult, State
from scraperd.notify import Message, Notifier, recipients
from scraperd.notify.message import BODY_FIELDS
from tests.notifykit import HttpSink, SmtpSink, closed_port

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
FAST = 0.01  # backoff base of the tests: 10 ms, 20 ms, ...


def settings(**keys: Any) -> config.Notify:
    return config.Notify.model_validate({k: str(v) for k, v in keys.items()})


def result(state: State = State.CRITICAL, check: str = "freshness", **kw: Any) -> CheckResult:
    where = {"section": "adtemp_scraper", "table": "DcsAdTemp", "context": "sitemask=1,subsite=1,simmask=1,task=0"}
    where.update(kw)
    return CheckResult(check=check, state=state, summary=f"{check} is {state.name.lower()}",
                       details="line one\nline two", **where)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def http() -> Iterator[HttpSink]:
    with HttpSink() as sink:
        yield sink


def both(smtp: SmtpSink, http: HttpSink, **keys: Any) -> config.Notify:
    return settings(notify="email, http", mail_to="ops@lab.org", smtp_host="127.0.0.1", smtp_port=smtp.port,
                    http_url=http.url, mail_from="scraperd@test.lab", **keys)


def notifier(s: config.Notify, tmp_path: Path | None = None, **kw: Any) -> Notifier:
    path = tmp_path / "var" / "monitor" / "mon.state.sqlite" if tmp_path is not None else None
    return Notifier(s, "mon", state_path=path, backoff_s=FAST, **kw)


def events(captured: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in captured if e["event"] == name]


# ----------------------------------------------------------------------------------------------------------
# what is sent, and when


def test_a_change_sends_one_mail_and_one_post_with_the_body_fields_and_the_same_state_nothing(smtp, http,
                                                                                               tmp_path):
    n = notifier(both(smtp, http), tmp_path)
    with structlog.testing.capture_logs() as captured:
        [m] = n.observe([result()], now=T0)
        assert isinstance(m, Message) and m.recipients == ("ops@lab.org", http.url)
        [mail] = smtp.wait_for(1)
        [post] = http.wait_for(1)
        assert n.wait(10)
    assert post.content_type == "application/json"
    assert list(post.body) == list(BODY_FIELDS)
    assert post.body == {"check": "freshness", "state": "CRITICAL", "previous_state": None,
                         "summary": "freshness is critical", "details": "line one\nline two",
                         "section": "adtemp_scraper", "table": "DcsAdTemp",
                         "context": "sitemask=1,subsite=1,simmask=1,task=0", "ts": "2024-05-01T03:00:00Z"}
    assert post.body == m.body()
    assert mail.rcpt_tos == ["ops@lab.org"] and mail.mail_from == "scraperd@test.lab"
    assert mail.message["Subject"] == "[scraperd] CRITICAL freshness adtemp_scraper DcsAdTemp: freshness is critical"
    assert "state: CRITICAL\n" in mail.text and "check: freshness\n" in mail.text
    assert mail.text.endswith("details:\nline one\nline two\n")
    sent = events(captured, "notify_sent")
    assert sorted(e["channel"] for e in sent) == ["email", "http"]
    assert {(e["check"], e["state"], e["previous_state"]) for e in sent} == {("freshness", "CRITICAL", None)}

    assert n.observe([result()], now=T0 + timedelta(minutes=5)) == []
    n.close()
    assert len(smtp.messages) == 1 and len(http.messages) == 1


def test_a_bad_state_is_sent_again_every_renotify(http, tmp_path):
    n = notifier(settings(notify="http", http_url=http.url), tmp_path)
    assert len(n.observe([result()], now=T0)) == 1
    assert n.wait(10)
    assert n.observe([result()], now=T0 + timedelta(hours=11, minutes=59)) == []
    [again] = n.observe([result()], now=T0 + timedelta(hours=12))
    assert (again.state, again.previous_state) == ("CRITICAL", "CRITICAL")
    assert n.wait(10)
    assert n.observe([result()], now=T0 + timedelta(hours=13)) == []  # counted from the re-send
    n.close()
    assert [p.body["ts"] for p in http.messages] == ["2024-05-01T03:00:00Z", "2024-05-01T15:00:00Z"]

    short = notifier(settings(notify="http", http_url=http.url), renotify=timedelta(minutes=30))
    short.observe([result()], now=T0)
    assert short.wait(10)
    assert len(short.observe([result()], now=T0 + timedelta(minutes=30))) == 1
    short.close()


def test_a_recovery_sends_one_ok_naming_the_previous_state_and_a_first_ok_sends_nothing(smtp, http, tmp_path):
    n = notifier(both(smtp, http), tmp_path)
    quiet = result(State.OK, check="source", table="DBNS_SAB_Temp")
    assert n.observe([quiet, result(State.WARNING)], now=T0)[0].check == "freshness"  # the first OK: no news
    assert n.wait(10)
    [ok] = n.observe([quiet, result(State.OK)], now=T0 + timedelta(minutes=5))
    assert (ok.state, ok.previous_state) == ("OK", "WARNING")
    assert n.wait(10)
    assert n.observe([quiet, result(State.OK)], now=T0 + timedelta(days=2)) == []  # OK is never re-sent
    n.close()
    assert [p.body["state"] for p in http.messages] == ["WARNING", "OK"]
    assert http.messages[1].body["previous_state"] == "WARNING"
    assert smtp.messages[1].message["Subject"].startswith("[scraperd] OK (was WARNING) freshness adtemp_scraper")
    assert all(p.body["check"] == "freshness" for p in http.messages)


def test_a_new_notifier_on_the_same_state_file_does_not_send_again(http, tmp_path):
    s = settings(notify="http", http_url=http.url)
    first = notifier(s, tmp_path)
    first.observe([result()], now=T0)
    first.close()
    assert (tmp_path / "var" / "monitor" / "mon.state.sqlite").exists()  # parent dirs created

    second = notifier(s, tmp_path)
    assert second.observe([result()], now=T0 + timedelta(hours=1)) == []
    [recovered] = second.observe([result(State.OK)], now=T0 + timedelta(hours=2))
    assert recovered.previous_state == "CRITICAL"
    second.close()
    assert [p.body["state"] for p in http.messages] == ["CRITICAL", "OK"]


def test_an_unchanged_key_that_disappears_is_left_alone_and_empty_notify_sends_nothing(http, tmp_path):
    n = notifier(settings(notify="http", http_url=http.url), tmp_path)
    n.observe([result(), result(check="source", table="X")], now=T0)
    assert n.wait(10)
    assert n.observe([result()], now=T0 + timedelta(minutes=1)) == []       # "source" gone: nothing sent
    assert len(n.observe([result(check="source", table="X", state=State.OK)], now=T0 + timedelta(minutes=2))) == 1
    n.close()

    silent = notifier(settings(http_url=http.url), tmp_path / "silent")
    assert silent.deliveries is None
    assert silent.observe([result()], now=T0) == []
    assert silent.state.state(result().key) == "CRITICAL"  # recorded all the same
    silent.close()
    assert len(http.messages) == 3


# ----------------------------------------------------------------------------------------------------------
# routes


def test_routes_send_source_checks_to_the_dcs_experts_and_the_others_to_ops(smtp, http):
    s = settings(notify="email, http", smtp_host="127.0.0.1", smtp_port=smtp.port, mail_to="nobody@lab.org",
                 routes=f"source: dcs-experts@lab.org; *: scraper-experts@lab.org, {http.url}")
    assert recipients(s, "source") == ("dcs-experts@lab.org",)
    assert recipients(s, "freshness") == ("scraper-experts@lab.org", http.url)
    n = Notifier(s, "mon", backoff_s=FAST)
    n.observe([result(check="source", table="DBNS_SAB_Temp"), result()], now=T0)
    assert n.wait(10)
    n.close()
    got = {m.message["Subject"].split()[2]: m.rcpt_tos for m in smtp.messages}
    assert got == {"source": ["dcs-experts@lab.org"], "freshness": ["scraper-experts@lab.org"]}
    assert [p.body["check"] for p in http.messages] == ["freshness"]


def test_without_routes_the_defaults_and_a_route_address_without_email_is_dropped_with_a_warning():
    s = settings(notify="email, http", mail_to="ops@lab.org", http_url="http://mon:8080/hook")
    assert recipients(s, "fleet") == ("ops@lab.org", "http://mon:8080/hook")
    assert recipients(settings(notify="http", http_url="http://mon/h"), "fleet") == ("http://mon/h",)
    only_http = settings(notify="http", routes="source: dcs@lab.org, http://dcs:1/h; *: http://mon/h")
    assert recipients(only_http, "source") == ("http://dcs:1/h",)
    with structlog.testing.capture_logs() as captured:
        Notifier(only_http, "mon").close()
    [warning] = events(captured, "notify_recipients_dropped")
    assert warning["recipients"] == ["dcs@lab.org"] and warning["log_level"] == "warning"


# ----------------------------------------------------------------------------------------------------------
# SMTP: STARTTLS, AUTH, secrets


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The structlog JSON lines of this process, as under supervisord."""
    stream = io.StringIO()
    logsetup.configure(json=True, stream=stream)
    yield stream


def tls_settings(sink: SmtpSink, **keys: Any) -> config.Notify:
    return settings(notify="email", mail_to="ops@lab.org", smtp_host="127.0.0.1", smtp_port=sink.port,
                    smtp_starttls="true", **keys)


def test_starttls_and_login_with_the_password_of_the_secret_file_which_no_log_shows(tmp_path, json_log,
                                                                                   monkeypatch):
    monkeypatch.delenv("SCRAPERD_SMTP_PASSWORD", raising=False)
    secret = tmp_path / "secret.cnf"
    secret.write_text("[client]\nuser = root\n\n[smtp]\nuser = monitor\npassword = 'pa55-from-file'\n")
    with SmtpSink(tmp_path, starttls=True, auth=("monitor", "pa55-from-file")) as sink:
        monkeypatch.setenv("SCRAPERD_SMTP_CAFILE", str(sink.cafile))  # trust its self-signed certificate
        n = Notifier(tls_settings(sink, smtp_secret="smtp", secret_file=secret), "mon", backoff_s=FAST)
        assert "pa55-from-file" not in repr(n.deliveries.mailer)
        n.observe([result()], now=T0)
        [mail] = sink.wait_for(1)
        n.close()
    assert mail.tls and mail.login == "monitor" and sink.refused == 0
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert [e["event"] for e in lines if e["event"].startswith("notify")] == ["notify_sent"]
    assert "pa55-from-file" not in json_log.getvalue()


def test_the_env_password_wins_and_a_refused_login_is_retried_without_showing_it(tmp_path, json_log, monkeypatch):
    secret = tmp_path / "secret.cnf"
    secret.write_text("[smtp]\nuser = monitor\npassword = stale-file-password\n")
    with SmtpSink(tmp_path, starttls=True, auth=("monitor", "env-pa55word")) as sink:
        monkeypatch.setenv("SCRAPERD_SMTP_PASSWORD", "env-pa55word")
        good = Notifier(tls_settings(sink, smtp_secret="smtp", secret_file=secret), "mon",
                        tls=sink.client_tls(), backoff_s=FAST)
        good.observe([result()], now=T0)
        sink.wait_for(1)
        good.close()
        assert sink.messages[0].login == "monitor"

        monkeypatch.setenv("SCRAPERD_SMTP_PASSWORD", "wrong-pa55word")
        bad = Notifier(tls_settings(sink, smtp_user="monitor", notify_attempts=2), "mon",
                       tls=sink.client_tls(), backoff_s=FAST)
        bad.observe([result()], now=T0)
        assert bad.wait(10)
        bad.close()
    assert sink.refused >= 2 and len(sink.messages) == 1  # smtplib tries PLAIN, then LOGIN
    text = json_log.getvalue()
    failed = [e for e in map(json.loads, text.splitlines()) if e["event"] == "notify_failed"]
    assert [(e["attempt"], e["action"]) for e in failed] == [(1, "retrying in 0.01s"), (2, "gave up")]
    assert failed[0]["error"].startswith("SMTPAuthenticationError") and "\n" not in failed[0]["error"]
    for password in ("env-pa55word", "wrong-pa55word", "stale-file-password"):
        assert password not in text


def test_a_missing_secret_section_or_file_is_a_config_error_naming_both(tmp_path, monkeypatch):
    monkeypatch.delenv("SCRAPERD_SMTP_PASSWORD", raising=False)
    secret = tmp_path / "secret.cnf"
    secret.write_text("[client]\npassword = not-this-one\n")
    s = settings(notify="email", mail_to="ops@lab.org", smtp_secret="smtp", secret_file=secret)
    with pytest.raises(ConfigError) as missing_section:
        Notifier(s, "mon")
    assert str(secret) in str(missing_section.value) and "[smtp]" in str(missing_section.value)
    assert missing_section.value.exit_code == 78 and "not-this-one" not in str(missing_section.value)
    gone = tmp_path / "nowhere.cnf"
    with pytest.raises(ConfigError, match="smtp_secret") as missing_file:
        Notifier(settings(notify="email", mail_to="ops@lab.org", smtp_secret="smtp", secret_file=gone), "mon")
    assert str(gone) in str(missing_file.value)


# ----------------------------------------------------------------------------------------------------------
# failures: retried, logged, never blocking


def test_http_500_twice_then_200_is_delivered_after_two_notify_failed():
    with HttpSink(fail_first=2) as sink, structlog.testing.capture_logs() as captured:
        n = Notifier(settings(notify="http", http_url=sink.url, notify_attempts=3), "mon", backoff_s=FAST)
        n.observe([result()], now=T0)
        [post] = sink.wait_for(1)
        assert n.wait(10)
        n.close()
    assert post.body["state"] == "CRITICAL" and len(sink.failed) == 2
    failed = events(captured, "notify_failed")
    assert [(e["attempt"], e["attempts"], e["action"]) for e in failed] == [
        (1, 3, "retrying in 0.01s"), (2, 3, "retrying in 0.02s")]
    assert failed[0]["error"] == "HttpStatusError: HTTP 500 Internal Server Error"
    assert {(e["channel"], e["recipient"], e["check"], e["state"]) for e in failed} == {
        ("http", sink.url, "freshness", "CRITICAL")}
    assert len(events(captured, "notify_sent")) == 1


def test_observe_returns_before_a_slow_receiver_answers():
    with HttpSink(hold=True) as sink:
        n = Notifier(settings(notify="http", http_url=sink.url), "mon", backoff_s=FAST)
        [m] = n.observe([result()], now=T0)
        assert m.state == "CRITICAL" and sink.messages == []   # queued; the receiver has not answered
        assert sink.arrived.wait(10)                            # the worker is inside the POST, held there
        assert n.observe([result()], now=T0 + timedelta(minutes=1)) == []  # in flight: not queued twice
        sink.release.set()
        sink.wait_for(1)
        n.close()
    assert len(sink.messages) == 1


def test_a_receiver_that_is_down_gives_up_and_the_next_observe_sends_again(smtp):
    url = f"http://127.0.0.1:{closed_port()}/hook"
    s = settings(notify="email, http", mail_to="ops@lab.org", smtp_host="127.0.0.1", smtp_port=smtp.port,
                 http_url=url, notify_attempts=2)
    with structlog.testing.capture_logs() as captured:
        n = Notifier(s, "mon", backoff_s=FAST)
        [m] = n.observe([result()], now=T0)
        assert m.recipients == ("ops@lab.org", url)
        assert n.wait(10)
        failed = events(captured, "notify_failed")
        assert [(e["recipient"], e["attempt"], e["action"]) for e in failed] == [
            (url, 1, "retrying in 0.01s"), (url, 2, "gave up")]
        assert "ConnectionRefusedError" in failed[-1]["error"]
        # the mail landed and is not sent twice; the POST that gave up is sent again
        [again] = n.observe([result()], now=T0 + timedelta(minutes=5))
        assert again.recipients == (url,) and again.previous_state == "CRITICAL"
        assert n.wait(10)
        n.close()
    assert len(events(captured, "notify_failed")) == 4
    assert len(smtp.messages) == 1


def test_a_broken_state_file_never_raises_out_of_observe(http, tmp_path):
    n = notifier(settings(notify="http", http_url=http.url), tmp_path)
    n.state.close()  # as if the file went away under the monitor
    with structlog.testing.capture_logs() as captured:
        assert n.observe([result()], now=T0) == []
        n.close()
    assert events(captured, "notify_failed")[0]["action"].startswith("results not recorded")


def test_a_change_sent_again_after_a_failed_delivery_names_what_the_recipient_was_told(http, tmp_path):
    """Told OK, the CRITICAL that followed not delivered: the re-send says previous_state OK, not CRITICAL."""
    from scraperd.notify import routing

    n = notifier(settings(notify="http", http_url=http.url), tmp_path)
    key = result().key
    n.state.record_notified(key, routing.shown(http.url), "OK", T0)  # what the recipient last heard
    n.state.set_states({key: "CRITICAL"}, T0 + timedelta(minutes=1))  # observed, its POST gave up
    [m] = n.observe([result()], now=T0 + timedelta(minutes=2))
    assert (m.state, m.previous_state) == ("CRITICAL", "OK")
    [post] = http.wait_for(1)
    assert (post.body["state"], post.body["previous_state"]) == ("CRITICAL", "OK")
    n.close()
