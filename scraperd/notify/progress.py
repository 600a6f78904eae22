"""Progress of a long one-shot job (the averager, `run --catch-up`), posted over the section's notify
channels: "running" at 0 %, again every `progress_every` percent, then "completed", "failed" (details:
the full error) or "aborted" (a signal, maxiter).

    notice = ProgressNotifier(settings, "adlid_averager", "averager", table="DcsAdLidSensor", unit="cells")
    with notice.reporting():        # an exception: "failed", re-raised; leaving without finish(): "aborted"
        notice.start(1000)
        notice.advance(400)         # crossed 40 %: "adlid_averager averager: 40 % (400 of 1000 cells)"
        notice.finish("completed")

Messages have check="progress" (routed as recipients("progress")), context = the job. A section
without `notify` gets a no-op: no thread, nothing queued. finish() waits up to FINISH_WAIT_S for the
deliveries, so the process does not exit before its last word is out.
"""

from __future__ import annotations

import ssl
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from scraperd import logsetup
from scraperd.config import Notify
from scraperd.notify import routing
from scraperd.notify.message import Message, iso_utc
from scraperd.notify.notifier import deliveries_for

log = logsetup.get_logger("scraperd.notify")

FINISH_WAIT_S = 30.0
Final = Literal["completed", "failed", "aborted"]


class ProgressNotifier:
    """Posts a job's status and percentage; every method returns at once except finish()."""

    def __init__(self, settings: Notify, section: str, job: str, table: str | None = None, *,
                 unit: str = "units", tls: ssl.SSLContext | None = None, backoff_s: float | None = None) -> None:
        self.settings, self.section, self.job, self.table, self.unit = settings, section, job, table, unit
        self.to = routing.recipients(settings, "progress")
        self.deliveries = deliveries_for(settings, section, tls=tls, backoff_s=backoff_s) if self.to else None
        self.total = self.done = 0
        self.posted: str | None = None     # the status last posted (the next message's previous_state)
        self.step = -1                     # progress_every steps posted
        self.started = self.finished = False

    @classmethod
    def off(cls, section: str, job: str) -> ProgressNotifier:
        """One that posts nothing (as for a section without `notify`)."""
        return cls(Notify.model_validate({}), section, job)

    @property
    def active(self) -> bool:
        return self.deliveries is not None

    def percent(self) -> int:
        return min(100, self.done * 100 // self.total) if self.total else 0

    def start(self, total: int) -> None:
        """The job knows its size: post "running", 0 %. Again (after a reconnect): only the total changes."""
        self.total = max(total, 0)
        if self.started:
            return
        self.started = True
        self.step = 0
        self._post("running", "")

    def advance(self, done: int) -> None:
        """done units of total: post "running" when another progress_every percent is crossed (not 100 %:
        finish() says that)."""
        self.done = done
        if not self.active or not self.started or self.finished:
            return
        pct = self.percent()
        step = pct // self.settings.progress_every
        if step > self.step and pct < 100:
            self.step = step
            self._post("running", "")

    def finish(self, state: Final, error: str | None = None) -> None:
        """Post the final status (failed: details = the full error) and wait for the deliveries."""
        if self.finished:
            return
        self.finished = True
        if self.deliveries is None:
            return
        self._post(state, error or "")
        if not self.deliveries.wait(FINISH_WAIT_S):
            log.warning("notify_failed", check="progress", state=state, error="deliveries still pending",
                        action=f"not waiting longer than {FINISH_WAIT_S:g}s")
        self.deliveries.close(timeout=0)

    @contextmanager
    def reporting(self) -> Iterator[ProgressNotifier]:
        """Around the whole job: an exception finishes "failed" (its traceback in details) and is raised
        again; leaving without finish() finishes "aborted"."""
        try:
            yield self
        except BaseException as exc:
            self.finish("failed", "".join(traceback.format_exception(exc)).rstrip())
            raise
        self.finish("aborted")

    def _summary(self, state: str) -> str:
        counts = f"{self.done} of {self.total} {self.unit}"
        head = f"{self.section} {self.job}"
        if state == "running":
            return f"{head}: {self.percent()} % ({counts})"
        return f"{head} {state} at {self.percent()} % ({counts})"

    def _post(self, state: str, details: str) -> None:
        if self.deliveries is None:
            return
        m = Message(check="progress", state=state, previous_state=self.posted, summary=self._summary(state),
                    details=details, section=self.section, table=self.table, context=self.job,
                    ts=iso_utc(datetime.now(UTC)), recipients=self.to)
        self.posted = state
        for to in self.to:
            self.deliveries.put(m, to)


def for_job(loaded: Any, job: str, unit: str) -> ProgressNotifier:
    """The ProgressNotifier of a daemon's section (its target table named), placed errors included."""
    from scraperd import preflight

    s = loaded.settings
    with loaded.placing():
        table = preflight.target_spec(loaded, s.regime_cls).table if s.notify else None
        return ProgressNotifier(s, loaded.name, job, table, unit=unit)
