"""Expected / missing, as pandokia's gen_expected and check_expected: what should be there and is not.

    scraperd monitor --gen-expected    adds every (target, table, context) that holds a record now
                                       to the expected file (added only: never removed automatically;
                                       delete a line by hand to stop expecting it)
    check(...)                         each expected pair with no record inserted within
                                       expected_period is MISSING (CRITICAL); a later record clears it

The file is plain text, one pair per line, tab separated, `#` comments:

    tmp_offline_db	DcsAdTemp	sitemask=1,subsite=1,simmask=1,task=0

The target is named as in the config (a my.cnf section; a URL without its password), so the file
never holds a secret. The targets looked at are those of the monitor's scraper and averager sections.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from scraperd import config, databases
from scraperd.config import format_value
from scraperd.errors import ConfigError, ScraperdError
from scraperd.monitor.checks import Watched, age, config_name
from scraperd.monitor.results import CheckResult, State, context_text

HEADER = ("# scraperd expected (target, table, context) pairs: `scraperd monitor --gen-expected` adds the ones\n"
          "# that hold a record; nothing removes a line but an operator. Tab separated.\n")
CONTEXT_COLUMNS = ("SITEMASK", "SUBSITE", "SIMMASK", "TASK")


@dataclass(frozen=True, order=True)
class Pair:
    """One expected (target, table, context)."""

    target: str   # config name of the target database
    table: str    # the DBI payload table; its validity rows are in <table>Vld
    context: str  # sitemask=1,subsite=1,simmask=1,task=0

    def line(self) -> str:
        return f"{self.target}\t{self.table}\t{self.context}\n"


def expected_path(monitor: config.Loaded) -> Path:
    s = monitor.settings
    assert isinstance(s, config.MonitorSection)
    if s.expected_file:
        return Path(s.expected_file)
    return config.REPO_ROOT / "var" / "monitor" / f"{monitor.name}.expected"  # wherever cron runs it


def read(path: Path) -> list[Pair]:
    """The expected pairs of the file ([] when it does not exist yet); a malformed line is an error
    naming the file and line."""
    if not path.exists():
        return []
    pairs = []
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        parts = text.split("\t")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ConfigError(f"line {n}: expected TARGET<TAB>TABLE<TAB>CONTEXT, got {text!r}", file=str(path))
        pairs.append(Pair(*(p.strip() for p in parts)))
    return pairs


def targets(sections: Sequence[Watched]) -> dict[str, str]:
    """Config name (as the file shows it) → config value of every watched target."""
    out: dict[str, str] = {}
    for w in sections:
        s = w.settings
        if isinstance(s, config.TargetCommon):
            out.setdefault(config_name(s.target), s.target)
    return out


def _dbi_tables(conn: sa.Connection) -> list[str]:
    """Payload tables that have a Vld table beside them."""
    names = set(sa.inspect(conn).get_table_names())
    return sorted(n for n in names if f"{n}Vld" in names)


def _vld(name: str) -> sa.TableClause:
    return sa.table(f"{name}Vld", *(sa.column(c, sa.Integer) for c in CONTEXT_COLUMNS),
                    sa.column("INSERTDATE", databases.datetime_type()))


def present(conn: sa.Connection, target: str) -> list[Pair]:
    """Every (table, context) holding a record in this target now."""
    out = []
    for name in _dbi_tables(conn):
        v = _vld(name)
        rows = conn.execute(sa.select(*(v.c[k] for k in CONTEXT_COLUMNS)).distinct())
        out += [Pair(target, name, context_text(dict(zip((k.lower() for k in CONTEXT_COLUMNS), r, strict=True))))
                for r in rows]
    return out


def add(path: Path, pairs: Iterable[Pair]) -> tuple[list[Pair], int]:
    """Append the pairs not expected yet (atomically: a temp file renamed); (added, already expected)."""
    have = set(read(path))
    new = sorted(set(pairs) - have)
    if new:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else HEADER
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "".join(p.line() for p in new))
        os.replace(tmp, path)
    return new, len(have)


def _parse_context(text: str) -> dict[str, int] | None:
    try:
        fields = dict(part.split("=", 1) for part in text.split(","))
        return {k.upper(): int(v) for k, v in fields.items() if k.upper() in CONTEXT_COLUMNS}
    except ValueError:
        return None


def newest(conn: sa.Connection, pair: Pair) -> datetime | None:
    """The newest INSERTDATE of the pair's context (None: no record)."""
    v = _vld(pair.table)
    ctx = _parse_context(pair.context) or {}
    q = sa.select(sa.func.max(v.c.INSERTDATE)).where(*(v.c[k] == n for k, n in ctx.items()))
    return conn.execute(q).scalar()


def _writer(pair: Pair, sections: Sequence[Watched]) -> str | None:
    """The watched section writing the pair's table in its target, if any."""
    for w in sections:
        s = w.settings
        if isinstance(s, config.TargetCommon) and config_name(s.target) == pair.target and w.table == pair.table:
            return w.name
    return None


def judge(pair: Pair, found: datetime | None | str, period: timedelta, now: datetime,
          sections: Sequence[Watched]) -> CheckResult:
    """One expected pair: OK when a record was inserted within the period, else MISSING (found: the
    newest INSERTDATE, None for no record, or why the target could not be read)."""
    section = _writer(pair, sections)
    where: dict[str, Any] = {"section": section, "table": pair.table,
             "context": pair.context if section else f"{pair.target} {pair.context}"}
    details = f"target {pair.target}, table {pair.table}, context {pair.context}"
    if isinstance(found, str):
        return CheckResult(check="expected", state=State.CRITICAL, summary=f"cannot tell: {found}", details=details,
                           unreadable=True, **where)
    if found is None or now - found > period:
        since = "no record at all" if found is None else f"newest record inserted {age(now, found)} ago"
        return CheckResult(check="expected", state=State.CRITICAL, details=details, **where,
                           summary=f"MISSING: {since} (expected_period {format_value(period)})")
    return CheckResult(check="expected", state=State.OK, details=details, **where,
                       summary=f"present: newest record inserted {age(now, found)} ago")


def check(pairs: Sequence[Pair], engine_for: Callable[[str], Engine], names: dict[str, str], period: timedelta,
          now: datetime, sections: Sequence[Watched], brief: Callable[[BaseException], str]) -> list[CheckResult]:
    """Every expected pair of the watched targets (pairs of other targets are not this monitor's)."""
    out = []
    for target in sorted({p.target for p in pairs} & set(names)):
        mine = [p for p in pairs if p.target == target]
        try:
            with engine_for(names[target]).connect() as conn:
                tables = set(_dbi_tables(conn))
                for pair in mine:
                    found = newest(conn, pair) if pair.table in tables else None
                    out.append(judge(pair, found, period, now, sections))
        except (sa.exc.SQLAlchemyError, OSError, ScraperdError) as exc:
            out += [judge(p, brief(exc), period, now, sections) for p in mine]
    return out
