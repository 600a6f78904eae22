"""What a check says: a state (nagios' OK / WARNING / CRITICAL / UNKNOWN, whose numbers are the exit
codes of `scraperd monitor` and `scraperd status`) and a one-line summary, about one thing.

    CheckResult(check="freshness", state=State.CRITICAL, summary="no record inserted for 0:25:10 ...",
                section="adtemp_scraper", table="DcsAdTemp", context="sitemask=1,subsite=1,simmask=1,task=0")

`key` names the thing checked (check, section, table, context): the notifier remembers the state it
last notified per key. Pure: nothing here reads a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class State(IntEnum):
    """A check's state; the value is the nagios exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Order of badness: OK < WARNING < UNKNOWN (could not tell) < CRITICAL."""
        return {State.OK: 0, State.WARNING: 1, State.UNKNOWN: 2, State.CRITICAL: 3}[self]


def worst(states: Iterable[State]) -> State:
    """The worst of the states (OK when there are none)."""
    return max(states, key=lambda s: s.severity, default=State.OK)


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One check of one thing."""

    check: str                    # freshness, source, expected, replication, fleet
    state: State
    summary: str                  # one line
    details: str = ""             # what an expert needs to look further (may be several lines)
    section: str | None = None    # the config section the thing belongs to
    table: str | None = None      # a DBI table (freshness, expected, replication) or a DCS table (source)
    context: str | None = None    # a DBI context "sitemask=1,subsite=1,simmask=1,task=0", or a replication hop
    unreadable: bool = False      # the state is that a database could not be read (the daemon retries first)

    @property
    def key(self) -> str:
        """What is checked, as the notifier's state file names it."""
        return "|".join(str(part or "") for part in (self.check, self.section, self.table, self.context))

    def line(self) -> str:
        """`CRITICAL freshness adtemp_scraper DcsAdTemp sitemask=1,...: summary` (what the one-shot prints)."""
        where = " ".join(part for part in (self.section, self.table, self.context) if part)
        return f"{self.state.name:<8} {self.check} {where}: {self.summary}" if where else \
            f"{self.state.name:<8} {self.check}: {self.summary}"

    def asdict(self) -> dict[str, Any]:
        return {"check": self.check, "state": self.state.name, "summary": self.summary, "details": self.details,
                "section": self.section, "table": self.table, "context": self.context}


def context_text(fields: dict[str, int]) -> str:
    """A DBI context as results name it: `sitemask=1,subsite=1,simmask=1,task=0`."""
    return ",".join(f"{k}={v}" for k, v in fields.items())
