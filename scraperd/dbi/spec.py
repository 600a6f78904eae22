"""Read DybDbi `.spec` files: the description of one target table's payload columns.

A spec is a small CSV, as DybDbi's code generator read it (whitespace around fields is stripped;
a field holding a comma, such as "decimal(6,2)", is double-quoted):

    meta , class     , table    , CanL2Cache
    1    , GDcsAdTemp, DcsAdTemp, kTRUE
    ;
    name     , codetype , dbtype , description         , code2db
    Temp_PT1 , double   , float  , AD temperature probe 1,

The row under the `meta` header names the generated class and the table; the line starting with `;`
resets the field names, and every row under the `name,...` header is one payload column. SEQNO and
ROW_COUNTER are not listed: every DBI payload table has them (tables.py adds them).

Pure: text in, a `Spec` out, or a `SpecError` naming the file and line. It does not know SQLAlchemy;
tables.py turns each `dbtype` into a column type.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from scraperd.errors import SpecError

DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[2] / "etc" / "spec"

# The dbtypes a spec may use, with how many parenthesised numbers each takes. The names are MySQL's,
# as DybDbi wrote them (`int(11)`, `tinyint(4)`, `decimal(6,2)`); tables.py maps each to a type that
# also compiles on SQLite.
DBTYPE_ARGS: dict[str, tuple[int, ...]] = {
    "tinyint": (0, 1), "smallint": (0, 1), "mediumint": (0, 1), "int": (0, 1), "integer": (0, 1),
    "bigint": (0, 1), "float": (0,), "double": (0,), "decimal": (1, 2), "datetime": (0,),
    "char": (1,), "varchar": (1,), "text": (0,),
}

META_FIELDS = ("meta", "class", "table")
COLUMN_FIELDS = ("name", "codetype", "dbtype", "description", "code2db")
REQUIRED_COLUMN_FIELDS = ("name", "codetype", "dbtype", "description")
# Every DBI payload table starts with these; a spec naming them would collide with them.
RESERVED_COLUMNS = ("SEQNO", "ROW_COUNTER")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "<T>Vld" must still fit MySQL's 64-character limit on table names.
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,60}")
_DBTYPE = re.compile(r"(?P<base>[a-z]+)\s*(?:\(\s*(?P<args>\d+(?:\s*,\s*\d+)?)\s*\))?", re.IGNORECASE)


@dataclass(frozen=True)
class DbType:
    """A parsed dbtype: `decimal(6,2)` is DbType("decimal", (6, 2))."""

    base: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class Column:
    """One payload column as the spec describes it."""

    name: str
    codetype: str
    dbtype: str
    description: str
    code2db: str = ""

    @property
    def type(self) -> DbType:
        parsed = parse_dbtype(self.dbtype)
        assert parsed is not None, "checked when the spec was parsed"
        return parsed


@dataclass(frozen=True)
class Spec:
    """A target table: its generated class name (GDcsAdTemp), table name (DcsAdTemp) and columns."""

    klass: str
    table: str
    columns: tuple[Column, ...]
    path: str
    meta: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def parse_dbtype(text: str) -> DbType | None:
    """The DbType for a spec's dbtype text, or None when it is not one we can create."""
    m = _DBTYPE.fullmatch(text.strip())
    if m is None:
        return None
    base = m["base"].lower()
    args = tuple(int(a) for a in m["args"].split(",")) if m["args"] else ()
    if base not in DBTYPE_ARGS or len(args) not in DBTYPE_ARGS[base] or not _sizes_fit(base, args):
        return None
    return DbType(base, args)


def _sizes_fit(base: str, args: tuple[int, ...]) -> bool:
    """MySQL's limits: decimal(p,s) with p 1..65 and s at most min(p, 30); char(1..255), varchar(1..16383)."""
    if base == "decimal":
        return 1 <= args[0] <= 65 and (len(args) == 1 or args[1] <= min(args[0], 30))
    if base in ("char", "varchar"):
        return 1 <= args[0] <= (255 if base == "char" else 16383)
    return True


def _known_dbtypes() -> str:
    shapes = {0: "{}", 1: "{}(n)", 2: "{}(p,s)"}
    return ", ".join(shapes[max(n)].format(b) for b, n in DBTYPE_ARGS.items())


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) for every non-blank CSV row; the number is where the row starts."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    out: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            fields = [f.strip() for f in row]
            if any(fields):
                out.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise _error(f"unreadable CSV: {exc}", start) from None
    return out


class _SpecParseError(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message, self.line = message, line


def _error(message: str, line: int) -> _SpecParseError:
    return _SpecParseError(message, line)


def _fields_count(fields: list[str], header: list[str], line: int) -> None:
    if len(fields) != len(header):
        hint = ""
        if len(fields) > len(header) and any("(" in f and ")" not in f for f in fields):
            hint = ' (quote a dbtype holding a comma: "decimal(6,2)")'
        raise _error(f"expected {len(header)} fields ({', '.join(header)}), got {len(fields)}{hint}", line)


def parse_spec(text: str, path: str) -> Spec:
    """Parse the text of a .spec file; path is only used to name the file in errors and in the Spec."""
    try:
        return _parse(text, str(path))
    except _SpecParseError as exc:
        raise SpecError(exc.message, file=str(path), line=exc.line) from None


def _parse(text: str, path: str) -> Spec:
    rows = _rows(text)
    if not rows:
        raise _error("empty spec: expected a 'meta,class,table,...' header, a meta row, ';' and columns", 1)
    meta, meta_line = _meta(rows)
    header, header_line = _column_header(rows, meta_line)
    columns = _columns(rows[4:], header)
    if not columns:
        raise _error("no columns under the column header", header_line)
    return Spec(klass=meta["class"], table=meta["table"], columns=tuple(columns), path=path,
                meta={k: v for k, v in meta.items() if k != "meta"})


def _meta(rows: list[tuple[int, list[str]]]) -> tuple[dict[str, str], int]:
    """The meta header and the one row under it: the fields by name, and the row's line."""
    line, header = rows[0]
    if header[0].startswith(";") or header[0].lower() != "meta":
        raise _error(f"missing meta row: expected a 'meta,class,table,...' header first, got {','.join(header)!r}",
                     line)
    header = [h.lower() if h.lower() in META_FIELDS else h for h in header]
    for needed in META_FIELDS:
        if needed not in header:
            raise _error(f"meta header lacks {needed!r}", line)
    if len(rows) < 2 or rows[1][1][0].startswith(";"):
        raise _error("missing meta row: the meta header must be followed by a row of values",
                     rows[1][0] if len(rows) > 1 else line)
    line, values = rows[1]
    _fields_count(values, header, line)
    meta = dict(zip(header, values, strict=True))
    _check_names(meta["class"], meta["table"], line)
    return meta, line


def _check_names(klass: str, table: str, line: int) -> None:
    if not _IDENTIFIER.fullmatch(klass):
        raise _error(f"bad class name {klass!r}: expected letters, digits and _", line)
    if not _TABLE.fullmatch(table) or table.lower().endswith("vld") or table.upper() in ("LOCALSEQNO",
                                                                                         "GLOBALSEQNO"):
        raise _error(f"bad table name {table!r}: expected a letter then letters, digits or _ (at most 61), "
                     "not ending in Vld, not LOCALSEQNO/GLOBALSEQNO", line)


def _column_header(rows: list[tuple[int, list[str]]], meta_line: int) -> tuple[list[str], int]:
    """The ';' line, then the column header: its field names (lower case), and its line."""
    if len(rows) < 3:
        raise _error("missing ';' line and column header after the meta row", meta_line)
    line, fields = rows[2]
    if not fields[0].startswith(";"):
        raise _error(f"missing ';' line: expected a line starting with ';' before the column header, "
                     f"got {','.join(fields)!r}", line)
    if len(rows) < 4:
        raise _error("missing column header 'name,codetype,dbtype,description,code2db' after ';'", line)
    line, header = rows[3]
    header = [h.lower() for h in header]
    for h in header:
        if h not in COLUMN_FIELDS:
            raise _error(f"unknown column header field {h!r} (expected {', '.join(COLUMN_FIELDS)})", line)
    for needed in REQUIRED_COLUMN_FIELDS:
        if needed not in header:
            raise _error(f"column header lacks {needed!r}", line)
    if len(set(header)) != len(header):
        raise _error("column header repeats a field", line)
    return header, line


def _columns(rows: list[tuple[int, list[str]]], header: list[str]) -> list[Column]:
    """One Column per row under the column header."""
    columns: list[Column] = []
    seen: dict[str, int] = {}  # lower-case name -> its line
    for line, fields in rows:
        if fields[0].startswith(";"):
            raise _error("a second ';' line: a spec has one column section", line)
        _fields_count(fields, header, line)
        col = dict(zip(header, fields, strict=True))
        name = col["name"]
        _check_column_name(name, line, seen)
        seen[name.lower()] = line
        if parse_dbtype(col["dbtype"]) is None:
            raise _error(f"unknown dbtype {col['dbtype']!r} for column {name!r} (known: {_known_dbtypes()})",
                         line)
        columns.append(Column(name=name, codetype=col["codetype"], dbtype=col["dbtype"],
                              description=col["description"], code2db=col.get("code2db", "")))
    return columns


def _check_column_name(name: str, line: int, seen: dict[str, int]) -> None:
    if not name:
        raise _error("empty column name", line)
    if not _IDENTIFIER.fullmatch(name) or len(name) > 64:
        raise _error(f"bad column name {name!r}: expected letters, digits and _ (at most 64)", line)
    if name.upper() in RESERVED_COLUMNS:
        raise _error(f"column {name!r} is reserved: every DBI payload table has SEQNO and ROW_COUNTER", line)
    # MySQL column names are case-insensitive, so 'Temp' and 'temp' collide there.
    if name.lower() in seen:
        raise _error(f"duplicate column name {name!r} (first on line {seen[name.lower()]})", line)


def load_spec(path: str | Path) -> Spec:
    """Read and parse one .spec file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", file=str(path)) from None
    return parse_spec(text, str(path))


def load_specs(directory: str | Path = DEFAULT_SPEC_DIR) -> dict[str, Spec]:
    """Every *.spec in directory, keyed by table name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError("no such spec directory", file=str(directory))
    specs: dict[str, Spec] = {}
    for path in sorted(directory.glob("*.spec")):
        spec = load_spec(path)
        if spec.table in specs:
            raise SpecError(f"table {spec.table!r} is also defined in {specs[spec.table].path}", file=str(path))
        specs[spec.table] = spec
    return specs


def find_spec(name: str, directory: str | Path = DEFAULT_SPEC_DIR) -> Spec:
    """The spec of a table, named by table ("DcsAdTemp") or by class ("GDcsAdTemp")."""
    specs = load_specs(directory)
    for spec in specs.values():
        if name in (spec.table, spec.klass):
            return spec
    known = ", ".join(f"{s.table} ({s.klass})" for s in specs.values()) or "none"
    raise SpecError(f"no spec for {name!r} (known: {known})", file=str(directory))
