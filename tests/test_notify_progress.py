"""Progress of long jobs over the notify channels: a real averager run and a real `run --catch-up`
over SQLite post running, percentages, then completed / aborted / failed (with the error), to a real
HTTP receiver; a section without `notify` posts nothing and starts no thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scraperd import config
from scraperd.notify import ProgressNotifier
from scraperd.notify.message import BODY_FIELDS
from tests.conftest import TestDB as Database
from tests.conftest import _new_db
from tests.notifykit import HttpSink, SmtpSink
from tests.scrapekit import run_section
from tests.test_averager import SECTION, average, averager_cfg, every, insert, lid_row, make_source
from tests.test_scraper_behaviour import setup as scraper_setup
from tests.test_scraper_behaviour import temp_row

DAY = datetime(2011, 2, 1)


@pytest.fixture
def http() -> Iterator[HttpSink]:
    with HttpSink() as sink:
        yield sink


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Callable[[str], Database]]:
    """make_db on SQLite only: what is notified does not depend on the backend."""
    made: list[Database] = []

    def factory(tag: str = "db") -> Database:
        made.append(_new_db("sqlite", tmp_path, tag))
        return made[-1]

    yield factory
    for db in made:
        db.engine.dispose()


def posted(sink: HttpSink) -> list[tuple[str, str | None, str]]:
    return [(p.body["state"], p.body["previous_state"], p.body["summary"]) for p in sink.messages]


def two_days_of_lid_rows(make_db: Any, tmp_path: Any, http: HttpSink, **keys: Any) -> Any:
    """AD1 every 10 minutes for two days: 8 cells of a 6h territory; progress posted every 25 %."""
    src, tgt = make_db("src"), make_db("tgt")
    make_source(src)
    insert(src, "AD1_LidSensor", [lid_row(i, t) for i, t in
                                  enumerate(every(DAY, DAY + timedelta(days=2, minutes=1), timedelta(minutes=10)),
                                            start=1)])
    return averager_cfg(tmp_path, src, tgt, territory="6h", notify="http", http_url=http.url, progress_every=25,
                        **keys)


def test_an_averager_run_posts_running_every_25_percent_then_completed(sqlite_db, tmp_path, http):
    average(two_days_of_lid_rows(sqlite_db, tmp_path, http))
    # finish() waited for the deliveries: everything is in when the run returns
    assert posted(http) == [
        ("running", None, f"{SECTION} averager: 0 % (0 of 8 cells)"),
        ("running", "running", f"{SECTION} averager: 25 % (2 of 8 cells)"),
        ("running", "running", f"{SECTION} averager: 50 % (4 of 8 cells)"),
        ("running", "running", f"{SECTION} averager: 75 % (6 of 8 cells)"),
        ("completed", "running", f"{SECTION} averager completed at 100 % (8 of 8 cells)")]
    body = http.messages[-1].body
    assert list(body) == list(BODY_FIELDS)
    assert (body["check"], body["section"], body["table"], body["context"]) == (
        "progress", SECTION, "DcsAdLidSensor", "averager")
    assert body["ts"].endswith("Z")


def test_an_averager_run_cut_by_maxiter_posts_aborted(sqlite_db, tmp_path, http):
    average(two_days_of_lid_rows(sqlite_db, tmp_path, http), maxiter=2)
    assert [(state, summary) for state, _, summary in posted(http)] == [
        ("running", f"{SECTION} averager: 0 % (0 of 2 cells)"),
        ("running", f"{SECTION} averager: 50 % (1 of 2 cells)"),
        ("aborted", f"{SECTION} averager aborted at 100 % (2 of 2 cells)")]


def test_a_failing_averager_run_posts_failed_with_the_whole_error_and_raises_it(sqlite_db, tmp_path, http):
    cfg = two_days_of_lid_rows(sqlite_db, tmp_path, http)
    samples = []

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "sample":
            samples.append(event)
            if len(samples) == 3:
                raise RuntimeError("disk on fire while averaging")

    with pytest.raises(RuntimeError, match="disk on fire"):
        average(cfg, on_event=on_event)
    *running, (state, previous, summary) = posted(http)
    assert [s for s, _, _ in running] == ["running", "running"]  # 0 % and 25 %
    assert (state, previous) == ("failed", "running") and summary.startswith(f"{SECTION} averager failed at ")
    details = http.messages[-1].body["details"]
    assert details.startswith("Traceback (most recent call last):")
    assert details.endswith("RuntimeError: disk on fire while averaging") and "_sampled" in details


def test_a_catch_up_posts_its_progress_in_source_time_then_completed(sqlite_db, tmp_path, http):
    t0 = datetime(2011, 2, 1)
    rows = [temp_row(i, t0 + timedelta(seconds=10 * i), [20.0 + (i % 7) * 2, 1, 1, 1, 1]) for i in range(1, 201)]
    cfg, *_ = scraper_setup(sqlite_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, notify="http",
                            http_url=http.url, progress_every=20)
    run_section(cfg, "s", catch_up=True)
    states = posted(http)
    assert [s for s, _, _ in states] == ["running"] * 5 + ["completed"]
    # from the seed's end (00:00:10) to the head (00:33:20): 1990 s of source time
    assert states[0][2] == "s catch-up: 0 % (0 of 1990 s of source time)"
    percents = [int(summary.split(": ")[1].split(" %")[0]) for _, _, summary in states[:-1]]
    assert [p // 20 for p in percents] == [0, 1, 2, 3, 4]
    assert states[-1][2].startswith("s catch-up completed at ")
    assert {p.body["context"] for p in http.messages} == {"catch-up"}


def test_a_catch_up_cut_by_maxiter_posts_aborted_and_a_plain_run_posts_nothing(sqlite_db, tmp_path, http):
    t0 = datetime(2011, 2, 1)
    rows = [temp_row(i, t0 + timedelta(seconds=10 * i), [20.0 + (i % 7) * 2, 1, 1, 1, 1]) for i in range(1, 101)]
    cfg, *_ = scraper_setup(sqlite_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows}, notify="http",
                            http_url=http.url)
    run_section(cfg, "s", catch_up=True, maxiter=10)  # 10 of 99 rows: about 10 %
    states = [s for s, _, _ in posted(http)]
    assert states[0] == "running" and states[-1] == "aborted" and set(states[1:-1]) <= {"running"}
    assert len(states) <= 3
    run_section(cfg, "s", maxiter=5)  # not --catch-up: no progress
    assert len(http.messages) == len(states)


# ----------------------------------------------------------------------------------------------------------
# the notifier itself


def test_progress_is_routed_as_the_progress_check_and_mailed(tmp_path, http):
    with SmtpSink() as smtp:
        s = config.Notify.model_validate({"notify": "email, http", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                                          "routes": f"progress: night-shift@lab.org; *: {http.url}"})
        notice = ProgressNotifier(s, "adlid_averager", "averager", "DcsAdLidSensor", unit="cells")
        with notice.reporting():
            notice.start(1000)
            for done in range(50, 1001, 50):
                notice.advance(done)
            notice.finish("completed")
        mails = smtp.wait_for(11)
    assert http.messages == []  # routed: progress goes to the night shift only
    subjects = [m.message["Subject"] for m in mails]
    assert subjects[4] == "[scraperd] RUNNING progress adlid_averager DcsAdLidSensor: " \
                          "adlid_averager averager: 40 % (400 of 1000 cells)"
    assert subjects[-1].startswith("[scraperd] COMPLETED (was running) progress")
    assert {tuple(m.rcpt_tos) for m in mails} == {("night-shift@lab.org",)}


def test_a_job_left_without_finish_posts_aborted_and_without_notify_nothing_happens(http):
    s = config.Notify.model_validate({"notify": "http", "http_url": http.url})
    with ProgressNotifier(s, "x", "backup").reporting() as notice:
        notice.start(10)
    assert [p.body["state"] for p in http.messages] == ["running", "aborted"]

    threads = threading.active_count()
    off = ProgressNotifier(config.Notify.model_validate({"http_url": http.url}), "x", "backup")
    with off.reporting():
        off.start(10)
        off.advance(10)
    assert not off.active and threading.active_count() == threads
    assert len(http.messages) == 2
