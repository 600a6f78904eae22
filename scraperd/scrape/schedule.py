"""When the scraper commits and how long it sleeps. Pure: no database, no clock, no logging.

    commit order   records of all sources are committed in one order, by (sample time, source),
                   so that SEQNOs are the same however a run was cut: a record is committable only
                   once every other source has read past its sample time, or has nothing more to
                   read (committable()).
    batches        while catching up, records are committed in batches of about FLUSH_RECORDS, fewer
                   when records are big (pmthv: 192 rows each): next_flush_at().
    sleep tuning   lag = max over sources of (source head - tcursor); more than one effective
                   heartbeat behind: no sleep (catch up), else sleep one effective heartbeat
                   (tune()). An iteration that collected nothing waits at least `sleep`.
    maxiter        lifecycle.maxiter_reached(); iterations replaying empty-aggregate skips are not
                   counted (the daemon passes the counted number).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

FLUSH_RECORDS = 500      # commit a catch-up batch at this many pending records ...
FLUSH_ROWS = 20_000      # ... or this many payload rows (pmthv: 192 per record)
IDLE_WAIT_S = 0.05       # an iteration that collected nothing never spins


@dataclass(frozen=True, slots=True)
class Reading:
    """How far one source has read: the date_time of its last row stepped, and whether its last
    read found no row at all (it can propagate nothing before it reads again)."""

    last_seen: datetime | None
    idle: bool

    def past(self, t: datetime) -> bool:
        """Nothing it propagates later can be sampled before t."""
        return self.idle or (self.last_seen is not None and self.last_seen >= t)


def committable(pending: Sequence[Sequence[datetime]], readings: Sequence[Reading]) -> list[tuple[int, int]]:
    """The pending records that can be committed now, in commit order, as (source, position) pairs.

    pending[i] are the sample times of source i's uncommitted records, in order; readings[i] how far
    source i has read. Records are taken in (sample time, source) order while every other source is
    past the record's time; the first one that is not stops the batch (so the order never changes).
    """
    merged = heapq.merge(*[[(t, i, n) for n, t in enumerate(times)] for i, times in enumerate(pending)])
    chosen: list[tuple[int, int]] = []
    for t, i, n in merged:
        if not all(other == i or r.past(t) for other, r in enumerate(readings)):
            break
        chosen.append((i, n))
    return chosen


def next_flush_at(pending: int, rows_per_record: int) -> int:
    """The pending-record count at which the next catch-up batch is committed."""
    return pending + max(1, min(FLUSH_RECORDS, FLUSH_ROWS // max(rows_per_record, 1)))


@dataclass(frozen=True, slots=True)
class Tune:
    """The sleep tuning's verdict (the `tune` event): the lag, in seconds and in heartbeats, and the
    sleep between iterations it leads to."""

    maxlag: timedelta
    lag_heartbeats: float
    sleep_s: float


def tune(lags: Sequence[timedelta], effective_heartbeat: timedelta) -> Tune:
    """Sleep from the lag: 0 when more than one effective heartbeat behind, else one heartbeat.

    A tcursor runs up to one interval past the source head: a negative lag is no lag.
    """
    maxlag = max([timedelta(0), *lags])
    eff = effective_heartbeat.total_seconds() or 1.0
    lag_hb = maxlag.total_seconds() / eff
    return Tune(maxlag, lag_hb, 0.0 if lag_hb > 1 else eff)


def wait_s(collected: bool, sleep_s: float, idle_sleep_s: float) -> float:
    """The pause before the next iteration: the tuned sleep after collecting, at least the
    section's `sleep` (and never a spin) after an iteration that found nothing."""
    return sleep_s if collected else max(sleep_s, idle_sleep_s, IDLE_WAIT_S)
