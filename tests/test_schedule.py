"""The scraper's commit order and sleep rule (scrape/schedule.py) on their own: no database, no clock.

committable() is checked against the rule it implements, stated the slow way: take records in
(sample time, source) order while every other source has read past the record's time or is idle.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from scraperd.scrape import schedule
from scraperd.scrape.schedule import Reading

T0 = datetime(2011, 2, 1)


def at(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


@st.composite
def sources(draw: st.DrawFn) -> tuple[list[list[datetime]], list[Reading]]:
    """Per source: its pending sample times (ascending) and how far it has read (at or after them)."""
    n = draw(st.integers(1, 4))
    pending, readings = [], []
    for _ in range(n):
        times = sorted(draw(st.lists(st.integers(0, 50), max_size=6, unique=True)))
        pending.append([at(t) for t in times])
        last = draw(st.one_of(st.none(), st.integers(times[-1] if times else 0, 60)))
        readings.append(Reading(None if last is None else at(last), draw(st.booleans())))
    return pending, readings


def slow_rule(pending: list[list[datetime]], readings: list[Reading]) -> list[tuple[int, int]]:
    order = sorted((t, i, n) for i, times in enumerate(pending) for n, t in enumerate(times))
    out = []
    for t, i, n in order:
        others_past = all(j == i or r.idle or (r.last_seen is not None and r.last_seen >= t)
                          for j, r in enumerate(readings))
        if not others_past:
            break
        out.append((i, n))
    return out


@given(sources())
def test_committable_takes_records_in_time_then_source_order_while_every_other_source_is_past(case):
    pending, readings = case
    chosen = schedule.committable(pending, readings)
    assert chosen == slow_rule(pending, readings)
    for i in range(len(pending)):  # per source a prefix of its records: nothing committed out of order
        assert [n for j, n in chosen if j == i] == list(range(sum(1 for j, _ in chosen if j == i)))


@given(sources())
def test_with_every_source_idle_everything_pending_is_committable(case):
    pending, readings = case
    idle = [Reading(r.last_seen, True) for r in readings]
    assert len(schedule.committable(pending, idle)) == sum(map(len, pending))


def test_a_source_that_has_not_read_past_a_record_holds_it_back():
    pending = [[at(10), at(20)], []]
    readings = [Reading(at(20), False), Reading(at(15), False)]  # the second source is at 15
    assert schedule.committable(pending, readings) == [(0, 0)]
    assert schedule.committable(pending, [readings[0], Reading(None, False)]) == []


@given(lags=st.lists(st.integers(-100, 100).map(lambda s: timedelta(seconds=s)), max_size=4),
       heartbeat=st.integers(0, 30).map(lambda s: timedelta(seconds=s)))
def test_the_scraper_sleeps_one_heartbeat_unless_more_than_one_heartbeat_behind(lags, heartbeat):
    tune = schedule.tune(lags, heartbeat)
    eff = heartbeat.total_seconds() or 1.0
    assert tune.maxlag == max([timedelta(0), *lags])  # ahead of the head is no lag
    assert tune.lag_heartbeats == tune.maxlag.total_seconds() / eff
    assert tune.sleep_s == (0.0 if tune.maxlag.total_seconds() > eff else eff)


@given(pending=st.integers(0, 5000), rows=st.integers(0, 500))
def test_a_catch_up_batch_is_at_least_one_record_and_at_most_flush_records_or_flush_rows(pending, rows):
    size = schedule.next_flush_at(pending, rows) - pending
    assert 1 <= size <= schedule.FLUSH_RECORDS
    assert size * max(rows, 1) <= schedule.FLUSH_ROWS or size == 1


@given(collected=st.booleans(), sleep_s=st.floats(0, 10), idle_sleep=st.floats(0, 10))
def test_an_iteration_that_found_nothing_never_spins(collected, sleep_s, idle_sleep):
    wait = schedule.wait_s(collected, sleep_s, idle_sleep)
    if collected:
        assert wait == sleep_s
    else:
        assert wait >= max(sleep_s, idle_sleep, schedule.IDLE_WAIT_S)
