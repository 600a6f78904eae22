"""Deliveries in the background: one daemon thread per notifier, so a slow or dead SMTP server or
URL never blocks the checks (or the job) that produce the messages.

A delivery is one Message to one recipient. It is tried up to `notify_attempts` times; between
attempts it waits BACKOFF_S, 2×, 4× ... (at most BACKOFF_MAX_S) while other deliveries go ahead.
Every failed attempt logs `notify_failed` (channel, recipient, check, state, attempt, attempts,
error: one line, action: "retrying in Ns" or "gave up"); a delivery logs `notify_sent` (channel,
recipient, check, state, previous_state). The caller hears the outcome through `done(landed)`.
No exception leaves the worker, and none reaches the caller.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field

from scraperd import logsetup
from scraperd.notify import channels
from scraperd.notify.message import Message
from scraperd.notify.routing import channel, shown

log = logsetup.get_logger("scraperd.notify")

BACKOFF_S = 1.0        # the wait after a first failed attempt; doubled after each further one
BACKOFF_MAX_S = 60.0
ERROR_MAX = 300        # characters of an error in a notify_failed event


def error_line(exc: BaseException) -> str:
    """An exception as one short line: `ConnectionRefusedError: [Errno 111] Connection refused`."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        exc = inner if isinstance(inner, BaseException) else exc
    text = " ".join(str(exc).split())
    line = f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
    return line if len(line) <= ERROR_MAX else line[:ERROR_MAX - 3] + "..."


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    message: Message = field(compare=False)
    recipient: str = field(compare=False)
    done: Callable[[bool], None] | None = field(compare=False, default=None)
    attempt: int = field(compare=False, default=1)


class Deliveries:
    """A queue of deliveries and the thread that works it off."""

    def __init__(self, *, mailer: channels.Mailer | None, timeout: float, attempts: int,
                 backoff_s: float | None = None) -> None:
        self.mailer, self.timeout, self.attempts = mailer, timeout, attempts
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.jobs: list[_Job] = []
        self.seq = itertools.count()
        self.cond = threading.Condition()
        self.unfinished = 0
        self.stopping = False
        # the worker's events carry what the process bound (section, mode): contextvars do not follow a thread
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self._work,), name="scraperd-notify", daemon=True)
        self.thread.start()

    def put(self, message: Message, recipient: str, done: Callable[[bool], None] | None = None) -> None:
        """Queue one delivery; returns at once."""
        with self.cond:
            if self.stopping:
                return
            heapq.heappush(self.jobs, _Job(time.monotonic(), next(self.seq), message, recipient, done))
            self.unfinished += 1
            self.cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until every queued delivery has landed or given up (at most timeout s); True if so."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the queued deliveries (at most timeout s), then stop the worker; what is left is lost."""
        self.wait(timeout)
        with self.cond:
            self.stopping = True
            left, self.jobs = self.jobs, []
            self.cond.notify_all()
        for job in left:
            self._log_failed(job, "not delivered before the process stopped", "abandoned")
        self.thread.join(timeout=1.0)  # an attempt in flight is bounded by its own timeout; daemon thread

    # ------------------------------------------------------------------------------------------------------

    def _next(self) -> _Job | None:
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                if self.jobs and self.jobs[0].due <= now:
                    return heapq.heappop(self.jobs)
                self.cond.wait(self.jobs[0].due - now if self.jobs else None)
        return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._attempt(job)
            except Exception as exc:  # a bug here must not end the deliveries of a monitor that runs for months
                log.error("notify_failed", recipient=shown(job.recipient), check=job.message.check,
                          error=error_line(exc), action="gave up (internal error)")
                self._finished(job, False)

    def _attempt(self, job: _Job) -> None:
        m, to = job.message, job.recipient
        try:
            if channel(to) == "http":
                channels.post(m, to, self.timeout)
            elif self.mailer is not None:
                self.mailer.send(m, to)
            else:
                raise RuntimeError("e-mail is not a channel of this notifier")
        except Exception as exc:
            self._failed(job, exc)
            return
        log.info("notify_sent", channel=channel(to), recipient=shown(to), check=m.check, state=m.state,
                 previous_state=m.previous_state, key=m.key)
        self._finished(job, True)

    def _failed(self, job: _Job, exc: Exception) -> None:
        if job.attempt >= self.attempts:
            self._log_failed(job, error_line(exc), "gave up")
            self._finished(job, False)
            return
        delay = min(self.backoff_s * 2 ** (job.attempt - 1), BACKOFF_MAX_S)
        self._log_failed(job, error_line(exc), f"retrying in {delay:g}s")
        with self.cond:
            job.attempt += 1
            job.due = time.monotonic() + delay
            heapq.heappush(self.jobs, job)
            self.cond.notify_all()

    def _log_failed(self, job: _Job, error: str, action: str) -> None:
        m = job.message
        emit = log.warning if action.startswith("retrying") else log.error
        emit("notify_failed", channel=channel(job.recipient), recipient=shown(job.recipient), check=m.check,
             state=m.state, attempt=job.attempt, attempts=self.attempts, error=error, action=action, key=m.key)

    def _finished(self, job: _Job, landed: bool) -> None:
        try:
            if job.done is not None:
                job.done(landed)
        except Exception as exc:  # the state file (disk full, removed): the next observation sends again
            log.error("notify_failed", recipient=shown(job.recipient), check=job.message.check,
                      error=error_line(exc), action="delivered or not, the state file was not updated")
        with self.cond:
            self.unfinished -= 1
            self.cond.notify_all()
