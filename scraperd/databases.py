"""Name a database, get an Engine: a section of a MySQL option file, or an SQLAlchemy URL.

`source = fake_dcs` looks up `[fake_dcs]` in the file named by $SCRAPERD_MYCNF, else ~/.my.cnf
(keys host, port, user, password, database, socket, as in `[client]`); `source = sqlite:///var/x.db`
is used as it is. One engine per database per process, with pool_pre_ping.

Passwords stay inside URL objects: describe() is the only way a database is named in a log or an
error, and it never shows one.
"""

from __future__ import annotations

import configparser
import math
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Engine, make_url

from scraperd.errors import ConfigError

MYCNF_ENV = "SCRAPERD_MYCNF"
MYCNF_KEYS = {"host", "port", "user", "password", "database", "socket"}

# SQLite keeps a DATETIME as text. We write and bind it in whole seconds, as MySQL shows it
# ('2011-02-01 00:00:00'), not with SQLAlchemy's default '.000000': a time written by hand, by
# sqlite3 or by this code then reads the same. A time stored with '.000000' by another tool sorts
# just after the same time without: every source comparison is a half-open range (>= a, < b), which
# holds for both (see scrape/source.py).
SQLITE_DATETIME = sqlite_dialect.DATETIME(
    storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d")


def datetime_type() -> sa.types.TypeEngine[Any]:
    """DATETIME: the server's own on MySQL, whole-second text on SQLite."""
    return sa.DateTime().with_variant(SQLITE_DATETIME, "sqlite")


def reflecting(metadata: sa.MetaData) -> sa.MetaData:
    """metadata whose reflected SQLite DATETIME columns read and bind as SQLITE_DATETIME."""
    def _column(inspector: Any, _table: Any, column: dict[str, Any]) -> None:
        if inspector.dialect.name == "sqlite" and isinstance(column["type"], sa.DateTime):
            column["type"] = SQLITE_DATETIME

    sa.event.listen(metadata, "column_reflect", _column)
    return metadata


def mycnf_path() -> Path:
    """The option file: $SCRAPERD_MYCNF when set, else ~/.my.cnf."""
    env = os.environ.get(MYCNF_ENV)
    return Path(env).expanduser() if env else Path("~/.my.cnf").expanduser()


def is_url(name: str) -> bool:
    return "://" in name


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_mycnf_section(section: str, path: Path | None = None) -> dict[str, str]:
    """The keys of one option-file section, `[client]` conventions (dashes = underscores)."""
    path = path or mycnf_path()
    if not path.exists():
        raise ConfigError(f"no MySQL option file {path} (set {MYCNF_ENV} or use an SQLAlchemy URL)",
                          key=None)
    parser = configparser.RawConfigParser(allow_no_value=True, strict=False,
                                          comment_prefixes=("#", ";", "!"), inline_comment_prefixes=None)
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ConfigError(f"cannot read MySQL option file: {exc.__class__.__name__}", file=str(path)) from None
    if not parser.has_section(section):
        known = ", ".join(parser.sections()) or "none"
        raise ConfigError(f"no section [{section}] (sections: {known})", file=str(path))
    out: dict[str, str] = {}
    for key, value in parser.items(section):
        key = key.replace("-", "_")
        if key == "db":
            key = "database"
        if key in MYCNF_KEYS and value is not None:
            out[key] = _unquote(value)
    return out


def resolve(name: str, *, mycnf: Path | None = None) -> URL:
    """The SQLAlchemy URL for a config `source`/`target` value."""
    if is_url(name):
        try:
            return make_url(name)
        except Exception as exc:  # sqlalchemy.exc.ArgumentError
            raise ConfigError(f"cannot parse database URL {describe_text(name)!r}: {exc}") from None
    if "/" in name or name.endswith((".db", ".sqlite", ".sqlite3")):  # a path: no my.cnf section is named so
        raise ConfigError(f"{name!r} looks like a file, not a my.cnf section: name an SQLite file as "
                          f"sqlite:///{Path(name).resolve()}")
    keys = read_mycnf_section(name, mycnf)
    query: dict[str, str] = {"charset": "utf8mb4"}
    if keys.get("socket"):
        query["unix_socket"] = keys["socket"]
    port = keys.get("port")
    try:
        port_n = int(port) if port else None
    except ValueError:
        raise ConfigError(f"port {port!r} is not a number", file=str(mycnf or mycnf_path()),
                          section=name, key="port") from None
    return URL.create("mysql+mysqldb", username=keys.get("user") or None, password=keys.get("password") or None,
                      host=keys.get("host") or ("localhost" if keys.get("socket") else "127.0.0.1"),
                      port=port_n, database=keys.get("database") or None, query=query)


SECRET_PARAMS = ("password", "passwd", "pwd")  # what a driver also takes as the password, in the query string


def describe(url: URL) -> str:
    """A URL as it may appear in logs: password hidden (user:***@, and ?password=***)."""
    secret = {k: "***" for k in url.query if k.lower() in SECRET_PARAMS}
    return (url.update_query_dict(secret) if secret else url).render_as_string(hide_password=True)


def describe_text(text: str) -> str:
    """A config value naming a database, as it may be shown: a URL without its password; a my.cnf
    section name (or nothing) as it is."""
    if not is_url(text):
        return text
    try:
        return describe(make_url(text))
    except Exception:
        return "<unparseable URL>"


def database_name(url: URL) -> str | None:
    """The database (schema) name; for SQLite the file's stem."""
    if url.get_backend_name() == "sqlite":
        return Path(url.database).stem if url.database and url.database != ":memory:" else None
    return url.database


# ----------------------------------------------------------------------------------------------------------
# SQLite: the aggregate functions MySQL has and SQLite lacks, and transactions that lock at BEGIN.

class _Variance:
    """Welford's running variance; population or sample."""

    def __init__(self, sample: bool = False) -> None:
        self.n, self.mean, self.m2, self.sample = 0, 0.0, 0.0, sample

    def step(self, value: Any) -> None:
        if value is None:
            return
        x = float(value)
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self) -> float | None:
        if self.n == 0 or (self.sample and self.n < 2):
            return None
        return self.m2 / (self.n - 1 if self.sample else self.n)


def _agg(sample: bool, root: bool) -> type:
    class Agg(_Variance):
        def __init__(self) -> None:
            super().__init__(sample)

        def finalize(self) -> float | None:
            v = self.variance()
            return None if v is None else (math.sqrt(v) if root else v)

    return Agg


SQLITE_AGGREGATES = {
    "std": _agg(False, True), "stddev": _agg(False, True), "stddev_pop": _agg(False, True),
    "stddev_samp": _agg(True, True), "variance": _agg(False, False), "var_pop": _agg(False, False),
    "var_samp": _agg(True, False),
}


def register_sqlite_functions(dbapi_conn: sqlite3.Connection) -> None:
    for fname, kls in SQLITE_AGGREGATES.items():
        dbapi_conn.create_aggregate(fname, 1, kls)


def _sqlite_setup(engine: Engine, begin: str, readonly: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _rec: Any) -> None:
        # Let SQLAlchemy's BEGIN (below) own the transaction; pysqlite's own is off.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        if not readonly:  # a reader leaves the file's journal mode to its writer
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()
        register_sqlite_functions(dbapi_conn)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # Writers BEGIN IMMEDIATE: the write lock is taken up front, so two writers never deadlock on
        # upgrading a read lock. Readers (a scraper's source) BEGIN DEFERRED and never block a writer.
        conn.exec_driver_sql(begin)


def make_engine(url: URL, *, readonly: bool = False, **kw: Any) -> Engine:
    """An Engine for url: pre-pinged pool; SQLite with WAL, busy timeout, STD() and BEGIN IMMEDIATE.

    readonly=True is for a database this process only reads (a scraper's source): on SQLite its
    transactions begin DEFERRED so they never take the write lock.
    """
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, **kw)
        _sqlite_setup(engine, "BEGIN" if readonly else "BEGIN IMMEDIATE", readonly)
        return engine
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_recycle", 3600)
    kw.setdefault("pool_size", 2)
    # A silent network (no RST) must end in an error we retry, not a read that waits forever.
    connect_args: dict[str, Any] = {"connect_timeout": 10, "read_timeout": 600, "write_timeout": 600}
    if url.get_driver_name() == "mysqldb":
        connect_args["conv"] = _mysqldb_conversions()
    connect_args.update(kw.pop("connect_args", {}))
    return sa.create_engine(url, connect_args=connect_args, **kw)


def reading_engine(url: URL, key: str | None = None, *, section: str | None = None) -> Engine:
    """make_engine(url, readonly=True) for a command that reads what it is pointed at: an SQLite file that
    does not exist (it would be created), no such dialect or its driver not installed is a ConfigError
    (exit 78, one line), not a traceback."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not Path(url.database).exists():
        raise ConfigError(f"no SQLite database file {url.database}", key=key, section=section)
    try:
        return make_engine(url, readonly=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"{describe(url)}: no driver for it here ({str(exc).splitlines()[0]}); "
                          "use mysql://, mysql+mysqldb:// or sqlite:///", key=key) from None


def _mysqldb_conversions() -> dict[Any, Any]:
    """mysqlclient's conversions, DATETIME parsed by datetime.fromisoformat (C, ~10x faster than
    mysqlclient's Python parser: a catch-up reads hundreds of thousands of date_times). Text it
    cannot read (zero dates such as '0000-00-00 00:00:00') goes to mysqlclient's own parser, which
    returns None for it, as before."""
    from MySQLdb import converters, times
    from MySQLdb.constants import FIELD_TYPE

    def datetime_or_none(text: str) -> Any:
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return times.DateTime_or_None(text)

    conv = dict(converters.conversions)
    conv[FIELD_TYPE.DATETIME] = conv[FIELD_TYPE.TIMESTAMP] = datetime_or_none
    return conv


def _on_server(url: URL, sql: str) -> None:
    """Run one statement on the MySQL server of url, outside any database."""
    server = make_engine(url._replace(database=None))  # URL.set() ignores None
    try:
        with server.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        server.dispose()


def ensure_database(url: URL) -> None:
    """Create the MySQL database named in url when it does not exist (SQLite files appear by themselves)."""
    if url.get_backend_name() == "sqlite" or not url.database:
        return
    _on_server(url, f"CREATE DATABASE IF NOT EXISTS `{url.database}`")


def drop_database(url: URL) -> None:
    """Drop a MySQL database, or remove an SQLite file."""
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                Path(url.database + suffix).unlink(missing_ok=True)
        return
    _on_server(url, f"DROP DATABASE IF EXISTS `{url.database}`")
