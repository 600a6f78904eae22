"""How every daemon (scraper, faker, averager) lives, written once.

    serve(loaded, make, log)                   what each daemon's run() is: the section's config errors
                                               placed (Loaded.placing), then
    with stopping_on_signals(stop):            SIGTERM/SIGINT set `stop` (main thread only)
        reason = run_until_stopped(daemon, stop, max_wait)
                                               start() + loop() under retry.reconnecting(): the one
                                               path for first start, restart, reconnect, and
                                               write conflict (another copy wrote first)
    shutdown event                             reason, the daemon's counts(), elapsed_s; exit 0

The daemon object has start() -> run (rebuild the running state from the databases), loop(run) ->
reason, counts() and close().
Both run every database statement inside retry.side("source"|"target"), start-up's DDL, reflection
and seeding included, so a server that is down or restarting is waited out wherever it is met.
A signal never interrupts a write: it only sets the event the loop and the waits look at.
serve() installs the section's heartbeat (heartbeat.py): pause() beats `sleeping`, reconnect waits
`retrying`, and the loops their reading/writing.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from scraperd import heartbeat, logsetup, retry
from scraperd.errors import Disconnected, WriteConflict

if TYPE_CHECKING:
    from scraperd.config import Loaded

log = logsetup.get_logger("scraperd.lifecycle")


R = TypeVar("R")


class Daemon(Protocol[R]):
    """start() rebuilds the running state from the databases and returns it; loop(run) works on it
    until it returns why it ended. What survives a reconnect is what the daemon object itself keeps."""

    def start(self) -> R: ...
    def loop(self, run: R) -> str: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


def serve(loaded: Loaded[Any], make: Callable[[threading.Event], Daemon[Any]], daemon_log: Any,
          stop: threading.Event | None = None) -> int:
    """Build the daemon with make(stop) and run it until it ends; log `shutdown`; exit 0.

    Signals end it cleanly (exit 0); a configuration error found on the way raises ConfigError
    placed at the section (exit 78).
    """
    stop = stop or threading.Event()
    t0 = time.monotonic()
    with loaded.placing(), stopping_on_signals(stop), \
            heartbeat.beating(loaded.name, heartbeat.run_dir(loaded.settings)):
        daemon = make(stop)
        reason = run_until_stopped(daemon, stop, loaded.settings.reconnect_max_wait)
    daemon_log.info("shutdown", reason=reason, **daemon.counts(), elapsed_s=round(time.monotonic() - t0, 1))
    return 0


def maxiter_reached(maxiter: int, done: int) -> bool:
    """The section's maxiter iterations are done (maxiter 0: no limit)."""
    return bool(maxiter) and done >= maxiter


def pause(stop: threading.Event, seconds: float, phase: str = "sleeping") -> bool:
    """Wait `seconds` or until `stop` is set (SIGTERM ends the wait at once); True when stopped.
    0 does not wait: catching up runs thousands of iterations a second. A wait is heartbeat `phase`
    (sleeping), beaten before it and every few seconds during it."""
    return heartbeat.wait(stop, seconds, phase) if seconds > 0 else stop.is_set()


def signal_name(stop: threading.Event) -> str:
    """The name of the signal that set `stop` (SIGTERM, SIGINT), or "signal"."""
    return str(getattr(stop, "signal", "signal"))


@contextmanager
def stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` while inside (main thread only); the previous handlers come back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        stop.signal = signal.Signals(signum).name  # type: ignore[attr-defined]
        stop.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_until_stopped(daemon: Daemon[Any], stop: threading.Event, max_wait: timedelta) -> str:
    """start() then loop(run), again after every lost connection, until loop() returns or `stop` is set.

    Returns loop()'s reason, or the signal's name when a signal ended a reconnect wait. Always
    closes the daemon's engines.
    """
    reason = signal_name(stop)
    try:
        for attempt in retry.reconnecting(stop, max_wait):
            with attempt:
                reason = _start_and_loop(daemon, stop)
    except Disconnected:
        if not stop.is_set():
            raise
        reason = signal_name(stop)
    finally:
        daemon.close()
    return reason


def _start_and_loop(daemon: Daemon[R], stop: threading.Event) -> str:
    """start() then loop(); after a write conflict, start() again: resume from the target as at start-up.

    A fenced write that finds another writer's record (a second copy of the section) wrote nothing,
    so what this process had not committed is simply read again from the source.
    """
    while True:
        try:
            return daemon.loop(daemon.start())
        except WriteConflict as exc:
            log.warning("write_conflict", table=exc.table, context=exc.context, expected=exc.expected,
                        found=exc.found, action="nothing written: another writer of this context (a second copy of "
                        "this section?) wrote first; resuming from the target")
            if stop.is_set():
                return signal_name(stop)
