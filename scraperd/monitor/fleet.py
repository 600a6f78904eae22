"""The fleet check: supervisord's programs in FATAL, BACKOFF or an unexpected EXITED, from what
`scraperd status` already read over supervisord's XML-RPC socket (status.results.FleetStatus).

    fleet_checks(fleet) -> [CheckResult(check="fleet", state=State.CRITICAL, section="adtemp_scraper",
                                        summary="FATAL: Exited too quickly (process log may have details)"), ...]

One result per section that supervisord was asked about:

    FATAL, or EXITED with a status not among its exitcodes   CRITICAL
    BACKOFF (failing to start, supervisord retrying)          WARNING
    no such program ("absent")                                WARNING: run scraperd gen-ini
    anything else (RUNNING, STARTING, STOPPED, an expected EXITED, ...)   OK

STOPPED is OK here: stopping is deliberate, and the freshness check tells when data goes missing
(`scraperd status` itself warns of a stopped scraper). A supervisord that does not answer gives one
UNKNOWN result, section None. Pure: nothing here reads supervisord or a database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scraperd.monitor.results import CheckResult, State

if TYPE_CHECKING:  # status.results uses program_check: imported for the annotations only
    from scraperd.status.results import FleetStatus, SectionStatus

CHECK = "fleet"


def _why(entry: SectionStatus) -> str:
    """supervisord's own words: spawnerr, else its description."""
    text = entry.spawnerr or entry.description
    return f": {text}" if text else ""


def program_check(entry: SectionStatus) -> CheckResult | None:
    """The fleet check of one section's program; None when supervisord was not asked or did not answer."""
    def result(state: State, summary: str) -> CheckResult:
        return CheckResult(check=CHECK, state=state, summary=summary, section=entry.section)

    if entry.state == "-":
        return None
    if entry.state == "absent" and entry.mode == "monitor":  # a monitor may well run from cron
        return result(State.OK, "no supervisord program (run from cron?)")
    if entry.state == "absent":
        return result(State.WARNING, "no supervisord program: run scraperd gen-ini")
    if entry.state == "FATAL":
        return result(State.CRITICAL, f"FATAL{_why(entry)}")
    if entry.unexpected_exit:
        return result(State.CRITICAL, f"EXITED with status {entry.exitstatus}, not expected"
                                      f"{f' (stopped {entry.description})' if entry.description else ''}")
    if entry.state == "BACKOFF":
        return result(State.WARNING, f"BACKOFF{_why(entry)}")
    return result(State.OK, f"{entry.state}{f': {entry.description}' if entry.description else ''}")


def fleet_checks(fleet: FleetStatus) -> list[CheckResult]:
    """One result per section with a program (or absent from supervisord); one UNKNOWN when supervisord
    does not answer."""
    sv = fleet.supervisord
    if not sv.reachable:
        where = f"at {sv.serverurl}" if sv.serverurl else "(no supervisord config)"
        return [CheckResult(check=CHECK, state=State.UNKNOWN, summary=f"supervisord {where} does not answer")]
    return [r for r in map(program_check, fleet.sections) if r is not None]
