"""`scraperd verify`: is a backup whole, and does it still match the live tables?

Without DB: every manifest readable, the chunk sequence without a gap, every file present with the
SHA-256 its manifest recorded. With DB: besides, each chunk's SEQNO range (up to what that chunk's
dump could see) is dumped again from the live table, exactly as the backup dumped it, and its row
count and the CRC-32 of its SQL text compared with the manifest's. DBI never changes a row once
written, so a difference under a complete chunk is corruption, of the live table or of the backup.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scraperd import logsetup
from scraperd.backup import backup as backupmod
from scraperd.backup import db as dbmod
from scraperd.backup import layout, sqlfiles
from scraperd.backup.db import Db
from scraperd.errors import ConfigError
from scraperd.progress import Progress

log = logsetup.get_logger("scraperd.backup")


@dataclass
class Report:
    tables: int = 0
    chunks: int = 0
    files: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    live_checked: int = 0


def run(root: Path, db: Db | None, tables: Sequence[str] = ()) -> Report:
    if not root.is_dir():
        raise ConfigError(f"--dir {root}: no such directory")
    dirs = layout.table_dirs(root, tables)
    if not dirs:
        raise ConfigError(f"--dir {root}: no table backups in it (no */{layout.MANIFEST})")
    report = Report()
    manifests = []
    for d in dirs:
        try:
            m = layout.read_manifest(d)
        except layout.BackupError as exc:
            report.problems.append(str(exc))
            continue
        report.tables += 1
        report.chunks += len(m.chunks)
        report.files += sum(len(c.files) for c in m.chunks.values())
        report.rows += sum(c.rows for c in m.chunks.values())
        found = layout.problems(d, m)
        report.problems += found
        manifests.append((d, m))
    if db is not None:
        _live(db, manifests, report)
    for p in report.problems:
        log.error("verify_problem", problem=p)
    log.info("verify_done", dir=str(root), db=db.shown if db else None, tables=report.tables, chunks=report.chunks,
             rows=report.rows, live_checked=report.live_checked, problems=len(report.problems))
    return report


def _live(db: Db, manifests: list[tuple[Path, layout.Manifest]], report: Report) -> None:
    progress = Progress(sum(len(m.chunks) for _, m in manifests), unit="chunks", event="verify_progress")
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(db.raw())
        stack.callback(progress.close)
        defaults = stack.enter_context(sqlfiles.mysql_defaults(db.url)) if db.dialect == "mysql" else None
        dbmod.begin_snapshot(db, conn)
        present = set(dbmod.table_names(db, conn))
        for d, m in manifests:
            if m.dialect != db.dialect:
                report.problems.append(f"{d}: a backup of a {m.dialect} database, {db.shown} is {db.dialect}: "
                                       "live contents not compared")
                continue
            missing = [t for t in m.tables if t not in present]
            if missing:
                report.problems.append(f"{db.shown}: no table {', '.join(missing)} (backed up in {d})")
                continue
            columns = {t: dbmod.columns(db, conn, t) for t in m.tables}
            ordered = not dbmod.transactional(dbmod.engines(db, conn, m.tables))
            for entry in m.ordered():
                for t in m.tables:
                    f = entry.files.get(t)
                    if f is None:
                        continue
                    h = sqlfiles.ContentHash()
                    rows = backupmod.dump_file(db, conn, defaults, t, columns[t], entry, h, ordered=ordered)
                    if rows is None:  # as the backup counts them: in SQL when the dump's text cannot say
                        rows = dbmod.count(db, conn, t, entry.first, entry.upto)
                    if rows != f.rows or h.hexdigest() != f.content_crc32:
                        what = (f"{rows} rows live, {f.rows} in the backup" if rows != f.rows
                                else "same row count, different values")
                        kind = "complete chunk" if entry.complete else "open chunk"
                        report.problems.append(
                            f"{d / f.name}: {kind} {entry.index} of {t} (SEQNO {entry.first}..{entry.upto}) "
                            f"differs from {db.shown}: {what}: the live table or the backup is corrupt")
                report.live_checked += 1
                progress.advance(entry.rows)
