"""The fleet check from typed status results, without supervisord: which program states are CRITICAL,
WARNING or OK, and the one UNKNOWN of a supervisord that does not answer."""

from __future__ import annotations

from datetime import datetime

from scraperd.monitor.fleet import fleet_checks
from scraperd.monitor.results import State
from scraperd.status.results import FleetStatus, SectionStatus, SupervisordStatus
from scraperd.supervisor import ProgramState

UP = SupervisordStatus(conf="deploy/supervisord.conf", serverurl="unix:///x.sock", reachable=True)
TOO_QUICK = "Exited too quickly (process log may have details)"


def fleet(*sections: SectionStatus, sv: SupervisordStatus = UP) -> FleetStatus:
    return FleetStatus(config="c", now_utc=datetime(2026, 5, 9), supervisord=sv, sections=sections)


def section(name: str, state: str, **kw) -> SectionStatus:
    return SectionStatus(section=name, mode="scraper", state=state, **kw)


def test_fatal_and_unexpected_exits_are_critical_backoff_and_absent_warnings_the_rest_ok():
    results = fleet_checks(fleet(
        section("a", "FATAL", spawnerr=TOO_QUICK), section("b", "EXITED", exitstatus=3, unexpected_exit=True,
                                                           description="May 09 07:30 AM"),
        section("c", "BACKOFF", spawnerr=TOO_QUICK), section("d", "absent"), section("e", "STOPPED"),
        section("f", "EXITED", exitstatus=0, description="May 09 07:31 AM"),
        section("g", "RUNNING", description="pid 42, uptime 0:12:03"), section("h", "-")))
    assert [(r.check, r.section, r.state, r.summary) for r in results] == [
        ("fleet", "a", State.CRITICAL, f"FATAL: {TOO_QUICK}"),
        ("fleet", "b", State.CRITICAL, "EXITED with status 3, not expected (stopped May 09 07:30 AM)"),
        ("fleet", "c", State.WARNING, f"BACKOFF: {TOO_QUICK}"),
        ("fleet", "d", State.WARNING, "no supervisord program: run scraperd gen-ini"),
        ("fleet", "e", State.OK, "STOPPED"),
        ("fleet", "f", State.OK, "EXITED: May 09 07:31 AM"),
        ("fleet", "g", State.OK, "RUNNING: pid 42, uptime 0:12:03")]
    assert all(r.table is None and r.context is None for r in results)


def test_a_supervisord_that_does_not_answer_is_one_unknown():
    down = SupervisordStatus(conf="deploy/supervisord.conf", serverurl="unix:///x.sock", reachable=False)
    [only] = fleet_checks(fleet(section("a", "-"), sv=down))
    assert (only.state, only.section, only.summary) == (State.UNKNOWN, None,
                                                        "supervisord at unix:///x.sock does not answer")


def test_an_exit_is_unexpected_when_its_status_is_not_among_the_programs_exitcodes():
    def exited(status: int, exitcodes: tuple[int, ...] = (0,)) -> ProgramState:
        return ProgramState.from_info({"statename": "EXITED", "pid": 0, "now": 10, "start": 5, "exitstatus": status,
                                       "description": "May 09 07:30 AM", "spawnerr": ""}, exitcodes)

    assert exited(3).unexpected_exit and exited(78).unexpected_exit
    assert not exited(0).unexpected_exit and not exited(3, (0, 3)).unexpected_exit
    running = ProgramState.from_info({"statename": "RUNNING", "pid": 42, "now": 10, "start": 5, "exitstatus": 3})
    assert not running.unexpected_exit and running.uptime_s == 5
