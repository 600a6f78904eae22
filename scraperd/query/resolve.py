"""What the conditions database answers: the record valid at a time, or the records answering over a range.

    at(conn, tables, t, ctx)         AtAnswer: DBI's context query (dbi.reader: the highest VERSIONDATE
                                     holding t, the higher SEQNO on a tie), its payload, the SEQNOs it
                                     beat only by SEQNO (DBI's "Non-unique versionDate"), and in a gap
                                     the records before and after it
    over(conn, tables, a, b, ctx)    RangeAnswer: every record of the context overlapping [a, b): where
                                     each answers (the question asked at every instant: segments and gaps,
                                     in time order), and those that answer nowhere (overlaid throughout)
    segments(rows, a, b)             that sweep, pure: no database, no clock

A record that another one overlays in part answers only where it wins: its segment says from and
until where, its stored TIMESTART/TIMEEND are kept as they are. A rollback date hides the rows
inserted at or after it, everywhere. Times are naive UTC, as DBI holds them; nothing here prints.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from scraperd.dbi import reader
from scraperd.dbi.context import Context
from scraperd.dbi.reader import VldRow
from scraperd.dbi.tables import DbiTables

Payload = list[dict[str, Any]]


@dataclass(frozen=True)
class AtAnswer:
    """The context query's answer at one time: the winning record (None in a gap) and its payload."""

    vld: VldRow | None
    payload: Payload
    ties: tuple[int, ...] = ()          # other SEQNOs holding t with the winner's VERSIONDATE
    before: VldRow | None = None        # in a gap: the record ending last at or before t
    after: VldRow | None = None         # in a gap: the record starting first after t


@dataclass(frozen=True)
class Segment:
    """[start, end): where one record answers, or nobody (vld None: a gap)."""

    start: datetime
    end: datetime
    vld: VldRow | None
    ties: tuple[int, ...] = ()          # other SEQNOs sharing the winner's VERSIONDATE somewhere in it
    overlaid: bool = False              # the record answers over less of the range than its validity
                                        # covers: another record overlays part of it


@dataclass(frozen=True)
class RangeAnswer:
    """The context query over [start, end): segments and gaps in time order, with the payloads."""

    start: datetime
    end: datetime
    segments: tuple[Segment, ...]
    payloads: dict[int, Payload] = field(default_factory=dict)
    hidden: tuple[VldRow, ...] = ()     # records overlapping the range that answer nowhere in it (overlaid
                                        # throughout by a later VERSIONDATE), by TIMESTART

    @property
    def records(self) -> list[Segment]:
        return [s for s in self.segments if s.vld is not None]

    @property
    def gaps(self) -> list[Segment]:
        return [s for s in self.segments if s.vld is None]


def at(conn: Connection, tables: DbiTables, t: datetime, ctx: Context, *,
       rollback: datetime | None = None, with_payload: bool = True) -> AtAnswer:
    """The record valid at t (naive UTC) for a context, as DBI's context query answers it."""
    vld = reader.best_vld(conn, tables, t, ctx, rollback=rollback)
    if vld is None:
        before, after = (conn.execute(reader.neighbours_select(tables, t, ctx, before=b, rollback=rollback)).first()
                         for b in (True, False))
        return AtAnswer(None, [], before=None if before is None else VldRow.from_row(before),
                        after=None if after is None else VldRow.from_row(after))
    ties = tuple(conn.execute(reader.ties_select(tables, t, ctx, vld, rollback=rollback)).scalars())
    rows = reader.payloads(conn, tables, [vld.seqno])[vld.seqno] if with_payload else []
    return AtAnswer(vld, rows, ties=ties)


def over(conn: Connection, tables: DbiTables, start: datetime, end: datetime, ctx: Context, *,
         rollback: datetime | None = None, with_payload: bool = True) -> RangeAnswer:
    """The records answering the context query somewhere in [start, end), in time order, and the gaps."""
    rows = [VldRow.from_row(r) for r in conn.execute(
        reader.overlapping_select(tables, start, end, ctx, rollback=rollback))]
    found = segments(rows, start, end)
    answering = {s.vld.seqno for s in found if s.vld is not None}
    hidden = tuple(sorted((r for r in rows if r.seqno not in answering and r.timestart < r.timeend),
                          key=lambda r: (r.timestart, r.seqno)))
    seqnos = sorted(answering | {r.seqno for r in hidden})
    payloads = reader.payloads(conn, tables, seqnos) if with_payload and seqnos else {}
    return RangeAnswer(start, end, tuple(found), payloads, hidden)


def _rank(row: VldRow) -> tuple[datetime, int]:
    """DBI's priority: the higher VERSIONDATE, then (our tie rule) the higher SEQNO."""
    return row.versiondate, row.seqno


def segments(rows: Sequence[VldRow], start: datetime, end: datetime) -> list[Segment]:
    """Who answers where in [start, end): the context query's winner at every instant, swept once.

    rows are the candidates (any order); between two consecutive boundaries (a row's TIMESTART or
    TIMEEND, or the range's bounds) the rows holding an instant do not change, so neither does the
    winner. Consecutive pieces with the same winner (or none) are merged. O(n log n).
    """
    live = [r for r in rows if r.timestart < r.timeend and r.timestart < end and r.timeend > start]
    if start >= end:
        return []
    points = sorted({start, end} | {t for r in live for t in (r.timestart, r.timeend) if start < t < end})
    by_start = sorted(live, key=lambda r: r.timestart)
    by_end = sorted(live, key=lambda r: r.timeend)
    # heapq is a min-heap: each row is pushed under its position in priority order (0 is the best)
    priority = {id(r): pos for pos, r in enumerate(sorted(live, key=_rank, reverse=True))}
    heap: list[tuple[int, int]] = []  # (priority position, index in live)
    active: set[int] = set()
    same_version: dict[datetime, set[int]] = defaultdict(set)  # VERSIONDATE -> active SEQNOs
    index = {id(r): i for i, r in enumerate(live)}
    i_start = i_end = 0
    out: list[Segment] = []
    for lo, hi in zip(points, points[1:], strict=False):
        while i_end < len(by_end) and by_end[i_end].timeend <= lo:
            r = by_end[i_end]
            i_end += 1
            if index[id(r)] in active:
                active.discard(index[id(r)])
                same_version[r.versiondate].discard(r.seqno)
        while i_start < len(by_start) and by_start[i_start].timestart <= lo:
            r = by_start[i_start]
            i_start += 1
            if r.timeend > lo:
                k = index[id(r)]
                active.add(k)
                same_version[r.versiondate].add(r.seqno)
                heapq.heappush(heap, (priority[id(r)], k))
        while heap and heap[0][1] not in active:
            heapq.heappop(heap)
        winner = live[heap[0][1]] if heap else None
        ties = tuple(sorted(same_version[winner.versiondate] - {winner.seqno}, reverse=True)) if winner else ()
        if out and out[-1].vld is winner and out[-1].end == lo:
            prev = out[-1]
            out[-1] = Segment(prev.start, hi, winner, tuple(sorted(set(prev.ties) | set(ties), reverse=True)))
        else:
            out.append(Segment(lo, hi, winner, ties))
    return [replace(seg, overlaid=(seg.start, seg.end) != (max(seg.vld.timestart, start), min(seg.vld.timeend, end)))
            if seg.vld is not None else seg for seg in out]

