"""Progress of long work: a bar on a terminal, `progress` events under supervisord.

Counts units done of a total (the averager's territory bins) and rows, and from them rows per
second and the ETA. On a terminal the bar is redrawn on stderr a few times a second; otherwise a
`progress` event (done, total, rows_per_s, eta_s) is logged every PROGRESS_EVERY_S seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from scraperd import logsetup

log = logsetup.get_logger("scraperd.progress")

PROGRESS_EVERY_S = 5.0     # `progress` events when the stream is not a terminal
BAR_EVERY_S = 0.2          # bar redraws on a terminal


class Progress:
    """Territory bins done of total, aggregated rows per second and the ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, *, unit: str = "bins", event: str = "progress") -> None:
        self.total, self.done, self.rows = total, 0, 0
        self.unit, self.event = unit, event
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.last = time.monotonic()
        self.drawn = False

    def advance(self, rows: int, units: int = 1) -> None:
        self.done += units
        self.rows += rows
        now = time.monotonic()
        every = BAR_EVERY_S if self.tty else PROGRESS_EVERY_S
        if now - self.last >= every or (self.tty and self.done == self.total):
            self.last = now
            self.report(now)

    def _rates(self, now: float) -> tuple[float, float | None]:
        elapsed = max(now - self.t0, 1e-9)
        eta = (self.total - self.done) * elapsed / self.done if self.done else None
        return self.rows / elapsed, eta

    def report(self, now: float) -> None:
        rate, eta = self._rates(now)
        if not self.tty:
            log.info(self.event, done=self.done, total=self.total, rows_per_s=round(rate),
                     eta_s=None if eta is None else round(eta, 1))
            return
        width = 30
        pct = 100 * self.done // max(self.total, 1)
        filled = width * self.done // max(self.total, 1)
        eta_text = "-:--:--" if eta is None else f"{int(eta) // 3600}:{int(eta) % 3600 // 60:02d}:{int(eta) % 60:02d}"
        # \r before and after: a log line printed next starts at column 0 and overwrites the bar
        self.stream.write(f"\r\x1b[K[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.unit} {pct}%"
                          f"  {rate:,.0f} rows/s  ETA {eta_text}\r")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.tty and self.drawn:
            self.report(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
