"""The checks of the targets and the sources, judged from what `scraperd status` reads.

    fleet = status.compute.collect(cfg, names, supervisor_conf, dbs, now)
    freshness(fleet, watched, monitor, now)   per (table, context) of every scraper: is it updated?
    sources(fleet, watched, monitor, now)     per DCS table: is the DCS still writing?

Freshness of a scraper's context compares the age of its last record (INSERTDATE: when it was
written; TIMEEND: up to when its data reach) with the section's stale_after:

    both within stale_after                               OK
    written lately, but its data end long ago             WARNING  catching up
    nothing written for longer, source also silent        WARNING  up to date with a source that stopped
                                                                   (the source check, routed to the DCS
                                                                   experts, is the CRITICAL one)
    nothing written for longer                            CRITICAL stale: the scraper is not writing
    no record at all, or the target cannot be read        CRITICAL

A source is CRITICAL when its newest date_time (in its source_tz) is older than source_stale_after,
when it has no row, or when it cannot be read. Times are compared in UTC, as DBI holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scraperd import config, preflight
from scraperd.config import format_value
from scraperd.monitor.results import CheckResult, State, context_text
from scraperd.scrape import sampling
from scraperd.status.results import ContextStatus, FleetStatus, SectionStatus, SourceHead


@dataclass(frozen=True)
class Watched:
    """A section the monitor watches: its validated settings and, for a scraper or averager, its table."""

    loaded: config.Loaded
    table: str | None = None

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def settings(self) -> config.Section:
        return self.loaded.settings


def watched(loaded: config.Loaded) -> Watched:
    """A validated section as the monitor watches it (its target table read from its spec)."""
    s = loaded.settings
    if isinstance(s, config.TargetCommon):
        return Watched(loaded, preflight.target_spec(loaded, s.regime_cls).table)
    return Watched(loaded)


def stale_after(s: config.ScraperSection, monitor: config.MonitorSection) -> timedelta:
    """The scraper's own stale_after, else the monitor's, else derived from maxage and heartbeat."""
    return s.stale_after or monitor.stale_after or s.derived_stale_after()


def age(now: datetime, then: datetime) -> str:
    """A duration as `1:05:00`, never negative (a clock ahead counts as now)."""
    return str(max(now - then, timedelta(0))).split(".")[0]


def _context(row: ContextStatus, s: config.TargetCommon) -> str:
    return context_text({"sitemask": row.sitemask, "subsite": row.subsite, "simmask": s.simmask, "task": s.task})


def _judge_record(row: ContextStatus, stale: timedelta, tz: sampling.ZoneInfo,
                  now: datetime) -> tuple[State, str]:
    """State and summary of a context that has a last record."""
    assert row.insertdate is not None and row.timeend is not None
    written, ends = now - row.insertdate, now - row.timeend
    limit = f"stale_after {format_value(stale)}"
    facts = f"SEQNO {row.seqno} inserted {age(now, row.insertdate)} ago, data end {age(now, row.timeend)} ago"
    if written <= stale and ends <= stale:
        return State.OK, f"updated: {facts}"
    if written <= stale:
        return State.WARNING, f"catching up: {facts} ({limit})"
    head_utc = sampling.to_utc(row.head, tz) if row.head is not None else None
    if head_utc is not None and now - head_utc > stale and row.lag_s is not None and row.lag_s <= stale.total_seconds():
        return State.WARNING, (f"up to date with its source, which has written nothing for {age(now, head_utc)}: "
                               f"{facts} ({limit}; see the source check)")
    return State.CRITICAL, f"stale: no record inserted for {age(now, row.insertdate)} ({limit}); {facts}"


def freshness_of(entry: SectionStatus, w: Watched, monitor: config.MonitorSection,
                 now: datetime) -> list[CheckResult]:
    """One result per source context of a scraper section."""
    s = w.settings
    assert isinstance(s, config.ScraperSection)
    stale = stale_after(s, monitor)
    out = []
    for row in entry.sources:
        if not isinstance(row, ContextStatus):
            continue
        unreadable = row.insertdate is None and row.error is not None
        if row.insertdate is not None:
            state, summary = _judge_record(row, stale, s.source_tz, now)
        else:
            state, summary = State.CRITICAL, f"cannot tell: {row.error or 'no validity record yet'}"
        details = (f"source {row.source}, target {config_name(s.target)}, lag {row.lag_s}s, "
                   f"head (local) {s.fmt(row.head)}; last record TIMESTART {s.fmt(row.timestart)} "
                   f"TIMEEND {s.fmt(row.timeend)} INSERTDATE {s.fmt(row.insertdate)} (UTC)")
        out.append(CheckResult(check="freshness", state=state, summary=summary, details=details, section=w.name,
                               table=w.table, context=_context(row, s), unreadable=unreadable))
    for error in entry.errors:
        out.append(CheckResult(check="freshness", state=State.CRITICAL, summary=f"cannot tell: {error}",
                               section=w.name, table=w.table, unreadable=True))
    return out


def freshness(fleet: FleetStatus, sections: Sequence[Watched], monitor: config.MonitorSection,
              now: datetime) -> list[CheckResult]:
    """The "table updates" check: every scraper target, per (table, context)."""
    by_name = {e.section: e for e in fleet.sections}
    return [r for w in sections if isinstance(w.settings, config.ScraperSection) and w.name in by_name
            for r in freshness_of(by_name[w.name], w, monitor, now)]


def config_name(name: str) -> str:
    """A database as results name it: its config name, a URL without its password."""
    from scraperd import databases

    return databases.describe_text(name)


@dataclass
class _Head:
    """One DCS table as the watched sections see it."""

    source: str        # the database (config name)
    table: str
    tz: sampling.ZoneInfo
    head: datetime | None
    error: str | None
    stale: timedelta
    sections: list[str]


def _source_stale(s: config.Section, monitor: config.MonitorSection) -> timedelta:
    if monitor.source_stale_after is not None:
        return monitor.source_stale_after
    if isinstance(s, config.ScraperSection):
        return stale_after(s, monitor)
    assert isinstance(s, config.Common)
    return max(20 * max(s.interval, s.sleep), timedelta(minutes=5))  # a faker, an averager: no heartbeat


def _heads(fleet: FleetStatus, sections: Sequence[Watched], monitor: config.MonitorSection) -> list[_Head]:
    """Every DCS table the watched sections read, once (the smallest stale limit of its readers)."""
    by_name = {e.section: e for e in fleet.sections}
    heads: dict[tuple[str, str], _Head] = {}
    for w in sections:
        s, entry = w.settings, by_name.get(w.name)
        if entry is None or not isinstance(s, config.Common):
            continue
        for row in entry.sources:
            assert isinstance(row, ContextStatus | SourceHead)
            head = row.head
            error = row.error if isinstance(row, SourceHead) or row.head is None else None
            found = heads.setdefault((s.source, row.source), _Head(
                config_name(s.source), row.source, s.source_tz, head, error, _source_stale(s, monitor), []))
            found.sections.append(w.name)
            found.stale = min(found.stale, _source_stale(s, monitor))
            if head is not None and (found.head is None or head > found.head):
                found.head, found.error = head, None
    return list(heads.values())


def sources(fleet: FleetStatus, sections: Sequence[Watched], monitor: config.MonitorSection,
            now: datetime) -> list[CheckResult]:
    """Is the DCS still writing? One result per source table: its head against now in source_tz."""
    out = []
    for h in _heads(fleet, sections, monitor):
        limit = f"source_stale_after {format_value(h.stale)}"
        unreadable = h.head is None and h.error is not None
        if h.head is None:
            state, summary = State.CRITICAL, f"cannot tell: {h.error or 'no rows'}"
        else:
            head_utc = sampling.to_utc(h.head, h.tz)
            stale = now - head_utc > h.stale
            state = State.CRITICAL if stale else State.OK
            summary = (f"{'silent' if stale else 'writing'}: newest date_time {h.head:%Y-%m-%d %H:%M:%S} "
                       f"({h.tz.key}), {age(now, head_utc)} ago ({limit})")
        out.append(CheckResult(check="source", state=state, summary=summary, section=h.sections[0], table=h.table,
                               details=f"DCS database {h.source}, read by {', '.join(h.sections)}", unreadable=unreadable))
    return out
