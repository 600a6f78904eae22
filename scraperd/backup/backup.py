"""`scraperd backup`: dump DBI table pairs in SEQNO chunks, only what changed since the last run.

One run:
  1. lock the backup directory (a second backup of the same directory is refused);
  2. open the snapshot: one REPEATABLE READ transaction (MySQL `START TRANSACTION WITH CONSISTENT
     SNAPSHOT`; SQLite a read transaction, WAL) on one connection, which reads for every pair its
     LOCALSEQNO row, its SEQNO extent `upto` and the row count of every chunk to dump;
  3. dump every chunk that is not complete in the manifest: MySQL with `mysqldump` processes, over
     `workers` at once, each reading SEQNO first..min(last, upto) only — rows that DBI never changes
     once written (append-only, one transaction per record), so what each reads is exactly what the
     snapshot holds: the snapshot's equivalent, at mysqldump's speed. A pair whose tables are not
     InnoDB (MyISAM: no snapshot) is dumped under LOCK TABLES ... READ of its two tables instead;
  4. after both files of a chunk are in place (written to a temporary name, fsynced, renamed), the
     manifest names them (rewritten atomically); files the manifest no longer names are removed at the
     end. A killed run leaves the manifest as it was after its last finished chunk: the next run
     dumps the rest.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scraperd import logsetup
from scraperd.backup import db as dbmod
from scraperd.backup import layout, sqlfiles
from scraperd.backup.db import Db
from scraperd.backup.layout import BackupError, ChunkEntry, FileEntry, Manifest
from scraperd.errors import ConfigError
from scraperd.progress import Progress

if TYPE_CHECKING:
    from scraperd.notify.progress import ProgressNotifier

log = logsetup.get_logger("scraperd.backup")

LOCK_FILE = ".lock"


@dataclass
class Job:
    """One chunk of one pair to dump."""

    pair: str
    entry: ChunkEntry
    counts: dict[str, int]


@dataclass
class PairPlan:
    table: str
    vld: str
    dir: Path
    manifest: Manifest
    jobs: list[Job] = field(default_factory=list)
    kept: int = 0
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)   # table -> (name, type)
    ordered: bool = False          # dump with --order-by-primary (a MyISAM scan is not in key order)
    redumped: dict[int, ChunkEntry] = field(default_factory=dict)  # complete chunks found damaged: their old entry


@dataclass
class Totals:
    chunks: int = 0
    kept: int = 0
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)   # complete chunks dumped again that hold other rows

    def line(self) -> str:
        return (f"{self.chunks} chunks dumped, {self.kept} complete kept, {self.rows:,} rows, "
                f"{self.bytes / 1e6:,.1f} MB in {self.seconds:.1f} s")


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """The backup directory for this process alone."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        f = open(root / LOCK_FILE, "a+")
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--dir {root}: not a directory") from None
    except PermissionError as exc:
        raise ConfigError(f"--dir {root}: {exc.strerror}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        raise BackupError(f"{root}: another backup is writing this directory (pid {f.read().strip() or '?'})") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
        yield
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def run(db: Db, root: Path, tables: Sequence[str], chunk: int, workers: int,
        notice: ProgressNotifier | None = None, *, chunk_given: bool = True) -> Totals:
    """One backup run of db into root; what it dumped. chunk: that of a new table directory; an existing
    one keeps its own, and a chunk_given that differs from it is refused."""
    if chunk < 1:
        raise ConfigError(f"--chunk must be at least 1, got {chunk}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    t0 = time.monotonic()
    with locked(root), db.raw() as snap:
        dbmod.begin_snapshot(db, snap)
        names = _chosen(db, snap, tables)
        engines = {t: dbmod.engines(db, snap, (t, f"{t}Vld")) for t in names}
        log.info("backup_started", db=db.shown, dir=str(root), tables=names, chunk=chunk, workers=workers)
        plans = [_plan(db, snap, root, t, chunk, chunk_given) for t in names if dbmod.transactional(engines[t])]
        totals = Totals()
        jobs = [j for p in plans for j in p.jobs]
        non_tx = [t for t in names if not dbmod.transactional(engines[t])]
        progress = Progress(len(jobs), unit="chunks", event="backup_progress")
        if notice:
            notice.start(len(jobs))
        by_pair = {p.table: p for p in plans}
        _dump(db, snap, by_pair, jobs, workers, progress, notice, totals)
        for t in non_tx:
            _dump_locked(db, root, t, chunk, chunk_given, engines[t], workers, progress, notice, totals, by_pair)
        progress.close()
        elapsed = time.monotonic() - t0
        for p in by_pair.values():
            dumped = p.jobs
            p.manifest.runs.append({"ts": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                                    "chunks_dumped": len(dumped), "chunks_kept": p.kept,
                                    "rows": sum(sum(j.counts.values()) for j in dumped),
                                    "bytes": sum(f.bytes for j in dumped for f in j.entry.files.values()),
                                    "seconds": round(elapsed, 3)})
            p.manifest.runs = p.manifest.runs[-100:]
            layout.write_manifest(p.dir, p.manifest)
            _remove_unnamed(p.dir, p.manifest)
            log.info("backup_table", table=p.table, chunks=len(p.manifest.chunks), chunks_dumped=len(dumped),
                     chunks_kept=p.kept, lastusedseqno=p.manifest.lastusedseqno, max_seqno=p.manifest.max_seqno)
            totals.kept += p.kept
        totals.seconds = elapsed
        log.info("backup_done", db=db.shown, dir=str(root), tables=len(names), chunks_dumped=totals.chunks,
                 chunks_kept=totals.kept, rows=totals.rows, bytes=totals.bytes, seconds=round(elapsed, 3))
        return totals


def _chosen(db: Db, conn: Any, tables: Sequence[str]) -> list[str]:
    found = dbmod.pairs(db, conn)
    if not tables:
        if not found:
            raise ConfigError(f"{db.shown} holds no DBI table (a table T with its TVld)")
        return found
    missing = [t for t in tables if t not in found]
    if missing:
        raise ConfigError(f"{db.shown} holds no DBI table pair {', '.join(f'{t}/{t}Vld' for t in missing)} "
                          f"(it holds: {', '.join(found) or 'none'})")
    return list(dict.fromkeys(tables))


def _manifest(root: Path, db: Db, table: str, chunk: int, chunk_given: bool) -> Manifest:
    d = root / table
    if layout.manifest_path(d).exists():
        m = layout.read_manifest(d)
        if m.chunk != chunk and chunk_given:
            raise ConfigError(f"{layout.manifest_path(d)} holds chunks of {m.chunk} SEQNOs, not {chunk}: "
                              f"use --chunk {m.chunk}, or another --dir")
        if m.dialect != db.dialect:
            raise ConfigError(f"{layout.manifest_path(d)} is a backup of a {m.dialect} database, not of {db.dialect}: "
                              "use another --dir")
        return m
    d.mkdir(parents=True, exist_ok=True)
    return Manifest(table=table, vld=f"{table}Vld", chunk=chunk, dialect=db.dialect)


def _plan(db: Db, conn: Any, root: Path, table: str, chunk: int, chunk_given: bool) -> PairPlan:
    """Read, in the snapshot, what of table must be dumped; write its schema and LOCALSEQNO files."""
    m = _manifest(root, db, table, chunk, chunk_given)
    chunk = m.chunk
    plan = PairPlan(table, m.vld, root / table, m)
    pair = (table, m.vld)
    plan.columns = {t: dbmod.columns(db, conn, t) for t in pair}
    m.source = db.shown
    m.lastusedseqno = dbmod.lastused(db, conn, table)
    lo, hi = dbmod.extent(db, conn, pair)
    if m.lastusedseqno is None and hi is not None:
        log.warning("no_localseqno", table=table, max_seqno=hi,
                    problem="no LOCALSEQNO row: no chunk is ever complete, every run dumps the whole table again")
    m.min_seqno, m.max_seqno = lo, hi  # what this run will have dumped when it finishes (verify checks it)
    _write_small(plan.dir, layout.SCHEMA, dbmod.ddl(db, conn, list(pair)), m, "schema_sha256")
    _write_small(plan.dir, layout.LOCALSEQNO_FILE, dbmod.localseqno_sql(db, table, m.lastusedseqno), m,
                 "localseqno_sha256")
    layout.write_manifest(plan.dir, m)
    if lo is None or hi is None:
        return plan
    first_k, last_k = layout.chunk_of(lo, chunk), layout.chunk_of(hi, chunk)
    kept = [k for k in range(first_k, last_k + 1) if k in m.chunks and m.chunks[k].complete]
    for k in kept:  # a complete chunk whose file is gone or changed size: dumped again (verify reads them all)
        damage = _damaged(plan.dir, m.chunks[k])
        if damage:
            log.warning("chunk_damaged", table=table, chunk=k, problem=damage, action="dumped again")
            plan.redumped[k] = m.chunks[k]
    plan.kept = len(kept) - len(plan.redumped)
    todo = [k for k in range(first_k, last_k + 1) if k not in kept or k in plan.redumped]
    for k in todo:
        first, last = layout.bounds(k, chunk)
        complete = layout.is_complete(k, chunk, m.lastusedseqno) and hi >= last
        upto = last if complete else min(last, hi)
        entry = ChunkEntry(index=k, first=first, last=last, upto=upto, complete=complete)
        plan.jobs.append(Job(table, entry, {}))
    return plan


def _damaged(d: Path, entry: ChunkEntry) -> str | None:
    """Why a complete chunk's files are not as the manifest names them (missing, another size), or None."""
    for f in entry.files.values():
        path = d / f.name
        if not path.exists():
            return f"{path}: missing"
        if f.bytes and path.stat().st_size != f.bytes:
            return f"{path}: {path.stat().st_size} bytes, the manifest says {f.bytes}"
    return None


def _write_small(d: Path, name: str, text: str, m: Manifest, attr: str) -> None:
    data = text.encode()
    path = d / name
    if not path.exists() or path.read_bytes() != data:
        layout.write_atomic(path, data)
    setattr(m, attr, layout.sha256_file(path))


def chunk_name(entry: ChunkEntry, table: str) -> str:
    """chunk-000003-0000030000.DcsPmtHv.sql.gz: index and upto, so that the open chunk dumped again gets
    a new file and the manifest never names a file that is being replaced."""
    return f"chunk-{entry.index:06d}-{entry.upto:010d}.{table}.sql.gz"


def on_snapshot(db: Db, table: str, columns: list[tuple[str, str]]) -> bool:
    """Whether a table is dumped on the snapshot connection rather than by a mysqldump process: on
    SQLite; on MySQL a table with FLOAT columns (mysqldump would round them) and a Vld table (a row per
    SEQNO: a process and a connection per chunk would cost more than its rows)."""
    return db.dialect != "mysql" or sqlfiles.has_float(columns) or table.endswith("Vld")


def dump_file(db: Db, snap: Any, defaults: Path | None, table: str, columns: list[tuple[str, str]],
              entry: ChunkEntry, out: Any, *, ordered: bool = False) -> int | None:
    """Write the header and the rows of one chunk of table to out (a ChunkWriter or a ContentHash); the
    rows written, or None when they must be counted in SQL. The caller holds the snapshot connection
    when on_snapshot()."""
    out.write(sqlfiles.header(db.dialect, table, entry.index, entry.first, entry.last))
    if db.dialect != "mysql":
        return sqlfiles.sqlite_range(snap, table, [c for c, _ in columns], entry.first, entry.upto, out)
    if on_snapshot(db, table, columns):
        return sqlfiles.mysql_select_range(snap, table, columns, entry.first, entry.upto, out)
    assert defaults is not None
    return sqlfiles.mysqldump_range(defaults, db.database, table, entry.first, entry.upto, out, ordered=ordered)


def _dump(db: Db, snap: Any, plans: dict[str, PairPlan], jobs: list[Job], workers: int, progress: Progress,
          notice: ProgressNotifier | None, totals: Totals) -> None:
    """Dump jobs: SQLite on the snapshot connection, MySQL over `workers` mysqldump processes at once."""
    if not jobs:
        return
    lock = threading.Lock()
    snap_lock = threading.Lock()
    errors: list[BaseException] = []

    def one(job: Job, defaults: Path | None) -> None:
        plan = plans[job.pair]
        t0 = time.monotonic()
        writers: dict[str, sqlfiles.ChunkWriter] = {}
        try:
            for table in (plan.table, plan.vld):
                w = writers[table] = sqlfiles.ChunkWriter(plan.dir / chunk_name(job.entry, table))
                cols = plan.columns[table]
                if on_snapshot(db, table, cols):
                    with snap_lock:
                        n = dump_file(db, snap, defaults, table, cols, job.entry, w, ordered=plan.ordered)
                else:
                    n = dump_file(db, snap, defaults, table, cols, job.entry, w, ordered=plan.ordered)
                if n is None:
                    with snap_lock:  # the snapshot connection is shared by the workers for this
                        n = dbmod.count(db, snap, table, job.entry.first, job.entry.upto)
                job.counts[table] = n
                w.finish()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        # both files whole and on disk under temporary names: now both take their names (a kill between the
        # two renames leaves a whole file the manifest does not name, which the next run removes)
        for table, w in writers.items():
            written = w.commit()
            job.entry.files[table] = FileEntry(w.path.name, job.counts[table], written.sha256,
                                               written.content_crc32, written.bytes)
        old = plan.redumped.get(job.entry.index)
        for table, f in job.entry.files.items():
            before = old.files.get(table) if old else None
            if before is not None and before.content_crc32 != f.content_crc32:
                message = (f"{plan.dir / f.name}: complete chunk {job.entry.index} of {table} (SEQNO "
                           f"{job.entry.first}..{job.entry.upto}) dumped again holds other rows than it did "
                           f"({before.rows} then, {f.rows} now): the live table changed under a complete chunk")
                log.error("chunk_changed", table=table, chunk=job.entry.index, rows_before=before.rows,
                          rows_now=f.rows, problem=message)
                with lock:
                    totals.changed.append(message)
        layout.fsync_dir(plan.dir)
        with lock:
            plan.manifest.chunks[job.entry.index] = job.entry
            layout.write_manifest(plan.dir, plan.manifest)
            rows = sum(job.counts.values())
            totals.chunks += 1
            totals.rows += rows
            totals.bytes += sum(f.bytes for f in job.entry.files.values())
            progress.advance(rows)
            if notice:
                notice.advance(progress.done)
        # on a terminal the bar shows the progress: a line a chunk would bury it
        (log.debug if progress.tty else log.info)("chunk_dumped", table=job.pair, chunk=job.entry.index, first=job.entry.first, upto=job.entry.upto,
                 complete=job.entry.complete, rows=rows, bytes=sum(f.bytes for f in job.entry.files.values()),
                 seconds=round(time.monotonic() - t0, 3))

    if db.dialect != "mysql":
        for job in jobs:
            one(job, None)
        return
    todo: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        todo.put(job)
    with sqlfiles.mysql_defaults(db.url) as defaults:
        def worker() -> None:
            while not errors:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    one(job, defaults)
                except BaseException as exc:  # the first error stops the others; it is raised below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=worker, name=f"backup-{i}", daemon=True) for i in range(min(workers, len(jobs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def _dump_locked(db: Db, root: Path, table: str, chunk: int, chunk_given: bool, engines: dict[str, str], workers: int,
                 progress: Progress, notice: ProgressNotifier | None, totals: Totals,
                 plans: dict[str, PairPlan]) -> None:
    """A pair on a non-transactional engine: planned and dumped under LOCK TABLES ... READ (its writers
    wait; readers do not)."""
    log.info("backup_locking", table=table, engines=engines,
             reason="not InnoDB: no snapshot, so its writers wait for the dump of this table")
    with db.raw() as conn:
        dbmod.execute(conn, "SET SESSION time_zone = '+00:00'")  # as begin_snapshot(): UTC, as the files say
        dbmod.execute(conn, f"LOCK TABLES {db.q(table)} READ, {db.q(table + 'Vld')} READ, "
                            f"{db.q('LOCALSEQNO')} READ")
        try:
            plan = _plan(db, conn, root, table, chunk, chunk_given)
            plan.ordered = True
            plans[table] = plan
            progress.total += len(plan.jobs)
            if notice:
                notice.start(progress.total)
            _dump(db, conn, plans, plan.jobs, workers, progress, notice, totals)
        finally:
            dbmod.execute(conn, "UNLOCK TABLES")


def _remove_unnamed(d: Path, m: Manifest) -> None:
    """Chunk files the manifest does not name (an open chunk's older dump, a killed run's leftovers)."""
    named = {f.name for c in m.chunks.values() for f in c.files.values()}
    for p in d.iterdir():
        if (p.name.startswith("chunk-") and p.name not in named) or p.name.startswith(layout.TMP_PREFIX):
            p.unlink(missing_ok=True)
