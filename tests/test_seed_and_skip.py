"""Seeding never repeats (a context holding any record is not seeded, timefloor or not), offline_db is
protected by its my.cnf section name too, and a skipped (empty-aggregate) propagation moves the
sampler on exactly as a written one would."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scraperd import cli
from tests.scrapekit import events_named, run_section, target_rows, write_cfg
from tests.test_scraper_behaviour import REGIMES, lid_rows, setup, temp_row

T0 = datetime(2011, 2, 1, 0, 0, 0)


def _utc(local: str) -> str:
    """An event's local time (Asia/Shanghai) as the UTC text of a propagate event's timestart."""
    return str(datetime.fromisoformat(local) - timedelta(hours=8))


def _temp_rows(n: int, start: datetime = T0) -> list[dict]:
    return [temp_row(i, start + timedelta(seconds=10 * i), [20 + (i // 3) * 2, 1, 1, 1, 1]) for i in range(1, n + 1)]


def test_timefloor_hiding_every_record_starts_at_timefloor_and_never_reseeds(make_db, tmp_path):
    rows = _temp_rows(60)  # 10 minutes of rows from 00:00:10
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": rows})
    run_section(cfg, "s", maxiter=20, catch_up=True)  # records up to about 00:03, then stopped
    before = target_rows(tgt.engine, "DcsAdTemp")[0]
    assert len(before) > 3
    floor = "2011-02-01 00:05:00"  # later than every record
    for run in range(2):  # twice: the first run writes records after timefloor, the second resumes from them
        events = run_section(cfg, "s", maxiter=15, catch_up=True, timefloor=floor)
        assert not events_named(events, "seed")
        startup = events_named(events, "startup")[0]
        if run == 0:
            assert startup["start_from"] == "timefloor" and startup["tcursor"] == floor and startup["seqno"] is None
        else:
            assert startup["start_from"] == "last_record" and startup["seqno"] > before[-1][0]
    vld = target_rows(tgt.engine, "DcsAdTemp")[0]
    assert vld[:len(before)] == before  # nothing rewritten, one seed (SEQNO 1) only
    assert [r for r in vld if r[1] == datetime(2011, 1, 31, 16, 0, 0)] == [before[0]]  # the seed
    after = vld[len(before):]
    assert after and min(r[1] for r in after) >= datetime(2011, 1, 31, 16, 5, 0)  # UTC of the local floor


def test_an_empty_context_behind_a_timefloor_is_seeded_once_and_scraping_starts_at_timefloor(make_db, tmp_path):
    cfg, src, tgt = setup(make_db, tmp_path, "adtemp", {"DBNS_SAB_Temp": _temp_rows(60)},
                          timefloor="2011-02-01 00:05:00")  # the seed (00:00:00) lies before it
    for _ in range(2):
        run_section(cfg, "s", maxiter=5, catch_up=True)
    vld = target_rows(tgt.engine, "DcsAdTemp")[0]
    assert sum(r[1] == datetime(2011, 1, 31, 16, 0, 0) for r in vld) == 1  # one seed, not one per start


MYCNF = """[offline_db]
host = 127.0.0.1
user = root
database = tmp_offline_copy
"""


@pytest.mark.parametrize("mode", ["scraper", "averager"])
@pytest.mark.parametrize("named", ["section", "url"])
def test_offline_db_is_recognised_by_its_mycnf_section_name(tmp_path, monkeypatch, capsys, mode, named):
    mycnf = tmp_path / "my.cnf"
    mycnf.write_text(MYCNF)
    monkeypatch.setenv("SCRAPERD_MYCNF", str(mycnf))
    target = "offline_db" if named == "section" else \
        f"mysql+mysqldb://?read_default_file={mycnf}&read_default_group=offline_db"
    section = {"regime": REGIMES["adlid"], "mode": mode, "source": f"sqlite:///{tmp_path / 'src.db'}",
               "target": target}
    if mode == "scraper":
        section.update(seed_target_tables="True", seed_timestart="2011-02-01 00:00:00",
                       seed_timeend="2011-02-01 00:00:10")
        argv, what = ["run", "s"], "seeding refused"
    else:
        section.update(aggregate="avg", aggregate_skips="id,date_time,Quality")
        argv, what = ["run", "s", "--drop-target"], "dropping the target tables refused"
    cfg = write_cfg(tmp_path / "s.cfg", {"s": section})
    assert cli.main(["-c", str(cfg), *argv]) == 78
    assert f"{what}: the target database is my.cnf section offline_db" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# empty aggregates

def _gap_rows() -> list[dict]:
    """Rows every 3 s for 10 minutes; the filter keeps none of those from 00:01:00 to 00:07:00."""
    return lid_rows(200, quality=lambda i: 0 if 20 <= i < 140 else 1)


def _empty_setup(make_db, tmp_path):
    return setup(make_db, tmp_path, "adlid", {"AD1_LidSensor": _gap_rows()}, maxage="30s",
                 aggregate="avg,max", aggregate_count="count", aggregate_skips="id,date_time,Quality",
                 aggregate_filter="Quality != 0")


def test_a_skipped_propagation_moves_the_sampler_on_as_a_written_one_would(make_db, tmp_path):
    cfg, src, tgt = _empty_setup(make_db, tmp_path)
    events = run_section(cfg, "s", maxiter=300, catch_up=True)
    empty = events_named(events, "aggregate_empty")
    samples = [e for e in events_named(events, "sample") if e["source"] == "AD1_LidSensor" and e["proceed"]]
    props = [e for e in events_named(events, "propagate") if e["source"] == "AD1_LidSensor"]
    assert len(empty) >= 8 and len(samples) == len(empty) + len(props)  # one warning per skipped propagation
    for a, b in zip(empty, empty[1:], strict=False):  # sv[0] = sv[-1]: the ranges follow on, never grow
        assert b["range"][0] == a["range"][1]
        span = datetime.fromisoformat(b["range"][1]) - datetime.fromisoformat(b["range"][0])
        assert span <= timedelta(seconds=33)  # maxage (30 s) plus one 3 s step
    # the first record after the stretch aggregates from the last skipped sample, not from before it
    resumed = [s for s in samples if s["range"][0] >= empty[-1]["range"][1]][0]
    assert resumed["range"][0] == empty[-1]["range"][1]
    starts = [p["timestart"] for p in props]
    assert min(starts) < _utc(empty[0]["range"][0]) and max(starts) > _utc(empty[-1]["range"][1])  # around it


def test_runs_cut_by_maxiter_shorter_than_an_empty_stretch_still_get_through_it(make_db, tmp_path):
    """Every run resumes from the last written record and replays the skips after it: iterations
    spent replaying them must not use up maxiter, or no run ever gets past the stretch."""
    cfg, src, tgt = _empty_setup(make_db, tmp_path)
    for _ in range(80):
        events = run_section(cfg, "s", maxiter=15, catch_up=True)  # > one maxage (11 samples), < the stretch (120)
        if events_named(events, "shutdown")[0]["reason"] == "caught_up":
            break
    assert events_named(events, "shutdown")[0]["reason"] == "caught_up", "cut runs never got through the stretch"
    (tmp_path / "once").mkdir()
    once_cfg, _, once = _empty_setup(make_db, tmp_path / "once")
    run_section(once_cfg, "s", maxiter=1000, catch_up=True)
    assert target_rows(tgt.engine, "DcsAdLidSensor") == target_rows(once.engine, "DcsAdLidSensor")


def test_skipped_propagations_do_not_depend_on_where_runs_were_cut(make_db, tmp_path):
    cfg, src, tgt = _empty_setup(make_db, tmp_path)
    for cut in (7, 13, 4, 25, 300):  # cuts inside the stretch the filter empties, and around it
        run_section(cfg, "s", maxiter=cut, catch_up=True)
    (tmp_path / "once").mkdir()
    once_cfg, _, once = _empty_setup(make_db, tmp_path / "once")
    run_section(once_cfg, "s", maxiter=1000, catch_up=True)
    assert target_rows(tgt.engine, "DcsAdLidSensor") == target_rows(once.engine, "DcsAdLidSensor")
