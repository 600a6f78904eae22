"""Config: every malformed section gives its exact one-line error and exit 78; good ones load."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scraperd import cli, config
from scraperd.errors import ConfigError

GOOD = """\
[DEFAULT]
source = sqlite:///var/src.db
source_tz = Asia/Shanghai

[adtemp_scraper]
regime = scraperd.regimes.adtemp:AdTemp
mode = scraper
target = sqlite:///var/tgt.db
interval = 10s
maxage = 1m
offset = 0

[adtemp_faker]
regime = scraperd.regimes.adtemp:AdTemp
mode = faker
faker_timestart = 2011-02-01 00:00:00
profile = modulo_ramp

[adlid_averager]
regime = scraperd.regimes.adlidsensor:AdLidSensor
mode = averager
target = sqlite:///var/tgt.db
aggregate = avg,min,max,std
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scraper.cfg"
    path.write_text(textwrap.dedent(text))
    return path


def with_key(key_line: str, section: str = "adtemp_scraper") -> str:
    """GOOD with one extra line at the end of a section."""
    out, in_section = [], False
    for line in GOOD.splitlines():
        if line.startswith("["):
            if in_section:
                out.append(key_line)
            in_section = line == f"[{section}]"
        out.append(line)
    if in_section:
        out.append(key_line)
    return "\n".join(out) + "\n"


def replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


S = "[adtemp_scraper]"
MALFORMED = [
    (replace("maxage = 1m", "maxage = 10 minutes"), "adtemp_scraper",
     f"{S} maxage: cannot parse '10 minutes' as a duration (use 10s, 1m, 1h)"),
    (with_key("intervall = 10s"), "adtemp_scraper", f"{S} intervall: unknown key (did you mean 'interval'?)"),
    (with_key("ofset = 3"), "adtemp_scraper", f"{S} ofset: unknown key (did you mean 'offset'?)"),
    (replace("offset = 0", "offset = -1"), "adtemp_scraper", f"{S} offset: must be >= 0, got -1"),
    (replace("offset = 0", "offset = ten"), "adtemp_scraper", f"{S} offset: cannot parse 'ten' as a whole number"),
    (with_key("threshold = high"), "adtemp_scraper", f"{S} threshold: cannot parse 'high' as a number"),
    (replace("mode = scraper", "mode = scrapper"), "adtemp_scraper",
     f"{S} mode: 'scrapper' is not one of scraper, faker, averager, monitor, watchdog, backup (did you mean 'scraper'?)"),
    (replace("regime = scraperd.regimes.adtemp:AdTemp\nmode = scraper",
             "regime = scraperd.regimes.adtemp.AdTemp\nmode = scraper"), "adtemp_scraper",
     f"{S} regime: expected package.module:Class, got 'scraperd.regimes.adtemp.AdTemp'"),
    (replace("regime = scraperd.regimes.adtemp:AdTemp\nmode = scraper",
             "regime = scraperd.regimes.nosuch:AdTemp\nmode = scraper"), "adtemp_scraper",
     f"{S} regime: cannot import 'scraperd.regimes.nosuch:AdTemp': No module named 'scraperd.regimes.nosuch'"),
    (replace("regime = scraperd.regimes.adtemp:AdTemp\nmode = scraper",
             "regime = scraperd.regimes.adtemp:AdTmp\nmode = scraper"), "adtemp_scraper",
     f"{S} regime: cannot import 'scraperd.regimes.adtemp:AdTmp': module has no 'AdTmp' (did you mean 'AdTemp'?)"),
    (replace("regime = scraperd.regimes.adtemp:AdTemp\nmode = scraper",
             "regime = scraperd.regimes.adtemp:AdTempScraper\nmode = scraper"), "adtemp_scraper",
     f"{S} regime: 'scraperd.regimes.adtemp:AdTempScraper' is not a scraperd Regime"),
    (replace("target = sqlite:///var/tgt.db\ninterval", "interval"), "adtemp_scraper",
     f"{S} target: missing (required key)"),
    (with_key("timefloor = yesterday"), "adtemp_scraper",
     f"{S} timefloor: cannot parse 'yesterday' as a datetime (use YYYY-MM-DD HH:MM:SS)"),
    (with_key("seed_target_tables = True"), "adtemp_scraper",
     f"{S} seed_timestart: required when seed_target_tables = True"),
    (with_key("seed_target_tables = maybe"), "adtemp_scraper",
     f"{S} seed_target_tables: cannot parse 'maybe' as true/false"),
    (with_key("seed_timestart = 2011-02-01 00:01:00\nseed_timeend = 2011-02-01 00:00:00"), "adtemp_scraper",
     f"{S} seed_timeend: must be after seed_timestart"),
    (with_key("aggregate = avg,median"), "adtemp_scraper",
     f"{S} aggregate: unknown aggregate function 'median' (did you mean 'min'?)"),
    (with_key("aggregate_filter = Quality != 0; DROP TABLE x"), "adtemp_scraper",
     f"{S} aggregate_filter: must be one SQL condition: ';' is not allowed"),
    (with_key("aggregate_filter = Quality != 0 -- sneaky"), "adtemp_scraper",
     f"{S} aggregate_filter: must be one SQL condition: '--' is not allowed"),
    (with_key("aggregate_filter = Quality != 0 /* x */"), "adtemp_scraper",
     f"{S} aggregate_filter: must be one SQL condition: '/*' is not allowed"),
    (with_key("aggregate_none = nothing"), "adtemp_scraper",
     f"{S} aggregate_none: cannot parse 'nothing' as a number"),
    (replace("source_tz = Asia/Shanghai", "source_tz = Asia/Beijing"), "adtemp_scraper",
     "[DEFAULT] source_tz: unknown time zone 'Asia/Beijing' (use an IANA name such as Asia/Shanghai)"),
    (replace("profile = modulo_ramp", "profile = sawtooth"), "adtemp_faker",
     "[adtemp_faker] profile: 'sawtooth' is not one of 'modulo_ramp', 'constant' or 'random_walk'"),
    (with_key("maxage = 1m", "adtemp_faker"), "adtemp_faker",
     "[adtemp_faker] maxage: not used by mode = faker (it is a scraper key)"),
    (replace("faker_timestart = 2011-02-01", "faker_timestart = 2011-02-30"), "adtemp_faker",
     "[adtemp_faker] faker_timestart: cannot parse '2011-02-30 00:00:00' as a datetime (use YYYY-MM-DD HH:MM:SS)"),
    (replace("aggregate = avg,min,max,std\n", ""), "adlid_averager",
     "[adlid_averager] aggregate: the averager needs aggregate functions, e.g. avg,min,max,std"),
    (with_key("binsize = an hour", "adlid_averager"), "adlid_averager",
     "[adlid_averager] binsize: cannot parse 'an hour' as a duration (use 10s, 1m, 1h)"),
    (GOOD + "[adtemp_faker]\nsleep = 1s\n", "adtemp_scraper", "[adtemp_faker]: section given twice"),
    (with_key("interval = 5s"), "adtemp_scraper", f"{S} interval: key given twice in this section"),
    ("regime = x\n" + GOOD, "adtemp_scraper", "line 1: text before the first [section] header"),
    (GOOD + "[DEFAULT]\nnot a key value line\n", "adtemp_scraper", "cannot parse line 25 (expected key = value)"),
    (replace("interval = 10s", "interval = 0s"), "adtemp_scraper",
     f"{S} interval: must be whole seconds, at least 1s (DBI times have one-second precision), got '0s'"),
    (replace("interval = 10s", "interval = 0.5s"), "adtemp_scraper",
     f"{S} interval: must be whole seconds, at least 1s (DBI times have one-second precision), got '0.5s'"),
    (with_key("dbi_loglevel = VERBOSE"), "adtemp_scraper",
     f"{S} dbi_loglevel: 'VERBOSE' is not one of DEBUG, INFO, WARNING, ERROR"),
    (GOOD, "adtemp_scrapr", "[adtemp_scrapr]: no such section (did you mean 'adtemp_scraper'?) "
     "(sections: adtemp_scraper, adtemp_faker, adlid_averager)"),
]


@pytest.mark.parametrize("text,section,expected", MALFORMED, ids=[m[2][:60] for m in MALFORMED])
def test_malformed_config_gives_one_exact_line_and_exit_78(tmp_path, capsys, text, section, expected):
    path = write(tmp_path, text)
    rc = cli.main(["-c", str(path), "run", section])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 78
    assert len(err) == 1, err
    assert err[0].startswith(str(path))  # the bare line, as issue 2 writes it
    assert err[0].endswith(expected), err[0]


def test_good_config_loads_with_parsed_values(tmp_path):
    path = write(tmp_path, GOOD)
    loaded = config.load_section(path, "adtemp_scraper")
    s = loaded.settings
    assert isinstance(s, config.ScraperSection)
    assert s.interval == timedelta(seconds=10) and s.maxage == timedelta(minutes=1)
    assert s.source == "sqlite:///var/src.db" and s.source_tz.key == "Asia/Shanghai"
    assert loaded.origin["source"] == "[DEFAULT]" and loaded.origin["interval"] == "[adtemp_scraper]"
    assert loaded.origin["heartbeat"] == "default"
    faker = config.load_section(path, "adtemp_faker").settings
    assert isinstance(faker, config.FakerSection)
    assert faker.faker_timestart == datetime(2011, 2, 1)


def test_set_overrides_a_key_and_is_reported_as_its_origin(tmp_path):
    path = write(tmp_path, GOOD)
    loaded = config.load_section(path, "adtemp_scraper", config.parse_overrides(["maxage=2h", "offset=10"]))
    assert loaded.settings.maxage == timedelta(hours=2)
    assert loaded.settings.offset == 10
    assert loaded.origin["maxage"] == "--set"


def test_set_with_a_bad_value_names_the_override(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    rc = cli.main(["-c", str(path), "run", "adtemp_scraper", "--set", "maxage=soon"])
    assert rc == 78
    assert capsys.readouterr().err.strip() == \
        "--set maxage: cannot parse 'soon' as a duration (use 10s, 1m, 1h)"


def test_durations_accept_the_manual_forms():
    for text, secs in [("10s", 10), ("1m", 60), ("1h", 3600), ("1d", 86400), ("45", 45), ("0s", 0)]:
        assert config.parse_duration(text) == timedelta(seconds=secs)


def test_default_keys_of_other_modes_are_ignored_not_rejected(tmp_path):
    path = write(tmp_path, replace("source_tz = Asia/Shanghai", "source_tz = Asia/Shanghai\nmaxage = 5m"))
    loaded = config.load_section(path, "adtemp_faker")
    assert "maxage" in loaded.ignored
    assert config.load_section(path, "adtemp_scraper").settings.maxage == timedelta(minutes=1)


def test_check_config_lists_every_section_and_fails_on_one_broken(tmp_path, capsys):
    path = write(tmp_path, replace("maxage = 1m", "maxage = 10 minutes"))
    rc = cli.main(["-c", str(path), "check-config"])
    out = capsys.readouterr()
    assert rc == 78
    for name in ("adtemp_scraper", "adtemp_faker", "adlid_averager"):
        assert name in out.out
    assert "1 with errors" in out.out
    assert "[adtemp_scraper] maxage: cannot parse" in out.err


def test_check_config_passes_on_the_shipped_configs(capsys, monkeypatch):
    monkeypatch.setenv("SCRAPERD_MYCNF", str(config.REPO_ROOT / "etc" / "my.cnf.example"))
    for cfg in ("etc/scraper.cfg", "etc/demo.cfg"):
        path = config.REPO_ROOT / cfg
        assert cli.main(["-c", str(path), "check-config"]) == 0, capsys.readouterr()
    assert "CHANGE_ME" not in capsys.readouterr().out  # the example's passwords are not shown


def test_check_config_resolves_databases_and_specs_without_connecting(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRAPERD_MYCNF", str(tmp_path / "my.cnf"))
    (tmp_path / "my.cnf").write_text("[dcs]\nhost = 127.0.0.1\nport = 1\npassword = sekret\n")
    path = write(tmp_path, GOOD.replace("source = sqlite:///var/src.db", "source = nosuch")
                 + "kls = GDcsNoSuch\n")
    assert cli.main(["-c", str(path), "check-config"]) == 78
    err = capsys.readouterr().err
    assert f"[adtemp_scraper] source: no section [nosuch] (sections: dcs) ({tmp_path / 'my.cnf'})" in err
    assert "sekret" not in err


def test_show_prints_effective_settings_with_origin(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert cli.main(["-c", str(path), "show", "adtemp_scraper", "--set", "offset=3"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert lines["offset"][1:] == ["3", "--set"]
    assert lines["maxage"][1:] == ["1m", "[adtemp_scraper]"]
    assert lines["source"][1:] == ["sqlite:///var/src.db", "[DEFAULT]"]
    assert lines["heartbeat"][1:] == ["3s", "default"]


def test_missing_config_file_is_a_config_error(tmp_path, capsys):
    rc = cli.main(["-c", str(tmp_path / "nope.cfg"), "check-config"])
    assert rc == 78
    assert "nope.cfg: no such config file" in capsys.readouterr().err


def test_config_error_line_names_file_section_key():
    e = ConfigError("bad", file="a.cfg", section="s", key="k")
    assert str(e) == "a.cfg [s] k: bad"
