"""The backup directory: chunk arithmetic, file names, the manifest, digests. Pure but for file I/O.

    D/<T>/manifest.json              what the chunks hold (below); rewritten (tmp + rename) per chunk
    D/<T>/schema.sql                 CREATE TABLE IF NOT EXISTS of <T>, <T>Vld and LOCALSEQNO
    D/<T>/chunk-000003.<T>.sql.gz    SEQNO 30001..40000 of the payload table  (chunk 10000)
    D/<T>/chunk-000003.<T>Vld.sql.gz the same SEQNOs of the Vld table
    D/<T>/localseqno.sql             LOCALSEQNO's row for <T>, as the last backup read it

Chunk k holds SEQNO k*chunk+1 ... (k+1)*chunk (dbsrv.py's partitions). It is complete when every one
of its SEQNOs is at or below LOCALSEQNO's LASTUSEDSEQNO: DBI tables only grow by SEQNO, so nothing
will be written into it any more, and a later backup never dumps it again. The last chunk is open and
is dumped again by every run, up to the SEQNO that run's snapshot held (`upto`).

Each file's entry keeps its row count, the SHA-256 of the file (compressed: what verify and restore
check before reading it) and the CRC-32 of its SQL text (uncompressed: what `verify DB` compares with
the live table, dumped again the same way). A chunk file is written under a temporary name
(`.tmp-...`) and renamed when complete, then the manifest names it: a file the manifest does not
name is not part of the backup, whatever it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scraperd.errors import ConfigError, ScraperdError

FORMAT = 1
MANIFEST = "manifest.json"
SCHEMA = "schema.sql"
LOCALSEQNO_FILE = "localseqno.sql"
TMP_PREFIX = ".tmp-"
DEFAULT_CHUNK = 10000


class BackupError(ScraperdError):
    """A backup directory that cannot be used as asked: a bad digest, a gap, a missing file (exit 1)."""


def chunk_of(seqno: int, chunk: int) -> int:
    """The index of the chunk holding seqno (SEQNOs start at 1)."""
    return (seqno - 1) // chunk


def bounds(index: int, chunk: int) -> tuple[int, int]:
    """First and last SEQNO of chunk index."""
    return index * chunk + 1, (index + 1) * chunk


def is_complete(index: int, chunk: int, lastused: int | None) -> bool:
    """Every SEQNO of the chunk is at or below LASTUSEDSEQNO: no write can land in it any more."""
    return lastused is not None and bounds(index, chunk)[1] <= lastused


def chunk_file(index: int, table: str) -> str:
    return f"chunk-{index:06d}.{table}.sql.gz"


@dataclass
class FileEntry:
    """One chunk file of one table."""

    name: str
    rows: int
    sha256: str          # of the file as stored (gzip)
    content_crc32: str   # of the SQL text in it (what `verify DB` compares a live table's dump with)
    bytes: int = 0


@dataclass
class ChunkEntry:
    """One chunk of a table pair: its SEQNO range, whether it is complete, and its two files."""

    index: int
    first: int
    last: int
    upto: int            # the highest SEQNO the dump could see (last, for a complete chunk)
    complete: bool
    files: dict[str, FileEntry] = field(default_factory=dict)   # table name -> file

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files.values())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChunkEntry:
        files = {t: FileEntry(**f) for t, f in d.pop("files").items()}
        return cls(**d, files=files)


@dataclass
class Manifest:
    """What a table pair's backup directory holds."""

    table: str
    vld: str
    chunk: int
    dialect: str                    # "mysql" or "sqlite": the SQL the chunk files are written in
    source: str = ""                # the database of the last run, password hidden
    lastusedseqno: int | None = None
    max_seqno: int | None = None    # the highest SEQNO the last run saw: the chunks must reach it
    min_seqno: int | None = None    # the lowest: the chunks must start at its chunk
    schema_sha256: str = ""
    localseqno_sha256: str = ""
    chunks: dict[int, ChunkEntry] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)   # a line per backup run: what it cost
    format: int = FORMAT

    @property
    def tables(self) -> tuple[str, str]:
        return self.table, self.vld

    def ordered(self) -> list[ChunkEntry]:
        return [self.chunks[k] for k in sorted(self.chunks)]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["chunks"] = [asdict(c) for c in self.ordered()]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        chunks = {c["index"]: ChunkEntry.from_json(dict(c)) for c in d.pop("chunks")}
        return cls(**d, chunks=chunks)


def manifest_path(table_dir: Path) -> Path:
    return table_dir / MANIFEST


def read_manifest(table_dir: Path) -> Manifest:
    path = manifest_path(table_dir)
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file (not a scraperd backup of a table)") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise BackupError(f"{path}: unreadable manifest: {exc}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path so that a crash leaves the old file or the new one, never a part."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(table_dir: Path, manifest: Manifest) -> None:
    write_atomic(manifest_path(table_dir), (json.dumps(manifest.to_json(), indent=1) + "\n").encode())
    fsync_dir(table_dir)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def table_dirs(root: Path, tables: Iterable[str] = ()) -> list[Path]:
    """The table directories of a backup root: those named, else every one holding a manifest."""
    names = list(tables)
    found = sorted(p.parent for p in root.glob(f"*/{MANIFEST}"))
    missing = [n for n in names if not manifest_path(root / n).exists()]
    if missing:
        raise ConfigError(f"--dir {root} holds no backup of {', '.join(missing)} "
                          f"(it holds: {', '.join(p.name for p in found) or 'none'})")
    return [root / n for n in names] if names else found


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def gaps(manifest: Manifest) -> list[int]:
    """Chunk indexes missing between the first and the last chunk of the manifest."""
    if not manifest.chunks:
        return []
    present = set(manifest.chunks)
    return [k for k in range(min(present), max(present) + 1) if k not in present]


def coverage(manifest: Manifest, upto: int | None = None) -> list[str]:
    """What of SEQNO min_seqno..max_seqno (..upto, when given) no chunk holds: the chunks before the
    first, after the last (a run that did not finish: killed, or still running), or the last's tail."""
    if manifest.max_seqno is None:
        return []
    last = manifest.max_seqno if upto is None else min(upto, manifest.max_seqno)
    first = manifest.min_seqno if manifest.min_seqno is not None else 1
    if last < first:
        return []
    out = []
    unfinished = (f"the backup run that saw SEQNO up to {manifest.max_seqno} did not finish (killed, or still "
                  "running): run `scraperd backup` again")
    present = sorted(manifest.chunks)
    wanted = range(chunk_of(first, manifest.chunk), chunk_of(last, manifest.chunk) + 1)
    before = [k for k in wanted if not present or k < present[0]]
    after = [k for k in wanted if present and k > present[-1]]
    if before:
        out.append(f"chunk {_span(before)} missing (SEQNO {bounds(before[0], manifest.chunk)[0]}.."
                   f"{bounds(before[-1], manifest.chunk)[1]})" + (f": {unfinished}" if not present else ""))
    if after:
        out.append(f"chunk {_span(after)} missing (SEQNO {bounds(after[0], manifest.chunk)[0]}..{last}): {unfinished}")
    elif present and chunk_of(last, manifest.chunk) == present[-1] and manifest.chunks[present[-1]].upto < last:
        c = manifest.chunks[present[-1]]
        out.append(f"chunk {c.index} holds SEQNO {c.first}..{c.upto} only, not up to {last}: {unfinished}")
    return out


def _span(ks: list[int]) -> str:
    return str(ks[0]) if len(ks) == 1 else f"{ks[0]}..{ks[-1]}"


def problems(table_dir: Path, manifest: Manifest, upto: int | None = None) -> list[str]:
    """What is wrong with a table's backup files, one line each naming the file: a gap in the chunk
    sequence, chunks a run did not write, a missing file, a digest that does not match. Empty when
    everything checks. upto: only what a restore up to that SEQNO needs must be there."""
    out = [f"{table_dir}: chunk {k} missing (SEQNO {bounds(k, manifest.chunk)[0]}..{bounds(k, manifest.chunk)[1]}): "
           "a gap in the chunk sequence" for k in gaps(manifest)]
    out += [f"{table_dir}: {p}" for p in coverage(manifest, upto)]
    for name, expected in ((SCHEMA, manifest.schema_sha256), (LOCALSEQNO_FILE, manifest.localseqno_sha256)):
        out += _digest_problem(table_dir / name, expected)
    for c in manifest.ordered():
        for table in manifest.tables:
            entry = c.files.get(table)
            if entry is None:
                out.append(f"{table_dir}: chunk {c.index} has no file for {table}")
                continue
            out += _digest_problem(table_dir / entry.name, entry.sha256)
    return out


def _digest_problem(path: Path, expected: str) -> list[str]:
    if not path.exists():
        return [f"{path}: missing"]
    found = sha256_file(path)
    if found != expected:
        return [f"{path}: SHA-256 {found[:16]}... does not match the manifest's {expected[:16]}... (corrupt file)"]
    return []
