"""The manual's worked example, asserted from the `sample` events, on SQLite and MariaDB."""

from __future__ import annotations

from tests.scrapekit import events_named, run_section, target_rows, url_text, write_cfg


def manual_cfg(tmp_path, src, tgt, **scraper_keys):
    scraper = {"regime": "scraperd.regimes.adtemp:AdTemp", "mode": "scraper", "target": url_text(tgt),
               "interval": "10s", "sleep": "0s", "heartbeat": "10s", "maxage": "1m", "threshold": "1.0",
               "seed_target_tables": "True", "seed_timestart": "2011-02-01 00:00:00",
               "seed_timeend": "2011-02-01 00:01:00", "timefloor": "2010-01-01 00:00:00"}
    scraper.update(scraper_keys)
    return write_cfg(tmp_path / "scraper.cfg", {
        "adtemp_faker": {"regime": "scraperd.regimes.adtemp:AdTemp", "mode": "faker", "profile": "constant",
                         "faker_timestart": "2011-02-01 00:00:00", "interval": "10s", "sleep": "0s"},
        "adtemp_scraper": scraper,
    }, defaults={"source": url_text(src), "source_tz": "Asia/Shanghai"})


def test_manual_example_sequence_of_samples(make_db, tmp_path):
    src, tgt = make_db("src"), make_db("tgt")
    cfg = manual_cfg(tmp_path, src, tgt)
    run_section(cfg, "adtemp_faker", maxiter=40)
    events = run_section(cfg, "adtemp_scraper", maxiter=22)
    samples = events_named(events, "sample")
    got = [(tuple(s["ids"]), s["fullness"], s["state"], s["proceed"]) for s in samples]
    expected = [((6,), "partial", "notfull", False)]
    expected += [((6, i), "full", "unchanged", False) for i in range(7, 13)]
    expected += [((6, 13), "full", "overage", True)]
    expected += [((13, i), "full", "unchanged", False) for i in range(14, 20)]
    expected += [((13, 20), "full", "overage", True)]
    expected += [((20, i), "full", "unchanged", False) for i in range(21, 27)]
    expected += [((20, 27), "full", "overage", True)]
    assert got == expected
    assert samples[0]["tcursor"] == "2011-02-01 00:01:00"
    assert samples[8]["range"] == ["2011-02-01 00:02:10", "2011-02-01 00:02:20"]
    assert samples[8]["tcursor"] == "2011-02-01 00:02:20"
    props = events_named(events, "propagate")
    # local 00:02:10 in Asia/Shanghai is 2011-01-31 16:02:10 UTC; validity [t, t + interval)
    assert [(p["timestart"], p["timeend"]) for p in props] == [
        ("2011-01-31 16:02:10", "2011-01-31 16:02:20"), ("2011-01-31 16:03:20", "2011-01-31 16:03:30"),
        ("2011-01-31 16:04:30", "2011-01-31 16:04:40")]
    assert {(p["sitemask"], p["subsite"]) for p in props} == {(32, 1)}
    vld, pay = target_rows(tgt.engine, "DcsAdTemp")
    assert len(vld) == 4  # the seed and three propagations
    assert [r[0] for r in vld] == [1, 2, 3, 4]
