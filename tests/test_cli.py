"""The CLI teaches: `run SECTION --help` shows that section's keys, check-config says why a row failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scraperd import cli, config
from tests.test_config import GOOD, replace, write

SHIPPED = config.REPO_ROOT / "etc" / "scraper.cfg"


def key_rows(out: str) -> dict[str, list[str]]:
    """The KEY VALUE FROM DESCRIPTION table that follows "keys of [...]", split on runs of 2+ spaces."""
    lines = out.split("keys of [", 1)[1].splitlines()[1:]
    header, *rows = lines
    assert header.split() == ["KEY", "VALUE", "FROM", "DESCRIPTION"]
    starts = [header.index(c) for c in ("VALUE", "FROM", "DESCRIPTION")]
    table = {}
    for row in rows:
        if not row.startswith(" "):
            cuts = [0, *starts, len(row)]
            cells = [row[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False)]
            table[cells[0]] = cells[1:]
    return table


# ----------------------------------------------------------------------------------------------------------
# run SECTION --help


def test_run_section_help_shows_its_keys_with_values_origin_and_description(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    rc = cli.main(["-c", str(path), "run", "adtemp_scraper", "--help", "--set", "offset=3",
                   "--set", "maxiter=1"])  # were --help ignored, one iteration, not a daemon forever
    out = capsys.readouterr()
    assert rc == 0 and out.err == ""
    assert out.out.startswith("usage: scraperd run ")
    assert "--set KEY=VALUE" in out.out and "--catch-up" in out.out  # the flags are still documented
    assert f"keys of [adtemp_scraper]  mode = scraper   ({path}):" in out.out
    keys = key_rows(out.out)
    assert keys["offset"] == ["3", "--set", "Read every (offset+1)th source row."]
    assert keys["maxage"][:2] == ["1m", "[adtemp_scraper]"]
    assert keys["source"][:2] == ["sqlite:///var/src.db", "[DEFAULT]"]
    assert keys["heartbeat"][:2] == ["3s", "default"]
    assert keys["maxiter"][:2] == ["1", "--set"]
    assert "faker_seed" not in keys  # this section's mode only, not every mode's keys
    assert "keys only of mode = averager" not in out.out


def test_run_help_without_section_is_the_generic_help(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's own help, as before
        cli.main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scraperd run ") and "keys only of mode = averager:" in out


def test_run_help_for_a_section_not_in_the_file_is_the_generic_help_and_says_so(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    assert cli.main(["-c", str(path), "run", "adtemp_scrapr", "--help"]) == 0
    out = capsys.readouterr()
    assert "keys only of mode = averager:" in out.out
    assert out.err.splitlines() == [f"{path} [adtemp_scrapr]: no such section (did you mean 'adtemp_scraper'?) "
                                    "(sections: adtemp_scraper, adtemp_faker, adlid_averager)"]


def test_run_help_for_a_broken_section_prints_its_errors_after_the_usage_and_exits_78(tmp_path, capsys):
    path = write(tmp_path, replace("maxage = 1m", "maxage = 10 minutes\nofset = 1"))
    assert cli.main(["-c", str(path), "run", "adtemp_scraper", "--help", "--set", "sleep=soon"]) == 78
    out = capsys.readouterr()
    assert out.out.startswith("usage: scraperd run ") and "keys of" not in out.out
    assert out.err.splitlines() == [
        f"{path} [adtemp_scraper] ofset: unknown key (did you mean 'offset'?)",
        "--set sleep: cannot parse 'soon' as a duration (use 10s, 1m, 1h)",  # in the model's key order
        f"{path} [adtemp_scraper] maxage: cannot parse '10 minutes' as a duration (use 10s, 1m, 1h)"]


def test_run_without_help_still_needs_a_section(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run"])
    assert exc.value.code == 2
    assert "the following arguments are required: section" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# check-config without ~/.my.cnf


def scraperd(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The real command, stderr merged into stdout in the order a terminal shows them."""
    env = {k: v for k, v in os.environ.items() if k != "SCRAPERD_MYCNF"} | {"HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "scraperd.cli", *args], env=env, cwd=config.REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def test_check_config_without_mycnf_puts_each_reason_under_its_row(tmp_path):
    done = scraperd("-c", str(SHIPPED), "check-config", "--no-connect", home=tmp_path)
    assert done.returncode == 78
    lines = done.stdout.splitlines()
    sections = [s for s in config.read_file(SHIPPED).sections if s != "monitor"]
    rows = [i for i, line in enumerate(lines) if line.split()[:1] in ([s] for s in sections)]
    assert len(rows) == len(sections) == 7
    mycnf = tmp_path / ".my.cnf"
    (monitor,) = [i for i, line in enumerate(lines) if line.split()[:2] == ["monitor", "monitor"]]
    assert lines[monitor].split()[-1] == "ERROR"  # its chain names my.cnf sections too
    assert lines[monitor + 1] == (f"{SHIPPED} [monitor] chain: tmp_offline_db: no MySQL option file {mycnf} "
                                  "(set SCRAPERD_MYCNF or use an SQLAlchemy URL)")
    for i, name in zip(rows, sections, strict=True):
        row = lines[i].split()
        assert row[-1] == "ERROR" and row[2] in ("PmtHv", "AdTemp", "AdLidSensor") and row[3] == "fake_dcs"
        assert lines[i + 1] == (f"{SHIPPED} [{name}] source: no MySQL option file {mycnf} "
                                "(set SCRAPERD_MYCNF or use an SQLAlchemy URL)")
    assert lines[-2] == f"8 sections, 8 with errors ({SHIPPED})"
    assert lines[-1].startswith(f"scraperd: {mycnf} does not exist: copy etc/my.cnf.example there")


def test_check_config_json_without_mycnf_keeps_its_keys(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SCRAPERD_MYCNF", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["-c", str(SHIPPED), "check-config", "--json", "--no-connect"]) == 78
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"config", "sections", "errors"} and doc["errors"] == 8
    row = doc["sections"][0]
    assert set(row) == {"section", "mode", "regime", "source", "target", "status", "errors"}
    assert row["status"] == "ERROR" and "no MySQL option file" in row["errors"][0]


def test_check_config_with_mycnf_gives_no_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCRAPERD_MYCNF", str(config.REPO_ROOT / "etc" / "my.cnf.example"))
    path = write(tmp_path, replace("maxage = 1m", "maxage = 10 minutes"))
    assert cli.main(["-c", str(path), "check-config"]) == 78
    assert "does not exist" not in capsys.readouterr().err
