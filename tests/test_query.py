"""`scraperd query`, through the command line, on SQLite and MariaDB: its answers equal DBI's resolution
written here in plain SQL (ORDER BY VERSIONDATE DESC, SEQNO DESC LIMIT 1 under the context's
conditions) on overlaid, tied, rolled-back and gapped histories; --range answers it at every instant;
an empty answer is exit 1, a bad table or option exit 78 in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from scraperd.dbi.context import Context, site_mask
from scraperd.dbi.reader import VldRow
from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import DbiTables, create_tables
from scraperd.dbi.writer import Record, write
from scraperd.query.resolve import segments
from tests.conftest import TestDB
from tests.scrapekit import write_cfg

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2011, 2, 1)
SAB = Context(sitemask=32, subsite=1)
FMT = "%Y-%m-%d %H:%M:%S"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def text(t: datetime) -> str:
    return t.strftime(FMT)


def scraperd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scraperd", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def query(db: TestDB, *args: str) -> subprocess.CompletedProcess[str]:
    return scraperd("query", "DcsAdTemp", "--db", db.name, *args)


def answer(proc: subprocess.CompletedProcess[str], rc: int = 0) -> Any:
    assert proc.returncode == rc, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def temp(db: TestDB) -> DbiTables:
    return create_tables(db.engine, find_spec("DcsAdTemp"))


def put(db: TestDB, tables: DbiTables, start: float, end: float, value: float, *, ctx: Context = SAB,
        versiondate: datetime | None = None) -> int:
    """A one-row record over [T0+start, T0+end) seconds with Temp_PT1 = value (VERSIONDATE by the overlay
    rule unless given)."""
    return write(db.engine, tables, Record(at(start), at(end), ctx, [{"Temp_PT1": value, "Temp_PT2": -value}],
                                           versiondate))


def dbi_sql(db: TestDB, t: datetime, ctx: Context = SAB, rollback: datetime | None = None) -> int | None:
    """DBI's resolution, written independently of scraperd: the SEQNO answering at t, or None."""
    sql = ("SELECT SEQNO FROM DcsAdTempVld WHERE TIMESTART <= :t AND TIMEEND > :t "
           "AND (SITEMASK & :sitemask) != 0 AND (SIMMASK & :simmask) != 0 AND SUBSITE = :subsite AND TASK = :task "
           "AND COALESCE(AGGREGATENO, -1) = -1 "
           + ("AND INSERTDATE < :rollback " if rollback else "")
           + "ORDER BY VERSIONDATE DESC, SEQNO DESC LIMIT 1")
    params = {"t": text(t), "sitemask": ctx.sitemask, "simmask": ctx.simmask, "subsite": ctx.subsite,
              "task": ctx.task, "rollback": text(rollback) if rollback else None}
    with db.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def payload_sql(db: TestDB, seqno: int) -> list[list[Any]]:
    with db.engine.connect() as conn:
        return [list(r) for r in conn.execute(sa.text(
            "SELECT ROW_COUNTER, Temp_PT1, Temp_PT2 FROM DcsAdTemp WHERE SEQNO = :s ORDER BY ROW_COUNTER"), {"s": seqno})]


def record_seqno(doc: dict[str, Any]) -> int | None:
    return None if doc["record"] is None else int(doc["record"]["seqno"])


def parse_iso(value: str) -> datetime:
    """An ISO time of the output (UTC, +00:00) as naive UTC."""
    t = datetime.fromisoformat(value)
    assert t.utcoffset() == timedelta(0), value
    return t.replace(tzinfo=None)


def overlaid_history(db: TestDB, temp: DbiTables) -> dict[str, int]:
    """Scraper records of 50 s every minute, a long record overlaid in its middle, an exact overlay
    (same range, later VERSIONDATE) and a record of another subsite over everything."""
    seq = {f"m{i}": put(db, temp, 60 * i, 60 * i + 50, 20 + i) for i in range(4)}
    seq["long"] = put(db, temp, 300, 900, 30.0)
    seq["middle"] = put(db, temp, 500, 600, 31.0)                        # overlay rule: long's + 60 s
    seq["m1_fix"] = put(db, temp, 60, 110, 99.0, versiondate=at(3600))   # the same range, a later version
    seq["other"] = put(db, temp, 0, 900, 7.0, ctx=Context(sitemask=32, subsite=2))
    return seq


# ----------------------------------------------------------------------------------------------------------
# --at


def test_at_answers_as_dbi_sql_on_an_overlaid_history(db: TestDB, temp: DbiTables) -> None:
    seq = overlaid_history(db, temp)
    for t in (0, 55, 61, 320, 550, 610):
        doc = answer(query(db, "--at", text(at(t)), "--site", "SAB", "--subsite", "1", "--json"),
                     rc=0 if dbi_sql(db, at(t)) else 1)
        assert record_seqno(doc) == dbi_sql(db, at(t)), f"at T0+{t}s"
        if doc["record"]:
            payload = [[r["ROW_COUNTER"], r["Temp_PT1"], r["Temp_PT2"]] for r in doc["record"]["payload"]]
            assert payload == payload_sql(db, record_seqno(doc) or 0)
    # the cases the history was built for, not only agreement
    assert dbi_sql(db, at(61)) == seq["m1_fix"] and dbi_sql(db, at(550)) == seq["middle"]
    assert dbi_sql(db, at(610)) == seq["long"]


def test_at_prints_the_vld_row_then_the_payload_rows_as_aligned_tables(db: TestDB, temp: DbiTables) -> None:
    seqno = put(db, temp, 0, 50, 21.5)
    proc = query(db, "--at", "2011-02-01 00:00:10")   # the table holds one context: it is the default
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("DcsAdTemp at 2011-02-01 00:00:10 UTC for sitemask=32 subsite=1 simmask=1 task=0")
    assert lines[1].split() == ["SEQNO", "TIMESTART(UTC)", "TIMEEND(UTC)", "VERSIONDATE(UTC)", "INSERTDATE(UTC)",
                                "SITEMASK", "SIMMASK", "SUBSITE", "TASK", "AGGREGATENO"]
    assert lines[2].split()[:5] == [str(seqno), "2011-02-01", "00:00:00", "2011-02-01", "00:00:50"]
    assert lines[4].split() == ["ROW_COUNTER", "Temp_PT1", "Temp_PT2", "Temp_PT3", "Temp_PT4", "Temp_PT5"]
    assert lines[5].split() == ["1", "21.5", "-21.5", "NULL", "NULL", "NULL"]


def test_a_tie_on_versiondate_answers_the_later_seqno_and_warns_as_dbi_did(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, 600, 1.0, versiondate=at(0))
    first = put(db, temp, 0, 600, 2.0, versiondate=at(100))
    second = put(db, temp, 0, 600, 3.0, versiondate=at(100))
    proc = query(db, "--at", text(at(30)), "--json")
    assert record_seqno(answer(proc)) == second == dbi_sql(db, at(30))
    assert answer(proc)["record"]["non_unique_versiondate"] == [first]
    warning = [line for line in proc.stderr.splitlines() if "Non-unique versionDate" in line]
    assert warning == [f"scraperd: warning: Non-unique versionDate: 2011-02-01 00:01:40 of SEQNO {second} collides "
                       f"with that of SEQNO {first} for table DcsAdTemp within sitemask/simmask 32/1: the later "
                       f"SEQNO {second} is the answer"]
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [(e["event"], e["level"], e["seqnos"], e["answer"]) for e in events] == [
        ("non_unique_versiondate", "warning", [second, first], second)]
    # no tie at the top, no warning: a lower VERSIONDATE shared below the winner does not matter
    put(db, temp, 0, 600, 4.0, versiondate=at(200))
    proc = query(db, "--at", text(at(30)))
    assert proc.returncode == 0 and "Non-unique" not in proc.stderr


def test_rollback_hides_records_inserted_at_or_after_the_date(db: TestDB, temp: DbiTables) -> None:
    old = put(db, temp, 0, 600, 1.0)
    with db.engine.begin() as conn:  # as if written on 2020-01-01
        conn.execute(sa.update(temp.vld).where(temp.vld.c.SEQNO == old).values(INSERTDATE=datetime(2020, 1, 1)))
    new = put(db, temp, 0, 600, 2.0)
    cases = {None: new, datetime(2020, 1, 1, 0, 0, 1): old, datetime(2020, 1, 1): None}
    for rollback, expected in cases.items():
        extra = ("--rollback", text(rollback)) if rollback else ()
        doc = answer(query(db, "--at", text(at(30)), "--json", *extra), rc=0 if expected else 1)
        assert record_seqno(doc) == expected == dbi_sql(db, at(30), rollback=rollback), rollback


def test_a_gap_is_exit_1_and_says_where_the_records_around_it_end_and_start(db: TestDB, temp: DbiTables) -> None:
    before = put(db, temp, 0, 50, 1.0)
    after = put(db, temp, 60, 110, 2.0)
    proc = query(db, "--at", text(at(55)))
    assert (proc.returncode, proc.stdout.strip()) == (1, (
        "no record of DcsAdTemp valid at 2011-02-01 00:00:55 UTC for sitemask=32 subsite=1 simmask=1 task=0; "
        f"the one before ends at 2011-02-01 00:00:50 (SEQNO {before}), "
        f"the next starts at 2011-02-01 00:01:00 (SEQNO {after})"))
    assert dbi_sql(db, at(55)) is None
    csv_proc = query(db, "--at", text(at(55)), "--csv")
    assert csv_proc.returncode == 1 and csv_proc.stdout.strip() == "SEQNO,ROW_COUNTER,Temp_PT1,Temp_PT2,Temp_PT3," \
                                                                    "Temp_PT4,Temp_PT5"
    assert "no record of DcsAdTemp" in csv_proc.stderr


def test_tz_converts_the_time_asked_and_every_time_shown(db: TestDB, temp: DbiTables) -> None:
    seqno = put(db, temp, 0, 50, 1.0)
    doc = answer(query(db, "--at", "2011-02-01 08:00:30", "--tz", "Asia/Shanghai", "--json"))
    assert record_seqno(doc) == seqno
    assert (doc["tz"], doc["at"], doc["record"]["timestart"], doc["record"]["timeend"]) == (
        "Asia/Shanghai", "2011-02-01T08:00:30+08:00", "2011-02-01T08:00:00+08:00", "2011-02-01T08:00:50+08:00")
    table = query(db, "--at", "2011-02-01T08:00:30", "--tz", "Asia/Shanghai")
    assert "TIMESTART(Asia/Shanghai)" in table.stdout and "2011-02-01 08:00:00" in table.stdout


# ----------------------------------------------------------------------------------------------------------
# --range


def gapped_history(db: TestDB, temp: DbiTables) -> None:
    for i in range(6):
        if i != 3:  # a missing minute: a gap of 70 s
            put(db, temp, 60 * i, 60 * i + 50, 20 + i)
    put(db, temp, 120, 170, 99.0, versiondate=at(3600))     # overlays minute 2 exactly
    put(db, temp, 20, 80, 55.0, versiondate=at(7200))       # overlays the end of minute 0 and the start of 1


def test_range_answers_the_context_query_at_every_instant_in_time_order(db: TestDB, temp: DbiTables) -> None:
    gapped_history(db, temp)
    start, end = at(10), at(330)
    doc = answer(query(db, "--range", text(start), text(end), "--json"))
    # every record overlapping the range is listed; minute 2's own record answers nowhere (overlaid exactly)
    hidden = [r for r in doc["records"] if not r["answers"]]
    assert [(r["from"], r["until"], parse_iso(r["timestart"]) - T0) for r in hidden] == [(None, None, timedelta(seconds=120))]
    pieces = sorted([(parse_iso(r["from"]), parse_iso(r["until"]), int(r["seqno"])) for r in doc["records"]
                     if r["answers"]]
                    + [(parse_iso(g["from"]), parse_iso(g["until"]), None) for g in doc["gaps"]],
                    key=lambda p: p[0])
    # minute 0 until the long overlay, the overlay, the rest of minute 1, a gap, minute 2's fix, a gap
    # where minute 3 is missing, minute 4, a gap, minute 5 to the range's end
    assert [((lo - T0).seconds, (hi - T0).seconds, seqno is None) for lo, hi, seqno in pieces] == [
        (10, 20, False), (20, 80, False), (80, 110, False), (110, 120, True), (120, 170, False), (170, 240, True),
        (240, 290, False), (290, 300, True), (300, 330, False)]
    for lo, hi, seqno in pieces:
        for t in (lo, lo + (hi - lo) / 2, hi - timedelta(seconds=1)):
            assert dbi_sql(db, t.replace(microsecond=0)) == seqno, f"at {t}"
    starts = [r["from"] or r["timestart"] for r in doc["records"]]
    assert starts == sorted(starts), "in time order"


def test_range_csv_is_one_line_per_payload_row_led_by_its_record(db: TestDB, temp: DbiTables) -> None:
    gapped_history(db, temp)
    doc = answer(query(db, "--range", text(at(0)), text(at(400)), "--json"))
    proc = query(db, "--range", text(at(0)), text(at(400)), "--csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "SEQNO,TIMESTART,TIMEEND,FROM,UNTIL,ROW_COUNTER,Temp_PT1,Temp_PT2,Temp_PT3,Temp_PT4,Temp_PT5"
    expected = []
    for r in doc["records"]:  # FROM, UNTIL: where it answers; empty for the record overlaid throughout
        for p in payload_sql(db, r["seqno"]):
            expected.append([str(r["seqno"]), r["timestart"], r["timeend"], r["from"] or "", r["until"] or "", str(p[0])])
    assert [line.split(",")[:6] for line in lines[1:]] == expected
    assert sum(1 for r in doc["records"] if not r["answers"]) == 1


def test_range_table_shows_gaps_and_overlaid_records(db: TestDB, temp: DbiTables) -> None:
    gapped_history(db, temp)
    proc = query(db, "--range", text(at(0)), text(at(300)), "--no-payload")
    assert proc.returncode == 0, proc.stderr
    gaps = [line for line in proc.stdout.splitlines() if line.startswith("-")]
    assert [g.split()[1:5] for g in gaps] == [["2011-02-01", "00:01:50", "2011-02-01", "00:02:00"],
                                              ["2011-02-01", "00:02:50", "2011-02-01", "00:04:00"],
                                              ["2011-02-01", "00:04:50", "2011-02-01", "00:05:00"]]
    assert "overlaid: answers from 2011-02-01 00:00:00 until 2011-02-01 00:00:20" in proc.stdout
    assert "overlaid throughout: never the answer in this range" in proc.stdout  # minute 2's own record
    assert proc.stdout.splitlines()[-1] == "6 records, 3 gaps"


def test_a_record_without_payload_rows_keeps_its_overlay_note(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, 60, 1.0)
    with db.engine.begin() as conn:  # a Vld row without payload rows (DBI's "VLD entry but no data")
        seqno = conn.exec_driver_sql("SELECT MAX(SEQNO) FROM DcsAdTempVld").scalar()
        conn.exec_driver_sql(f"DELETE FROM DcsAdTemp WHERE SEQNO = {seqno}")
    put(db, temp, 30, 90, 2.0, versiondate=at(3600))
    proc = query(db, "--range", text(at(0)), text(at(90)))
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(str(seqno)))
    assert "overlaid: answers from 2011-02-01 00:00:00 until 2011-02-01 00:00:30" in line and "no payload rows" in line


def test_a_driver_not_installed_a_file_path_and_a_password_in_the_query_string(
        tmp_path: Path) -> None:
    proc = scraperd("query", "DcsAdTemp", "--db", "mysql+pymysql://root@127.0.0.1:1/x", "--at", text(at(0)))
    assert proc.returncode == 78 and len(proc.stderr.strip().splitlines()) == 1, proc
    assert "no driver" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = scraperd("query", "DcsAdTemp", "--db", str(tmp_path / "t.db"), "--at", text(at(0)))
    assert proc.returncode == 78 and "looks like a file" in proc.stderr and "sqlite:///" in proc.stderr, proc
    proc = scraperd("query", "DcsAdTemp", "--db", "mysql://root@127.0.0.1:1/x?password=S3cretPW", "--at", text(at(0)))
    assert proc.returncode != 0 and "S3cretPW" not in proc.stdout + proc.stderr, proc


def test_range_without_any_record_is_exit_1(db: TestDB, temp: DbiTables) -> None:
    put(db, temp, 0, 50, 1.0)
    proc = query(db, "--range", text(at(60)), text(at(120)))
    assert proc.returncode == 1
    assert proc.stdout.strip() == ("no record of DcsAdTemp valid in [2011-02-01 00:01:00, 2011-02-01 00:02:00) UTC "
                                   "for sitemask=32 subsite=1 simmask=1 task=0")


# ----------------------------------------------------------------------------------------------------------
# the database, the context, bad options


def test_without_db_the_config_section_writing_the_table_gives_database_and_context(
        db: TestDB, temp: DbiTables, tmp_path: Path) -> None:
    sab = put(db, temp, 0, 50, 1.0)
    put(db, temp, 0, 50, 2.0, ctx=Context(sitemask=1, subsite=1))  # a second context: the table alone is ambiguous
    cfg = write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_scraper": {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp",
                           "source": "sqlite:///unused.db", "target": db.name},
        "adtemp_faker": {"mode": "faker", "regime": "scraperd.regimes.adtemp:AdTemp", "source": "sqlite:///unused.db"},
    })
    doc = answer(scraperd("-c", str(cfg), "query", "DcsAdTemp", "--at", text(at(10)), "--json"))
    assert record_seqno(doc) == sab and doc["context"]["sitemask"] == 32   # DBNS_SAB_Temp: SAB, subsite 1
    assert doc["database"].startswith("[adtemp_scraper] target ")
    ambiguous = query(db, "--at", text(at(10)))
    assert ambiguous.returncode == 78 and ambiguous.stderr.strip() == (
        "context: DcsAdTemp holds 2 contexts for simmask=1 task=0: sitemask=1 subsite=1, sitemask=32 subsite=1; "
        "choose one with --site/--sitemask and --subsite")
    assert record_seqno(answer(query(db, "--at", text(at(10)), "--site", "DayaBay", "--json"))) == sab + 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_two_sections_writing_the_table_into_different_databases_is_exit_78(tmp_path: Path, backend: str) -> None:
    section = {"mode": "scraper", "regime": "scraperd.regimes.adtemp:AdTemp", "source": "sqlite:///s.db"}
    cfg = write_cfg(tmp_path / "scraper.cfg", {"a": {**section, "target": "sqlite:///a.db"},
                                               "b": {**section, "target": "sqlite:///b.db"}})
    proc = scraperd("-c", str(cfg), "query", "DcsAdTemp", "--at", "2011-02-01")
    assert proc.returncode == 78
    assert proc.stderr.strip() == (f"{cfg}: 2 sections write DcsAdTemp into different databases: a (sqlite:///a.db), "
                                   "b (sqlite:///b.db); choose one with --section NAME or --db DBCONF")


BAD = {
    "unknown table": (["query", "DcsNope", "--at", "2011-02-01"], "TABLE: no table DcsNope"),
    "payload without Vld": (["query", "LOCALSEQNO", "--at", "2011-02-01"], "TABLE: LOCALSEQNO has no LOCALSEQNOVld"),
    "bad time": (["query", "DcsAdTemp", "--at", "2011-02-30"], "--at: cannot parse '2011-02-30' as a time"),
    "bad zone": (["query", "DcsAdTemp", "--at", "2011-02-01", "--tz", "Mars/Base"], "--tz: unknown time zone"),
    "bad site": (["query", "DcsAdTemp", "--at", "2011-02-01", "--site", "Moon"], "--site: unknown site 'Moon'"),
    "site and sitemask": (["query", "DcsAdTemp", "--at", "2011-02-01", "--site", "SAB", "--sitemask", "32"],
                          "argument --sitemask: not allowed with argument --site"),
    "no time": (["query", "DcsAdTemp"], "one of the arguments --at --range is required"),
    "empty range": (["query", "DcsAdTemp", "--range", "2011-02-02", "2011-02-01"], "--range: the range's start"),
    "not a number": (["query", "DcsAdTemp", "--at", "2011-02-01", "--subsite", "x"], "invalid int value: 'x'"),
    "mask of no bit": (["query", "DcsAdTemp", "--at", "2011-02-01", "--sitemask", "0"], "--sitemask: must be a bit mask"),
    "negative mask": (["query", "DcsAdTemp", "--at", "2011-02-01", "--simmask", "-1"], "--simmask: must be a bit mask"),
}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_table_or_option_is_exit_78_in_one_line(case: str, make_db: Callable[[str], TestDB], backend: str) -> None:
    db = make_db("bad")
    create_tables(db.engine, find_spec("DcsAdTemp"))
    args, expected = BAD[case]
    proc = scraperd(*args, "--db", db.name)
    assert proc.returncode == 78, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_missing_sqlite_file_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    proc = scraperd("query", "DcsAdTemp", "--at", "2011-02-01", "--db", f"sqlite:///{missing}")
    assert (proc.returncode, proc.stderr.strip()) == (78, f"--db: no SQLite database file {missing}")
    assert not missing.exists()


def test_site_names_are_dbi_site_masks() -> None:
    assert [site_mask(n) for n in ("DayaBay", "LingAo", "Far", "Mid", "Aberdeen", "SAB")] == [1, 2, 4, 8, 16, 32]
    assert (site_mask("dbns"), site_mask("sab")) == (1, 32)
    with pytest.raises(ValueError, match="unknown site"):
        site_mask("Moon")


# ----------------------------------------------------------------------------------------------------------
# the sweep behind --range, against the single-time rule, without a database

def vld(seqno: int, start: int, end: int, version: int) -> VldRow:
    return VldRow(seqno, at(start), at(end), 32, 1, 1, 0, -1, at(version), at(0))


def winner_at(rows: list[VldRow], t: datetime) -> int | None:
    holding = [r for r in rows if r.timestart <= t < r.timeend]
    return max(holding, key=lambda r: (r.versiondate, r.seqno)).seqno if holding else None


records = st.lists(st.tuples(st.integers(0, 20), st.integers(1, 8), st.integers(0, 4)), max_size=12).map(
    lambda spec: [vld(i + 1, s, s + d, v) for i, (s, d, v) in enumerate(spec)])


@given(rows=records, lo=st.integers(-2, 25), width=st.integers(1, 30))
@settings(max_examples=300, deadline=None)
def test_range_segments_give_the_single_time_answer_everywhere(rows: list[VldRow], lo: int, width: int) -> None:
    found = segments(rows, at(lo), at(lo + width))
    assert found[0].start == at(lo) and found[-1].end == at(lo + width)
    for seg, nxt in zip(found, found[1:], strict=False):
        assert seg.end == nxt.start and (seg.vld, nxt.vld) != (None, None) and seg.vld is not nxt.vld
    for seg in found:
        t = seg.start
        while t < seg.end:
            assert winner_at(rows, t) == (seg.vld.seqno if seg.vld else None)
            if seg.vld is not None:  # ties: the others holding t with the winner's VERSIONDATE
                assert {r.seqno for r in rows if r.timestart <= t < r.timeend and r.versiondate == seg.vld.versiondate
                        and r is not seg.vld} <= set(seg.ties)
            t += timedelta(seconds=1)
