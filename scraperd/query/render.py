"""A query's answer for people (aligned tables), for scripts (one JSON document) or for spreadsheets (CSV).

    --at      the winning Vld row (SEQNO, TIMESTART, TIMEEND, VERSIONDATE, INSERTDATE, context), then
              its payload rows; JSON: {"record": {..., "payload": [...]}} (null in a gap);
              CSV: SEQNO, ROW_COUNTER and the payload columns
    --range   one line per payload row in time order, led by its record's SEQNO, TIMESTART, TIMEEND
              (--no-payload: one line per record, with VERSIONDATE and INSERTDATE), a line per gap;
              JSON: {"records": [...], "gaps": [...]}; CSV: the payload lines, no gaps

Times are shown in the zone asked for (UTC by default) and every header says which: tables in the
column names, JSON as ISO 8601 with the offset, CSV likewise. Pure: text out, nothing printed here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from scraperd.dbi.context import Context
from scraperd.dbi.reader import VldRow
from scraperd.query.resolve import AtAnswer, RangeAnswer, Segment

VLD_TIMES = ("TIMESTART", "TIMEEND", "VERSIONDATE", "INSERTDATE")
VLD_CONTEXT = ("SITEMASK", "SIMMASK", "SUBSITE", "TASK", "AGGREGATENO")


@dataclass(frozen=True)
class Asked:
    """What was asked, as the answer's header repeats it."""

    table: str
    database: str
    context: Context
    tz: ZoneInfo
    columns: tuple[str, ...]                       # the payload columns, ROW_COUNTER first
    at: datetime | None = None                     # naive UTC
    start: datetime | None = None
    end: datetime | None = None
    rollback: datetime | None = None
    payload: bool = True                           # False: --no-payload

    @property
    def zone(self) -> str:
        return self.tz.key

    def local(self, t: datetime) -> datetime:
        return t.replace(tzinfo=UTC).astimezone(self.tz)

    def shown(self, t: datetime | None) -> str:
        """A time for the table, 'YYYY-MM-DD HH:MM:SS' in the zone asked for."""
        return "" if t is None else self.local(t).strftime("%Y-%m-%d %H:%M:%S")

    def iso(self, t: datetime | None) -> str | None:
        """A time for JSON and CSV: ISO 8601 with the zone's offset."""
        return None if t is None else self.local(t).isoformat()

    def where(self) -> str:
        """`for sitemask=32 subsite=1 simmask=1 task=0` (and the rollback, when one is set)."""
        rolled = f", inserted before {self.shown(self.rollback)}" if self.rollback else ""
        return f"for {self.context.text()}{rolled}"

    def when(self) -> str:
        if self.at is not None:
            return f"at {self.shown(self.at)} {self.zone}"
        return f"in [{self.shown(self.start)}, {self.shown(self.end)}) {self.zone}"


# ----------------------------------------------------------------------------------------------------------
# lines of text


def aligned(rows: Sequence[dict[str, str]], columns: Sequence[str]) -> list[str]:
    """The header line, then one line per row, each column padded to its widest value."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    return lines + ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns).rstrip() for r in rows]


def cell(value: Any) -> str:
    """A payload value for a person: NULL for none, datetimes as MySQL shows them."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _time_header(name: str, asked: Asked) -> str:
    return f"{name}({asked.zone})"


def _vld_cells(vld: VldRow, asked: Asked, names: Iterable[str]) -> dict[str, str]:
    m = vars(vld)
    return {(_time_header(n, asked) if n in VLD_TIMES else n):
            (asked.shown(m[n.lower()]) if n in VLD_TIMES else cell(m[n.lower()])) for n in names}


def _vld_columns(asked: Asked, names: Iterable[str]) -> list[str]:
    return [_time_header(n, asked) if n in VLD_TIMES else n for n in names]


def header(asked: Asked) -> str:
    return f"{asked.table} {asked.when()} {asked.where()}   ({asked.database})"


def at_table(answer: AtAnswer, asked: Asked) -> str:
    """The winning record and its payload rows as aligned tables (the caller reports a gap)."""
    assert answer.vld is not None
    names = ("SEQNO", *VLD_TIMES, *VLD_CONTEXT)
    lines = [header(asked), *aligned([_vld_cells(answer.vld, asked, names)], _vld_columns(asked, names))]
    if asked.payload:
        lines.append("")
        if answer.payload:
            lines += aligned([{c: cell(r.get(c)) for c in asked.columns} for r in answer.payload], asked.columns)
        else:
            lines.append("(no payload rows: DBI's \"VLD entry but no data\")")
    return "\n".join(lines)


def range_table(answer: RangeAnswer, asked: Asked) -> str:
    """Every record of the context overlapping the range, in time order, a line per payload row (or per
    record with --no-payload), noted where another overlays it; and a line per gap."""
    times = ("TIMESTART", "TIMEEND") if asked.payload else VLD_TIMES
    placed: list[tuple[datetime, list[dict[str, str]]]] = []
    for seg in answer.segments:
        if seg.vld is None:
            placed.append((seg.start, [{"SEQNO": "-", _time_header("TIMESTART", asked): asked.shown(seg.start),
                                        _time_header("TIMEEND", asked): asked.shown(seg.end),
                                        "NOTE": "gap: no record"}]))
            continue
        placed.append((seg.start, _record_lines(answer, seg.vld, _note(seg, asked), asked, times)))
    for vld in answer.hidden:
        placed.append((max(vld.timestart, answer.start),
                       _record_lines(answer, vld, "overlaid throughout: never the answer in this range", asked, times)))
    rows = [r for _, lines in sorted(placed, key=lambda p: p[0]) for r in lines]
    columns = ["SEQNO", *_vld_columns(asked, times), *(asked.columns if asked.payload else ())]
    if any(r.get("NOTE") for r in rows):
        columns.append("NOTE")
    n = len({s.vld.seqno for s in answer.records if s.vld is not None} | {v.seqno for v in answer.hidden})
    g = len(answer.gaps)
    footer = f"{n} record{'s' * (n != 1)}, {g} gap{'s' * (g != 1)}"
    return "\n".join([header(asked), *aligned(rows, columns), footer])


def _record_lines(answer: RangeAnswer, vld: VldRow, note: str, asked: Asked,
                  times: Sequence[str]) -> list[dict[str, str]]:
    lead = _vld_cells(vld, asked, ("SEQNO", *times))
    payload = answer.payloads.get(vld.seqno, []) if asked.payload else [{}]
    if not payload:
        note = "; ".join(p for p in (note, "no payload rows (VLD entry but no data)") if p)
    return [{**lead, **{c: cell(r.get(c)) for c in asked.columns if r}, "NOTE": note if i == 0 else ""}
            for i, r in enumerate(payload or [{}])]


def _note(seg: Segment, asked: Asked) -> str:
    parts = []
    if seg.overlaid:
        parts.append(f"overlaid: answers from {asked.shown(seg.start)} until {asked.shown(seg.end)}")
    if seg.ties:
        parts.append(f"Non-unique versionDate with SEQNO {', '.join(map(str, seg.ties))}")
    return "; ".join(parts)


def empty(answer: AtAnswer | RangeAnswer | None, asked: Asked) -> str:
    """The line saying there is nothing: for a gap, where the records around it are."""
    line = f"no record of {asked.table} valid {asked.when()} {asked.where()}"
    if isinstance(answer, AtAnswer):
        before = (f"the one before ends at {asked.shown(answer.before.timeend)} (SEQNO {answer.before.seqno})"
                  if answer.before else "none before it")
        after = (f"the next starts at {asked.shown(answer.after.timestart)} (SEQNO {answer.after.seqno})"
                 if answer.after else "none after it")
        line += f"; {before}, {after}"
    return line


def non_unique(winner: VldRow, others: Sequence[int], asked: Asked) -> str:
    """DBI's warning, for a query: the answer won its tie on VERSIONDATE only by its higher SEQNO."""
    ctx = asked.context
    seqnos = ", ".join(map(str, others))
    return (f"Non-unique versionDate: {asked.shown(winner.versiondate)} of SEQNO {winner.seqno} collides with that "
            f"of SEQNO {seqnos} for table {asked.table} within sitemask/simmask {ctx.sitemask}/{ctx.simmask}: "
            f"the later SEQNO {winner.seqno} is the answer")


# ----------------------------------------------------------------------------------------------------------
# JSON


def _value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _vld_json(vld: VldRow, asked: Asked) -> dict[str, Any]:
    return {k: (asked.iso(v) if isinstance(v, datetime) else v) for k, v in vars(vld).items()}


def _payload_json(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _value(v) for k, v in r.items()} for r in rows]


def _asked_json(asked: Asked) -> dict[str, Any]:
    out: dict[str, Any] = {"table": asked.table, "database": asked.database, "context": asked.context.asdict(),
                           "tz": asked.zone}
    if asked.at is not None:
        out["at"] = asked.iso(asked.at)
    else:
        out["range"] = [asked.iso(asked.start), asked.iso(asked.end)]
    out["rollback"] = asked.iso(asked.rollback)
    return out


def at_json(answer: AtAnswer, asked: Asked) -> str:
    record: dict[str, Any] | None = None
    if answer.vld is not None:
        record = {**_vld_json(answer.vld, asked), "non_unique_versiondate": list(answer.ties)}
        if asked.payload:
            record["payload"] = _payload_json(answer.payload)
    doc = {**_asked_json(asked), "record": record}
    if answer.vld is None:
        doc["before"] = None if answer.before is None else _vld_json(answer.before, asked)
        doc["after"] = None if answer.after is None else _vld_json(answer.after, asked)
    return json.dumps(doc, indent=2)


def range_json(answer: RangeAnswer, asked: Asked) -> str:
    """records: every record overlapping the range in time order, each with where it answers (from, until;
    null for one overlaid throughout, "answers": false); gaps: where none answers."""
    placed: list[tuple[datetime, dict[str, Any]]] = []
    for seg in answer.records:
        assert seg.vld is not None
        rec = {**_vld_json(seg.vld, asked), "from": asked.iso(seg.start), "until": asked.iso(seg.end),
               "answers": True, "overlaid": seg.overlaid, "non_unique_versiondate": list(seg.ties)}
        placed.append((seg.start, rec))
    for vld in answer.hidden:
        rec = {**_vld_json(vld, asked), "from": None, "until": None, "answers": False, "overlaid": True,
               "non_unique_versiondate": []}
        placed.append((max(vld.timestart, answer.start), rec))
    records = [rec for _, rec in sorted(placed, key=lambda p: p[0])]
    if asked.payload:
        for rec in records:
            rec["payload"] = _payload_json(answer.payloads.get(rec["seqno"], []))
    gaps = [{"from": asked.iso(g.start), "until": asked.iso(g.end)} for g in answer.gaps]
    return json.dumps({**_asked_json(asked), "records": records, "gaps": gaps}, indent=2)


# ----------------------------------------------------------------------------------------------------------
# CSV


def _csv(header_row: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header_row)
    for row in rows:
        w.writerow(["" if v is None else v for v in row])
    return out.getvalue().rstrip("\n")


def _csv_value(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value


def _vld_csv(vld: VldRow, asked: Asked, names: Sequence[str]) -> list[Any]:
    m = vars(vld)
    return [asked.iso(m[n.lower()]) if n in VLD_TIMES else m[n.lower()] for n in names]


def at_csv(answer: AtAnswer, asked: Asked) -> str:
    """SEQNO, ROW_COUNTER and the payload columns (--no-payload: the Vld row); a header alone in a gap."""
    if not asked.payload:
        names = ("SEQNO", *VLD_TIMES, *VLD_CONTEXT)
        return _csv(names, [] if answer.vld is None else [_vld_csv(answer.vld, asked, names)])
    seqno = answer.vld.seqno if answer.vld else None
    return _csv(["SEQNO", *asked.columns], ([seqno, *(_csv_value(r.get(c)) for c in asked.columns)]
                                            for r in answer.payload))


def range_csv(answer: RangeAnswer, asked: Asked) -> str:
    """A line per payload row in time order, led by its record's SEQNO, TIMESTART and TIMEEND and by FROM,
    UNTIL: where in the range it is the answer (a record split by an overlay: a line per piece; one
    overlaid throughout: FROM and UNTIL empty). --no-payload: a line per record with its Vld row."""
    pieces: list[tuple[datetime, VldRow, datetime | None, datetime | None]] = [
        (s.start, s.vld, s.start, s.end) for s in answer.records if s.vld is not None]
    pieces += [(max(v.timestart, answer.start), v, None, None) for v in answer.hidden]
    pieces.sort(key=lambda p: p[0])
    lead = ("SEQNO", "TIMESTART", "TIMEEND")
    if not asked.payload:
        names = ("SEQNO", *VLD_TIMES, *VLD_CONTEXT)
        return _csv([*names[:3], "FROM", "UNTIL", *names[3:]],
                    ([*_vld_csv(v, asked, names)[:3], asked.iso(a), asked.iso(b), *_vld_csv(v, asked, names)[3:]]
                     for _, v, a, b in pieces))
    rows = ([*_vld_csv(v, asked, lead), asked.iso(a), asked.iso(b), *(_csv_value(r.get(c)) for c in asked.columns)]
            for _, v, a, b in pieces for r in answer.payloads.get(v.seqno, []))
    return _csv([*lead, "FROM", "UNTIL", *asked.columns], rows)
