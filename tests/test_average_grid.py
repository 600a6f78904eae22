"""The averager's pure core (averager/grid.py), property-tested without a database.

Times are naive local times of the source, as the DCS writes them; records are UTC. Europe/Paris
has DST days (23 and 25 hours), Asia/Shanghai none: both are drawn, and times near Paris's
transitions are drawn often.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from scraperd.averager import grid
from scraperd.averager.queries import BIN
from scraperd.dbi.reader import VldRow
from scraperd.scrape.sampling import to_local, to_utc
from scraperd.scrape.source import EPOCH_GUARD

DAY = timedelta(days=1)
RELAXED = settings(deadline=None)  # a shared, loaded machine: slowness is not what these test
SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONES = st.sampled_from([ZoneInfo("Europe/Paris"), SHANGHAI])
BINSIZES = [timedelta(seconds=s) for s in (1, 60, 600, 900, 3600, 5400, 7200, 6 * 3600, 12 * 3600, 86400, 2 * 86400)]


def valid(size: timedelta) -> bool:
    """As config.AveragerSection: divides a day or is whole days."""
    return DAY % size == timedelta(0) or size % DAY == timedelta(0)


@st.composite
def sizes(draw: st.DrawFn) -> tuple[timedelta, timedelta]:
    """(binsize, territory) as config accepts them: territory a whole multiple of binsize."""
    binsize = draw(st.sampled_from(BINSIZES))
    return binsize, binsize * draw(st.sampled_from([k for k in range(1, 49) if valid(binsize * k)]))


def last_sunday(year: int, month: int) -> date:
    end = date(year, month, 31)
    return end - timedelta(days=(end.weekday() + 1) % 7)


@st.composite
def local_times(draw: st.DrawFn) -> datetime:
    """Whole-second local times from 1971 on, often within a day of a Paris DST transition."""
    if draw(st.booleans()):
        return draw(st.datetimes(datetime(1971, 1, 1), datetime(2037, 12, 31))).replace(microsecond=0)
    day = last_sunday(draw(st.integers(1997, 2036)), draw(st.sampled_from([3, 10])))
    return datetime.combine(day, time(2)) + timedelta(seconds=draw(st.integers(-86400, 86400)))


def on_grid(t: datetime, size: timedelta) -> bool:
    """t falls on a multiple of size counted from local midnight (sizes of whole days: from 1970-01-01)."""
    midnight = datetime.combine(t.date(), time())
    if size <= DAY:
        return (t - midnight) % size == timedelta(0)
    return t == midnight and (t - datetime(1970, 1, 1)) % size == timedelta(0)


def exists(t: datetime, tz: ZoneInfo) -> bool:
    """Not inside a spring-forward gap (which a DST-keeping DCS clock never writes)."""
    return to_local(to_utc(t, tz), tz) == t


def record(first: datetime, last: datetime, tz: ZoneInfo) -> VldRow:
    """The validity record the averager writes for a group of rows from first to last (local)."""
    start, end = grid.validity(first, last, tz)
    return VldRow(seqno=1, timestart=start, timeend=end, sitemask=1, simmask=1, subsite=1, task=0,
                  aggregateno=-1, versiondate=start, insertdate=start)


@RELAXED
@given(t=local_times(), size=st.sampled_from(BINSIZES))
def test_a_bin_holds_its_time_and_starts_on_the_midnight_grid(t, size):
    lo = grid.bin_floor(t, size)
    assert lo <= t < lo + size
    assert on_grid(lo, size)


@RELAXED
@given(start=local_times(), length=st.integers(0, 50), sizes=sizes(), rest=st.floats(0, 1))
def test_territory_bins_tile_start_to_end_cut_only_on_the_territory_grid(start, length, sizes, rest):
    _, territory = sizes
    end = start + length * territory + rest * territory
    bins = grid.territory_bins(start, end, territory)
    if start >= end:
        assert bins == []
        return
    assert bins[0][0] == start and bins[-1][1] == end
    assert all(a[1] == b[0] for a, b in pairwise(bins)), "no gap, no overlap"
    assert all(lo < hi for lo, hi in bins)
    assert all(on_grid(edge, territory) for _, edge in bins[:-1]), "cut only on the territory grid"
    assert all(grid.bin_floor(lo, territory) + territory >= hi for lo, hi in bins), "one territory bin each"


@RELAXED
@given(tz=ZONES, t=local_times(), size=st.sampled_from(BINSIZES), rows=st.lists(st.integers(0, 10**6), max_size=3))
def test_resuming_after_a_bins_record_starts_at_the_next_bin(tz, t, size, rows):
    # the group's rows are anywhere in the bin; its record written, the next run starts one bin on:
    # it neither averages that bin again nor skips the one after it
    lo = grid.bin_floor(t, size)
    times = sorted({t, *(lo + (size - timedelta(seconds=1)) * (r / 10**6) for r in rows)})
    times = [x.replace(microsecond=0) for x in times]
    assume(all(exists(x, tz) for x in times))
    last = record(times[0], times[-1], tz)
    assert last.timestart < last.timeend
    assert grid.resume_start(last.timestart, tz, size) == lo + size


@st.composite
def source_bins(draw: st.DrawFn) -> tuple[timedelta, timedelta, list[list[tuple[datetime, datetime]]]]:
    """Each source's territory bins as the daemon plans them: from a bin start to a bin start."""
    binsize, territory = draw(sizes())
    base = grid.bin_floor(draw(local_times()), territory)
    per_source = []
    for _ in range(draw(st.integers(1, 3))):
        start = base + binsize * draw(st.integers(0, 3 * (territory // binsize)))
        end = start + binsize * draw(st.integers(0, 4 * (territory // binsize)))
        per_source.append(grid.territory_bins(start, end, territory))
    return binsize, territory, per_source


@RELAXED
@given(plan=source_bins(), data=st.data())
def test_cells_and_in_order_write_every_sources_bins_once_in_bin_then_source_order(plan, data):
    binsize, territory, per_source = plan
    cells = grid.cells(per_source, territory)
    units = [u for cell in cells for u in cell]
    assert sorted((u.source, u.n, u.lo, u.hi) for u in units) == sorted(
        (s, n, lo, hi) for s, bins in enumerate(per_source) for n, (lo, hi) in enumerate(bins, start=1))
    assert [c[0].cell for c in cells] == sorted({c[0].cell for c in cells}), "cells in time, each once"
    for cell in cells:
        assert all(grid.bin_floor(u.lo, territory) == u.cell for u in cell)
        assert [u.source for u in cell] == sorted({u.source for u in cell}), "sources in order within a cell"
    # the queries' groups (some bins have no rows): each a bin index counted from its query's lo
    results = [[(u, [{BIN: i} for i in sorted(data.draw(st.sets(st.integers(0, (u.hi - u.lo) // binsize - 1))))])
                for u in cell] for cell in cells]
    written = [(u.lo + g[BIN] * binsize, u.source) for cell in results for u, g in grid.in_order(cell, binsize)]
    expected = sorted((u.lo + g[BIN] * binsize, u.source) for cell in results for u, groups in cell for g in groups)
    assert written == expected, "every (bin, source) once, in (bin, source) order across cells"


@st.composite
def starts(draw: st.DrawFn) -> dict:
    """A start-up: the last record (of this binsize or a larger one) or none, timefloor, seed_timestart."""
    tz = draw(ZONES)
    binsize, territory = draw(sizes())
    optional = st.one_of(st.none(), local_times())
    last = last_row = None
    if draw(st.booleans()):
        first = draw(local_times())
        lo = grid.bin_floor(first, binsize)
        # a larger binsize's record may end bins later; this binsize's ends inside its bin
        spans = draw(st.sampled_from([0, 0, 1, 2]))
        end = lo + binsize * (spans + 1) - timedelta(seconds=1)
        if draw(st.booleans()):
            last_row = (first + (end - first) * draw(st.floats(0, 1))).replace(microsecond=0)
        else:  # at a bin edge of this binsize, or a second either side of it
            edge = lo + binsize * draw(st.integers(1, spans + 1)) + timedelta(seconds=draw(st.integers(-1, 1)))
            last_row = max(first, min(end, edge))
        assume(exists(first, tz) and exists(last_row, tz))
        last = record(first, last_row, tz)
    return {"tz": tz, "binsize": binsize, "territory": territory, "last": last, "last_row": last_row,
            "timefloor": draw(optional), "seed": draw(optional)}


LAST_ROW = datetime(2011, 2, 1, 14, 0, 1)  # one second into the bin after a 2h bin's first hour: warned


@RELAXED
@example(s={"tz": SHANGHAI, "binsize": timedelta(hours=1), "territory": DAY, "timefloor": None, "seed": None,
            "last": record(datetime(2011, 2, 1, 13, 10), LAST_ROW, SHANGHAI), "last_row": LAST_ROW},
         first_after=None, head_after=None)
@given(s=starts(), first_after=st.one_of(st.none(), st.integers(0, 10**7)),
       head_after=st.one_of(st.none(), st.floats(0, 60)))
def test_the_planner_averages_the_complete_bins_after_the_last_record_from_the_first_row_that_counts(
        s, first_after, head_after):
    tz, binsize, last = s["tz"], s["binsize"], s["last"]
    resume = grid.resume(last, s["timefloor"], s["seed"], tz, binsize)
    floor = max(EPOCH_GUARD, s["timefloor"] or EPOCH_GUARD)
    if last is None and s["seed"] is not None:
        floor = max(floor, s["seed"])  # seed_timestart counts only for an empty context
    assert resume.floor == floor
    assert resume.at >= resume.floor
    if last is not None:
        written = grid.bin_floor(to_local(last.timestart, tz), binsize)
        assert resume.at >= written + binsize, "the last record's bin is never averaged again"
        if resume.floor <= written + binsize:
            assert resume.at == written + binsize, "nor is the bin after it skipped"
        # a record of a larger binsize reaches into the bin this run starts with: warned, appended anyway
        assert resume.spans_bins == (s["last_row"] - timedelta(seconds=1) >= resume.at)
    else:
        assert resume.at == resume.floor and not resume.spans_bins

    # the source: the first row that counts at or after resume.at, the latest row (head) later still
    first = None if first_after is None else resume.at + timedelta(seconds=first_after)
    head = None if head_after is None or first is None else first + s["territory"] * head_after
    territory = grid.territory(first, head, binsize, s["territory"])
    if first is None:
        assert territory.start is None and territory.bins == ()
        return
    assert territory.start == grid.bin_floor(first, binsize), "the first row's bin is averaged"
    if head is None or territory.start >= grid.bin_floor(head, binsize):
        assert territory.bins == ()
        return
    assert territory.bins[0][0] == territory.start
    assert territory.bins[-1][1] == grid.bin_floor(head, binsize), "every complete bin, the head's left for later"
    assert all(a[1] == b[0] for a, b in pairwise(territory.bins))
