"""The monitor's notifier: from check results to the messages worth sending, and off they go.

A result is notified to a recipient when that recipient has not been told its current state:
first seen in a bad state, any change of state (the recovery back to OK included, but never a first
OK), and again every `renotify` (default 12h) while it stays bad. What each recipient was last told
is kept per (key, recipient) in the state file (state.py), so a restart does not send again, and a
delivery that gave up is sent again at the next observe(): nothing lost, nothing doubled for the
recipients that did get it. observe() only queues; delivery.py's thread sends.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scraperd import logsetup
from scraperd.config import Notify
from scraperd.monitor.results import CheckResult
from scraperd.notify import routing
from scraperd.notify.channels import Mailer
from scraperd.notify.delivery import Deliveries, error_line
from scraperd.notify.message import Message, of_result
from scraperd.notify.state import StateFile

log = logsetup.get_logger("scraperd.notify")

RENOTIFY = timedelta(hours=12)


def deliveries_for(settings: Notify, section: str, *, tls: ssl.SSLContext | None = None,
                   backoff_s: float | None = None) -> Deliveries | None:
    """The delivery worker of a section's notify keys (None when `notify` is empty). Reads the SMTP
    password now: a missing secret is a ConfigError at start-up, not a failure at the first alarm."""
    unused = routing.dropped(settings)
    if unused:
        log.warning("notify_recipients_dropped", notify_section=section,
                    recipients=[routing.shown(r) for r in unused], notify=list(settings.notify),
                    action="never sent to: their channel is not in `notify`")
    if not settings.notify:
        return None
    mailer = Mailer.from_settings(settings, tls) if "email" in settings.notify else None
    return Deliveries(mailer=mailer, timeout=settings.http_timeout.total_seconds(),
                      attempts=settings.notify_attempts, backoff_s=backoff_s)


class Notifier:
    """Notifies the state changes of check results over the channels of `settings.notify`.

    tls: the SSLContext for STARTTLS (default: system CAs, or $SCRAPERD_SMTP_CAFILE); backoff_s: the
    first wait between attempts (default delivery.BACKOFF_S, 1 s).
    """

    def __init__(self, settings: Notify, section: str, *, renotify: timedelta | None = None,
                 state_path: Path | None = None, tls: ssl.SSLContext | None = None,
                 backoff_s: float | None = None) -> None:
        self.settings, self.section = settings, section
        self.renotify = renotify or getattr(settings, "renotify", None) or RENOTIFY
        self.deliveries = deliveries_for(settings, section, tls=tls, backoff_s=backoff_s)
        self.state = StateFile(state_path)
        self.lock = threading.Lock()
        self.inflight: dict[tuple[str, str], str] = {}   # (key, recipient) -> state queued, not yet landed
        self.closed = False

    def recipients(self, check: str) -> tuple[str, ...]:
        """Who hears about `check` (routing.recipients)."""
        return routing.recipients(self.settings, check)

    def observe(self, results: Iterable[CheckResult], now: datetime | None = None) -> list[Message]:
        """Record every result's state; queue and return the messages due. Returns at once, never raises."""
        now = datetime.now(UTC) if now is None else (now.replace(tzinfo=UTC) if now.tzinfo is None else now)
        try:
            return self._observe(list(results), now)
        except Exception as exc:  # the state file unreadable: the checks go on, the next round tries again
            log.error("notify_failed", error=error_line(exc), action="results not recorded; next round tries again")
            return []

    def _observe(self, results: list[CheckResult], now: datetime) -> list[Message]:
        states: dict[str, str] = {}
        messages = []
        for r in results:
            key, state = r.key, r.state.name
            previous = states[key] if key in states else self.state.state(key)
            states[key] = state
            due = tuple(to for to in self.recipients(r.check) if self._due(key, to, state, now))
            if due and previous == state:  # a change whose delivery failed, sent again: from what they were told
                told = self.state.notified(key, routing.shown(due[0]))
                previous = told[0] if told is not None and told[0] != state else previous
            if due and self.deliveries is not None:
                messages.append(of_result(r, previous, now, due))
        self.state.set_states(states, now)
        for m in messages:
            for to in m.recipients:
                self._send(m, to, now)
        return messages

    def _due(self, key: str, to: str, state: str, now: datetime) -> bool:
        """Whether `to` must hear of key's state now."""
        with self.lock:
            if self.inflight.get((key, to)) == state:
                return False  # queued already (perhaps retrying): not twice
        last = self.state.notified(key, routing.shown(to))  # the file never holds a URL's password
        if last is None:
            return state != "OK"  # a first OK is no news
        told, at = last
        return told != state or (state != "OK" and now - at >= self.renotify)

    def _send(self, m: Message, to: str, observed: datetime) -> None:
        assert self.deliveries is not None
        slot = (m.key, to)

        def done(landed: bool) -> None:
            try:
                if landed:
                    self.state.record_notified(m.key, routing.shown(to), m.state, observed)
            finally:
                with self.lock:
                    if self.inflight.get(slot) == m.state:
                        del self.inflight[slot]

        with self.lock:
            self.inflight[slot] = m.state
        self.deliveries.put(m, to, done)

    def wait(self, timeout: float = 30.0) -> bool:
        """Wait until the queued deliveries have landed or given up; True if they all did in time."""
        return self.deliveries.wait(timeout) if self.deliveries is not None else True

    def close(self, timeout: float = 30.0) -> None:
        """Wait for the queued deliveries (at most timeout s), then stop the worker and close the file."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.deliveries is not None:
                self.deliveries.close(timeout)
            self.state.close()
        except Exception as exc:
            log.error("notify_failed", error=error_line(exc), action="closing the notifier")
