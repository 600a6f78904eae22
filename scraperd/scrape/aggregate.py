"""Generic aggregation: which columns, which functions, and the one query that computes them.

`aggregate = avg,min,max,std` runs fn(column) for every source column not in `aggregate_skips`,
over sv[0].date_time <= date_time < sv[-1].date_time (all rows, whatever the offset), with the
operator's `aggregate_filter` added; the sample count is `aggregate_count` (default `count`).
Results are keyed `<column>_<fn>`. `std` is the population standard deviation (MySQL STD; SQLite
gets the same function registered in databases.py). Statistics (avg, std, variance, ...) are taken
over the column as a double: MySQL would round those of an int column to 4 decimals and those of a
decimal(6,2) one to 6; min, max and sum keep the column's own type.

This module builds statements and shapes results; it executes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from scraperd.errors import ConfigError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# words an SQL condition may contain that are not column names
_SQL_WORDS = {"and", "or", "not", "is", "null", "in", "like", "between", "true", "false", "abs", "coalesce",
              "ifnull", "round", "floor", "ceil", "mod", "length", "lower", "upper", "date", "time", "year",
              "month", "day", "hour", "minute", "second", "div", "xor", "regexp", "escape", "case", "when",
              "then", "else", "end", "interval"}


@dataclass(frozen=True)
class AggregateSpec:
    """What to aggregate, resolved against the reflected source table."""

    functions: tuple[str, ...]
    columns: tuple[str, ...]
    count_key: str
    filter: str | None
    none_value: float | None

    def keys(self) -> list[str]:
        return [f"{c}_{fn}" for c in self.columns for fn in self.functions] + [self.count_key]


def resolve(table: sa.Table, functions: Sequence[str], skips: Sequence[str], count_key: str,
            filter_sql: str | None, none_value: float | None) -> AggregateSpec:
    """Check the settings against the reflected table; ConfigError names the key that is wrong (the
    daemon's Loaded.placing() adds file and section)."""
    names = [c.name for c in table.columns]
    lower = {n.lower(): n for n in names}
    for s in skips:
        if s.lower() not in lower:
            raise ConfigError(f"no column {s!r} in source table {table.name} (columns: {', '.join(names)})",
                              key="aggregate_skips")
    skip = {s.lower() for s in skips}
    if filter_sql:
        for word in _IDENT.findall(_strip_literals(filter_sql)):
            if word.lower() not in lower and word.lower() not in _SQL_WORDS:
                raise ConfigError(f"unknown column {word!r} in {filter_sql!r} (table {table.name})",
                                  key="aggregate_filter")
    return AggregateSpec(functions=tuple(functions), columns=tuple(n for n in names if n.lower() not in skip),
                         count_key=count_key, filter=filter_sql, none_value=none_value)


def _strip_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\b\d+(?:\.\d+)?\b", " ", sql)


STATISTICS = frozenset({"avg", "std", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp"})


def call(fn: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """fn(column) in SQL; a statistic is taken over column * 1e0, a DOUBLE on every backend."""
    if fn.lower() not in STATISTICS:
        return getattr(sa.func, fn)(column)  # type: ignore[no-any-return]
    as_double = sa.type_coerce(column, sa.Float) * sa.literal_column("1e0", sa.Float)
    return sa.type_coerce(getattr(sa.func, fn)(as_double), sa.Float)


def filtered(q: sa.Select[Any], filter_sql: str | None) -> sa.Select[Any]:
    """q with the operator's aggregate_filter (checked at start-up) added to its WHERE clause."""
    return q.where(sa.text(f"({filter_sql})")) if filter_sql else q


def statement(table: sa.Table, spec: AggregateSpec, lo: datetime, hi: datetime) -> sa.Select[Any]:
    """One query: every fn(column) and the count over lo <= date_time < hi (and the filter)."""
    cols: list[Any] = [call(fn, table.c[c]).label(f"{c}_{fn}") for c in spec.columns for fn in spec.functions]
    cols.append(sa.func.count().label(spec.count_key))
    q = sa.select(*cols).where(table.c.date_time >= lo, table.c.date_time < hi)
    return filtered(q, spec.filter)


def shape(row: Mapping[str, Any] | None, spec: AggregateSpec) -> dict[str, Any]:
    """Plain floats (Decimal from MySQL), the count as int; None stays None here."""
    out: dict[str, Any] = {}
    for key in spec.keys():
        v = row.get(key) if row is not None else None
        if isinstance(v, Decimal):
            v = float(v)
        out[key] = v
    out[spec.count_key] = int(out.get(spec.count_key) or 0)
    return out


def fill_none(aggd: Mapping[str, Any], spec: AggregateSpec) -> dict[str, Any] | None:
    """For a zero-sample range: aggregates set to aggregate_none, or None (skip the propagation)."""
    if aggd.get(spec.count_key):
        return dict(aggd)
    if spec.none_value is None:
        return None
    return {k: (spec.none_value if (v is None and k != spec.count_key) else v) for k, v in aggd.items()}
