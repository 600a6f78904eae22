"""The averager's grid: which bins to average, cut how, in what order. Pure: no database, no clock, no logging.

Bins and territory bins are cut from one grid of naive local time starting at GRID_ORIGIN; a
territory cell is one territory bin of every source, taken together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from scraperd.averager.queries import BIN
from scraperd.scrape.sampling import to_local, to_utc
from scraperd.scrape.source import EPOCH_GUARD

if TYPE_CHECKING:
    from scraperd.dbi.reader import VldRow

GRID_ORIGIN = datetime(1970, 1, 1)  # naive local: every bin and territory bin is cut from this grid
ONE_SECOND = timedelta(seconds=1)


def bin_floor(t: datetime, size: timedelta) -> datetime:
    """The start of the grid bin of `size` holding t (naive local time)."""
    return GRID_ORIGIN + ((t - GRID_ORIGIN) // size) * size


def territory_bins(start: datetime, end: datetime, territory: timedelta) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the territory grid: one (lo, hi) per grouped query."""
    out: list[tuple[datetime, datetime]] = []
    if start >= end:
        return out
    tb = bin_floor(start, territory)
    while tb < end:
        out.append((max(tb, start), min(tb + territory, end)))
        tb += territory
    return out


def resume_start(last_timestart: datetime, tz: ZoneInfo, binsize: timedelta) -> datetime:
    """The first bin not yet written: the one after the bin of the last record's TIMESTART (UTC)."""
    return bin_floor(to_local(last_timestart, tz), binsize) + binsize


def validity(first: datetime, last: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[min, max] date_time of a group in UTC, whole seconds; one second long when min = max."""
    start = to_utc(first, tz).replace(microsecond=0)
    end = to_utc(last, tz).replace(microsecond=0)
    return start, max(end, start + ONE_SECOND)


@dataclass(frozen=True)
class Resume:
    """Where one source's averaging picks up: after its context's last record, else at the floor."""

    floor: datetime       # rows before it are never averaged (local): 1971, timefloor, seed_timestart
    at: datetime          # the territory starts at the bin of the first row at or after it that counts
    spans_bins: bool      # the last record is longer than one bin: written with a larger binsize


def resume(last: VldRow | None, timefloor: datetime | None, seed_timestart: datetime | None, tz: ZoneInfo,
           binsize: timedelta) -> Resume:
    """Where to resume after the last record (UTC), or from timefloor / seed_timestart / 1971 without one."""
    floor = max(EPOCH_GUARD, timefloor or EPOCH_GUARD)
    if last is None:
        floor = max(floor, seed_timestart) if seed_timestart is not None else floor
        return Resume(floor, floor, spans_bins=False)
    at = max(resume_start(last.timestart, tz, binsize), floor)
    return Resume(floor, at, spans_bins=to_local(last.timeend - ONE_SECOND, tz) >= at)


@dataclass(frozen=True)
class Territory:
    """One source's territory in this run: its complete bins, cut at the territory grid."""

    start: datetime | None                         # the bin of the first row that counts (local)
    bins: tuple[tuple[datetime, datetime], ...]    # (lo, hi): one grouped query each


def territory(first: datetime | None, head: datetime | None, binsize: timedelta, size: timedelta) -> Territory:
    """From the bin of the first row that counts to the bin holding the source's last row (head), which
    is left out: rows may still arrive in it."""
    start = bin_floor(first, binsize) if first is not None else None
    end = bin_floor(head, binsize) if head is not None else None
    bins = territory_bins(start, end, size) if start is not None and end is not None else []
    return Territory(start, tuple(bins))


@dataclass(frozen=True)
class Unit:
    """One source's part of one territory cell: one grouped query, one `sample` event."""

    cell: datetime    # the start of the territory grid cell (local)
    source: int       # the source's place in the regime: breaks ties in the order
    n: int            # the territory bin's number among this source's, from 1
    lo: datetime      # a bin start
    hi: datetime


def cells(bins_per_source: Sequence[Sequence[tuple[datetime, datetime]]],
          territory: timedelta) -> list[list[Unit]]:
    """Every source's territory bins, by cell of the territory grid (in time), sources in order within one."""
    by_cell: dict[datetime, list[Unit]] = {}
    for source_index, bins in enumerate(bins_per_source):
        for n, (lo, hi) in enumerate(bins, start=1):
            cell = bin_floor(lo, territory)
            by_cell.setdefault(cell, []).append(Unit(cell, source_index, n, lo, hi))
    return [by_cell[c] for c in sorted(by_cell)]


def in_order(results: Sequence[tuple[Unit, Sequence[Mapping[Any, Any]]]],
             binsize: timedelta) -> list[tuple[Unit, Mapping[Any, Any]]]:
    """One cell's groups in the order they are written: by bin, then by source."""
    keyed = [((u.lo + int(g[BIN]) * binsize, u.source), u, g) for u, groups in results for g in groups]
    keyed.sort(key=lambda k: k[0])  # stable, and no two groups share a key
    return [(u, g) for _, u, g in keyed]
