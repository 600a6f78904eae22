"""`scraperd status` output: the FleetStatus as the operator's table, or as the `--json` document.

Every time is written one way, stamp() (the databases' naive times: UTC for DBI, source local time
for the source); each time column's header says which zone. Pure: no database, no printing.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

from scraperd.monitor.results import State
from scraperd.status.results import ContextStatus, FleetStatus, SectionStatus, SourceHead

TIME = "%Y-%m-%d %H:%M:%S"

# column -> header; a time column's header names its zone (DBI is UTC, the source's head local)
COLUMNS = {"section": "SECTION", "mode": "MODE", "state": "STATE", "uptime": "UPTIME", "beat": "BEAT",
           "source": "SOURCE",
           "seqno": "SEQNO", "timestart": "TIMESTART(UTC)", "insertdate": "INSERTDATE(UTC)",
           "head": "HEAD(local)", "lag": "LAG", "hb": "HB", "prop/1h": "PROP/1H", "late/24h": "LATE/24H",
           "note": "NOTE"}
NOT_FAKERS = ("seqno", "timestart", "insertdate", "lag", "hb", "prop/1h")  # a faker writes no record


def stamp(t: datetime | None) -> str | None:
    """A time as status writes it, in the table and the JSON; None stays None."""
    return t.strftime(TIME) if t is not None else None


# ----------------------------------------------------------------------------------------------------------
# JSON


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime(TIME)
    raise TypeError(f"{type(value).__name__} is not part of the status document")


def document(fleet: FleetStatus) -> dict[str, Any]:
    """The `--json` document: the dataclasses' fields, each section's check_state, and what a script
    checks first: the overall state (the exit code's name) and the lists."""
    doc = dataclasses.asdict(fleet)
    for entry, section in zip(doc["sections"], fleet.sections, strict=True):
        if entry["log"] is None:  # late rows are counted for scrapers only: only theirs carry the key
            for row in entry["sources"]:
                row.pop("late_rows_24h", None)
        entry["check_state"] = section.check_state.name
    return {**doc, "state": fleet.state.name, "lagging": fleet.lagging, "failing": fleet.failing,
            "config_errors": fleet.config_errors}


def to_json(fleet: FleetStatus) -> str:
    return json.dumps(document(fleet), indent=2, default=_encode)


# ----------------------------------------------------------------------------------------------------------
# the table


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=int(seconds)))


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def beat_cell(e: SectionStatus) -> str:
    """`3s sleeping`: the heartbeat's age and phase; "-" without a heartbeat file."""
    hb = e.heartbeat
    if hb is None:
        return "-"
    age = f"{int(hb.age_s)}s" if hb.age_s < 100 else _duration(hb.age_s)
    return f"{age} {hb.phase}"


def _note(e: SectionStatus, r: ContextStatus) -> str:
    if r.lagging:
        return f"LAGGING (> {_duration(e.status_maxlag_s)})"
    if r.seed:
        return "seed only"
    return r.error or r.note or ""


def _context_cells(e: SectionStatus, r: ContextStatus) -> dict[str, str]:
    return {"source": r.source, "seqno": str(r.seqno or "-"), "timestart": stamp(r.timestart) or "-",
            "insertdate": stamp(r.insertdate) or "-", "head": stamp(r.head) or "-", "lag": _duration(r.lag_s),
            "hb": "-" if r.lag_heartbeats is None else f"{r.lag_heartbeats:.1f}",
            "prop/1h": _dash(r.propagations_1h),
            # only scrapers read rows one by one: late rows are theirs
            "late/24h": _dash(r.late_rows_24h) if e.mode == "scraper" else "",
            "note": _note(e, r)}


def _source_cells(r: SourceHead) -> dict[str, str]:
    return {"source": r.source, **dict.fromkeys(NOT_FAKERS, ""), "head": stamp(r.head) or "-", "late/24h": "",
            "note": r.error or ""}


def _section_rows(e: SectionStatus) -> list[dict[str, str]]:
    """The table rows of one section: one per source, the section's own cells on the first."""
    first = {"section": e.section, "mode": e.mode or "?", "state": e.state, "uptime": _duration(e.uptime_s),
             "beat": beat_cell(e)}
    if not e.sources:
        return [{**first, "note": "config error" if e.config_error else "; ".join(e.errors)}]
    rows = [_context_cells(e, r) if isinstance(r, ContextStatus) else _source_cells(r) for r in e.sources]
    return [{**first, **rows[0]}, *rows[1:]]


def table_rows(fleet: FleetStatus) -> list[dict[str, str]]:
    return [row for e in fleet.sections for row in _section_rows(e)]


def _aligned(rows: list[dict[str, str]]) -> list[str]:
    widths = {c: max([len(h)] + [len(r.get(c, "")) for r in rows]) for c, h in COLUMNS.items()}
    lines = ["  ".join(h.ljust(widths[c]) for c, h in COLUMNS.items()).rstrip()]
    return lines + ["  ".join(r.get(c, "").ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]


def _footer(fleet: FleetStatus) -> list[str]:
    sv = fleet.supervisord
    where = f"at {sv.serverurl}" if sv.serverurl else "(no supervisord config)"
    lines = [f"supervisord: {'running' if sv.reachable else 'not answering'} {where}"
             f"  ({fleet.config}, now {stamp(fleet.now_utc)} UTC)"]
    return lines + [f"{e.section}: LATE/24H not counted: {e.log.error} (--logdir DIR names the log directory)"
                    for e in fleet.sections if e.log is not None and e.log.error]


def state_line(fleet: FleetStatus) -> str:
    """`status: WARNING (1 stopped: adtemp_scraper)`: the exit code's name, and what made it."""
    state = fleet.state
    if state is State.UNKNOWN:
        return "status: UNKNOWN (supervisord does not answer and no database could be read)"
    why = "; ".join(f"{len(names)} {word}: {', '.join(names)}" for word, names in fleet.problems().items())
    return f"status: {state.name} ({why})" if why else f"status: {state.name}"


def render(fleet: FleetStatus) -> str:
    """The table, one line per source, a footer (supervisord, log files that could not be read) and the
    state line last."""
    return "\n".join([*_aligned(table_rows(fleet)), *_footer(fleet), state_line(fleet)])
