"""`scraperd backup`, `scraperd restore`, `scraperd verify`: DBI tables in SEQNO chunks (dbsrv.py's
partitioned backups), incremental, digested, restored in parallel.

    layout.py    the directory: chunk arithmetic, file names, the manifest, digests (pure but for files)
    sqlfiles.py  a chunk as SQL: mysqldump / SQLite quote() out, statements back in
    db.py        what a database holds: DBI pairs, DDL, LOCALSEQNO, extents, counts; the snapshot
    backup.py    one backup run            restore.py   one restore            verify.py   one check
    here         the commands: arguments, logging, progress notifications, exit codes

Exit codes: 0 done (verify: every check passed); 1 a verification failed, a restore refused (bad
digest, gap, a table already there) or a database error; 78 bad arguments (no such --dir, table or
my.cnf section, a --chunk that differs from the directory's).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scraperd import clirun, paths
from scraperd.backup import layout
from scraperd.errors import ConfigError

if TYPE_CHECKING:  # the rest is imported by the command that needs it: `scraperd backup` starts fast
    from scraperd import config
    from scraperd.backup.db import Db
    from scraperd.notify.progress import ProgressNotifier

LOAD_ONE_LINER = "(cat schema.sql; zcat chunk-*.sql.gz; cat localseqno.sql) | mysql DB"

EPILOG = f"""\
examples:
  scraperd backup offline_db --dir /data/backup/offline_db                 # every DBI table, daily from cron
  scraperd backup offline_db --dir /data/backup/offline_db DcsPmtHv --chunk 1000
  scraperd verify --dir /data/backup/offline_db                            # files: digests, no gap
  scraperd verify --dir /data/backup/offline_db offline_db                 # and the live tables
  scraperd restore --dir /data/backup/offline_db tmp_offline_db --upto 52000

DB is a ~/.my.cnf section ($SCRAPERD_MYCNF) or an SQLAlchemy URL (sqlite:///var/x.db).

The directory holds, per table T: manifest.json, schema.sql, localseqno.sql and
chunk-KKKKKK-UUUUUUUUUU.T.sql.gz / ...TVld.sql.gz, chunk K holding SEQNO K*chunk+1 .. (K+1)*chunk
(U: the highest SEQNO its dump saw). A chunk whose SEQNOs are all at or below LOCALSEQNO is complete
and never dumped again; the open last chunk is dumped again by every run. Chunk files are plain
SQL: without scraperd, in the table's directory (each file first deletes its SEQNO range, so a
reload replaces it):
  {LOAD_ONE_LINER}
  (SQLite: the same with `sqlite3 FILE.db` instead of `mysql DB`)
scraperd restore checks every digest first, loads over --workers connections and can be resumed.

Progress: a bar on a terminal, *_progress JSON events otherwise (stderr). A `mode = backup` section
of the config (-c; optional, --section NAME picks one) gives chunk, workers and the notify keys: with
notify, "running" is posted every progress_every %, then completed / failed (route `progress`).
--notify SECTION uses another section's notify keys instead (e.g. the [monitor] section).

Exit codes: 0 done; 1 a verification failed, a restore refused, a database error; 78 bad arguments
or configuration.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="chunks dumped/loaded at once, MySQL: a mysqldump or connection each (default: the "
                        "section's workers, else 3 for backup, 2 for restore)")
    p.add_argument("--section", metavar="NAME",
                   help="the mode = backup section of the config (-c) whose chunk, workers and notify keys "
                        "apply (default: the file's mode = backup section, when it has one)")
    p.add_argument("--notify", metavar="SECTION",
                   help="notify progress over this section's notify keys instead (any section with them, "
                        "e.g. [monitor]; route `progress`)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fmt = argparse.RawDescriptionHelpFormatter
    b = clirun.arguments_are_config(sub.add_parser("backup", help="dump DBI tables in SEQNO chunks, only what changed since the last run",
                       description="Back up DBI table pairs (T, TVld) and LOCALSEQNO in SEQNO chunks, "
                                   "incrementally, each run one consistent snapshot.",
                       epilog=EPILOG, formatter_class=fmt))
    b.add_argument("db", metavar="DB", help="database: ~/.my.cnf section or SQLAlchemy URL")
    b.add_argument("tables", nargs="*", default=[], metavar="TABLE", help="payload tables (default: every T with a TVld)")
    b.add_argument("--dir", required=True, type=Path, help="backup directory (created; one subdirectory per table)")
    b.add_argument("--chunk", type=int, default=None,
                   help=f"SEQNOs per chunk of a new directory (default: the section's chunk, else "
                        f"{layout.DEFAULT_CHUNK}); a directory keeps the chunk it was started with")
    _add_common(b)
    b.set_defaults(func=cmd_backup)

    r = clirun.arguments_are_config(sub.add_parser("restore", help="load a backup directory into a database (verified first, resumable)",
                       description="Restore table pairs from a backup directory: every digest is checked "
                                   "before anything is loaded; chunks load in parallel; a killed restore "
                                   "resumes; LOCALSEQNO ends at the highest SEQNO restored.",
                       epilog=EPILOG, formatter_class=fmt))
    r.add_argument("--dir", required=True, type=Path, help="backup directory")
    r.add_argument("db", metavar="DB", help="target database: ~/.my.cnf section or SQLAlchemy URL")
    r.add_argument("tables", nargs="*", default=[], metavar="TABLE", help="payload tables (default: every one backed up)")
    r.add_argument("--upto", type=int, metavar="SEQNO", help="restore SEQNOs up to this one only")
    _add_common(r)
    r.set_defaults(func=cmd_restore)

    v = clirun.arguments_are_config(sub.add_parser("verify", help="check a backup: digests, chunk continuity, and against a live database",
                       description="Check every manifest, the chunk sequence and every file's SHA-256; with DB, "
                                   "also each chunk's rows against the live table. Exit 1 naming each problem.",
                       epilog=EPILOG, formatter_class=fmt))
    v.add_argument("--dir", required=True, type=Path, help="backup directory")
    v.add_argument("db", metavar="DB", nargs="?", help="also compare with this database's live tables")
    v.add_argument("--table", dest="tables", action="append", default=[], metavar="TABLE",
                   help="only this table (repeatable)")
    v.set_defaults(func=cmd_verify)


def _logging() -> None:
    from scraperd import logsetup

    logsetup.configure(stream=sys.stderr)


def _backup_sections(path: Path) -> list[str] | None:
    """The mode = backup sections of the config file, read as plain INI; None when it cannot be read
    so (the full reading then says why)."""
    raw = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        raw.read(path)
    except configparser.Error:
        return None
    return [n for n in raw.sections() if raw.get(n, "mode", fallback="").strip() == "backup"]


def _section(args: argparse.Namespace) -> config.Loaded[config.BackupSection] | None:
    """The mode = backup section: --section NAME, else the config file's only one, else none (a missing
    default config file is no error: backup needs no config)."""
    path = paths.config_path(args.config)
    if not (args.section or args.notify):
        if not path.exists():
            if args.config:  # named with -c: a typo must not drop the section's settings silently
                raise ConfigError(f"no such config file (use -c PATH or set {paths.CONFIG_ENV})", file=str(path))
            return None
        if _backup_sections(path) == []:
            return None  # nothing to read: pydantic and the models are not even imported
    from scraperd import config

    cfg = config.read_file(path)
    name = args.section
    if name is None:
        found = [n for n, keys in cfg.sections.items() if {**cfg.defaults, **keys}.get("mode") == "backup"]
        if len(found) > 1:
            raise ConfigError(f"{len(found)} mode = backup sections ({', '.join(found)}): name one with --section",
                              file=cfg.display)
        name = found[0] if found else None
    if name is None:
        return None
    if name not in cfg.sections:
        raise ConfigError("no such section (--section)", file=cfg.display, section=name)
    return config.validate(cfg, name).of(config.BackupSection)


class _Silent:
    """The progress notifier of a job that notifies no one (ProgressNotifier's interface, nothing sent)."""

    def start(self, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def finish(self, state: str, error: str | None = None) -> None:
        pass


def _notice(args: argparse.Namespace, backup_section: config.Loaded[config.BackupSection] | None,
            job: str) -> ProgressNotifier | _Silent:
    """The progress notifier: --notify SECTION's keys, else the backup section's (none: posts nothing).
    An e-mail login's secret is checked here, before any work (exit 78)."""
    loaded: config.Loaded | None = backup_section
    if args.notify:
        from scraperd import config

        cfg = config.read_file(paths.config_path(args.config))
        if args.notify not in cfg.sections:
            raise ConfigError("no such section (--notify)", file=cfg.display, section=args.notify)
        loaded = config.validate(cfg, args.notify)
        if not isinstance(loaded.settings, config.Notify):
            raise loaded.error("mode", f"a {loaded.mode} section has no notify keys (--notify)")
    if loaded is None or not loaded.settings.notify:
        return _Silent()
    from scraperd.notify import channels
    from scraperd.notify.progress import ProgressNotifier

    settings = loaded.settings
    if "email" in settings.notify:
        with loaded.placing():
            channels.login(settings)
    return ProgressNotifier(settings, loaded.name, job, None, unit="chunks")


BACKUP_WORKERS = 3   # a dump worker waits on mysqldump's start, its pipe and fsync as much as on the CPU:
                     # 3 keep 2 cores busy (make bench-full: ~4 % faster than 2)
RESTORE_WORKERS = 2  # the 2 connections: the server's inserts are the work


def _workers(args: argparse.Namespace, s: config.BackupSection | None, default: int) -> int:
    if args.workers is not None:
        return int(args.workers)
    return s.workers if s is not None and s.workers is not None else default


def _job(args: argparse.Namespace, job: str, work: Callable[[Db, config.BackupSection | None, Any], Any],
         **engine_kw: Any) -> Any:
    """A backup or restore: its section, its notifier (running ... completed / failed), its database."""
    from scraperd.backup.db import Db

    _logging()
    section = _section(args)
    notice = _notice(args, section, job)
    db = Db.open(args.db, **engine_kw)
    try:
        try:
            with db.one_line_errors():
                totals = work(db, section.settings if section else None, notice)
        except BaseException as exc:
            notice.finish("failed", "".join(traceback.format_exception(exc)).rstrip())
            raise
        notice.finish("completed")
    finally:
        db.dispose()
    return totals


def cmd_backup(args: argparse.Namespace) -> int:
    from scraperd.backup import backup
    from scraperd.backup.db import Db

    def work(db: Db, s: config.BackupSection | None, notice: Any) -> backup.Totals:
        chunk = args.chunk if args.chunk is not None else (s.chunk if s else layout.DEFAULT_CHUNK)
        return backup.run(db, args.dir, args.tables, chunk, _workers(args, s, BACKUP_WORKERS), notice,
                          chunk_given=args.chunk is not None)

    totals = _job(args, "backup", work, reading=True)
    print(f"backup of {Db.describe(args.db)} to {args.dir}: {totals.line()}")
    for problem in totals.changed:
        print(f"FAILED  {problem}")
    return 1 if totals.changed else 0


def cmd_restore(args: argparse.Namespace) -> int:
    from scraperd.backup import restore
    from scraperd.backup.db import Db

    def work(db: Db, s: config.BackupSection | None, notice: Any) -> restore.Totals:
        return restore.run(db, args.dir, args.tables, args.upto, _workers(args, s, RESTORE_WORKERS), notice)

    # LOAD DATA LOCAL INFILE (restore's fast path) needs the client's consent; SQLite takes no such argument
    totals = _job(args, "restore", work, **({} if _is_sqlite(args.db) else {"connect_args": {"local_infile": 1}}))
    print(f"restore of {args.dir} into {Db.describe(args.db)}: {totals.line()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from scraperd.backup import verify
    from scraperd.backup.db import Db

    _logging()
    db = Db.open(args.db, reading=True) if args.db else None
    try:
        with db.one_line_errors() if db else contextlib.nullcontext():
            report = verify.run(args.dir, db, args.tables)
    finally:
        if db:
            db.dispose()
    for p in report.problems:
        print(f"FAILED  {p}")
    live = f", {report.live_checked} chunks compared with {db.shown}" if db else ""
    state = "FAILED" if report.problems else "OK"
    print(f"verify {state}: {report.tables} tables, {report.chunks} chunks, {report.files} files, "
          f"{report.rows:,} rows{live}; {len(report.problems)} problem(s)")
    return 1 if report.problems else 0


def _is_sqlite(name: str) -> bool:
    return name.startswith("sqlite")
