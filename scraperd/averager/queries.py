"""The averager's grouped SQL: what one territory bin's query computes, and how a group becomes a payload row.

Functions here build statements and read result rows; they execute nothing (daemon.py does).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from scraperd.scrape import aggregate

# Result labels that no `<column>_<fn>` key can take (no aggregate function is named like these).
BIN, FIRST, LAST, COUNT = "averager_bin", "averager_first", "averager_last", "averager_count"


@dataclass(frozen=True)
class Columns:
    """What one grouped query computes and how a result row becomes a payload row."""

    pairs: tuple[tuple[str, str], ...]   # (source column, function) whose key is a target column
    keys: tuple[str, ...]                # their keys, <column>_<fn>: the result labels
    count_key: str | None                # target column of the count, when the target has one
    none_value: float | None


def plan_columns(spec: aggregate.AggregateSpec, target_columns: Sequence[str]) -> tuple[Columns, list[str], list[str]]:
    """Columns computed for a target; also the aggregate keys it lacks and its columns nothing fills."""
    wanted = set(target_columns)
    pairs = tuple((c, fn) for c in spec.columns for fn in spec.functions if f"{c}_{fn}" in wanted)
    keys = tuple(f"{c}_{fn}" for c, fn in pairs)
    cols = Columns(pairs=pairs, keys=keys, count_key=spec.count_key if spec.count_key in wanted else None,
                   none_value=spec.none_value)
    unused = [k for k in spec.keys() if k not in wanted]
    filled = {*keys, spec.count_key}
    missing = [c for c in target_columns if c not in filled]
    return cols, unused, missing


def payload(row: Mapping[Any, Any], cols: Columns) -> dict[str, Any]:
    """The one payload row of a group; None aggregates (all-NULL columns) become aggregate_none if set."""
    out = {k: row[k] for k in cols.keys}
    if cols.none_value is not None:
        out = {k: (cols.none_value if v is None else v) for k, v in out.items()}
    if cols.count_key is not None:
        out[cols.count_key] = row[COUNT]
    return out


def bin_index(dialect: str, date_time: sa.ColumnElement[Any], origin: datetime,
              binsize_s: int) -> sa.ColumnElement[int]:
    """The bin of date_time counted from origin (a bin start): integer arithmetic on naive times."""
    size = sa.bindparam("binsize_s", binsize_s, sa.Integer)
    if dialect == "sqlite":
        # strftime('%s') reads the stored text as if it were UTC, and so does timegm: naive on both sides
        seconds = sa.cast(sa.func.strftime("%s", date_time), sa.Integer) - sa.bindparam(
            "origin_s", calendar.timegm(origin.timetuple()), sa.Integer)
        return seconds.self_group().op("/", return_type=sa.Integer)(size)  # integers: SQLite truncates
    seconds = sa.func.timestampdiff(sa.literal_column("SECOND"), sa.bindparam("origin", origin, sa.DateTime),
                                    date_time, type_=sa.Integer)
    return seconds.op("DIV", return_type=sa.Integer)(size)


def id_span_statement(table: sa.Table, lo: datetime, hi: datetime) -> sa.Select[Any]:
    """The smallest and largest id of lo <= date_time < hi: read from the date_time index alone."""
    dt = table.c.date_time
    return sa.select(sa.func.min(table.c.id), sa.func.max(table.c.id)).where(dt >= lo, dt < hi)


def grouped_statement(table: sa.Table, cols: Columns, filter_sql: str | None, dialect: str, origin: datetime,
                      binsize_s: int, lo: datetime, hi: datetime,
                      id_span: tuple[int, int] | None = None) -> sa.Select[Any]:
    """One territory bin: per bin of lo <= date_time < hi, the aggregates, count and min/max date_time.

    id_span, the ids of that date_time range, adds `id BETWEEN` to the same condition: the server
    may then read that stretch of the primary key in order instead of looking every row up from the
    date_time index, about 10 % less work per row when ids grow with date_time, as DCS ids do. When
    they do not, the span is wide and the server's planner keeps the date_time index; the result is
    the same either way, as the date_time condition decides which rows count.
    """
    dt = table.c.date_time
    q = sa.select(bin_index(dialect, dt, origin, binsize_s).label(BIN),
                  sa.func.min(dt).label(FIRST), sa.func.max(dt).label(LAST), sa.func.count().label(COUNT),
                  *(aggregate.call(fn, table.c[c]).label(key) for (c, fn), key in zip(cols.pairs, cols.keys,
                                                                                        strict=True)))
    q = q.where(dt >= lo, dt < hi)
    if id_span is not None:
        q = q.where(table.c.id.between(*id_span))
    q = aggregate.filtered(q, filter_sql)
    return q.group_by(sa.literal_column(BIN)).order_by(sa.literal_column(BIN))
