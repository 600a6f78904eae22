"""`scraperd run <monitor section>`: a round of checks every `every`, under supervisord.

A check that turned bad only because a database could not be read is read again first, with the
scrapers' backoff for at most reconnect_max_wait (`db_retry` events): a restarting server is waited
out, not notified. Each round logs `monitor_round` (state, counts, elapsed_s), a `check_changed` event for every check
whose state changed since the round before (a check first seen bad counts as changed), and hands
the results to the notifier, which sends in the background: a slow or unreachable mail server never
delays the next round. Lives as every daemon does (lifecycle.serve): SIGTERM ends the wait at once;
heartbeats: reading during a round, sleeping between rounds (refreshed every few seconds), retrying
while a database that could not be read is read again.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from scraperd import config, heartbeat, lifecycle, logsetup
from scraperd.monitor.results import CheckResult, State, worst
from scraperd.monitor.rounds import Monitor, counts

log = logsetup.get_logger("scraperd.monitor")


class MonitorDaemon:
    """The lifecycle.Daemon of a monitor section; its running state is the Monitor."""

    def __init__(self, loaded: config.Loaded[config.MonitorSection], stop: threading.Event) -> None:
        self.loaded, self.stop = loaded, stop
        self.rounds = 0
        self.last: dict[str, State] = {}
        self.notifier: Any = None

    def start(self) -> Monitor:
        m = Monitor.of(self.loaded)
        if self.loaded.settings.notify and self.notifier is None:
            self.notifier = m.notifier()
        log.info("startup", sections=[w.name for w in m.sections], broken=[b[0] for b in m.broken],
                 checks=list(m.settings.checks), every_s=m.settings.every.total_seconds(),
                 notify=list(m.settings.notify))
        return m

    def loop(self, m: Monitor) -> str:
        s = m.settings
        while not self.stop.is_set():
            t0 = time.monotonic()
            heartbeat.beat("reading")
            results = self._confirmed(m, m.round())
            self.rounds += 1
            self._log(results, time.monotonic() - t0)
            if self.notifier is not None:
                self.notifier.observe(results)
            if lifecycle.maxiter_reached(s.maxiter, self.rounds):
                return "maxiter"
            if lifecycle.pause(self.stop, s.every.total_seconds()):
                break
        return lifecycle.signal_name(self.stop)

    def _confirmed(self, m: Monitor, results: list[CheckResult]) -> list[CheckResult]:
        """The round's results, read again while a check turned bad only because a database could not be
        read: with the scrapers' backoff (0.5 s doubling, capped) for at most reconnect_max_wait in all,
        so a server restarting is waited out (`db_retry` events) instead of notified twice."""
        budget = m.settings.reconnect_max_wait.total_seconds()
        waited, attempt = 0.0, 0
        while True:
            news = [r for r in results if r.unreadable and r.state is not State.OK and self.last.get(r.key) is not r.state]
            if not news or waited >= budget:
                return results
            attempt += 1
            wait = min(0.5 * 2 ** (attempt - 1), budget - waited)
            log.warning("db_retry", db="monitor", attempt=attempt, wait_s=round(wait, 1), checks=len(news),
                        error=news[0].summary)
            if lifecycle.pause(self.stop, wait, "retrying"):
                return results
            waited += wait
            results = m.round()

    def _log(self, results: list[CheckResult], elapsed: float) -> None:
        for r in results:
            before = self.last.get(r.key)
            if before is not r.state and (before is not None or r.state is not State.OK):
                level = {State.OK: log.info, State.WARNING: log.warning}.get(r.state, log.error)
                level(
                    "check_changed", check=r.check, state=r.state.name,
                    previous_state=before.name if before is not None else None, summary=r.summary, section=r.section,
                    table=r.table, context=r.context)
            self.last[r.key] = r.state
        log.info("monitor_round", round=self.rounds, state=worst(r.state for r in results).name,
                 **counts(results), elapsed_s=round(elapsed, 2))

    def counts(self) -> dict[str, int]:
        return {"rounds": self.rounds}

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close(timeout=10.0)
            self.notifier = None


def run(loaded: config.Loaded[config.MonitorSection]) -> int:
    return lifecycle.serve(loaded, lambda stop: MonitorDaemon(loaded, stop), log)
