"""scraperd backup / restore / verify, end to end through the command line, on SQLite and MariaDB.

Backup -> restore into a fresh database -> every row equal (bit for bit: FLOATs compared as their exact
stored values); an incremental run after growth dumps only the open and the new chunks; a flipped byte
or a gap is refused by restore and named by verify (exit 1); kill -9 during a backup and during a
restore, then the same command again: nothing lost, nothing twice.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import backupkit as kit
from tests.conftest import TestDB, wait_until
from tests.notifykit import HttpSink

CHUNK = "10"
MARIADB_ONLY = pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)])


def manifest(root: Path, table: str) -> dict:
    return json.loads((root / table / "manifest.json").read_text())


def files(root: Path, table: str) -> dict[str, tuple[int, int]]:
    """chunk file name -> (inode, mtime_ns)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / table).glob("chunk-*")}


def ok(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return str(proc.stdout)


def test_backup_then_restore_gives_every_row_equal(make_db: Callable[[str], TestDB], tmp_path: Path) -> None:
    src, dst = make_db("src"), make_db("dst")
    kit.create(src)
    kit.grow(src, 37)
    root = tmp_path / "bk"
    out = ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", CHUNK))
    assert "8 chunks dumped, 0 complete kept" in out, out  # 2 pairs x chunks 0..3
    m = manifest(root, "DcsText")
    assert [(c["index"], c["first"], c["last"], c["upto"], c["complete"]) for c in m["chunks"]] == [
        (0, 1, 10, 10, True), (1, 11, 20, 20, True), (2, 21, 30, 30, True), (3, 31, 40, 37, False)]
    assert m["chunks"][3]["files"]["DcsText"]["rows"] == 7 * 4 and m["chunks"][3]["files"]["DcsTextVld"]["rows"] == 7
    assert m["lastusedseqno"] == 37 and m["max_seqno"] == 37

    out = ok(kit.scraperd("restore", "--dir", str(root), kit.url(dst)))
    assert "8 chunks loaded" in out, out
    assert kit.contents(dst) == kit.contents(src)
    for t in ("DcsNum", "DcsText"):
        assert kit.exact(dst, t) == kit.exact(src, t)
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(dst)))


def test_chunk_files_load_with_the_database_client_alone(tmp_path: Path, make_db: Callable[[str], TestDB],
                                                         backend: str) -> None:
    """The README's one-liner: schema, every chunk (twice: each file replaces its range), LOCALSEQNO."""
    import subprocess

    src, dst = make_db("src"), make_db("dst")
    kit.create(src)
    kit.grow(src, 23)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", CHUNK))
    client = (["mariadb", "-h", "127.0.0.1", "-u", "root", str(dst.url.database)] if backend == "mysql"
              else ["sqlite3", str(dst.url.database)])
    for t in kit.PAIRS:
        d = root / t
        chunks = b"".join(gzip.decompress(p.read_bytes()) for p in sorted(d.glob("chunk-*.sql.gz")))
        text = (d / "schema.sql").read_bytes() + chunks + chunks + (d / "localseqno.sql").read_bytes()
        subprocess.run(client, input=text, check=True, capture_output=True)
    assert kit.contents(dst) == kit.contents(src)


def test_incremental_run_dumps_only_the_open_and_new_chunks(db: TestDB, tmp_path: Path) -> None:
    kit.create(db)
    kit.grow(db, 25)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK, "DcsNum"))
    before = files(root, "DcsNum")
    open_chunk = {n for n in before if n.startswith("chunk-000002-")}
    assert len(open_chunk) == 2  # payload and Vld of chunk 2 (SEQNO 21..25)

    kit.grow(db, 47)
    out = ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK, "DcsNum"))
    assert "3 chunks dumped, 2 complete kept" in out, out
    after = files(root, "DcsNum")
    for name, stamp in before.items():
        if name in open_chunk:
            assert name not in after  # the open chunk's older dump is gone, replaced
        else:
            assert after[name] == stamp  # complete chunks: the very same files, untouched
    new = sorted(set(after) - set(before))
    assert [n.split(".")[0] for n in new] == ["chunk-000002-0000000030"] * 2 + ["chunk-000003-0000000040"] * 2 + [
        "chunk-000004-0000000047"] * 2
    run = manifest(root, "DcsNum")["runs"][-1]
    assert run["chunks_dumped"] == 3 and run["chunks_kept"] == 2 and run["rows"] == (10 + 10 + 7) * (4 + 1)
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(db)))

    out = ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK, "DcsNum"))
    assert "1 chunks dumped, 4 complete kept" in out, out  # nothing new: only the open chunk again


def test_flipped_byte_is_named_by_verify_and_refused_by_restore(tmp_path: Path) -> None:
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 30)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", CHUNK))
    victim = sorted((root / "DcsText").glob("chunk-000001-*.DcsText.sql.gz"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))

    v = kit.scraperd("verify", "--dir", str(root))
    assert v.returncode == 1, v
    assert str(victim) in v.stdout and "does not match" in v.stdout, v.stdout
    assert v.stdout.strip().splitlines()[-1].startswith("verify FAILED"), v.stdout

    dst_url = f"sqlite:///{tmp_path / 'dst.db'}"
    r = kit.scraperd("restore", "--dir", str(root), dst_url)
    assert r.returncode == 1, r
    assert str(victim) in r.stderr and "nothing loaded" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line, no traceback
    assert not (tmp_path / "dst.db").exists() or os.path.getsize(tmp_path / "dst.db") == 0


@pytest.mark.parametrize("dropped, message", [
    (1, "chunk 1 missing (SEQNO 11..20): a gap in the chunk sequence"),
    (0, "chunk 0 missing (SEQNO 1..10)"),                    # the first: no gap "between" chunks
    (2, "chunk 2 missing (SEQNO 21..25): the backup run that saw SEQNO up to 25 did not finish"),
])
def test_a_gap_or_a_missing_first_or_last_chunk_is_refused(tmp_path: Path, dropped: int, message: str) -> None:
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 25)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", CHUNK, "DcsNum"))
    path = root / "DcsNum" / "manifest.json"
    m = json.loads(path.read_text())
    m["chunks"] = [c for c in m["chunks"] if c["index"] != dropped]
    path.write_text(json.dumps(m))
    v = kit.scraperd("verify", "--dir", str(root))
    assert v.returncode == 1 and message in v.stdout, v
    r = kit.scraperd("restore", "--dir", str(root), f"sqlite:///{tmp_path / 'dst.db'}")
    assert r.returncode == 1 and message in r.stderr and "nothing loaded" in r.stderr, r
    assert not (tmp_path / "dst.db").exists() or os.path.getsize(tmp_path / "dst.db") == 0
    if dropped == 2:  # what a restore up to SEQNO 20 needs is there
        ok(kit.scraperd("restore", "--dir", str(root), f"sqlite:///{tmp_path / 'dst.db'}", "--upto", "20"))


def test_restore_refuses_every_table_the_target_holds_before_it_touches_anything(
        db: TestDB, make_db: Callable[[str], TestDB], tmp_path: Path) -> None:
    """A target table with rows is refused, with or without its LOCALSEQNO row (only the marker of an
    unfinished restore of the same directory is resumed); the other tables are not created meanwhile."""
    kit.create(db)
    kit.grow(db, 25)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK))
    dst = make_db("dst")
    kit.create(dst)
    kit.grow(dst, 30)
    with dst.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM LOCALSEQNO WHERE TABLENAME = 'DcsText'")
        conn.exec_driver_sql("DROP TABLE DcsNum")
        conn.exec_driver_sql("DROP TABLE DcsNumVld")
    before = kit.contents(dst, ("DcsText",))
    r = kit.scraperd("restore", "--dir", str(root), kit.url(dst))
    assert r.returncode == 1 and "already holds DcsText (SEQNO 1..30)" in r.stderr and "nothing loaded" in r.stderr, r
    assert kit.contents(dst, ("DcsText",)) == before
    with dst.engine.connect() as conn:
        tables = {t.lower() for t in sa.inspect(conn).get_table_names()}
    assert "dcsnum" not in tables and "scraperd_restoring" not in tables, tables


def test_a_damaged_complete_chunk_is_dumped_again_and_a_changed_one_fails_the_backup(db: TestDB,
                                                                                    tmp_path: Path) -> None:
    kit.create(db)
    kit.grow(db, 35)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK, "DcsNum"))
    victim = next((root / "DcsNum").glob("chunk-000001-*.DcsNumVld.sql.gz"))
    victim.unlink()
    p = kit.scraperd("backup", kit.url(db), "--dir", str(root), "DcsNum")
    assert "2 chunks dumped, 2 complete kept" in ok(p) and '"chunk_damaged"' in p.stderr, p  # chunk 1 and the open 3
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(db)))

    with db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM DcsNum WHERE SEQNO = 5 AND ROW_COUNTER = 2")
    next((root / "DcsNum").glob("chunk-000000-*.DcsNum.sql.gz")).unlink()
    p = kit.scraperd("backup", kit.url(db), "--dir", str(root), "DcsNum")
    assert p.returncode == 1, p
    assert "complete chunk 0 of DcsNum (SEQNO 1..10) dumped again holds other rows" in p.stdout, p.stdout


def test_verify_against_the_live_table_finds_a_changed_row(db: TestDB, tmp_path: Path) -> None:
    kit.create(db)
    kit.grow(db, 25)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK))
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(db)))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE DcsText SET label = 'tampered' WHERE SEQNO = 12 AND ROW_COUNTER = 1")
    v = kit.scraperd("verify", "--dir", str(root), kit.url(db))
    assert v.returncode == 1, v
    [line] = [x for x in v.stdout.splitlines() if x.startswith("FAILED")]
    assert "complete chunk 1 of DcsText (SEQNO 11..20)" in line and "same row count, different values" in line, line
    assert "corrupt" in line


def test_restore_upto_and_refusal_of_a_table_already_there(db: TestDB, make_db: Callable[[str], TestDB],
                                                          tmp_path: Path) -> None:
    kit.create(db)
    kit.grow(db, 28)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(db), "--dir", str(root), "--chunk", CHUNK))
    dst = make_db("dst")
    ok(kit.scraperd("restore", "--dir", str(root), kit.url(dst), "DcsNum", "--upto", "15"))
    got = kit.contents(dst, ("DcsNum",))
    assert {r[0] for r in got["DcsNumVld"]} == set(range(1, 16))
    assert got["DcsNum"] == [r for r in kit.contents(db)["DcsNum"] if r[0] <= 15]
    assert ("DcsNum", 15) in got["LOCALSEQNO"]
    again = kit.scraperd("restore", "--dir", str(root), kit.url(dst), "DcsNum")
    assert again.returncode == 1 and "already holds DcsNum (SEQNO 1..15, LOCALSEQNO 15)" in again.stderr, again


@pytest.mark.parametrize("args, message", [
    (["backup", "sqlite:///{tmp}/src.db", "--dir", "{tmp}/bk", "NoSuch"], "holds no DBI table pair NoSuch/NoSuchVld"),
    (["backup", "sqlite:///{tmp}/src.db", "--dir", "{tmp}/bk", "--chunk", "7"], "holds chunks of 10 SEQNOs, not 7"),
    (["restore", "--dir", "{tmp}/nowhere", "sqlite:///{tmp}/dst.db"], "--dir {tmp}/nowhere: no such directory"),
    (["verify", "--dir", "{tmp}/nowhere"], "no such directory"),
    (["backup", "no_such_mycnf_section", "--dir", "{tmp}/bk"], "no_such_mycnf_section"),
    (["restore", "--dir", "{tmp}/bk", "sqlite:///{tmp}/dst.db", "NoSuch"], "holds no backup of NoSuch"),
    (["verify", "--dir", "{tmp}/bk", "--table", "NoSuch"], "holds no backup of NoSuch"),
    (["-c", "{tmp}/typo.cfg", "backup", "sqlite:///{tmp}/src.db", "--dir", "{tmp}/bk"], "no such config file"),
    (["backup", "sqlite:///{tmp}/nosuch.db", "--dir", "{tmp}/bk"], "no such SQLite file"),
])
def test_bad_arguments_are_exit_78_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 12)
    if "--chunk" in args or "NoSuch" in args:
        ok(kit.scraperd("backup", kit.url(src), "--dir", str(tmp_path / "bk"), "--chunk", CHUNK))
    mycnf = tmp_path / "my.cnf"
    mycnf.write_text("[other]\nhost = 127.0.0.1\n")
    p = kit.scraperd(*[a.format(tmp=tmp_path) for a in args], env={"SCRAPERD_MYCNF": str(mycnf)})
    assert p.returncode == 78, p
    errors = [line for line in p.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and message.format(tmp=tmp_path) in errors[0], p.stderr


@MARIADB_ONLY
def test_myisam_pairs_are_backed_up_under_lock_tables_and_restored(make_db: Callable[[str], TestDB],
                                                                  tmp_path: Path) -> None:
    """A legacy MyISAM pair has no snapshot: it is dumped under LOCK TABLES ... READ, restored as MyISAM."""
    src, dst = make_db("src"), make_db("dst")
    kit.create(src, "MyISAM")
    kit.grow(src, 23)
    root = tmp_path / "bk"
    p = kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", CHUNK)
    ok(p)
    locking = [json.loads(line) for line in p.stderr.splitlines() if '"backup_locking"' in line]
    assert sorted(e["table"] for e in locking) == ["DcsNum", "DcsText"], p.stderr
    kit.grow(src, 31)
    assert "4 chunks dumped, 4 complete kept" in ok(kit.scraperd("backup", kit.url(src), "--dir", str(root)))
    ok(kit.scraperd("restore", "--dir", str(root), kit.url(dst)))
    assert kit.contents(dst) == kit.contents(src)
    with dst.engine.connect() as conn:
        engines = set(conn.exec_driver_sql("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                           "DATABASE() AND TABLE_NAME LIKE 'Dcs%%'").scalars())
    assert engines == {"MyISAM"}
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(dst)))


def test_kill_during_backup_then_again_loses_nothing(make_db: Callable[[str], TestDB], tmp_path: Path) -> None:
    src = make_db("src")
    kit.create(src)
    kit.grow(src, 600, rows_per_seqno=8)
    root = tmp_path / "bk"
    log = tmp_path / "backup.log"
    proc = kit.spawn(log, "backup", kit.url(src), "--dir", str(root), "--chunk", "5", "--workers", "1")
    wait_until(lambda: log.read_text().count('"chunk_dumped"') >= 3 or proc.poll() is not None, timeout=60,
               what="three chunks dumped")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = manifest(root, "DcsNum")
    assert 0 < len(killed["chunks"]) < 120, "the kill came after the backup finished: make the table bigger"
    named = {f["name"] for c in killed["chunks"] for f in c["files"].values()}
    for p in (root / "DcsNum").glob("chunk-*"):  # a file under a chunk's name is whole, named or not
        if p.name not in named:  # killed between the renames of a chunk's two files and its manifest entry
            assert gzip.decompress(p.read_bytes()).endswith(b";\n"), p.name
    v = kit.scraperd("verify", "--dir", str(root))  # what the manifest names is whole, but the run did not end
    assert v.returncode == 1 and "did not finish" in v.stdout and "does not match" not in v.stdout, v.stdout
    r = kit.scraperd("restore", "--dir", str(root), kit.url(make_db("early")))
    assert r.returncode == 1 and "did not finish" in r.stderr and "nothing loaded" in r.stderr, r.stderr

    out = ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", "5"))
    assert "complete kept" in out
    assert not list((root / "DcsNum").glob(".tmp-*"))
    ok(kit.scraperd("verify", "--dir", str(root), kit.url(src)))
    dst = make_db("dst")
    ok(kit.scraperd("restore", "--dir", str(root), kit.url(dst)))
    assert kit.contents(dst) == kit.contents(src)


def test_kill_during_restore_then_again_loses_nothing(make_db: Callable[[str], TestDB], tmp_path: Path) -> None:
    src = make_db("src")
    kit.create(src)
    kit.grow(src, 600, rows_per_seqno=8)
    root = tmp_path / "bk"
    ok(kit.scraperd("backup", kit.url(src), "--dir", str(root), "--chunk", "5"))
    dst = make_db("dst")
    log = tmp_path / "restore.log"
    proc = kit.spawn(log, "restore", "--dir", str(root), kit.url(dst), "--workers", "2")
    wait_until(lambda: log.read_text().count('"chunk_loaded"') >= 4 or proc.poll() is not None, timeout=60,
               what="four chunks loaded")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with dst.engine.connect() as conn:
        partial = conn.exec_driver_sql("SELECT COUNT(*) FROM DcsNumVld").scalar()
        marked = conn.exec_driver_sql("SELECT COUNT(*) FROM LOCALSEQNO WHERE TABLENAME = 'DcsNum'").scalar()
    assert partial and partial < 600 and marked == 0, (partial, marked)  # killed mid-way, "in progress"

    out = ok(kit.scraperd("restore", "--dir", str(root), kit.url(dst)))
    kept = int(out.split(" chunks loaded, ")[1].split(" already there")[0])
    assert kept > 0, out  # whole chunks of the killed run were kept, not loaded again
    assert kit.contents(dst) == kit.contents(src)


def test_progress_is_notified_when_a_notify_section_is_named(tmp_path: Path) -> None:
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 30)
    with HttpSink() as http:
        cfg = tmp_path / "scraper.cfg"
        cfg.write_text(f"[monitor]\nmode = monitor\nnotify = http\nhttp_url = {http.url}\nprogress_every = 50\n")
        ok(kit.scraperd("-c", str(cfg), "backup", kit.url(src), "--dir", str(tmp_path / "bk"), "--chunk", CHUNK,
                        "--notify", "monitor"))
        posts = http.wait_for(3, timeout=20)
    states = [p.body["state"] for p in posts]
    assert states[0] == "running" and states[-1] == "completed", states
    assert posts[-1].body["check"] == "progress" and "backup completed at 100 %" in posts[-1].body["summary"]


def test_backup_section_gives_chunk_workers_and_notifications(tmp_path: Path) -> None:
    """A mode = backup section of the config: its chunk for a new directory, its notify keys for progress;
    a directory keeps its chunk when --chunk is not given; nothing of it is a supervisord program."""
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 12)
    root = tmp_path / "bk"
    with HttpSink() as http:
        cfg = tmp_path / "scraper.cfg"
        cfg.write_text(f"[nightly]\nmode = backup\nchunk = 5\nworkers = 1\nnotify = http\nhttp_url = {http.url}\n"
                       "progress_every = 50\n")
        out = ok(kit.scraperd("-c", str(cfg), "backup", kit.url(src), "--dir", str(root)))
        assert "6 chunks dumped" in out, out  # 2 pairs x SEQNO 1..5, 6..10, 11..12
        assert manifest(root, "DcsNum")["chunk"] == 5
        http.wait_for(3, timeout=20)
        posts = list(http.messages)  # running 0 %, running 50 %, completed (the command waited for them)
        assert posts[0].body["state"] == "running" and posts[-1].body["state"] == "completed", posts
        assert posts[-1].body["section"] == "nightly" and "nightly backup completed at 100 %" in posts[-1].body["summary"]

        cfg.write_text("[nightly]\nmode = backup\n")  # chunk 10000 now: the directory keeps its 5
        kit.grow(src, 17)
        out = ok(kit.scraperd("-c", str(cfg), "backup", kit.url(src), "--dir", str(root)))
        assert "4 chunks dumped, 4 complete kept" in out, out  # per pair: 11..15 again, 16..17 new; 1..5, 6..10 kept
        assert len(http.messages) == len(posts)  # no notify keys any more: nothing posted

    gen = ok(kit.scraperd("-c", str(cfg), "gen-ini", "ALL", "-o", str(tmp_path / "conf.d"), "--logdir",
                          str(tmp_path / "log")))
    assert "nightly" not in gen, gen  # cron runs backups, supervisord none
    r = kit.scraperd("-c", str(cfg), "run", "nightly")
    assert r.returncode == 2 and "scraperd backup" in r.stderr, r
    c = kit.scraperd("-c", str(cfg), "check-config", "--no-connect")
    assert c.returncode == 0 and "nightly" in c.stdout and "ok" in c.stdout, c


@pytest.mark.mysql
def test_an_unreachable_server_is_one_line_exit_1(tmp_path: Path) -> None:
    for args in (["backup", "mysql+mysqldb://root@127.0.0.1:1/nowhere", "--dir", str(tmp_path / "bk")],
                 ["restore", "--dir", str(tmp_path), "mysql+mysqldb://root@127.0.0.1:1/nowhere"]):
        if args[0] == "restore":
            (tmp_path / "T").mkdir()
            (tmp_path / "T" / "manifest.json").write_text(json.dumps(
                {"table": "T", "vld": "TVld", "chunk": 10, "dialect": "mysql", "chunks": []}))
        p = kit.scraperd(*args)
        errors = [line for line in p.stderr.splitlines() if not line.startswith("{")]
        assert p.returncode == 1 and len(errors) == 1, p
        assert "127.0.0.1" in errors[0] and "internal error" not in errors[0], errors


@pytest.mark.parametrize("text, args, message", [
    ("[nightly]\nmode = backup\nchunk = 0\n", [], "[nightly] chunk: must be >= 1, got 0"),
    ("[nightly]\nmode = backup\nchunks = 5\n", [], "[nightly] chunks: unknown key (did you mean 'chunk'?)"),
    ("[nightly]\nmode = backup\nnotify = http\n", [], "[nightly] http_url: required"),
    ("[nightly]\nmode = backup\n", ["--section", "weekly"], "[weekly]: no such section (--section)"),
    ("[a]\nmode = backup\n[b]\nmode = backup\n", [], "2 mode = backup sections (a, b): name one with --section"),
    ("[mon]\nmode = monitor\n", ["--section", "mon"], "[mon] mode: is a monitor section, not a backup section"),
])
def test_a_broken_backup_section_is_exit_78_naming_file_section_and_key(tmp_path: Path, text: str, args: list[str],
                                                                        message: str) -> None:
    src = TestDB("sqlite", *_sqlite(tmp_path, "src"))
    kit.create(src)
    kit.grow(src, 3)
    cfg = tmp_path / "scraper.cfg"
    cfg.write_text(text)
    p = kit.scraperd("-c", str(cfg), "backup", kit.url(src), "--dir", str(tmp_path / "bk"), *args)
    assert p.returncode == 78, p
    errors = [line for line in p.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith(str(cfg)) and message in errors[0], p.stderr
    assert not (tmp_path / "bk").exists()  # refused before anything was written


@pytest.mark.parametrize("argv, word", [
    (["backup", "db", "--dir", "d"], "backup"), (["-c", "x.cfg", "restore", "--dir", "d", "db"], "restore"),
    (["--config", "verify", "status"], "status"), (["--debug", "verify", "--dir", "d"], "verify"),
    (["--help", "backup"], None), ([], None),
])
def test_the_entry_point_finds_the_command_word(argv: list[str], word: str | None) -> None:
    from scraperd.entry import command_word

    assert command_word(argv) == word


def test_backup_commands_start_without_the_rest_of_the_cli(tmp_path: Path) -> None:
    """Cron runs backups often: their command line is parsed without pydantic, the monitor or the notifier."""
    code = ("import sys\nfrom scraperd.entry import main\ntry:\n    main(['verify', '--dir', sys.argv[1]])\n"
            "finally:\n    print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'scraperd')))\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nowhere")], capture_output=True, text=True,
                       cwd=kit.REPO, timeout=60)
    loaded = p.stdout.strip().splitlines()[-1]
    assert "pydantic" not in loaded and "scraperd.monitor" not in loaded and "scraperd.notify" not in loaded, loaded
    assert "no such directory" in p.stderr


# ----------------------------------------------------------------------------------------------------------

def _sqlite(tmp_path: Path, tag: str):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from scraperd import databases

    url = sa.engine.make_url(f"sqlite:///{tmp_path / (tag + '.db')}")
    return url, databases.make_engine(url)

