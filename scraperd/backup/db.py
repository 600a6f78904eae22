"""The database side of backup, restore and verify: which DBI table pairs a database holds, their DDL,
their LOCALSEQNO row, SEQNO extents and per-chunk row counts, read on a raw DB-API connection (the
snapshot of a backup run is one transaction on one connection, which SQLAlchemy's pool would not
promise)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from scraperd import databases
from scraperd.backup.layout import BackupError
from scraperd.dbi.tables import LOCALSEQNO, MYSQL_DIALECTS
from scraperd.errors import ConfigError

NUMERIC_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric", "float",
                 "double", "real"}


@dataclass
class Db:
    """One database named on the command line."""

    name: str          # as given: a my.cnf section or a URL
    url: URL
    engine: Engine

    @classmethod
    def open(cls, name: str, *, reading: bool = False, **engine_kw: Any) -> Db:
        """The database named on the command line. reading (backup, verify): it is only read, so an SQLite
        file must exist (none is created) and keeps its journal mode; else (restore) a MySQL database is
        created when missing."""
        url = databases.resolve(name)
        if url.get_backend_name() == "sqlite":
            if reading and url.database not in (None, "", ":memory:") and not Path(url.database).exists():
                raise ConfigError(f"{name}: no such SQLite file")
        elif not reading:
            try:
                databases.ensure_database(url)
            except Exception as exc:
                raise BackupError(f"cannot reach {databases.describe(url)}: {_first_line(exc)}") from None
        try:
            engine = databases.make_engine(url, readonly=reading, **engine_kw)
        except (sa.exc.ArgumentError, ImportError) as exc:  # no such dialect, its driver not installed
            raise ConfigError(f"{databases.describe(url)}: no driver for it here ({str(exc).splitlines()[0]})") from None
        return cls(name, url, engine)

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """What its driver raises (a server gone, a query refused): reported as one line, not a bug."""
        dbapi = self.engine.dialect.dbapi
        return (sa.exc.DBAPIError, dbapi.Error) if dbapi is not None else (sa.exc.DBAPIError,)

    @staticmethod
    def describe(name: str) -> str:
        """A database named on the command line as logs show it (password hidden)."""
        return databases.describe(databases.resolve(name))

    @property
    def dialect(self) -> str:
        """"mysql" (MySQL and MariaDB) or "sqlite": the SQL of the chunk files."""
        return "mysql" if self.engine.dialect.name in MYSQL_DIALECTS else "sqlite"

    @property
    def shown(self) -> str:
        return databases.describe(self.url)

    @property
    def database(self) -> str:
        return self.url.database or ""

    def q(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    @property
    def param(self) -> str:
        return "%s" if self.dialect == "mysql" else "?"

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A DB-API connection of its own (its driver connection), closed afterwards."""
        try:
            proxy = self.engine.raw_connection()
        except self.errors as exc:
            raise BackupError(f"cannot connect to {self.shown}: {_first_line(exc)}") from None
        try:
            yield proxy.driver_connection
        finally:
            proxy.invalidate()  # never back into the pool: its session state (snapshot, locks) is ours

    @contextmanager
    def one_line_errors(self) -> Iterator[None]:
        """What the driver raises inside (a server gone mid-way, a refused query): one line, exit 1."""
        try:
            yield
        except self.errors as exc:
            raise BackupError(f"database error on {self.shown}: {_first_line(exc)}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def rows(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall())
    finally:
        cur.close()


def execute(conn: Any, sql: str, params: tuple[Any, ...] | None = None) -> None:
    cur = conn.cursor()
    try:
        cur.execute(sql) if params is None else cur.execute(sql, params)
    finally:
        cur.close()


def execute_count(conn: Any, sql: str) -> int:
    """Execute sql; the rows it changed (an INSERT's rows)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return int(cur.rowcount)
    finally:
        cur.close()


def table_names(db: Db, conn: Any) -> list[str]:
    if db.dialect == "mysql":
        return [r[0] for r in rows(conn, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                         "DATABASE() AND TABLE_TYPE = 'BASE TABLE'")]
    return [r[0] for r in rows(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")]


def pairs(db: Db, conn: Any) -> list[str]:
    """Every DBI table of the database: a table T with its TVld twin (LOCALSEQNO aside)."""
    names = set(table_names(db, conn))
    return sorted(t for t in names if f"{t}Vld" in names and t != LOCALSEQNO)


def columns(db: Db, conn: Any, table: str) -> list[tuple[str, str]]:
    """(name, lower-case type) of every column of table, in order."""
    if db.dialect == "mysql":
        return [(r[0], r[1].lower()) for r in rows(
            conn, "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
                  "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))]
    return [(r[1], (r[2] or "").lower()) for r in rows(conn, f'PRAGMA table_info("{table}")')]


def all_numeric(cols: list[tuple[str, str]]) -> bool:
    return all(re.sub(r"\(.*", "", t).split()[0] in NUMERIC_TYPES for _, t in cols) if cols else False


def ddl(db: Db, conn: Any, tables: list[str]) -> str:
    """CREATE TABLE IF NOT EXISTS of each table (its indexes with it), LOCALSEQNO and its '*' row: the
    schema.sql of a table's backup."""
    out: list[str] = []
    for t in [*tables, LOCALSEQNO]:
        if db.dialect == "mysql":
            text = rows(conn, f"SHOW CREATE TABLE {db.q(t)}")[0][1]
            out.append(re.sub(r"^CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", text) + ";")
        else:
            for (sql,) in rows(conn, "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                                     "ORDER BY type DESC, name", (t,)):
                sql = re.sub(r"^CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", sql)
                sql = re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX IF NOT EXISTS ", sql)
                out.append(sql + ";")
    ignore = "INSERT IGNORE" if db.dialect == "mysql" else "INSERT OR IGNORE"
    out.append(f"{ignore} INTO {db.q(LOCALSEQNO)} VALUES ('*', 0);")
    return "\n\n".join(out) + "\n"


def localseqno_sql(db: Db, table: str, value: int | None) -> str:
    q = db.q(LOCALSEQNO)
    text = f"DELETE FROM {q} WHERE TABLENAME = '{table}';\n"
    if value is not None:
        text += f"INSERT INTO {q} VALUES ('{table}', {value});\n"
    return text


def lastused(db: Db, conn: Any, table: str) -> int | None:
    """LOCALSEQNO's LASTUSEDSEQNO of table; None without its row (or without LOCALSEQNO)."""
    if LOCALSEQNO not in table_names(db, conn):
        return None
    found = rows(conn, f"SELECT LASTUSEDSEQNO FROM {db.q(LOCALSEQNO)} WHERE TABLENAME = {db.param}", (table,))
    return int(found[0][0]) if found and found[0][0] is not None else None


def extent(db: Db, conn: Any, tables: tuple[str, ...], first: int | None = None,
           last: int | None = None) -> tuple[int | None, int | None]:
    """Lowest and highest SEQNO over the tables (within first..last when given)."""
    lo: int | None = None
    hi: int | None = None
    where = f" WHERE SEQNO BETWEEN {int(first)} AND {int(last)}" if first is not None and last is not None else ""
    for t in tables:
        a, b = rows(conn, f"SELECT MIN(SEQNO), MAX(SEQNO) FROM {db.q(t)}{where}")[0]
        if a is not None:
            lo = int(a) if lo is None else min(lo, int(a))
            hi = int(b) if hi is None else max(hi, int(b))
    return lo, hi


def count(db: Db, conn: Any, table: str, first: int, last: int) -> int:
    return int(rows(conn, f"SELECT COUNT(*) FROM {db.q(table)} WHERE SEQNO BETWEEN {int(first)} AND {int(last)}")[0][0])


@contextmanager
def transaction(db: Db, conn: Any) -> Iterator[None]:
    """One transaction on a raw connection: committed when the block ends, rolled back when it raises
    (a rollback that fails too, on a connection gone, leaves the block's own error to be seen)."""
    execute(conn, "BEGIN" if db.dialect == "sqlite" else "START TRANSACTION")
    try:
        yield
        execute(conn, "COMMIT")
    except BaseException:
        with suppress(Exception):
            execute(conn, "ROLLBACK")
        raise


def begin_snapshot(db: Db, conn: Any) -> None:
    """One consistent read view for every query that follows on conn."""
    if db.dialect == "mysql":
        execute(conn, "SET SESSION time_zone = '+00:00'")  # TIMESTAMPs read as the chunk files write them
        execute(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        execute(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    else:
        execute(conn, "BEGIN")
        rows(conn, "SELECT COUNT(*) FROM sqlite_master")  # WAL: the snapshot starts at the first read


def transactional(engines: dict[str, str]) -> bool:
    """Whether every table of engines() takes transactions (a snapshot); MyISAM does not."""
    return all(e in ("InnoDB", "sqlite") for e in engines.values())


def engines(db: Db, conn: Any, tables: tuple[str, ...]) -> dict[str, str]:
    if db.dialect != "mysql":
        return {t: "sqlite" for t in tables}
    found = dict(rows(conn, "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"))
    return {t: str(found.get(t)) for t in tables}
