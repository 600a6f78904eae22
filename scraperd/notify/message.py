"""What a notification says: one Message, POSTed as its JSON body() or mailed as text() under subject().

    Message(check="freshness", state="CRITICAL", previous_state="OK", summary="no record for 0:25:10",
            details="...", section="adtemp_scraper", table="DcsAdTemp", context="sitemask=1,...",
            ts="2024-05-01T03:00:00Z", recipients=("ops@lab.org", "http://mon:8080/hook"))

Pure: no network, no clock (the caller gives the time), no logging.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from scraperd.monitor.results import CheckResult

BODY_FIELDS = ("check", "state", "previous_state", "summary", "details", "section", "table", "context", "ts")
SUBJECT_MAX = 200  # characters of the summary in an e-mail subject


def iso_utc(t: datetime) -> str:
    """`2024-05-01T03:00:00Z`: t in UTC (a naive t is taken as UTC), whole seconds."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Message:
    """One notification about one thing; `recipients` are those it is sent to (not in the body)."""

    check: str
    state: str                      # "OK", "CRITICAL", ... ; a long job's "running", "completed", ...
    previous_state: str | None      # None the first time
    summary: str
    details: str = ""
    section: str | None = None
    table: str | None = None
    context: str | None = None
    ts: str = ""                    # ISO-8601 UTC with "Z"
    recipients: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """The thing notified about, as CheckResult.key names it (the state file's key)."""
        return "|".join(str(part or "") for part in (self.check, self.section, self.table, self.context))

    def body(self) -> dict[str, Any]:
        """The JSON document POSTed to a URL recipient: exactly BODY_FIELDS."""
        return {name: getattr(self, name) for name in BODY_FIELDS}

    def subject(self) -> str:
        """`[scraperd] CRITICAL freshness adtemp_scraper DcsAdTemp: summary` (one line)."""
        where = " ".join(part for part in (self.section, self.table) if part)
        was = f" (was {self.previous_state})" if self.previous_state not in (None, self.state) else ""
        summary = " ".join(self.summary.split())
        if len(summary) > SUBJECT_MAX:
            summary = summary[:SUBJECT_MAX - 3] + "..."
        head = " ".join(part for part in (f"{self.state.upper()}{was}", self.check, where) if part)
        return f"[scraperd] {head}: {summary}"

    def text(self) -> str:
        """The e-mail's plain text: one `key: value` line per body field, then the details."""
        lines = [f"{name}: {'' if value is None else value}"
                 for name, value in self.body().items() if name != "details"]
        if self.details:
            lines += ["", "details:", self.details]
        return "\n".join(lines) + "\n"


def of_result(result: CheckResult, previous: str | None, now: datetime,
              recipients: tuple[str, ...]) -> Message:
    """The Message about a check result."""
    return Message(check=result.check, state=result.state.name, previous_state=previous, summary=result.summary,
                   details=result.details, section=result.section, table=result.table, context=result.context,
                   ts=iso_utc(now), recipients=recipients)
