"""`scraperd status` output from typed results, without a database: the zone of every time column,
and the `--json` document the dataclasses become (the keys scripts read)."""

from __future__ import annotations

import json
from datetime import datetime

from scraperd.status import exit_code, render
from scraperd.status.results import (
    ContextStatus,
    FleetStatus,
    HeartbeatStatus,
    LogFile,
    SectionStatus,
    SourceHead,
)
from scraperd.status.results import SupervisordStatus as Supervisord

NOW = datetime(2026, 5, 9, 7, 35, 25)
SV = Supervisord(conf="deploy/supervisord.conf", serverurl="unix:///x.sock", reachable=True)


def fleet(*sections: SectionStatus) -> FleetStatus:
    return FleetStatus(config="etc/scraper.cfg", now_utc=NOW, supervisord=SV, sections=sections)


def context(**kw) -> ContextStatus:
    return ContextStatus(**{"source": "DBNS_SAB_Temp", "sitemask": 32, "subsite": 1, "seqno": 4,
                            "timestart": datetime(2011, 1, 31, 16, 4, 30), "timeend": datetime(2011, 1, 31, 16, 4, 40),
                            "insertdate": NOW, "seed": False, "tcursor": datetime(2011, 2, 1, 0, 4, 40),
                            "head": datetime(2011, 2, 1, 0, 6, 40), "lag_s": 120.0, "lag_heartbeats": 12.0,
                            "propagations_1h": 3, **kw})


BEAT = HeartbeatStatus(ts="2026-05-09T07:35:22.125Z", age_s=3.1, phase="sleeping", pid=42, lag_s=120.0, sleep_s=3.0)
SCRAPER = SectionStatus(section="adtemp_scraper", mode="scraper", state="RUNNING", pid=42, uptime_s=723,
                        status_maxlag_s=3600.0, sources=(context(late_rows_24h=2),),
                        log=LogFile("var/log/adtemp_scraper.log"), heartbeat=BEAT)
AVERAGER = SectionStatus(section="adlid_averager", mode="averager", status_maxlag_s=3600.0,
                         sources=(context(source="AD1_LidSensor", lag_heartbeats=None),))
FAKER = SectionStatus(section="adtemp_faker", mode="faker", sources=(SourceHead("DBNS_SAB_Temp", NOW),))


def test_every_time_column_header_names_its_zone():
    header, *_ = render.render(fleet(SCRAPER)).splitlines()
    assert header.split() == ["SECTION", "MODE", "STATE", "UPTIME", "BEAT", "SOURCE", "SEQNO", "TIMESTART(UTC)",
                              "INSERTDATE(UTC)", "HEAD(local)", "LAG", "HB", "PROP/1H", "LATE/24H", "NOTE"]


def test_the_table_shows_a_faker_its_head_and_an_averager_no_late_rows():
    _, faker, averager, footer, state = render.render(fleet(FAKER, AVERAGER)).splitlines()
    assert faker.split() == ["adtemp_faker", "faker", "-", "-", "-", "DBNS_SAB_Temp", "2026-05-09", "07:35:25"]
    assert averager.split()[5:] == ["AD1_LidSensor", "4", "2011-01-31", "16:04:30", "2026-05-09", "07:35:25",
                                    "2011-02-01", "00:06:40", "0:02:00", "-", "3"]
    assert footer == "supervisord: running at unix:///x.sock  (etc/scraper.cfg, now 2026-05-09 07:35:25 UTC)"
    assert state == "status: OK"


def test_json_keys_are_the_fields_and_late_rows_only_a_scrapers():
    doc = json.loads(render.to_json(fleet(FAKER, SCRAPER, AVERAGER)))
    assert list(doc) == ["config", "now_utc", "supervisord", "sections", "state", "lagging", "failing",
                         "config_errors"]
    assert doc["state"] == "OK"
    assert doc["now_utc"] == "2026-05-09 07:35:25"
    faker, scraper, averager = doc["sections"]
    assert list(scraper) == ["section", "mode", "host", "state", "pid", "uptime_s", "description", "exitstatus",
                             "spawnerr", "unexpected_exit", "status_maxlag_s", "config_error", "errors", "sources",
                             "log", "heartbeat", "check_state"]
    assert [s["check_state"] for s in doc["sections"]] == ["OK", "OK", "OK"]
    assert faker["sources"] == [{"source": "DBNS_SAB_Temp", "head": "2026-05-09 07:35:25", "error": None}]
    assert scraper["sources"][0] == {
        "source": "DBNS_SAB_Temp", "sitemask": 32, "subsite": 1, "seqno": 4, "timestart": "2011-01-31 16:04:30",
        "timeend": "2011-01-31 16:04:40", "insertdate": "2026-05-09 07:35:25", "seed": False,
        "tcursor": "2011-02-01 00:04:40", "head": "2011-02-01 00:06:40", "lag_s": 120.0, "lag_heartbeats": 12.0,
        "propagations_1h": 3, "lagging": False, "error": None, "note": None, "late_rows_24h": 2}
    assert list(scraper["sources"][0])[-1] == "late_rows_24h"
    assert scraper["log"] == {"file": "var/log/adtemp_scraper.log", "error": None}
    assert "late_rows_24h" not in averager["sources"][0] and averager["log"] is None
    assert scraper["heartbeat"] == {"ts": "2026-05-09T07:35:22.125Z", "age_s": 3.1, "phase": "sleeping", "pid": 42,
                                    "lag_s": 120.0, "sleep_s": 3.0}
    assert faker["heartbeat"] is None and averager["heartbeat"] is None


def test_beat_shows_the_heartbeat_age_and_phase_and_a_dash_without_one():
    _, scraper, faker, *_ = render.render(fleet(SCRAPER, FAKER)).splitlines()
    assert scraper.split()[4:6] == ["3s", "sleeping"]
    assert faker.split()[4] == "-"
    old = SectionStatus(section="x", mode="faker", heartbeat=HeartbeatStatus(
        ts="2026-05-09T05:35:25.000Z", age_s=7200.0, phase="retrying", pid=1, lag_s=None, sleep_s=None))
    assert render.beat_cell(old) == "2:00:00 retrying"


def test_lagging_failing_and_broken_sections_give_the_lists_and_the_exit_code():
    lagging = SectionStatus(section="s", mode="scraper", status_maxlag_s=60.0, sources=(context(lagging=True),))
    failing = SectionStatus(section="a", mode="averager", sources=(context(error="no validity record yet"),))
    broken = SectionStatus(section="b", mode="scraper", config_error=True, errors=("bad key",))
    assert exit_code(fleet(SCRAPER, FAKER)) == 0
    one = fleet(lagging, failing)
    assert (one.lagging, one.failing, exit_code(one)) == (["s:DBNS_SAB_Temp"], ["a"], 2)
    assert "LAGGING (> 0:01:00)" in render.render(one)
    assert render.render(one).splitlines()[-1] == "status: CRITICAL (1 lagging: s; 1 failing: a)"
    assert (fleet(lagging, broken).config_errors, exit_code(fleet(lagging, broken))) == (["b"], 78)


def program(state: str, mode: str = "scraper", **kw) -> SectionStatus:
    return SectionStatus(**{"section": f"{state.lower()}_{mode}", "mode": mode, "state": state,
                            "status_maxlag_s": 3600.0, "sources": (context(),), **kw})


def test_a_stopped_scraper_not_lagging_is_a_warning_and_a_lagging_one_critical():
    stopped = program("STOPPED", description="May 09 07:30 AM")
    assert (stopped.check_state.name, exit_code(fleet(SCRAPER, stopped))) == ("WARNING", 1)
    assert render.render(fleet(SCRAPER, stopped)).splitlines()[-1] == "status: WARNING (1 stopped: stopped_scraper)"
    lagging = program("STOPPED", sources=(context(lagging=True),))
    assert (lagging.check_state.name, exit_code(fleet(stopped, lagging))) == ("CRITICAL", 2)
    assert exit_code(fleet(program("STOPPED", mode="faker"), program("STOPPED", mode="averager"))) == 0


def test_program_states_give_the_fleet_checks_exit_codes():
    assert exit_code(fleet(program("BACKOFF", spawnerr="Exited too quickly (process log may have details)"))) == 1
    assert exit_code(fleet(program("FATAL", spawnerr="Exited too quickly (process log may have details)"))) == 2
    assert exit_code(fleet(program("EXITED", exitstatus=3, unexpected_exit=True))) == 2
    assert exit_code(fleet(program("EXITED", mode="averager", exitstatus=0))) == 0
    assert exit_code(fleet(program("absent"))) == 1
    doc = json.loads(render.to_json(fleet(program("FATAL"), program("BACKOFF"), SCRAPER)))
    assert (doc["state"], [s["check_state"] for s in doc["sections"]]) == ("CRITICAL", ["CRITICAL", "WARNING", "OK"])
    line = render.render(fleet(program("FATAL"), program("BACKOFF"))).splitlines()[-1]
    assert line == "status: CRITICAL (1 FATAL: fatal_scraper; 1 BACKOFF: backoff_scraper)"


def test_nothing_read_at_all_is_unknown_and_supervisord_not_answering_alone_changes_nothing():
    down = Supervisord(conf="deploy/supervisord.conf", serverurl="unix:///x.sock", reachable=False)
    unread = SectionStatus(section="s", mode="scraper", sources=(context(error="OperationalError: gone"),))
    faker = SectionStatus(section="f", mode="faker", sources=(SourceHead("DBNS_SAB_Temp", error="gone"),))
    nothing = FleetStatus(config="c", now_utc=NOW, supervisord=down, sections=(unread, faker))
    assert (nothing.state.name, exit_code(nothing)) == ("UNKNOWN", 3)
    assert render.render(nothing).splitlines()[-1].startswith("status: UNKNOWN")
    some = FleetStatus(config="c", now_utc=NOW, supervisord=down, sections=(unread, FAKER))
    assert exit_code(some) == 2  # the faker's source was read: the scraper's failure is CRITICAL
    assert exit_code(FleetStatus(config="c", now_utc=NOW, supervisord=down, sections=(SCRAPER,))) == 0
    assert exit_code(fleet(unread, faker)) == 2  # supervisord answered
