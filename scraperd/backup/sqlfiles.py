"""Chunk files: dumping a SEQNO range of one table as SQL, and reading such a file back as statements.

A chunk file is plain SQL in the dialect of the database it came from, gzip-compressed:

    -- scraperd backup: DcsPmtHv chunk 3, SEQNO 30001..40000
    SET NAMES utf8mb4;                                      (MySQL only)
    SET time_zone='+00:00';                                 (MySQL only)
    DELETE FROM `DcsPmtHv` WHERE SEQNO BETWEEN 30001 AND 40000;
    INSERT INTO `DcsPmtHv` VALUES (30001,1,...),(30001,2,...),...;

so `zcat chunk-*.sql.gz | mysql DB` (or `| sqlite3 FILE`) loads it, as often as one likes: the DELETE
makes a reload replace the range instead of failing on duplicate keys.

MySQL ranges are dumped by `mysqldump` (C: as fast as the baseline it is measured against), one
process per file, `--single-transaction --order-by-primary --where 'SEQNO BETWEEN a AND b'`, reading
only SEQNOs at or below the run's snapshot (see backup.py). SQLite ranges are rendered by SQLite's own
quote() on the run's snapshot connection. Either way the same range of an unchanged table gives the
same bytes, which is what `verify DB` relies on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from scraperd.backup.layout import TMP_PREFIX, BackupError

try:  # ISA-L: deflate in gzip framing at about 3x zlib's speed (its files are gzip files: zcat reads them)
    from isal import igzip as gzip
    from isal import isal_zlib as zlib

    COMPRESSLEVEL = 2      # ISA-L's 0..3: smaller files than gzip -1, at about 3x its speed
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel falls back
    import gzip  # type: ignore[no-redef]
    import zlib  # type: ignore[no-redef]

    COMPRESSLEVEL = 1      # gzip -1: most of gzip -6's size at several times its speed

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_BYTES = 1 << 20       # /proc/sys/fs/pipe-max-size's default
STATEMENT_BYTES = 1 << 20  # SQLite INSERTs of about 1 MB, as mysqldump's net_buffer_length
MYSQL_SETTINGS = "SET NAMES utf8mb4;\nSET time_zone='+00:00';\n"
SANDBOX_LINE = b"/*M!999999\\- enable the sandbox mode */"  # MariaDB >= 10.5.25 mysqldump's first line


@dataclass
class Written:
    """What writing one chunk file produced."""

    sha256: str
    content_crc32: str
    bytes: int


def quote_name(dialect: str, name: str) -> str:
    return f"`{name}`" if dialect == "mysql" else f'"{name}"'


def header(dialect: str, table: str, index: int, first: int, last: int) -> bytes:
    q = quote_name(dialect, table)
    text = f"-- scraperd backup: {table} chunk {index}, SEQNO {first}..{last}\n"
    if dialect == "mysql":
        text += MYSQL_SETTINGS
    text += f"DELETE FROM {q} WHERE SEQNO BETWEEN {first} AND {last};\n"
    return text.encode()


class ChunkWriter:
    """A gzip file written under a temporary name, hashing what goes in and what comes out; commit()
    renames it into place (and fsyncs it), abort() removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
        self.f = open(self.tmp, "wb")
        self.z = zlib.compressobj(COMPRESSLEVEL, zlib.DEFLATED, 31)  # 31: gzip framing
        self.content = ContentHash()
        self.stored = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.content.update(data)
        self._out(self.z.compress(data))

    def _out(self, data: bytes) -> None:
        if data:
            self.stored.update(data)
            self.f.write(data)
            self.size += len(data)

    def finish(self) -> None:
        """Everything written and fsynced, still under the temporary name."""
        if self.f.closed:
            return
        self._out(self.z.flush())
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()

    def commit(self) -> Written:
        """The file under its name; what was written."""
        self.finish()
        os.replace(self.tmp, self.path)
        return Written(self.stored.hexdigest(), self.content.hexdigest(), self.size)

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)


class ContentHash:
    """The checksum of a chunk's SQL text (CRC-32, ISA-L's: ~10 GB/s) and ChunkWriter's write(): what
    `verify DB` compares a live table's dump with. The file itself is checked by its SHA-256."""

    def __init__(self) -> None:
        self.crc = 0

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)

    def update(self, data: bytes) -> None:
        self.write(data)

    def hexdigest(self) -> str:
        return f"{self.crc & 0xFFFFFFFF:08x}"


# ----------------------------------------------------------------------------------------------------------
# MySQL: mysqldump

@contextmanager
def mysql_defaults(url: URL) -> Iterator[Path]:
    """A private option file ([client] host, port, user, password, socket) for mysqldump and mysql, so
    that no password stands on a command line; removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="scraperd-backup-"))
    path = d / "client.cnf"
    lines = ["[client]"]
    socket = url.query.get("unix_socket")
    if url.host and not socket:
        lines.append(f"host={url.host}")
    if url.port:
        lines.append(f"port={url.port}")
    if socket:
        lines.append(f"socket={socket}")
    if url.username:
        lines.append(f"user={url.username}")
    if url.password:
        lines.append(f'password="{url.password}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mysqldump_binary() -> str:
    for name in ("mariadb-dump", "mysqldump"):
        found = shutil.which(name)
        if found:
            return found
    raise BackupError("neither mariadb-dump nor mysqldump is on PATH: install the MariaDB/MySQL client "
                      "(Debian: apt-get install mariadb-client)")


def mysqldump_range(defaults: Path, database: str, table: str, first: int, last: int, out: Any, *,
                    ordered: bool = False) -> int | None:
    """Write the INSERT statements of SEQNO first..last of table to out (ChunkWriter or ContentHash); the
    row count, counted in the text when mysqldump writes a row per line (MariaDB's `VALUES\n(`; it
    escapes newlines inside strings, so a line starting with `(` is a row), else None (count it in SQL).
    ordered: --order-by-primary, for tables whose scans are not in key order (MyISAM); InnoDB's are."""
    cmd = [mysqldump_binary(), f"--defaults-extra-file={defaults}", "--single-transaction", "--skip-lock-tables",
           "--compact", "--no-create-info", "--skip-triggers", "--no-tablespaces",
           "--hex-blob", "--default-character-set=utf8mb4", "--net-buffer-length=1048576",
           *(["--order-by-primary"] if ordered else []),
           f"--where=SEQNO BETWEEN {first} AND {last}", database, table]
    rows, row_lines, prev = 0, True, b"\n"
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        with contextlib.suppress(OSError):  # a 1 MB pipe: mysqldump and this reader switch less often
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        first_block = True
        try:
            while block := proc.stdout.read(1 << 20):
                if first_block:  # the layout, read once: `INSERT INTO `T` VALUES` then a row per line
                    first_block = False
                    if block.startswith(SANDBOX_LINE):
                        block = block[len(SANDBOX_LINE):].lstrip(b" \r\n")
                    head = block[:block.find(b"\n(") + 2] if b"\n(" in block else block[:4096]
                    row_lines = not head.startswith(b"INSERT INTO ") or head.endswith(b" VALUES\n(")
                rows += block.count(b"\n(") + (prev == b"\n" and block.startswith(b"("))
                prev = block[-1:]
                out.write(block)
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip().splitlines()
            raise BackupError(f"mysqldump of {table} SEQNO {first}..{last} failed (exit {rc}): "
                              f"{message[-1] if message else 'no message'}")
    return rows if row_lines else None


# ----------------------------------------------------------------------------------------------------------
# MySQL tables with FLOAT columns: rendered by the server, exactly

def has_float(columns: list[tuple[str, str]]) -> bool:
    return any(t == "float" for _, t in columns)


def _mysql_literal(name: str, dbtype: str) -> str:
    c = f"`{name}`"
    base = dbtype.split("(")[0]
    if base == "float":  # the float's exact value as a double: 6 digits (the text protocol's) would round it
        return f"IFNULL(CAST({c} AS DOUBLE), 'NULL')"
    if base in ("tinyint", "smallint", "mediumint", "int", "integer", "bigint", "decimal", "numeric", "double", "real"):
        return f"IFNULL({c}, 'NULL')"
    if "blob" in base or "binary" in base or base == "bit":
        return f"IFNULL(CONCAT('0x', HEX({c})), 'NULL')"
    # QUOTE escapes \\ ' NUL and ^Z; newlines and CRs are escaped here, so that a line never ends inside a value
    return f"REPLACE(REPLACE(QUOTE({c}), '\\n', '\\\\n'), '\\r', '\\\\r')"


def mysql_select_range(conn: Any, table: str, columns: list[tuple[str, str]], first: int, last: int, out: Any) -> int:
    """SEQNO first..last of a table, rendered by the server on conn (the snapshot, in UTC as the file's
    header says) in mysqldump's layout (a row per line, INSERTs of about 1 MB), FLOATs at full precision
    (mysqldump writes them with 6 significant digits, which does not restore the same value); the row
    count. For FLOAT tables and Vld tables (few rows a chunk: no process, no connection of their own)."""
    from MySQLdb.cursors import SSCursor

    row = ", ',', ".join(_mysql_literal(n, t) for n, t in columns)
    order = ", ".join(f"`{n}`" for n, _ in columns[:2])
    cur = conn.cursor(SSCursor)
    try:
        cur.execute(f"SELECT CONCAT('(', {row}, ')') FROM `{table}` WHERE SEQNO BETWEEN {int(first)} AND {int(last)} "
                    f"ORDER BY {order}")
        return _statements_out(f"INSERT INTO `{table}` VALUES\n", (r[0] for r in cur), out)
    finally:
        cur.close()


def _statements_out(head: str, rows: Any, out: Any) -> int:
    n, batch, size = 0, [], 0
    for text in rows:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        batch.append(text)
        size += len(text)
        n += 1
        if size >= STATEMENT_BYTES:
            out.write((head + ",\n".join(batch) + ";\n").encode())
            batch, size = [], 0
    if batch:
        out.write((head + ",\n".join(batch) + ";\n").encode())
    return n


# ----------------------------------------------------------------------------------------------------------
# SQLite: quote()

def _sqlite_literal(column: str) -> str:
    """The SQL literal of a column's value: quote(), but text holding a NUL (quote() stops there) or a CR
    (the sqlite3 shell drops it before a LF) as CAST(X'...' AS TEXT), its bytes exactly."""
    c = f'"{column}"'
    has = f"instr(CAST({c} AS BLOB), X'00') OR instr(CAST({c} AS BLOB), X'0D')"
    as_hex = "'CAST(X''' || hex(" + c + ") || ''' AS TEXT)'"
    return f"CASE WHEN typeof({c}) = 'text' AND ({has}) THEN {as_hex} ELSE quote({c}) END"


def sqlite_range(conn: sqlite3.Connection, table: str, columns: list[str], first: int, last: int, out: Any) -> int:
    """Render SEQNO first..last of table as INSERT statements of about STATEMENT_BYTES; the row count."""
    q = quote_name("sqlite", table)
    row = " || ',' || ".join(_sqlite_literal(c) for c in columns)
    order = ", ".join(f'"{c}"' for c in columns[:2])
    cur = conn.execute(f"SELECT '(' || {row} || ')' FROM {q} WHERE SEQNO BETWEEN ? AND ? ORDER BY {order}",
                       (first, last))
    return _statements_out(f"INSERT INTO {q} VALUES\n", (r[0] for r in cur), out)


# ----------------------------------------------------------------------------------------------------------
# Reading a chunk file back

def statements(path: Path, dialect: str) -> Iterator[str]:
    """The statements of a chunk file, without comments. On MySQL a statement ends at a line ending
    with ';' (mysqldump escapes newlines inside strings, so no line ends inside a value); on SQLite,
    where a string may hold a raw newline, when sqlite3.complete_statement() says so."""
    buf: list[str] = []
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
        for line in f:
            if not buf and (line.startswith("--") or not line.strip()):
                continue
            buf.append(line)
            if line.rstrip("\n").endswith(";") and (dialect == "mysql" or sqlite3.complete_statement("".join(buf))):
                yield "".join(buf).rstrip().rstrip(";")
                buf = []
    if buf and "".join(buf).strip():
        raise BackupError(f"{path}: ends inside a statement (truncated file)")


def data_part(path: Path, dest: Path) -> None:
    """The INSERT statements of a MySQL chunk file (header lines dropped), uncompressed into dest: the
    input of restore's LOAD DATA fast path."""
    with gzip.open(path, "rb") as src, open(dest, "wb") as out:
        for line in src:
            if line.startswith(b"INSERT"):
                out.write(line)
                break
        shutil.copyfileobj(src, out, 1 << 20)
