"""Benchmark: `scraperd backup` / `restore` (SEQNO chunks, issue 13) against mysqldump and mysql.

A DcsPmtHv table pair on MariaDB in the database `scraperd_bench_backup`, made by the real DDL
(`scraperd ddl DcsPmtHv --dialect mysql`: DcsPmtHv, DcsPmtHvVld, LOCALSEQNO) and filled by
`INSERT ... SELECT` from MariaDB's SEQUENCE engine: 192 payload rows (ladder x col x ring) per SEQNO,
one Vld row per SEQNO, LOCALSEQNO = the highest SEQNO. Full size (--full): 52,084 SEQNOs = 10M payload
rows, --chunk 2000 (384k rows a chunk); small: 2,605 SEQNOs = 500k rows, --chunk 100 (the same shape:
26 complete chunks and an open one). Timed side by side in one run, every command a child process:

    (a0) `mariadb-dump --single-transaction DB DcsPmtHv DcsPmtHvVld LOCALSEQNO > dump.sql`, printed for
        information: the same dump without compression, which scraperd's files have;
    (a) `mariadb-dump --single-transaction DB DcsPmtHv DcsPmtHvVld LOCALSEQNO | gzip -1 > dump.sql.gz`
        (compressed as scraperd's chunk files are: both sides do the same work);
    (b) `scraperd backup URL --dir bk --chunk C` (default 2 workers): ratio (b)/(a), target ≤ 1.0;
    (c) the tables grown by 1 % (new SEQNOs, LOCALSEQNO moved), then `scraperd backup` again into the
        same --dir (incremental: only the open chunk is dumped again): ratio (c)/(b), target ≤ 0.05, on
        each run's own time as it reports it (backup_started..backup_done): Python's start-up and imports
        (~0.3 s, printed) do not grow with the table; the ratio of the commands' wall times is printed too;
    (d) `gzip -dc dump.sql.gz | mariadb DB2`, the dump of (a) (taken BEFORE the growth: it holds 1 %
        fewer rows than what (e) restores, which favours the baseline) into an empty database;
    (e) `scraperd restore --dir bk URL3` (default 2 workers) into an empty database: ratio (e)/(d),
        target ≤ 0.5. Then the row counts of DB3 against the source and `scraperd verify --dir bk`.

The whole table is read once first so that no side pays for a cold cache. Besides the ratios it
prints rows/s of (b) and (e), the bytes of the backup directory and of the dump, and where scraperd's
time goes (from its JSON events on stderr: start-up, chunk_dumped / chunk_loaded seconds).
The grown SEQNOs are deleted again at the end: the next run reuses the built table.

Every scraperd command runs under a time limit (a generous multiple of its baseline's time): one that
does not finish is killed and reported with the server's process list, and the databases are then
left alone (a DROP would wait behind the hung sessions). MariaDB 10.11 hung a restore's first LOAD DATA
into an empty table (bulk-insert mode, unique_checks and foreign_key_checks off) while the other worker
counted rows of that table; restore no longer turns those checks off.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from bench import lidsensor
from scraperd import databases
from scraperd.backup import sqlfiles
from scraperd.dbi import spec as specmod
from scraperd.dbi import tables as dbitables

DB = "scraperd_bench_backup"
DUMP_DB = "scraperd_bench_restore_dump"          # (d): mysql's restore
RESTORE_DB = "scraperd_bench_restore_scraperd"   # (e): scraperd's restore
TABLE = "DcsPmtHv"
VLD = f"{TABLE}Vld"
LOCALSEQNO = "LOCALSEQNO"
ROWS_PER_SEQNO = 192                 # 8 ladders x 3 columns x 8 rings
FULL_SEQNOS = 52_084                 # 10,000,128 payload rows
SMALL_SEQNOS = 2_605                 # 500,160 payload rows
# 192 payload rows a SEQNO: 2000 SEQNOs are 384k rows (~2.7 MB gzip) a chunk file, 27 chunks, so that two
# workers stay busy to the end and the open chunk stays small against the table
FULL_CHUNK = 2_000
SMALL_CHUNK = 100                    # the small table keeps the full one's shape: 26 complete chunks + 1 open
GROWTH = 0.01
BUILD_BATCH = 5_000                  # SEQNOs per INSERT ... SELECT while building
START = datetime(2012, 1, 1)
STEP_S = 60                          # one record a minute
RECIPE = "scraperd bench backup v1"  # change when the values below change: old tables are rebuilt
ROUNDS = 3                           # (a) and (b) alternate this many times: medians compared
TARGET_FULL = 1.0                    # (b)/(a)
TARGET_INCREMENTAL = 0.05            # (c)/(b)
TARGET_RESTORE = 0.5                 # (e)/(d)
REPO = Path(__file__).resolve().parents[1]


def url(database: str | None = DB) -> URL:
    return lidsensor.server_url(database)


def url_arg(u: URL) -> str:
    return u.render_as_string(hide_password=False)


def _payload_sql(first_seqno: int, last_seqno: int) -> str:
    """Payload rows of SEQNO first..last from the SEQUENCE engine: `seq` numbers the rows from 1."""
    lo, hi = (first_seqno - 1) * ROWS_PER_SEQNO + 1, last_seqno * ROWS_PER_SEQNO
    r = f"MOD(seq - 1, {ROWS_PER_SEQNO})"  # 0..191
    return (f"INSERT INTO `{TABLE}` (SEQNO, ROW_COUNTER, ladder, col, ring, voltage, pw) "
            f"SELECT (seq - 1) DIV {ROWS_PER_SEQNO} + 1, {r} + 1, {r} DIV 24 + 1, MOD({r} DIV 8, 3) + 1, "
            f"MOD({r}, 8) + 1, 1300 + MOD(seq * 7919, 60000) / 100, IF(MOD(seq, 997) = 0, 0, 1) "
            f"FROM seq_{lo}_to_{hi}")


def _vld_sql(first_seqno: int, last_seqno: int) -> str:
    ts = f"TIMESTAMP'{START:%Y-%m-%d %H:%M:%S}' + INTERVAL (seq - 1) * {STEP_S} SECOND"
    return (f"INSERT INTO `{VLD}` SELECT seq, {ts}, {ts} + INTERVAL {STEP_S} SECOND, 1, 1, MOD(seq, 2) + 1, 0, -1, "
            f"{ts}, {ts} + INTERVAL 30 SECOND FROM seq_{first_seqno}_to_{last_seqno}")


def _set_localseqno(conn: sa.Connection, seqno: int) -> None:
    conn.exec_driver_sql(f"UPDATE `{LOCALSEQNO}` SET LASTUSEDSEQNO = {int(seqno)} WHERE TABLENAME = '{TABLE}'")


def _comment(seqnos: int) -> str:
    return f"{RECIPE} seqnos={seqnos}"


def build(seqnos: int) -> tuple[bool, float]:
    """The pair with SEQNO 1..seqnos, reused when it is there (a previous run's growth deleted): (reused?, s)."""
    t0 = time.monotonic()
    databases.ensure_database(url())
    engine = databases.make_engine(url())
    try:
        with engine.begin() as conn:
            comment = conn.execute(sa.text("SELECT TABLE_COMMENT FROM information_schema.TABLES "
                                           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"), {"t": TABLE}).scalar()
            if comment == _comment(seqnos):
                shrink(conn, seqnos)  # an interrupted run may have left its growth
                n = conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{TABLE}`").scalar()
                v = conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{VLD}`").scalar()
                if n == seqnos * ROWS_PER_SEQNO and v == seqnos:
                    return True, time.monotonic() - t0
            for t in (TABLE, VLD, LOCALSEQNO):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{t}`")
            ddl = dbitables.ddl(specmod.find_spec(TABLE, specmod.DEFAULT_SPEC_DIR), "mysql")
            for stmt in (s.strip() for s in ddl.split(";\n")):
                if stmt:
                    conn.exec_driver_sql(stmt)
        for first in range(1, seqnos + 1, BUILD_BATCH):  # a transaction per batch: no 10M-row undo log
            last = min(first + BUILD_BATCH - 1, seqnos)
            with engine.begin() as conn:
                conn.exec_driver_sql(_payload_sql(first, last))
                conn.exec_driver_sql(_vld_sql(first, last))
        with engine.begin() as conn:
            _set_localseqno(conn, seqnos)
            # the comment marks the table finished: an interrupted build is never reused
            conn.exec_driver_sql(f"ALTER TABLE `{TABLE}` COMMENT = '{_comment(seqnos)}'")
            conn.exec_driver_sql(f"ANALYZE TABLE `{TABLE}`, `{VLD}`")
    finally:
        engine.dispose()
    return False, time.monotonic() - t0


def shrink(conn: sa.Connection, seqnos: int) -> None:
    """Back to SEQNO 1..seqnos: the growth of (c) removed."""
    for t in (TABLE, VLD):
        conn.exec_driver_sql(f"DELETE FROM `{t}` WHERE SEQNO > {int(seqnos)}")
    _set_localseqno(conn, seqnos)


def grow(seqnos: int, extra: int) -> float:
    """SEQNO seqnos+1 .. seqnos+extra appended as DBI writes them (payload, Vld, then LOCALSEQNO)."""
    engine = databases.make_engine(url())
    t0 = time.monotonic()
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(_payload_sql(seqnos + 1, seqnos + extra))
            conn.exec_driver_sql(_vld_sql(seqnos + 1, seqnos + extra))
            _set_localseqno(conn, seqnos + extra)
    finally:
        engine.dispose()
    return time.monotonic() - t0


def counts(database: str) -> dict[str, Any]:
    engine = databases.make_engine(url(database))
    try:
        with engine.connect() as conn:
            out: dict[str, Any] = {t: conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{t}`").scalar() for t in (TABLE, VLD)}
            out[LOCALSEQNO] = conn.exec_driver_sql(f"SELECT LASTUSEDSEQNO FROM `{LOCALSEQNO}` "
                                                   f"WHERE TABLENAME = '{TABLE}'").scalar()
            return out
    finally:
        engine.dispose()


def warm_up() -> float:
    """Read both tables once, so that neither side pays for a cold cache."""
    engine = databases.make_engine(url())
    try:
        with engine.connect() as conn:
            t0 = time.monotonic()
            conn.exec_driver_sql(f"SELECT SUM(voltage), MAX(pw) FROM `{TABLE}`").fetchall()
            conn.exec_driver_sql(f"SELECT MAX(TIMEEND) FROM `{VLD}`").fetchall()
            return time.monotonic() - t0
    finally:
        engine.dispose()


def fresh(database: str) -> None:
    databases.drop_database(url(database))
    databases.ensure_database(url(database))


def _pipe(first: list[str], second: list[str], stdout: Any, err: Path) -> float:
    """`first | second > stdout`, both must succeed; elapsed seconds."""
    with open(err, "ab") as e:
        t0 = time.monotonic()
        p1 = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=e)
        p2 = subprocess.Popen(second, stdin=p1.stdout, stdout=stdout, stderr=e)
        assert p1.stdout is not None
        p1.stdout.close()  # p2 holds it now: p1 sees SIGPIPE if p2 dies
        rc2, rc1 = p2.wait(), p1.wait()
        elapsed = time.monotonic() - t0
    if rc1 or rc2:
        raise RuntimeError(f"{' '.join(first)} | {' '.join(second)} failed ({rc1}, {rc2}): "
                           f"{err.read_text(errors='replace').strip()[-500:]}")
    return elapsed


def baseline_dump(defaults: Path, path: Path, err: Path) -> float:
    """(a) mysqldump of the three tables, gzip -1."""
    dump = [sqlfiles.mysqldump_binary(), f"--defaults-extra-file={defaults}", "--single-transaction", DB,
            TABLE, VLD, LOCALSEQNO]
    with open(path, "wb") as out:
        return _pipe(dump, ["gzip", "-1"], out, err)


def baseline_plain_dump(defaults: Path, path: Path, err: Path) -> float:
    """(a0) mysqldump of the three tables to a plain SQL file (information: no compression at all)."""
    dump = [sqlfiles.mysqldump_binary(), f"--defaults-extra-file={defaults}", "--single-transaction",
            f"--result-file={path}", DB, TABLE, VLD, LOCALSEQNO]
    with open(err, "ab") as e:
        t0 = time.monotonic()
        rc = subprocess.run(dump, stderr=e).returncode
        elapsed = time.monotonic() - t0
    if rc:
        raise RuntimeError(f"{' '.join(dump)} failed ({rc})")
    return elapsed


def baseline_restore(defaults: Path, path: Path, err: Path) -> float:
    """(d) the dump into an empty database by the mysql client."""
    client = "mariadb" if subprocess.run(["which", "mariadb"], capture_output=True).returncode == 0 else "mysql"
    return _pipe(["gzip", "-dc", str(path)], [client, f"--defaults-extra-file={defaults}", DUMP_DB],
                 subprocess.DEVNULL, err)


class Hung(RuntimeError):
    """A scraperd command still running at its time limit (killed)."""


def processlist() -> str:
    """The server's sessions (SHOW PROCESSLIST needs no InnoDB: it answers while InnoDB hangs)."""
    engine = databases.make_engine(url(None))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SHOW FULL PROCESSLIST").fetchall()
    finally:
        engine.dispose()
    return "\n".join(f"  {r[0]} {r[3]} {r[4]} {r[5]} s {r[6]}: {(r[7] or '')[:100]}" for r in rows
                     if r[4] != "Sleep" and not str(r[7] or "").startswith("SHOW FULL PROCESSLIST"))


def scraperd(args: list[str], log: Path, limit: float) -> tuple[float, int, list[dict[str, Any]]]:
    """`python -m scraperd ARGS` with stdout and stderr to log: (seconds, exit code, its JSON events);
    Hung when it runs for more than limit seconds."""
    with open(log, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "scraperd", *args], cwd=REPO, stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            sessions = processlist()
            proc.kill()
            proc.wait()
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise Hung(f"`scraperd {args[0]}` still running after {limit:.0f} s: killed. Its last lines:\n{tail}\n"
                       f"The server's sessions:\n{sessions}") from None
        elapsed = time.monotonic() - t0
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return elapsed, rc, events


def must(rc: int, what: str, log: Path) -> None:
    if rc:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-5:])
        raise RuntimeError(f"{what} failed (exit {rc}):\n{tail}")


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()


def phases(events: list[dict[str, Any]], t_wall: float, started: str, chunk: str, done: str) -> tuple[str, float]:
    """Where a scraperd run's time went: start-up (process start to `started`: Python, imports and, for
    restore, the digest checks), then `started`..`done` and its chunks' own seconds; and that last span."""
    ev = {e["event"]: e for e in events if e.get("event") in (started, done)}
    chunks = [e for e in events if e.get("event") == chunk]
    if started not in ev or done not in ev:
        return "no events", math.nan
    run_s = _ts(ev[done]) - _ts(ev[started])
    secs = [float(e["seconds"]) for e in chunks]
    per = f", {sum(secs):.2f} s summed over {len(secs)} chunks (max {max(secs):.2f})" if secs else ""
    return f"start-up {t_wall - run_s:.2f} s, {started}..{done} {run_s:.2f} s{per}", run_s


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.3f} (target ≤ {target}) {'PASS' if ratio <= target else 'FAIL'}"


def main(full: bool) -> None:
    seqnos = FULL_SEQNOS if full else SMALL_SEQNOS
    chunk = FULL_CHUNK if full else SMALL_CHUNK
    extra = math.ceil(seqnos * GROWTH)
    rows = seqnos * ROWS_PER_SEQNO
    reused, build_s = build(seqnos)
    print(f"backup.table: {DB}.{TABLE} {rows:,} rows, {seqnos:,} SEQNOs + {VLD} "
          f"({'reused' if reused else f'built in {build_s:.1f} s'}); --chunk {chunk}", flush=True)
    print(f"backup.warm_up_s: {warm_up():.2f}", flush=True)
    src = url()
    hung = False
    try:
        with tempfile.TemporaryDirectory(prefix="scraperd-bench-backup-") as tmp, \
                sqlfiles.mysql_defaults(src) as defaults:
            d = Path(tmp)
            bk, dump = d / "bk", d / "dump.sql.gz"
            plain = d / "dump.sql"
            a0_s = baseline_plain_dump(defaults, plain, d / "baseline.err")
            print(f"backup.mysqldump_plain_s: {a0_s:.2f}  (a0: mariadb-dump --single-transaction > file, "
                  f"{size(plain) / 1e6:,.1f} MB, uncompressed)", flush=True)
            plain.unlink()
            # (a) and (b) alternate ROUNDS times, each from scratch; the medians are compared (one run of
            # each on this 2-core machine moves the ratio by several %)
            a_runs, b_runs = [], []
            for _ in range(ROUNDS):
                a_runs.append(baseline_dump(defaults, dump, d / "baseline.err"))
                shutil.rmtree(bk, ignore_errors=True)
                log = d / "backup.log"
                b_s, rc, ev = scraperd(["backup", url_arg(src), "--dir", str(bk), "--chunk", str(chunk)], log,
                                       60 + 20 * a_runs[-1])
                must(rc, "scraperd backup", log)
                where, b_run = phases(ev, b_s, "backup_started", "chunk_dumped", "backup_done")
                b_runs.append((b_s, b_run, where))
            a_s = statistics.median(a_runs)
            b_s, b_run, where = sorted(b_runs)[len(b_runs) // 2]
            print(f"backup.mysqldump_gzip1_s: {a_s:.2f}  (a: mariadb-dump --single-transaction | gzip -1, "
                  f"{size(dump) / 1e6:,.1f} MB; median of {', '.join(f'{x:.2f}' for x in a_runs)})", flush=True)
            print(f"backup.full_s: {b_s:.2f}  (b: {rows / b_s:,.0f} rows/s; {where}; median of "
                  f"{', '.join(f'{x[0]:.2f}' for x in b_runs)})", flush=True)
            full_bytes = size(bk)

            grow_s = grow(seqnos, extra)
            grown_rows = (seqnos + extra) * ROWS_PER_SEQNO
            print(f"backup.grown: +{extra} SEQNOs (+{extra * ROWS_PER_SEQNO:,} rows) in {grow_s:.2f} s", flush=True)
            log = d / "incremental.log"
            c_s, rc, ev = scraperd(["backup", url_arg(src), "--dir", str(bk), "--chunk", str(chunk)], log,
                                   60 + 20 * a_s)
            must(rc, "scraperd backup (incremental)", log)
            dumped = [e for e in ev if e.get("event") == "chunk_dumped"]
            where, c_run = phases(ev, c_s, "backup_started", "chunk_dumped", "backup_done")
            print(f"backup.incremental_s: {c_s:.2f}  (c: {len(dumped)} chunk(s), "
                  f"{sum(e['rows'] for e in dumped):,} rows dumped again; {where})", flush=True)

            fresh(DUMP_DB)
            d_s = baseline_restore(defaults, dump, d / "baseline.err")
            print(f"backup.mysql_restore_s: {d_s:.2f}  (d: gzip -dc | mariadb, the dump of (a): "
                  f"{rows / d_s:,.0f} rows/s)", flush=True)
            dump_counts = counts(DUMP_DB)
            databases.drop_database(url(DUMP_DB))

            fresh(RESTORE_DB)
            log = d / "restore.log"
            e_s, rc, ev = scraperd(["restore", "--dir", str(bk), url_arg(url(RESTORE_DB))], log, 60 + 10 * d_s)
            must(rc, "scraperd restore", log)
            where, e_run = phases(ev, e_s, "restore_started", "chunk_loaded", "restore_done")
            print(f"backup.restore_s: {e_s:.2f}  (e: {grown_rows / e_s:,.0f} rows/s; {where})", flush=True)

            source, restored = counts(DB), counts(RESTORE_DB)
            databases.drop_database(url(RESTORE_DB))
            log = d / "verify.log"
            v_s, v_rc, _ = scraperd(["verify", "--dir", str(bk)], log, 60 + 10 * a_s)
            print(f"backup.bytes: backup dir {size(bk) / 1e6:,.1f} MB (after (b): {full_bytes / 1e6:,.1f} MB), "
                  f"dump {size(dump) / 1e6:,.1f} MB (before the growth), ratio {full_bytes / size(dump):.2f}")
            ok = restored == source
            print(f"backup.check: {'OK' if ok else 'FAIL'}: restored {restored}, source {source}; "
                  f"mysql's restore of the dump {dump_counts}")
            last = log.read_text(errors="replace").strip().splitlines()
            print(f"backup.verify: exit {v_rc} in {v_s:.2f} s: {last[-1] if last else ''}", flush=True)
    except Hung:
        hung = True
        raise
    finally:
        if hung:
            print(f"backup.cleanup: skipped: {DB} keeps its growth, {RESTORE_DB} is left as it is (a DROP "
                  "would wait behind the hung sessions)", flush=True)
        else:
            engine = databases.make_engine(src)
            try:
                with engine.begin() as conn:
                    shrink(conn, seqnos)
            finally:
                engine.dispose()
            for name in (DUMP_DB, RESTORE_DB):
                databases.drop_database(url(name))
    # information: the same ratios without scraperd's start-up (Python and imports, see phases()), and the
    # full backup against mysqldump writing uncompressed SQL
    print(f"backup.ratios_without_startup: (b)/(a) {b_run / a_s:.3f}, (c)/(b) {c_run / b_run:.3f}, "
          f"(e)/(d) {e_run / d_s:.3f}")
    print(f"backup.ratio_wall: (c)/(b) {c_s / b_s:.3f} (the incremental command's wall time, start-up included); "
          f"(b)/(a0) {b_s / a0_s:.3f} (against mysqldump without compression)")
    if not full:
        print("backup.note: the small table (0.5M rows) is timed for the habit: scraperd's fixed start-up (~0.3 s "
              "a command) dominates it; the targets are the issue's for the 10M-row table (make bench-full)")
    print(f"ratio: {verdict(b_s / a_s, TARGET_FULL)}  (b) full backup / (a) mysqldump | gzip -1")
    # the incremental run's cost as it measures and reports it (backup_started..backup_done): what grows
    # with the data; the process start-up (a constant ~0.3-0.5 s, printed above) does not
    print(f"ratio: {verdict(c_run / b_run, TARGET_INCREMENTAL)}  (c) incremental after +1 % / (b) full backup, "
          "each run's own time")
    print(f"ratio: {verdict(e_s / d_s, TARGET_RESTORE)}  (e) scraperd restore / (d) mysql < dump", flush=True)
    if not ok or v_rc:
        print("backup.check: FAIL: the restore or the backup is not right (see above)")


if __name__ == "__main__":
    raise SystemExit("usage: python -m bench [--full] backup  (this module runs as part of it)")
