"""MyISAM targets (a legacy offline_db): the engines are read at start-up, and a warning says what a crash can leave."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog

from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import DbiTables, create_tables, engines, tables_for
from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg
from tests.sourcedata import create_source, insert_rows

if TYPE_CHECKING:
    from tests.conftest import TestDB

MYSQL = pytest.param("mysql", marks=pytest.mark.mysql)
ALL = ("payload", "vld", "localseqno")


def to_myisam(db: TestDB, spec_name: str = "DcsPmtHv", which: Sequence[str] = ALL) -> DbiTables:
    """The spec's tables, made MyISAM (`which` of them), as a daemon's start-up then finds them."""
    tables = create_tables(db.engine, find_spec(spec_name))
    with db.engine.begin() as conn:
        for name in which:
            conn.exec_driver_sql(f"ALTER TABLE `{getattr(tables, name).name}` ENGINE=MyISAM")
    with structlog.testing.capture_logs():
        return create_tables(db.engine, find_spec(spec_name))


# ----------------------------------------------------------------------------------------------------------
# Detection

@pytest.mark.parametrize("backend", [MYSQL])
def test_engines_are_read_at_create_tables_and_only_innodb_is_transactional(db: TestDB) -> None:
    innodb = create_tables(db.engine, find_spec("DcsPmtHv"))
    assert innodb.engines == {"DcsPmtHv": "InnoDB", "DcsPmtHvVld": "InnoDB", "LOCALSEQNO": "InnoDB"}
    assert innodb.transactional is True
    assert tables_for(find_spec("DcsPmtHv")).transactional is None  # not read: the writer asks
    mixed = to_myisam(db, which=("vld",))
    assert mixed.engines == {"DcsPmtHv": "InnoDB", "DcsPmtHvVld": "MyISAM", "LOCALSEQNO": "InnoDB"}
    assert mixed.transactional is False
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE DcsPmtHvVld ENGINE=Aria TRANSACTIONAL=1")  # crash-safe, no rollback
        assert engines(conn, innodb)["DcsPmtHvVld"] == "Aria"
    assert create_tables(db.engine, find_spec("DcsPmtHv")).transactional is False


# ----------------------------------------------------------------------------------------------------------
# Daemons: the start-up warning, and the same records as on InnoDB

def _temp_rows(n: int) -> list[dict[str, Any]]:
    t0 = datetime(2011, 2, 1)
    return [{"id": i, "date_time": t0 + timedelta(seconds=10 * i),
             **{f"DBNS_SAB_Temp_PT{p}": 20.0 + (i // 4) * 2 + p for p in range(1, 6)}} for i in range(1, n + 1)]


def _scraper_cfg(tmp_path: Path, src: TestDB, targets: dict[str, TestDB]) -> Path:
    keys = {"regime": "scraperd.regimes.adtemp:AdTemp", "mode": "scraper", "source": url_text(src),
            "interval": "10s", "sleep": "0s", "heartbeat": "0.01s", "maxage": "10m", "threshold": "1.0",
            "source_tz": "Asia/Shanghai", "seed_target_tables": "True",
            "seed_timestart": "2011-02-01 00:00:00", "seed_timeend": "2011-02-01 00:00:10"}
    return write_cfg(tmp_path / "scraper.cfg", {name: {**keys, "target": url_text(db)} for name, db in targets.items()})


@pytest.mark.parametrize("backend", [MYSQL])
def test_scraper_on_myisam_warns_once_at_startup_and_writes_what_it_writes_on_innodb(make_db, tmp_path):
    src, myisam, innodb = make_db("src"), make_db("myisam"), make_db("innodb")
    create_source(src.url)
    insert_rows(src.url, "DBNS_SAB_Temp", _temp_rows(60))
    to_myisam(myisam, "DcsAdTemp")
    cfg = _scraper_cfg(tmp_path, src, {"on_myisam": myisam, "on_innodb": innodb})
    events = run_section(cfg, "on_myisam", catch_up=True)
    [warning] = events_named(events, "non_transactional_target")
    assert warning == {"event": "non_transactional_target", "log_level": "warning", "table": "DcsAdTemp",
                       "engines": {"DcsAdTemp": "MyISAM", "DcsAdTempVld": "MyISAM", "LOCALSEQNO": "MyISAM"},
                       "locking": "LOCK TABLES",
                       "crash_can_leave": "payload rows without their Vld row: invisible to context queries, "
                                          "their SEQNO never reused; never a Vld row without its payload"}
    assert events.index(warning) < events.index(events_named(events, "startup")[0])
    assert events_named(run_section(cfg, "on_innodb", catch_up=True), "non_transactional_target") == []
    want = target_rows(innodb.engine, "DcsAdTemp")
    assert len(want[0]) > 10
    assert target_rows(myisam.engine, "DcsAdTemp") == want


@pytest.mark.parametrize("backend", ["sqlite", MYSQL])
def test_scraper_on_innodb_or_sqlite_logs_no_non_transactional_warning(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    create_source(src.url)
    insert_rows(src.url, "DBNS_SAB_Temp", _temp_rows(20))
    events = run_section(_scraper_cfg(tmp_path, src, {"s": tgt}), "s", catch_up=True)
    assert events_named(events, "propagate") and events_named(events, "non_transactional_target") == []
