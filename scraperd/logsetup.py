"""structlog configuration, chosen once per process: JSON lines under supervisord, colour on a terminal.

Event names are an interface (operators, `scraperd logs` and the tests read them):

    startup       per source: context (sitemask, subsite), seqno and tcursor (scraper: start_from
                  last_record or timefloor, when timefloor hides every record); the daemon is ready
    seed          a seed record written into an empty target
    sample        one source-vector sample: section, source, n, ids, tcursor, fullness, state, range, proceed
    propagate     a validity record written: source, seqno, rows, timestart, timeend (UTC), sitemask, subsite
    tune          sleep tuning: maxlag_s, lag_heartbeats, sleep_s
    db_retry      a lost/refused connection, retried: db (source|target), attempt, wait_s, error
    seqno_repair  LOCALSEQNO was behind max(SEQNO) of the Vld or payload table; the larger value was used
    fake          a faker iteration: ids written
    territory     averager: the territory bins of a source (count, first, last)
    progress      long work (averager): done, total, rows_per_s, eta_s
    shutdown      clean stop: reason (SIGTERM, SIGINT, maxiter, caught_up)
    monitor_round a round of the monitor's checks: round, state, critical, unknown, warning, ok, elapsed_s
    check_changed a check's state changed (or it is first seen bad): check, state, previous_state, summary,
                  section, table, context (info when OK, warning when WARNING, error otherwise)
    notify_sent   a notification delivered: channel (email|http), recipient, check, state, previous_state
    notify_failed a delivery attempt failed: channel, recipient, check, state, attempt, attempts, error,
                  action ("retrying in Ns", "gave up": sent again next round, "abandoned" at exit)
    warning-level events name the condition: aggregate_empty, aggregate_mismatch, bad_row,
                  binsize_changed, duplicate_date_time, empty_record, late_row, late_rows_unwatched,
                  non_transactional_target (at start-up: a MyISAM target, written under LOCK TABLES;
                  table, engines, crash_can_leave), write_conflict (another copy of the section wrote
                  first: table, context, expected, found; nothing written, resumed from the target),
                  non_unique_versiondate (`scraperd query`: the answer beat rows of its VERSIONDATE only
                  by its higher SEQNO: table, versiondate, seqnos, answer, context);
                  error level: source_error (then a db_retry); heartbeat_failed (the heartbeat file could
                  not be written: file, error; once, until a write succeeds again; the daemon goes on)
    stuck         watchdog: a RUNNING program's heartbeat older than stuck_after: program, pid, age_s,
                  stuck_after_s, phase, action (restarting); then restart (step), or restart_failed (a restart
                  that brought no fresh heartbeat: reported once, not repeated); retrying (a program
                  waiting out a database: not stuck); watchdog_notify (program, state, summary, recipients);
                  watchdog_error (a handler failed: the event is acknowledged all the same)
    late_row      a source row committed after the scraper read past its date_time (never read; a rebuild
                  would read it): source, id, date_time, late_s, found (poll|startup), action; beyond 10
                  per look, one more with rows, first_id, last_id

The averager's `sample` (one per territory bin of a source) has n, range, groups, rows, state
"replay", proceed; its `shutdown` has bins (grouped queries), cells (of the territory grid: one
territory bin of every source) and records. Its `propagate` events are at debug level when a
person watches on a terminal (the progress bar tells the story there); log files get every one.

Every event carries `section` (bound at start-up) and `event`. Values are fields, never formatted
into the message. Passwords never reach a log: databases are named with databases.describe().
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

_for_people = False  # the events go to a terminal, rendered for a person (not JSON lines)


def for_people() -> bool:
    """Whether this process's events are read on a terminal rather than from a log file."""
    return _for_people


def configure(*, json: bool | None = None, stream: TextIO | None = None, level: str = "INFO") -> None:
    """Configure structlog for this process; json=None decides by whether stream is a terminal."""
    global _for_people
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    _for_people = not json and stream.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    if json:
        processors += [structlog.processors.format_exc_info,
                       structlog.processors.JSONRenderer(default=str, sort_keys=False)]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=stream.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def bind(**kw: Any) -> None:
    """Bind context (section, mode, ...) to every later event of this process."""
    structlog.contextvars.bind_contextvars(**kw)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
