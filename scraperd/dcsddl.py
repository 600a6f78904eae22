"""The DCS source schema as a `mysqldump --no-data` file: load it into MySQL, or into SQLite.

On MySQL the dump's statements run as they are (it is what the real DCS gave us, versioned
comments included). SQLite cannot run MySQL DDL, so the CREATE TABLE blocks are read into
SQLAlchemy tables (column names, types, NOT NULL, primary and secondary keys) and created from
those. Refuses to guess: a column line it cannot read is a ConfigError naming file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from scraperd import databases
from scraperd.errors import ConfigError

DEFAULT_DDL = Path(__file__).resolve().parents[1] / "etc" / "fake_dcs.sql"

_CREATE = re.compile(r"CREATE TABLE\s+`?(\w+)`?\s*\((.*?)\n\)\s*[^;]*;", re.S | re.I)
_COLUMN = re.compile(r"`(\w+)`\s+(\w+)(?:\(([\d,\s]+)\))?\s*(.*)", re.I)
_KEY = re.compile(r"(PRIMARY\s+KEY|UNIQUE\s+KEY|KEY|INDEX)\s*(?:`(\w+)`)?\s*\(([^)]*)\)", re.I)


def _type(name: str, args: str | None, rest: str) -> sa.types.TypeEngine:  # type: ignore[type-arg]
    n = name.lower()
    nums = [int(a) for a in args.split(",")] if args else []
    if n in ("int", "integer", "mediumint", "smallint", "tinyint", "bigint"):
        return sa.BigInteger() if n == "bigint" else sa.Integer()
    if n in ("decimal", "numeric"):
        precision, scale = (nums + [None, None])[:2]
        return sa.Numeric(precision, scale, asdecimal=False)
    if n in ("float", "double", "real"):
        return sa.Float()
    if n in ("datetime", "timestamp"):
        return databases.datetime_type()
    if n == "date":
        return sa.Date()
    if n in ("varchar", "char"):
        return sa.String(nums[0] if nums else None)
    if n in ("text", "mediumtext", "longtext", "tinytext"):
        return sa.Text()
    raise ValueError(f"unsupported column type {name!r}")


def parse(text: str, path: str = "fake_dcs.sql") -> sa.MetaData:
    """The CREATE TABLE statements of a no-data dump as SQLAlchemy tables."""
    md = sa.MetaData()
    for m in _CREATE.finditer(text):
        name, body = m[1], m[2]
        base_line = text.count("\n", 0, m.start(2)) + 1
        cols: list[sa.Column] = []  # type: ignore[type-arg]
        pk: list[str] = []
        keys: list[tuple[str | None, list[str]]] = []
        for offset, raw in enumerate(body.split("\n")):
            line = raw.strip().rstrip(",")
            if not line:
                continue
            km = _KEY.match(line)
            if km:
                names = [c.strip().strip("`").split("(")[0] for c in km[3].split(",")]
                if km[1].upper().startswith("PRIMARY"):
                    pk = names
                else:
                    keys.append((km[2], names))
                continue
            cm = _COLUMN.match(line)
            if not cm:
                raise ConfigError(f"cannot read column definition {line[:60]!r}", file=f"{path}:{base_line + offset}")
            try:
                typ = _type(cm[2], cm[3], cm[4])
            except ValueError as exc:
                raise ConfigError(str(exc), file=f"{path}:{base_line + offset}") from None
            rest = cm[4].upper()
            cols.append(sa.Column(cm[1], typ, nullable="NOT NULL" not in rest,
                                  autoincrement="AUTO_INCREMENT" in rest))
        for c in cols:
            if c.name in pk:
                c.primary_key = True
        t = sa.Table(name, md, *cols)
        for kname, names in keys:
            sa.Index(f"{name}_{kname or '_'.join(names)}", *[t.c[n] for n in names])
    if not md.tables:
        raise ConfigError("no CREATE TABLE statement found", file=path)
    return md


def _statements(text: str) -> list[str]:
    """The dump's statements, comment lines dropped (versioned /*!...*/ statements are kept)."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip() and s.strip() != ";"]


def read(path: Path) -> str:
    if not path.exists():
        raise ConfigError("no such DDL file (faker_sql)", file=str(path))
    return path.read_text()


def recreate(url: URL, ddl_path: Path) -> list[str]:
    """Drop the source database and recreate it, empty, from the dump. Returns the table names."""
    text = read(ddl_path)
    md = parse(text, str(ddl_path))  # parse first: a broken file never drops anything
    databases.drop_database(url)
    if url.get_backend_name() == "sqlite":
        engine = databases.make_engine(url)
        try:
            md.create_all(engine)
        finally:
            engine.dispose()
        return list(md.tables)
    databases.ensure_database(url)
    engine = databases.make_engine(url)
    try:
        with engine.begin() as conn:
            for stmt in _statements(text):
                conn.exec_driver_sql(stmt.rstrip(";"))
    finally:
        engine.dispose()
    return list(md.tables)


def create_missing(engine: Engine, ddl_path: Path, tables: list[str]) -> list[str]:
    """Create the named tables that do not exist yet (from the dump); returns those created."""
    insp = sa.inspect(engine)
    missing = [t for t in tables if not insp.has_table(t)]
    if not missing:
        return []
    md = parse(read(ddl_path), str(ddl_path))
    unknown = [t for t in missing if t not in md.tables]
    if unknown:
        raise ConfigError(f"tables {unknown} are not in the DDL file", file=str(ddl_path))
    md.create_all(engine, tables=[md.tables[t] for t in missing])
    return missing
