"""Decide, row by row, when a change in the source becomes a validity record.

Pure: no database, no clock, no logging. The shell (daemon.py) feeds source rows in
(date_time, id) order; this module says which rows are collected into the source vector, what
state the vector is in, and where the time cursor moves after a propagation.

The source vector `sv` holds at most two instances: sv[0], the last propagated (or first collected)
row, and sv[-1], the latest. Each collection takes "the next entry": the first row with
date_time >= tcursor beyond the entries already seen, after skipping `offset` rows.

Rules that make the output depend on the source only, never on when or how often we ran:

- The state after a propagation is (tcursor, sv[0]) and nothing else; both are recoverable from the
  last validity record (TIMEEND gives tcursor, TIMESTART finds sv[0]): resume() rebuilds it.
- Times are converted once: validity start = sv[-1].date_time (local) in UTC; end = start + interval,
  in UTC; tcursor = that end back in local time. Start-up does the same conversion of TIMEEND.
- Rows whose date_time equals an already seen one (true duplicates, or the repeated hour of an
  autumn DST change) are ignored; the first by id counts. Restoring sv[0] takes the first by id.
- A row that appears after the run read past its date_time is never read, though a rebuild reads
  it; missed() tells such a late row from one still ahead or one a rebuild skips too (late.py
  reports it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo


class SourceRow(dict):  # type: ignore[type-arg]
    """One source instance: its columns by name (a dict), plus id, date_time (local) and aggregates.

    A dict subclass because regimes read many columns of every row while catching up.
    """

    __slots__ = ("id", "date_time", "aggd")

    def __init__(self, values: Any = (), aggd: Mapping[str, Any] | None = None) -> None:
        super().__init__(values)
        self.id: int = self["id"]
        self.date_time: datetime = self["date_time"]
        self.aggd = aggd

    def __getattr__(self, key: str) -> Any:  # sv[0].L1C1R1, as the manual's regimes write it
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def with_aggd(self, aggd: Mapping[str, Any] | None) -> SourceRow:
        return SourceRow(self, aggd)

    def __repr__(self) -> str:
        return f"SourceRow(id={self.id}, date_time={self.date_time})"


Fullness = Literal["partial", "full"]
SvState = Literal["notfull", "unchanged", "changed", "overage"]


@dataclass(frozen=True, slots=True)
class Sampler:
    """The sampling state of one source."""

    tcursor: datetime                      # local time: nothing before it is of interest
    sv: tuple[SourceRow, ...]              # () or (sv0,) or (sv0, sv_latest)
    offset: int                            # rows skipped between collections
    skip: int                              # rows still to skip before the next collection
    last_seen: datetime | None = None      # date_time of the last row stepped at or after tcursor
    n: int = 0                             # samples collected since start-up

    @property
    def full(self) -> bool:
        """Two instances: the regime's changed() can compare them."""
        return len(self.sv) == 2


@dataclass(frozen=True, slots=True)
class Sample:
    """What one collection looked like: the manual's SV line."""

    n: int
    sv: tuple[SourceRow, ...]
    tcursor: datetime
    state: SvState

    @property
    def fullness(self) -> Fullness:
        return "partial" if self.state == "notfull" else "full"

    @property
    def proceed(self) -> bool:
        """Propagate: the vector changed or grew older than maxage."""
        return self.state in ("changed", "overage")

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.sv]

    @property
    def range(self) -> list[datetime | None]:
        return [self.sv[0].date_time, self.sv[-1].date_time if len(self.sv) > 1 else None]


Ignored = Literal["before_tcursor", "duplicate_date_time", "already_seen", "skipped"]


def resume(tcursor: datetime, sv0: SourceRow | None, offset: int) -> Sampler:
    """The state implied by the last validity record; every start-up begins here."""
    return Sampler(tcursor=tcursor, sv=(sv0,) if sv0 is not None else (), offset=offset, skip=offset,
                   last_seen=sv0.date_time if sv0 is not None else None)


def step(state: Sampler, row: SourceRow) -> tuple[Sampler, bool, Ignored | None]:
    """Feed one row (in date_time, id order): (new state, collected?, why it was ignored)."""
    dt = row.date_time
    if dt is not None and dt == state.last_seen:  # named first: a twin is worth a warning wherever it falls
        return state, False, "duplicate_date_time"
    if dt is None or dt < state.tcursor:
        return state, False, "before_tcursor"
    if state.last_seen is not None and dt < state.last_seen:
        return state, False, "already_seen"
    # Sampler(...) rather than dataclasses.replace(): this runs once per source row while catching up
    if state.skip > 0:
        return Sampler(state.tcursor, state.sv, state.offset, state.skip - 1, dt, state.n), False, "skipped"
    sv = (state.sv[0], row) if state.sv else (row,)
    return Sampler(state.tcursor, sv, state.offset, state.offset, dt, state.n + 1), True, None


def missed(state: Sampler, read_to: datetime | None, dt: datetime) -> bool:
    """Whether a row dated dt that this run has not read never will be, although a rebuild from the
    source would read it: a late row.

    read_to is the latest date_time already read from the source, rows not yet stepped included (the
    read buffer); the run goes on from max(tcursor, just after max(last_seen, read_to)). A row before
    tcursor in the gap after sv[0] (tcursor = sv[0] + interval after a propagation), or before a
    tcursor that no row was collected after yet, is skipped by a rebuild too; one dated exactly at the
    last row read is its ignored twin. A row in the gap after an earlier propagation counts as missed
    (the state does not remember old gaps), though a rebuild skips it as well.
    """
    read = [t for t in (state.last_seen, read_to) if t is not None]
    if dt >= state.tcursor and all(dt > t for t in read):
        return False  # still ahead: read in order
    if dt in read:
        return False
    if dt < state.tcursor:
        gap_from = state.sv[0].date_time if state.sv and state.sv[0].date_time < state.tcursor else None
        return gap_from is not None and dt < gap_from
    return True


def judge(state: Sampler, changed: bool, maxage: timedelta) -> Sample:
    """The sample after a collection: notfull (partial), or full and unchanged/changed/overage."""
    if len(state.sv) < 2:
        return Sample(state.n, state.sv, state.tcursor, "notfull")
    if changed:
        verdict: SvState = "changed"
    elif state.sv[-1].date_time - state.sv[0].date_time > maxage:  # strictly: exactly maxage waits
        verdict = "overage"
    else:
        verdict = "unchanged"
    return Sample(state.n, state.sv, state.tcursor, verdict)


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A naive local DCS time as naive UTC (DCS DATETIMEs are local time; DBI is UTC)."""
    return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def to_local(utc: datetime, tz: ZoneInfo) -> datetime:
    """A naive UTC time as naive local time of tz."""
    return utc.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Validity:
    """The validity range of a propagation, UTC."""

    timestart: datetime
    timeend: datetime


def validity(sample_time: datetime, interval: timedelta, tz: ZoneInfo) -> Validity:
    """[t, t + interval) in UTC for a sample at local time t."""
    start = to_utc(sample_time, tz)
    return Validity(start, start + interval)


def start_point(last_timeend: datetime | None, timefloor: datetime | None,
                tz: ZoneInfo) -> tuple[datetime, Literal["last_record", "timefloor"]]:
    """Where scraping starts (the tcursor, local) and why: just after the context's last record
    (its TIMEEND, UTC), or at timefloor (local) when timefloor hides every record of the context."""
    if last_timeend is not None:
        return tcursor_after(last_timeend, tz), "last_record"
    if timefloor is None:
        raise ValueError("a context without any record is seeded before it is resumed")
    return timefloor, "timefloor"


def tcursor_after(timeend_utc: datetime, tz: ZoneInfo) -> datetime:
    """The local tcursor implied by a validity's TIMEEND: used after a propagation and at start-up."""
    return to_local(timeend_utc, tz)


def propagated(state: Sampler, vld: Validity, tz: ZoneInfo) -> Sampler:
    """After a propagation: sv[0] = sv[-1], tcursor = TIMEEND in local time, offset count restarts."""
    return replace(state, sv=(state.sv[-1],), tcursor=tcursor_after(vld.timeend, tz), skip=state.offset)


@dataclass(frozen=True, slots=True)
class Rules:
    """The section's sampling settings: maxage (propagate at least this often), interval (validity
    length and tcursor step), tz (source_tz of the DCS date_time stamps)."""

    maxage: timedelta
    interval: timedelta
    tz: ZoneInfo


class Decision(NamedTuple):
    """What a collection leads to: the next state, the sample (the SV line), and the validity range to
    write for sample.sv when it proceeds (None: nothing to write). A NamedTuple: one is made per
    collected row while catching up, and a frozen dataclass costs several times more to build."""

    state: Sampler
    sample: Sample
    validity: Validity | None


def decide(state: Sampler, changed: bool, rules: Rules) -> Decision:
    """judge + validity + propagated, after a collection. `changed` is the regime's verdict on a full
    vector (False while not full). When the sample proceeds the state moves on as after a written
    record, whether or not the shell then writes it (an empty aggregate is skipped): so a restart,
    which resumes from the last written record, replays the same rows to the same decisions."""
    sample = judge(state, changed, rules.maxage)
    if sample.state == "notfull" or sample.state == "unchanged":  # not .proceed: once per row, kept cheap
        return Decision(state, sample, None)
    vld = validity(state.sv[-1].date_time, rules.interval, rules.tz)
    return Decision(propagated(state, vld, rules.tz), sample, vld)
