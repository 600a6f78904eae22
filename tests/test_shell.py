"""`scraperd shell`, driven through `-c` and stdin, on SQLite and MariaDB: sessions on a section's or
any database, kls_() mapping reflected tables (with or without a primary key), and the manual's
NonDbi lines working as written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from scraperd.dbi.spec import find_spec
from scraperd.dbi.tables import create_tables
from tests.conftest import TestDB
from tests.scrapekit import write_cfg
from tests.sourcedata import create_source, insert_rows

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2011, 2, 1)


def shell(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scraperd", *args], cwd=REPO, capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=60, env={**os.environ, **(env or {})})


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def dcs(db: TestDB) -> TestDB:
    """A fake DCS database whose DBNS_AD1_HV holds 74 rows, ten seconds apart (the manual's count)."""
    create_source(db.url)
    insert_rows(db.url, "DBNS_AD1_HV", [{"id": i + 1, "date_time": T0 + timedelta(seconds=10 * i), "L1C1R1": 1000 + i}
                                        for i in range(74)])
    return db


def test_shell_c_counts_and_slices_a_reflected_source_table(dcs: TestDB) -> None:
    code = ("kls = kls_('DBNS_AD1_HV')\n"
            "q = db.query(kls).order_by(kls.date_time)\n"
            "print(q.count())\n"
            "print([(r.id, str(r.date_time), float(r.L1C1R1)) for r in q[1:3]])\n")
    out = ok(shell("shell", "--db", dcs.name, "-c", code))
    with dcs.engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM DBNS_AD1_HV")).scalar()
        rows = conn.execute(sa.text("SELECT id, date_time, L1C1R1 FROM DBNS_AD1_HV ORDER BY date_time LIMIT 2 OFFSET 1")).all()
    expected = [(i, str(t)[:19], float(v)) for i, t, v in rows]  # SQLite: text, maybe with .000000
    assert out.splitlines() == [str(count), str(expected)]
    assert expected == [(2, "2011-02-01 00:00:10", 1001.0), (3, "2011-02-01 00:00:20", 1002.0)]


def test_the_manuals_nondbi_lines_work_as_written_through_stdin(dcs: TestDB, tmp_path: Path) -> None:
    env = {}
    if dcs.backend == "mysql":  # a ~/.my.cnf section named as in the manual
        mycnf = tmp_path / "my.cnf"
        mycnf.write_text(f"[fake_dcs]\nhost = {dcs.url.host}\nport = {dcs.url.port}\nuser = root\n"
                         f"database = {dcs.url.database}\n")
        env["SCRAPERD_MYCNF"], dbconf = str(mycnf), "fake_dcs"
    else:
        dbconf = dcs.name
    manual = f"""\
from NonDbi import session_
session = session_("{dbconf}")   ## dbconf
kls = session.kls_("DBNS_AD1_HV")   ## table name
q = session.query(kls).order_by(kls.date_time)  ## does not touch DB yet
q.count()         ## hits DB now
q.first()         ## LIMIT 0, 1    same as q[0:1][0]
q[70:74]          ## LIMIT 70,4
q[74:75]         ## LIMIT 74,1
q[73:74]        ## LIMIT 73,1
"""
    out = ok(shell("shell", stdin=manual, env=env)).splitlines()
    assert out[0] == "74"
    assert out[1] == "<DBNS_AD1_HV id=1 date_time=2011-02-01 00:00:00>"
    assert out[2] == "[" + ", ".join(f"<DBNS_AD1_HV id={i} date_time={T0 + timedelta(seconds=10 * (i - 1))}>"
                                     for i in range(71, 75)) + "]"
    assert out[3:] == ["[]", "[<DBNS_AD1_HV id=74 date_time=2011-02-01 00:12:10>]"]


def test_a_section_opens_src_and_tgt_and_a_faker_has_no_tgt(dcs: TestDB, make_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = make_db("offline")
    create_tables(target.engine, find_spec("DcsAdTemp"))
    insert_rows(dcs.url, "DBNS_SAB_Temp", [{"id": 1, "date_time": T0, "DBNS_SAB_Temp_PT1": 20.5}])
    common = {"regime": "scraperd.regimes.adtemp:AdTemp", "source": dcs.name}
    cfg = write_cfg(tmp_path / "scraper.cfg", {"adtemp_scraper": {**common, "mode": "scraper", "target": target.name},
                                               "adtemp_faker": {**common, "mode": "faker"}})
    code = "print(src.query(kls_('DBNS_SAB_Temp')).count(), tgt.query(tgt.kls_('DcsAdTempVld')).count())"
    assert ok(shell("-c", str(cfg), "shell", "adtemp_scraper", "-c", code)).split() == ["1", "0"]
    faker = shell("-c", str(cfg), "shell", "adtemp_faker", "-c", "print(tgt); src.query(kls_('DBNS_SAB_Temp')).count()")
    assert ok(faker).splitlines() == ["None", "1"]
    assert faker.stderr.strip() == "scraperd shell: tgt = None: [adtemp_faker] is a faker section, it has no target"


def test_kls_maps_a_table_without_primary_key_on_its_id_and_refuses_one_without(db: TestDB) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE nokey (id INTEGER, date_time DATETIME, v INTEGER)"))
        conn.execute(sa.text("INSERT INTO nokey VALUES (1, '2011-02-01 00:00:00', 5), (2, '2011-02-01 00:00:10', 6)"))
        conn.execute(sa.text("CREATE TABLE bare (v INTEGER)"))
    out = ok(shell("shell", "--db", db.name, "-c", "k = kls_('nokey'); [r.v for r in db.query(k).order_by(k.id)]"))
    assert out.strip() == "[5, 6]"
    refused = shell("shell", "--db", db.name, "-c", "kls_('bare')")
    assert refused.returncode == 1
    assert "NoSuchTable: bare has no primary key and no id or SEQNO column: kls_ cannot map it" in refused.stderr
    unknown = shell("shell", "--db", db.name, "-c", "kls_('DBNS_AD1_HVV')")
    assert unknown.returncode == 1 and "NoSuchTable: no table 'DBNS_AD1_HVV'" in unknown.stderr


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_exception_exits_1_with_its_traceback_after_what_was_printed(db: TestDB, backend: str) -> None:
    with db.engine.connect():
        pass  # the SQLite file exists
    proc = shell("shell", "--db", db.name, "-c", "print('before')\n1/0\nprint('after')")
    assert (proc.returncode, proc.stdout) == (1, "before\n")
    assert proc.stderr.startswith("Traceback") and 'File "<shell -c>", line 2' in proc.stderr
    assert proc.stderr.strip().endswith("ZeroDivisionError: division by zero")
    assert "scraperd/query/shell.py" not in proc.stderr  # only the code's own frames
    syntax = shell("shell", "--db", db.name, stdin="x = (\n")
    assert syntax.returncode == 1 and "SyntaxError" in syntax.stderr


def test_a_missing_sqlite_file_or_section_is_exit_78(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    proc = shell("shell", "--db", f"sqlite:///{missing}", "-c", "pass")
    assert (proc.returncode, proc.stderr.strip()) == (78, f"--db: no SQLite database file {missing}")
    assert not missing.exists()
    cfg = write_cfg(tmp_path / "scraper.cfg", {"monitor": {"mode": "monitor"}})
    proc = shell("-c", str(cfg), "shell", "adtemp_scraper", "-c", "pass")
    assert proc.returncode == 78 and "no such section" in proc.stderr
