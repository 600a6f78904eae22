"""Reconnecting: which errors mean "the database went away", and the one Retrying that waits them out.

What is retried is start-up plus the loop, never a single statement: after a reconnect the daemon
rebuilds its state from the target exactly as after a crash, so a COMMIT whose acknowledgement was
lost is found (or not) by reading the last validity record, and never sent twice.

Each attempt is logged as `db_retry` with db (source|target), attempt, wait_s and the error class;
databases are never named by URL here, so no password can leak. The waits are heartbeat phase
`retrying` (heartbeat.wait), so a watchdog tells a daemon waiting out a server from a stuck one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy.exc as sa_exc
import tenacity

from scraperd import heartbeat
from scraperd.errors import ConfigError, Disconnected, SourceError
from scraperd.logsetup import get_logger

log = get_logger("scraperd.retry")

# MySQL/MariaDB client and server codes of a lost, refused or killed connection. A server stopped or
# restarting gives 2013 to a statement in flight, 2006 to an idle connection, 2002/2003 at every
# connect; while it shuts down 1053 (shutdown in progress) and 1927 (MariaDB: connection killed).
# 4031 is MySQL 8's "disconnected by the server" (MariaDB's 4031, a trigger error, scraperd never meets).
_MYSQL_DISCONNECT = {1040, 1053, 1077, 1078, 1079, 1080, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1927,
                     2002, 2003, 2005, 2006, 2013, 2026, 2055, 4031}
_SQLITE_TRANSIENT = ("database is locked", "unable to open database", "disk i/o error")  # lower case: matched against lowered text


def is_disconnect(exc: BaseException) -> bool:
    """True for a lost/refused connection or a transient lock, not for a bad statement."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], int) and args[0] in _MYSQL_DISCONNECT:
            return True
        text = str(orig).lower()
        if any(t in text for t in _SQLITE_TRANSIENT):
            return True
        if "lost connection" in text or "server has gone away" in text or "can't connect" in text:
            return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return False


_MYSQL_SCHEMA_GONE = {1054, 1146}  # unknown column, table doesn't exist
_MYSQL_REFUSED = {1044, 1045, 1049, 1698}  # access denied (db, user), unknown database: fix the config
_SQLITE_SCHEMA_GONE = ("no such table", "no such column")


def _mysql_code(exc: BaseException) -> int | None:
    args = getattr(getattr(exc, "orig", None), "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_schema_gone(exc: BaseException) -> bool:
    """True when a statement failed because a table or column it names no longer exists."""
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    args = getattr(exc.orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_SCHEMA_GONE:
        return True
    return any(t in str(exc.orig).lower() for t in _SQLITE_SCHEMA_GONE)


@contextmanager
def side(db: str) -> Iterator[None]:
    """Label database errors raised inside with the side they came from (source or target).

    On the source side a vanished table or column is retried too (an `source_error` event, then
    start-up again, which reflects the tables anew): DCS schema changes are fixed by people, and the
    scraper should be waiting, not crash-looping, when they are.
    """
    try:
        yield
    except Disconnected:
        raise
    except SourceError as exc:
        if db == "source":
            log.error("source_error", detail=str(exc), action="retrying")
            raise Disconnected(db, exc) from exc
        raise
    except Exception as exc:
        if is_disconnect(exc):
            raise Disconnected(db, exc) from exc
        code = _mysql_code(exc)
        if code in _MYSQL_REFUSED:
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            raise ConfigError(f"the {db} database refuses us: {detail}", key=db) from None
        if db == "source" and is_schema_gone(exc):
            detail = str(getattr(exc, "orig", exc)).splitlines()[0]
            log.error("source_error", detail=detail, action="retrying")
            raise Disconnected(db, SourceError(detail)) from exc
        raise


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    db = exc.db if isinstance(exc, Disconnected) else "unknown"
    err = exc.error if isinstance(exc, Disconnected) else exc
    fields: dict[str, Any] = {
        "db": db, "attempt": state.attempt_number,
        "wait_s": round(state.next_action.sleep, 1) if state.next_action else 0.0,
        "error": err.__class__.__name__ if err else None,
    }
    if isinstance(err, SourceError):
        fields["detail"] = str(err)
    elif isinstance(err, sa_exc.DBAPIError) and err.orig is not None and getattr(err.orig, "args", None):
        fields["code"] = err.orig.args[0] if isinstance(err.orig.args[0], int) else None
    log.warning("db_retry", **fields)


def _retry_wait(stop: threading.Event, seconds: float) -> None:
    """A backoff wait: SIGTERM ends it at once; heartbeat phase `retrying`, refreshed while it lasts."""
    heartbeat.wait(stop, seconds, "retrying")


def reconnecting(stop: threading.Event, max_wait: timedelta) -> tenacity.Retrying:
    """Retry Disconnected without limit: exponential backoff with jitter, capped; SIGTERM ends the wait."""
    cap = max(max_wait.total_seconds(), 0.1)
    backoff = tenacity.wait_exponential(multiplier=0.5, max=cap) + tenacity.wait_random(0, min(1.0, cap / 4))

    def wait(state: tenacity.RetryCallState) -> float:
        return min(cap, backoff(state))  # the jitter never takes a wait past the cap

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Disconnected),
        wait=wait,
        stop=tenacity.stop_when_event_set(stop),
        sleep=lambda seconds: _retry_wait(stop, seconds),
        before_sleep=_log_retry,
        reraise=True,
    )
