"""`scraperd restore`: load a backup directory into a database, verified first, resumable.

  1. every table's manifest, chunk sequence and file digests are checked before anything is loaded:
     one bad file, one gap, and nothing is touched (exit 1, each problem named);
  2. a table the target already holds (rows, and its LOCALSEQNO row) is refused; a table without a
     LOCALSEQNO row is a restore that did not finish, and is resumed: LOCALSEQNO's row is written
     last, so its absence marks "in progress";
  3. chunks are loaded over `workers` connections (MySQL; SQLite has one writer), each in one
     transaction: delete the chunk's SEQNO range, load both files, check the row counts against the
     manifest, commit. A chunk whose rows are already all there (a resumed restore) is kept. A killed
     restore thus leaves whole chunks (InnoDB, SQLite) or a chunk whose count is short (MyISAM), which
     the next run loads again: no duplicates, nothing missing;
  4. LOCALSEQNO = the highest SEQNO restored.

MySQL payload tables whose columns are all numeric are loaded with LOAD DATA LOCAL INFILE reading the
chunk's own INSERT text (LINES STARTING BY '(' TERMINATED BY ')'), about twice as fast as executing it;
any other table executes the file's statements.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scraperd import logsetup
from scraperd.backup import db as dbmod
from scraperd.backup import layout, sqlfiles
from scraperd.backup.db import Db
from scraperd.backup.layout import BackupError, ChunkEntry, Manifest
from scraperd.dbi.tables import LOCALSEQNO
from scraperd.errors import ConfigError
from scraperd.progress import Progress

if TYPE_CHECKING:
    from scraperd.notify.progress import ProgressNotifier

log = logsetup.get_logger("scraperd.backup")


@dataclass
class Totals:
    chunks: int = 0
    kept: int = 0
    rows: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.chunks} chunks loaded, {self.kept} already there, {self.rows:,} rows in {self.seconds:.1f} s"


@dataclass
class Job:
    dir: Path
    manifest: Manifest
    entry: ChunkEntry
    fast: bool          # LOAD DATA for the payload file


def checked(root: Path, tables: Sequence[str], upto: int | None = None) -> list[tuple[Path, Manifest]]:
    """The table directories to restore, every digest and the chunk sequence checked (up to upto)."""
    if not root.is_dir():
        raise ConfigError(f"--dir {root}: no such directory")
    dirs = layout.table_dirs(root, tables)
    if not dirs:
        raise ConfigError(f"--dir {root}: no table backups in it (no */{layout.MANIFEST})")
    out, bad = [], []
    for d in dirs:
        m = layout.read_manifest(d)
        bad += layout.problems(d, m, upto)
        out.append((d, m))
    if bad:
        raise BackupError(f"refused, nothing loaded: {len(bad)} problem(s) in {root}: " + "; ".join(bad))
    return out


def run(db: Db, root: Path, tables: Sequence[str], upto: int | None, workers: int,
        notice: ProgressNotifier | None = None) -> Totals:
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if upto is not None and upto < 1:
        raise ConfigError(f"--upto must be a SEQNO (1 or more), got {upto}")
    backups = checked(root, tables, upto)
    for d, m in backups:
        if m.dialect != db.dialect:
            raise ConfigError(f"{d}: a backup of a {m.dialect} database cannot be restored into {db.dialect} "
                              f"({db.shown})")
    t0 = time.monotonic()
    totals = Totals()
    jobs: list[Job] = []
    with db.raw() as conn:
        resumed = _refusals_first(db, conn, backups)  # nothing is touched unless every table can be restored
        for d, m in backups:
            fast = _prepare(db, conn, d, m, resume=m.table in resumed)
            for entry in m.ordered():
                if upto is not None and entry.first > upto:
                    continue
                if m.table in resumed and (upto is None or entry.upto <= upto):
                    if _already_loaded(db, conn, m, entry):
                        totals.kept += 1
                        continue
                jobs.append(Job(d, m, entry, fast))
    log.info("restore_started", db=db.shown, dir=str(root), tables=[m.table for _, m in backups],
             chunks=len(jobs), kept=totals.kept, upto=upto, workers=workers)
    progress = Progress(len(jobs), unit="chunks", event="restore_progress")
    if notice:
        notice.start(len(jobs))
    _load_all(db, jobs, upto, workers if db.dialect == "mysql" else 1, progress, notice, totals)
    progress.close()
    with db.raw() as conn:
        for _, m in backups:
            _finish(db, conn, m)
        _drop_marker_when_empty(db, conn)
    totals.seconds = time.monotonic() - t0
    log.info("restore_done", db=db.shown, dir=str(root), chunks_loaded=totals.chunks, chunks_kept=totals.kept,
             rows=totals.rows, seconds=round(time.monotonic() - t0, 3))
    return totals


MARKER = "SCRAPERD_RESTORING"  # TABLENAME, DIR: what a restore is loading; its row goes when the table is whole


def _marker_rows(db: Db, conn: Any) -> dict[str, str]:
    if MARKER not in dbmod.table_names(db, conn):
        return {}
    return {str(t): str(d) for t, d in dbmod.rows(conn, f"SELECT TABLENAME, DIR FROM {db.q(MARKER)}")}


def _refusals_first(db: Db, conn: Any, backups: list[tuple[Path, Manifest]]) -> set[str]:
    """Every table checked against the target before anything is written: a table the target holds is
    refused, unless the marker names it as this directory's restore that did not finish (resumed). The
    tables resumed."""
    names = set(dbmod.table_names(db, conn))
    marked = _marker_rows(db, conn)
    refused, resumed = [], set()
    for d, m in backups:
        present = tuple(t for t in m.tables if t in names)
        lo, hi = dbmod.extent(db, conn, present) if present else (None, None)
        where = marked.get(m.table)
        if where == str(d.resolve()):
            resumed.add(m.table)
            log.info("restore_resumed", table=m.table, found_seqno_from=lo, found_seqno_to=hi,
                     reason="a restore of this directory that did not finish")
        elif where is not None:
            refused.append(f"{db.shown} holds {m.table} from an unfinished restore of another directory ({where}): "
                           f"finish that one, or drop the tables")
        elif lo is not None:
            mark = dbmod.lastused(db, conn, m.table)
            refused.append(f"{db.shown} already holds {m.table} (SEQNO {lo}..{hi}"
                           + (f", LOCALSEQNO {mark}" if mark is not None else "") + "): restore loads into a "
                           f"database without it (drop the tables first), or check it with "
                           f"`scraperd verify --dir {d.parent} DB`")
    if refused:
        raise BackupError(f"refused, nothing loaded: {'; '.join(refused)}")
    return resumed


def _prepare(db: Db, conn: Any, d: Path, m: Manifest, *, resume: bool) -> bool:
    """Create the tables when missing and mark the table as being restored (the marker row; LOCALSEQNO's
    row is written when it is whole). Whether the payload can take LOAD DATA."""
    _script(db, conn, (d / layout.SCHEMA).read_text())
    text = "VARCHAR(64)" if db.dialect == "mysql" else "TEXT"
    engine = " ENGINE=InnoDB" if db.dialect == "mysql" else ""
    _script(db, conn, f"CREATE TABLE IF NOT EXISTS {db.q(MARKER)} (TABLENAME {text} NOT NULL PRIMARY KEY, "
                      f"DIR {'VARCHAR(1024)' if db.dialect == 'mysql' else 'TEXT'} NOT NULL){engine};\n")
    if not resume:
        with dbmod.transaction(db, conn):
            dbmod.execute(conn, f"DELETE FROM {db.q(LOCALSEQNO)} WHERE TABLENAME = {db.param}", (m.table,))
            dbmod.execute(conn, f"INSERT INTO {db.q(MARKER)} VALUES ({db.param}, {db.param})",
                          (m.table, str(d.resolve())))
    cols = dbmod.columns(db, conn, m.table)
    return db.dialect == "mysql" and dbmod.all_numeric(cols)


def _drop_marker_when_empty(db: Db, conn: Any) -> None:
    if MARKER in dbmod.table_names(db, conn) and not dbmod.rows(conn, f"SELECT 1 FROM {db.q(MARKER)} LIMIT 1"):
        _script(db, conn, f"DROP TABLE {db.q(MARKER)};\n")


def _already_loaded(db: Db, conn: Any, m: Manifest, entry: ChunkEntry) -> bool:
    return all(dbmod.count(db, conn, t, entry.first, entry.last) == entry.files[t].rows for t in m.tables)


def _script(db: Db, conn: Any, text: str) -> None:
    if db.dialect == "sqlite":
        conn.executescript(text)
        return
    for stmt in (s.strip() for s in text.split(";\n")):
        if stmt:
            dbmod.execute(conn, stmt.rstrip(";"))
    conn.commit()


def _tx(db: Db, conn: Any, statements: Sequence[str]) -> None:
    with dbmod.transaction(db, conn):
        for s in statements:
            dbmod.execute(conn, s)


def load_chunk(db: Db, conn: Any, job: Job, upto: int | None, tmp: Path) -> int:
    """One chunk in one transaction; the rows it holds now. Each file's rows, as the server counted what it
    inserted, must be the manifest's (a partial chunk, --upto, is counted in SQL after the cut)."""
    m, e = job.manifest, job.entry
    partial = upto is not None and e.upto > upto
    n = 0
    with dbmod.transaction(db, conn):
        for t in m.tables:
            if dbmod.count(db, conn, t, e.first, e.last):  # a resumed chunk, or one loaded by hand
                dbmod.execute(conn, f"DELETE FROM {db.q(t)} WHERE SEQNO BETWEEN {e.first} AND {e.last}")
            path = job.dir / e.files[t].name
            if job.fast and t == m.table:
                loaded = _load_data(conn, path, t, tmp)
            else:
                loaded = sum(dbmod.execute_count(conn, stmt) for stmt in sqlfiles.statements(path, db.dialect)
                             if not stmt.startswith("DELETE FROM"))
            if partial:
                dbmod.execute(conn, f"DELETE FROM {db.q(t)} WHERE SEQNO > {int(upto or 0)} "
                                    f"AND SEQNO BETWEEN {e.first} AND {e.last}")
                loaded = dbmod.count(db, conn, t, e.first, e.last)
            elif loaded != e.files[t].rows:
                raise BackupError(f"{path}: loaded {loaded} rows of {t}, the manifest says {e.files[t].rows}")
            n += loaded
    return n


def _load_data(conn: Any, path: Path, table: str, tmp: Path) -> int:
    """The payload file through LOAD DATA LOCAL INFILE; the rows inserted."""
    data = tmp / f"{threading.get_ident()}.sql"
    sqlfiles.data_part(path, data)
    try:
        cur = conn.cursor()
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE `{table}` CHARACTER SET utf8mb4 "
                    "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\\'' ESCAPED BY '\\\\' "
                    "LINES STARTING BY '(' TERMINATED BY ')'")
        inserted = int(cur.rowcount)
        warnings = conn.warning_count()
        cur.close()
        if warnings:
            raise BackupError(f"{path}: LOAD DATA into {table} gave {warnings} warning(s) (values changed or rows "
                              "skipped): refused")
        return inserted
    finally:
        data.unlink(missing_ok=True)


def _load_all(db: Db, jobs: list[Job], upto: int | None, workers: int, progress: Progress,
              notice: ProgressNotifier | None, totals: Totals) -> None:
    if not jobs:
        return
    todo: queue.Queue[Job] = queue.Queue()
    for j in jobs:
        todo.put(j)
    errors: list[BaseException] = []
    lock = threading.Lock()
    tmp = Path(tempfile.mkdtemp(prefix="scraperd-restore-"))

    def worker() -> None:
        try:
            with db.raw() as conn:
                if db.dialect == "mysql":
                    # unique_checks and foreign_key_checks stay on: with both off, MariaDB >= 10.6 loads an
                    # empty table in "bulk insert" mode (a table lock, MDEV-24621), and a second worker's
                    # read of the same table then hung both threads inside the server for good
                    dbmod.execute(conn, "SET SESSION time_zone = '+00:00'")
                    # no gap locks: two workers loading neighbouring ranges of one table never deadlock
                    dbmod.execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                while not errors:
                    try:
                        job = todo.get_nowait()
                    except queue.Empty:
                        return
                    t0 = time.monotonic()
                    rows = _retrying_deadlocks(lambda j=job: load_chunk(db, conn, j, upto, tmp), job)
                    with lock:
                        totals.chunks += 1
                        totals.rows += rows
                        progress.advance(rows)
                        if notice:
                            notice.advance(progress.done)
                    # on a terminal the bar shows the progress: a line a chunk would bury it
                    (log.debug if progress.tty else log.info)("chunk_loaded", table=job.manifest.table, chunk=job.entry.index, first=job.entry.first,
                             upto=min(job.entry.upto, upto or job.entry.upto), rows=rows,
                             seconds=round(time.monotonic() - t0, 3))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, name=f"restore-{i}", daemon=True)
                   for i in range(min(workers, len(jobs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        raise errors[0]


DEADLOCK_ATTEMPTS = 5


def _retrying_deadlocks(load: Any, job: Job) -> int:
    """A chunk's transaction again when the server chose it as a deadlock victim (rolled back whole)."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return int(load())
        except Exception as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code not in (1213, 1205) or attempt == DEADLOCK_ATTEMPTS:
                raise
            log.warning("chunk_retry", table=job.manifest.table, chunk=job.entry.index, attempt=attempt,
                        error=str(exc))
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _finish(db: Db, conn: Any, m: Manifest) -> None:
    """LOCALSEQNO = the highest SEQNO restored and the marker row gone, in one transaction: the table is
    whole."""
    _, hi = dbmod.extent(db, conn, m.tables)
    value = hi or 0
    _tx(db, conn, [f"DELETE FROM {db.q(LOCALSEQNO)} WHERE TABLENAME = '{m.table}'",
                   f"INSERT INTO {db.q(LOCALSEQNO)} VALUES ('{m.table}', {value})",
                   f"DELETE FROM {db.q(MARKER)} WHERE TABLENAME = '{m.table}'"])
    log.info("restore_table", table=m.table, localseqno=value)
