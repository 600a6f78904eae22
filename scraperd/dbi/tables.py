"""The DBI tables of one spec, as SQLAlchemy Core `Table`s: payload `<T>`, validity `<T>Vld`, LOCALSEQNO.

The layout is DBI's, column for column, so DBI and DybDbi readers work on what we write:

    <T>         SEQNO int NOT NULL, ROW_COUNTER int NOT NULL, <spec columns, nullable, COMMENT>,
                PRIMARY KEY (SEQNO, ROW_COUNTER)
    <T>Vld      SEQNO int PK, TIMESTART datetime NOT NULL, TIMEEND datetime NOT NULL, SITEMASK tinyint,
                SIMMASK tinyint, SUBSITE int, TASK int, AGGREGATENO int, VERSIONDATE datetime NOT NULL,
                INSERTDATE datetime NOT NULL; KEY TIMESTART, KEY TIMEEND
    LOCALSEQNO  TABLENAME char(64) PK, LASTUSEDSEQNO int; primed with ('*', 0)

Two departures from Daya Bay's tables, both deliberate: ENGINE=InnoDB instead of MyISAM, because a
record (Vld row, payload rows, LOCALSEQNO) is written in one transaction; and no AUTO_INCREMENT,
because SEQNO and ROW_COUNTER are always written explicitly (DBI never relied on it either).

Tables that exist are used as they are, whatever their engine: a legacy offline_db holds MyISAM
ones. create_tables() reads the engine of the three tables at every start-up and records it in
DbiTables.engines; when any of them is not InnoDB (MyISAM, Aria, ...: no transaction, and
`SELECT ... FOR UPDATE` locks nothing) the writer takes LOCK TABLES instead (writer.py), and one
`non_transactional_target` warning (table, engines, crash_can_leave) says what a crash can leave.

Times are naive datetimes holding UTC at second precision (DATETIME without fractional seconds on
MySQL, 'YYYY-MM-DD HH:MM:SS' text on SQLite). Decimal columns come back as Python floats, so that
regime arithmetic never mixes Decimal and float.

This module creates and drops tables and tells their engine; it writes no records (writer.py) and
answers no context queries (reader.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

from scraperd import databases
from scraperd.dbi.spec import DbType, Spec
from scraperd.errors import ConfigError, DataError, ScraperdError

log = structlog.get_logger(__name__)

END_OF_TIME = datetime(2038, 1, 19, 3, 14, 7)  # 0x7FFFFFFF seconds: DBI's open end of validity
BEGINNING_OF_TIME = datetime(1970, 1, 1)
LOCALSEQNO = "LOCALSEQNO"
DEFAULT_SEQNO_ROW = "*"  # LOCALSEQNO's default row, used for a table that has no row of its own

MYSQL_DIALECTS = ("mysql", "mariadb")  # SQLAlchemy names MariaDB "mariadb" only for mariadb:// URLs
DDL_DIALECTS = ("mysql", "mariadb", "sqlite")
_MYSQL_TABLE_KW: dict[str, Any] = {"mysql_engine": "InnoDB", "mariadb_engine": "InnoDB"}
_DDL_LOCK_TIMEOUT_S = 60
VLD_INDEXED = ("TIMESTART", "TIMEEND")
# The engines on which one transaction holds a whole record and FOR UPDATE locks the LOCALSEQNO row.
# Every other one is written under LOCK TABLES: MyISAM, MERGE, Aria (even TRANSACTIONAL=1, which
# makes it crash-safe, not transactional), MEMORY, ...
TRANSACTIONAL_ENGINES = ("InnoDB", "sqlite")
CRASH_CAN_LEAVE = ("payload rows without their Vld row: invisible to context queries, their SEQNO never reused; "
                   "never a Vld row without its payload")


# ----------------------------------------------------------------------------------------------------------
# Types: MySQL's own on MySQL, the nearest SQLite type elsewhere.

def _int_type(generic: type[sa.types.TypeEngine[Any]], specific: type[Any]) -> Callable[[DbType], Any]:
    def make(dbtype: DbType) -> Any:
        width = {"display_width": dbtype.args[0]} if dbtype.args else {}
        return generic().with_variant(specific(**width), *MYSQL_DIALECTS)
    return make


def _decimal_type(precision: int, scale: int) -> Any:
    """NUMERIC read as float; on MySQL spelled DECIMAL(p, s), as the spec and the server write it."""
    return sa.Numeric(precision, scale, asdecimal=False).with_variant(
        mysql.DECIMAL(precision, scale, asdecimal=False), *MYSQL_DIALECTS)


_TYPES: dict[str, Callable[[DbType], Any]] = {
    "tinyint": _int_type(sa.SmallInteger, mysql.TINYINT),
    "smallint": _int_type(sa.SmallInteger, mysql.SMALLINT),
    "mediumint": _int_type(sa.Integer, mysql.MEDIUMINT),
    "int": _int_type(sa.Integer, mysql.INTEGER),
    "integer": _int_type(sa.Integer, mysql.INTEGER),
    "bigint": _int_type(sa.BigInteger, mysql.BIGINT),
    "float": lambda t: sa.Float().with_variant(mysql.FLOAT(), *MYSQL_DIALECTS),
    "double": lambda t: sa.Double().with_variant(mysql.DOUBLE(), *MYSQL_DIALECTS),
    "decimal": lambda t: _decimal_type(t.args[0], t.args[1] if len(t.args) > 1 else 0),
    "datetime": lambda t: databases.datetime_type(),
    "char": lambda t: sa.CHAR(t.args[0]),
    "varchar": lambda t: sa.String(t.args[0]),
    "text": lambda t: sa.Text(),
}

_FLOAT_MAX = 3.4028234663852886e38
_INT_RANGE = {"tinyint": 7, "smallint": 15, "mediumint": 23, "int": 31, "integer": 31, "bigint": 63}


def column_type(dbtype: DbType) -> Any:
    """The SQLAlchemy type for a spec dbtype."""
    return _TYPES[dbtype.base](dbtype)


def _tinyint() -> Any:
    return sa.SmallInteger().with_variant(mysql.TINYINT(), *MYSQL_DIALECTS)


# Python-side conversion of payload values, done by the writer before its transaction starts: SQLite
# would store a string in a float column and cannot bind a Decimal (what DCS sources return), and
# MySQL would refuse an out-of-range integer only after the batch had begun. One rule for both.

def _converter(dbtype: DbType) -> Callable[[Any], Any]:
    base = dbtype.base
    if base in _INT_RANGE:
        bits = _INT_RANGE[base]

        def to_int(value: Any) -> int:
            n = int(value)
            if n != value and not isinstance(value, str):
                raise ValueError(f"{value!r} is not a whole number")
            if not -(2 ** bits) <= n < 2 ** bits:
                raise ValueError(f"{n} is out of range for {base}")
            return n
        return to_int
    if base in ("float", "double", "decimal"):
        scale: int | None = None
        limit = math.inf
        if base == "decimal":
            scale = dbtype.args[1] if len(dbtype.args) > 1 else 0
            limit = 10.0 ** (dbtype.args[0] - scale)
        elif base == "float":
            limit = _FLOAT_MAX  # MySQL's FLOAT is single precision
        shown = f"{base}({','.join(map(str, dbtype.args))})" if dbtype.args else base

        def to_float(value: Any) -> float | None:
            x = value if type(value) is float else float(value)
            if x != x:
                return None  # SQL has no NaN (MySQL refuses it): an undefined statistic is NULL
            if math.isinf(x):
                raise ValueError(f"{value!r} is not finite")
            if scale is not None:
                x = round(x, scale)  # as MySQL's DECIMAL would; SQLite keeps what it is given
            if abs(x) >= limit:
                raise ValueError(f"{value!r} is out of range for {shown}")
            return x
        return to_float
    if base == "datetime":
        def to_datetime(value: Any) -> datetime:
            if not isinstance(value, datetime) or value.tzinfo is not None:
                raise ValueError(f"{value!r} is not a naive UTC datetime")
            return value.replace(microsecond=0)
        return to_datetime

    length = dbtype.args[0] if dbtype.args else 65535

    def to_str(value: Any) -> str:
        s = value if isinstance(value, str) else str(value)
        if len(s) > length:
            raise ValueError(f"{len(s)} characters, more than {dbtype.base}({length}) holds")
        return s
    return to_str


# ----------------------------------------------------------------------------------------------------------
# The tables

@dataclass(frozen=True)
class DbiTables:
    """The three tables behind one spec, and a value converter per payload column."""

    spec: Spec
    payload: sa.Table
    vld: sa.Table
    localseqno: sa.Table
    converters: Mapping[str, Callable[[Any], Any]]
    # The engine of each table as the server reported it (None: the table is missing); None when
    # not read (tables_for() does not connect; create_tables() reads it).
    engines: Mapping[str, str | None] | None = None

    @property
    def name(self) -> str:
        """The payload table name, as LOCALSEQNO and DBI name the pair."""
        return self.payload.name

    @property
    def transactional(self) -> bool | None:
        """Whether one transaction holds a whole record (every table InnoDB, or SQLite); None: not known."""
        return None if self.engines is None else is_transactional(self.engines)

    @property
    def metadata(self) -> sa.MetaData:
        return self.payload.metadata


def _localseqno(metadata: sa.MetaData) -> sa.Table:
    if LOCALSEQNO in metadata.tables:
        return metadata.tables[LOCALSEQNO]
    return sa.Table(
        LOCALSEQNO, metadata,
        sa.Column("TABLENAME", sa.CHAR(64), primary_key=True, nullable=False),
        sa.Column("LASTUSEDSEQNO", sa.Integer()),
        **_MYSQL_TABLE_KW,
    )


def _vld(metadata: sa.MetaData, name: str) -> sa.Table:
    vld = sa.Table(
        f"{name}Vld", metadata,
        sa.Column("SEQNO", sa.Integer(), primary_key=True, autoincrement=False, nullable=False),
        sa.Column("TIMESTART", databases.datetime_type(), nullable=False),
        sa.Column("TIMEEND", databases.datetime_type(), nullable=False),
        sa.Column("SITEMASK", _tinyint()),
        sa.Column("SIMMASK", _tinyint()),
        sa.Column("SUBSITE", sa.Integer()),
        sa.Column("TASK", sa.Integer()),
        sa.Column("AGGREGATENO", sa.Integer()),
        sa.Column("VERSIONDATE", databases.datetime_type(), nullable=False),
        sa.Column("INSERTDATE", databases.datetime_type(), nullable=False),
        **_MYSQL_TABLE_KW,
    )
    for col in VLD_INDEXED:
        # Both namings are attached, each created only on its dialect (so metadata.create_all is right too).
        # (ddl_if documents a tuple of dialect names; its annotation only admits one.)
        sa.Index(_index_name(vld.name, col, "mysql"), vld.c[col]).ddl_if(dialect=MYSQL_DIALECTS)  # type: ignore[arg-type]
        sa.Index(_index_name(vld.name, col, "sqlite"), vld.c[col]).ddl_if(dialect="sqlite")
    return vld


def _index_name(vld_name: str, column: str, dialect_name: str) -> str:
    # DBI's keys are named after their column (`KEY TIMESTART (TIMESTART)`); that is fine on MySQL,
    # where index names are per table, but SQLite's are per database, so there they carry the table.
    return column if dialect_name in MYSQL_DIALECTS else f"{vld_name}_{column}"


def vld_indexes(tables: DbiTables, dialect_name: str) -> list[sa.Index]:
    """The Vld table's indexes on a dialect, in DBI's order (TIMESTART, TIMEEND)."""
    by_name = {str(i.name): i for i in tables.vld.indexes}
    return [by_name[_index_name(tables.vld.name, col, dialect_name)] for col in VLD_INDEXED]


def _payload(metadata: sa.MetaData, spec: Spec) -> sa.Table:
    return sa.Table(
        spec.table, metadata,
        sa.Column("SEQNO", sa.Integer(), primary_key=True, autoincrement=False, nullable=False),
        sa.Column("ROW_COUNTER", sa.Integer(), primary_key=True, autoincrement=False, nullable=False),
        *(sa.Column(c.name, column_type(c.type), nullable=True, comment=c.description or None)
          for c in spec.columns),
        **_MYSQL_TABLE_KW,
    )


def tables_for(spec: Spec, metadata: sa.MetaData | None = None) -> DbiTables:
    """The Table objects for spec, in metadata (a new MetaData when None; LOCALSEQNO is shared)."""
    metadata = metadata if metadata is not None else sa.MetaData()
    if spec.table in metadata.tables:
        payload, vld = metadata.tables[spec.table], metadata.tables[f"{spec.table}Vld"]
    else:
        payload, vld = _payload(metadata, spec), _vld(metadata, spec.table)
    return DbiTables(spec=spec, payload=payload, vld=vld, localseqno=_localseqno(metadata),
                     converters={c.name: _converter(c.type) for c in spec.columns})


def convert_row(tables: DbiTables, row: Mapping[str, Any]) -> dict[str, Any]:
    """A payload row with every spec column (missing ones None), each value converted for its column."""
    unknown = row.keys() - tables.converters.keys()
    if unknown:
        raise DataError(f"{tables.name} has no column {', '.join(sorted(map(repr, unknown)))} "
                        f"(columns: {', '.join(tables.converters)})")
    out: dict[str, Any] = {}
    for name, convert in tables.converters.items():
        value = row.get(name)
        if value is not None:
            try:
                value = convert(value)
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise DataError(f"{tables.name}.{name}: {exc}") from None
        out[name] = value
    return out


def _insert_ignore(table: sa.Table) -> sa.Insert:
    """INSERT that skips a row whose key exists (INSERT IGNORE / INSERT OR IGNORE)."""
    stmt = sa.insert(table)
    for dialect in MYSQL_DIALECTS:
        stmt = stmt.prefix_with("IGNORE", dialect=dialect)
    return stmt.prefix_with("OR IGNORE", dialect="sqlite")


def seqno_row_insert(tables: DbiTables) -> list[sa.Insert]:
    """The statements giving LOCALSEQNO its '*' row and the table its own row (a copy of '*')
    when they are missing; existing rows are left alone."""
    ls = tables.localseqno
    star = sa.select(sa.literal(tables.name, sa.CHAR(64)), ls.c.LASTUSEDSEQNO).where(
        ls.c.TABLENAME == DEFAULT_SEQNO_ROW)
    return [
        _insert_ignore(ls).values(TABLENAME=DEFAULT_SEQNO_ROW, LASTUSEDSEQNO=0),
        _insert_ignore(ls).from_select(["TABLENAME", "LASTUSEDSEQNO"], star),
    ]


def is_mysql(bind: Engine | Connection) -> bool:
    return bind.dialect.name in MYSQL_DIALECTS


_INFORMATION_SCHEMA_TABLES = sa.table("TABLES", sa.column("TABLE_SCHEMA"), sa.column("TABLE_NAME"),
                                      sa.column("ENGINE"), schema="information_schema")


def engines(conn: Connection, tables: DbiTables) -> dict[str, str | None]:
    """The storage engine of the payload, Vld and LOCALSEQNO tables, by name, as the server reports it
    (MyISAM, InnoDB, ...; "sqlite" on SQLite; None for a missing table or a view)."""
    names = [t.name for t in (tables.payload, tables.vld, tables.localseqno)]
    if not is_mysql(conn):
        insp = sa.inspect(conn)
        return {n: "sqlite" if insp.has_table(n) else None for n in names}
    t = _INFORMATION_SCHEMA_TABLES.c
    found = {name: engine for name, engine in conn.execute(
        sa.select(t.TABLE_NAME, t.ENGINE).where(t.TABLE_SCHEMA == sa.func.database(), t.TABLE_NAME.in_(names)))}
    # lower_case_table_names=1 stores (and reports) the names in lower case
    folded = {name.lower(): engine for name, engine in found.items()}
    return {n: found[n] if n in found else folded.get(n.lower()) for n in names}


def is_transactional(engines: Mapping[str, str | None]) -> bool:
    """Whether every table is on an engine where the writer's one transaction holds a whole record."""
    return all(e in TRANSACTIONAL_ENGINES for e in engines.values())


def describe_engines(engines: Mapping[str, str | None]) -> str:
    """The engines for a person: "InnoDB", "MyISAM (LOCK TABLES)", each table's when they differ
    (- for a missing one, which create_tables() will make InnoDB), or "no tables yet"."""
    present = {name: engine for name, engine in engines.items() if engine is not None}
    if not present:
        return "no tables yet"
    values = set(engines.values())
    text = (str(values.pop()) if len(values) == 1
            else " ".join(f"{name}={engine or '-'}" for name, engine in engines.items()))
    return text if is_transactional(present) else f"{text} (LOCK TABLES)"


@contextmanager
def _ddl_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the right to change tables in this database, one process at a time.

    MySQL commits DDL implicitly, so a transaction cannot serialise `CREATE TABLE` between two
    processes: a named server lock does (scoped to the database, as the lock name is server-wide).
    SQLite's DDL is transactional, and its BEGIN IMMEDIATE already lets one creator in at a time.
    """
    with engine.connect() as conn:
        if not is_mysql(conn):
            yield conn
            return
        name = f"scraperd.ddl.{conn.execute(sa.select(sa.func.database())).scalar()}"[:64]
        got = conn.execute(sa.select(sa.func.get_lock(name, _DDL_LOCK_TIMEOUT_S))).scalar()
        conn.commit()
        if got != 1:
            raise ScraperdError(f"could not get the DDL lock {name!r} within {_DDL_LOCK_TIMEOUT_S} s")
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(sa.select(sa.func.release_lock(name)))
            conn.commit()


def create_tables(engine: Engine, spec: Spec, previous: DbiTables | None = None) -> DbiTables:
    """Create <T>, <T>Vld, their indexes and LOCALSEQNO with its '*' and <T> rows, whichever are missing.

    Idempotent, and safe to run from several processes at once. Each missing piece is created on
    its own, so a run cut off between two statements (MySQL's DDL is not transactional) is completed
    by the next. The table's own LOCALSEQNO row is created here (a copy of '*') so that writers find
    a row to lock (see writer.py). The tables' engines are read and returned in DbiTables.engines;
    when they are not transactional, one `non_transactional_target` warning is logged, unless
    `previous` (what this process's last start-up found: a reconnect, a write conflict) had the same.
    """
    tables = tables_for(spec)
    with _ddl_lock(engine) as conn, conn.begin():
        insp = sa.inspect(conn)
        for table in (tables.localseqno, tables.vld, tables.payload):
            if not insp.has_table(table.name):
                conn.execute(sa.schema.CreateTable(table))
        existing = {i["name"] for i in insp.get_indexes(tables.vld.name)}
        for index in vld_indexes(tables, conn.dialect.name):
            if index.name not in existing:
                conn.execute(sa.schema.CreateIndex(index))
        for stmt in seqno_row_insert(tables):
            conn.execute(stmt)
        if conn.dialect.name == "sqlite":
            _whole_second_text(conn, tables)
        found = engines(conn, tables)
    if not is_transactional(found) and (previous is None or previous.engines != found):
        log.warning("non_transactional_target", table=tables.name, engines=found, locking="LOCK TABLES",
                    crash_can_leave=CRASH_CAN_LEAVE)
    return replace(tables, engines=found)


def _whole_second_text(conn: Connection, tables: DbiTables) -> None:
    """SQLite Vld times written before scraperd kept them as whole-second text ('... 16:00:00.000000'):
    cut to 'YYYY-MM-DD HH:MM:SS', so that they compare with the times bound now (see databases.py)."""
    names = ("TIMESTART", "TIMEEND", "VERSIONDATE", "INSERTDATE")
    # the stored text itself, not the column's datetime type (whose bind processor would rewrite it)
    text: dict[str, sa.ColumnElement[Any]] = {name: sa.literal_column(f'"{name}"') for name in names}
    conn.execute(sa.update(tables.vld)  # one pass over the table; cutting a 19-character text changes nothing
                 .where(sa.or_(*(sa.func.length(t) > 19 for t in text.values())))
                 .values({name: sa.func.substr(t, 1, 19) for name, t in text.items()}))


def drop_tables(engine: Engine, spec: Spec) -> None:
    """Drop <T> and <T>Vld and delete the table's LOCALSEQNO row (LOCALSEQNO itself is shared)."""
    tables = tables_for(spec)
    with _ddl_lock(engine) as conn, conn.begin():
        tables.metadata.drop_all(conn, tables=[tables.payload, tables.vld], checkfirst=True)
        if sa.inspect(conn).has_table(LOCALSEQNO):
            ls = tables.localseqno
            conn.execute(sa.delete(ls).where(ls.c.TABLENAME == tables.name))


def ddl(spec: Spec, dialect_name: str) -> str:
    """The SQL that creates spec's tables on a dialect ("mysql", "mariadb" or "sqlite"), ';'-terminated.

    LOCALSEQNO is shared by every table, so its CREATE and its priming INSERTs skip what exists.
    """
    if dialect_name not in DDL_DIALECTS:
        raise ConfigError(f"unknown SQL dialect {dialect_name!r} (known: {', '.join(DDL_DIALECTS)})")
    tables = tables_for(spec)
    url = "sqlite://" if dialect_name == "sqlite" else f"{dialect_name}+mysqldb://"
    dialect = sa.create_mock_engine(url, executor=None).dialect
    statements: list[Any] = [
        sa.schema.CreateTable(tables.payload),
        sa.schema.CreateTable(tables.vld),
        *(sa.schema.CreateIndex(i) for i in vld_indexes(tables, dialect_name)),
        sa.schema.CreateTable(tables.localseqno, if_not_exists=True),
        *seqno_row_insert(tables),
    ]
    text = (str(s.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip() for s in statements)
    return "".join(f"{t};\n\n" for t in text).rstrip("\n") + "\n"
