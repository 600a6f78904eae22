"""Generic aggregation (scrape/aggregate.py) on its own: settings checked against a table, the
statement it builds, and the shaping of results. No database: the table is a Table object and the
statements are compiled, not run (test_scraper_behaviour runs them on SQLite and MariaDB)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, sqlite

from scraperd.errors import ConfigError
from scraperd.scrape import aggregate
from scraperd.scrape.aggregate import AggregateSpec

TABLE = sa.Table("AD1_LidSensor", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("date_time", sa.DateTime),
                 sa.Column("Ultrasonic", sa.Integer), sa.Column("Temp_PT1", sa.Numeric(6, 2)),
                 sa.Column("Quality", sa.Integer))


def spec(**kw: Any) -> AggregateSpec:
    return aggregate.resolve(TABLE, kw.get("functions", ("avg", "min", "max")), kw.get("skips", ("id", "date_time")),
                             "count", kw.get("filter"), kw.get("none"))


def test_every_column_not_skipped_gets_every_function_and_the_count():
    s = spec(skips=("id", "DATE_TIME"))  # skips match case-insensitively, as MySQL column names do
    assert s.columns == ("Ultrasonic", "Temp_PT1", "Quality")
    assert s.keys()[:3] == ["Ultrasonic_avg", "Ultrasonic_min", "Ultrasonic_max"]
    assert s.keys()[-1] == "count" and len(s.keys()) == 3 * 3 + 1


@pytest.mark.parametrize(("kw", "key"), [({"skips": ("id", "nosuch")}, "aggregate_skips"),
                                          ({"filter": "Qualty != 0"}, "aggregate_filter")])
def test_a_setting_naming_no_column_is_a_config_error_naming_its_key(kw, key):
    with pytest.raises(ConfigError) as caught:
        spec(**kw)
    assert caught.value.key == key and "AD1_LidSensor" in caught.value.message


def test_a_filter_may_use_sql_words_literals_and_numbers():
    assert spec(filter="Quality != 0 AND Ultrasonic BETWEEN 10 AND 20 OR Temp_PT1 IS NULL "
                       "AND 'Quality2' = 'x'").filter


@pytest.mark.parametrize("dialect", [mysql.dialect(), sqlite.dialect()])
def test_statistics_are_taken_over_a_double_min_and_max_keep_the_column_type(dialect):
    sql = str(aggregate.statement(TABLE, spec(functions=("avg", "std", "min"), filter="Quality != 0"),
                                  datetime(2011, 1, 1), datetime(2011, 1, 2)).compile(dialect=dialect))
    sql = sql.replace('"', "").replace("`", "")  # the two dialects quote differently
    for column in ("Ultrasonic", "Temp_PT1", "Quality"):
        assert f"avg(AD1_LidSensor.{column} * 1e0) AS {column}_avg" in sql
        assert f"std(AD1_LidSensor.{column} * 1e0) AS {column}_std" in sql
        assert f"min(AD1_LidSensor.{column}) AS {column}_min" in sql
    assert sql.endswith("AND (Quality != 0)") and "count(*) AS count" in sql


values = st.one_of(st.none(), st.integers(-5, 5), st.floats(-1e6, 1e6, allow_nan=False),
                   st.decimals(-1000, 1000, places=2, allow_nan=False, allow_infinity=False))


@given(row=st.dictionaries(st.sampled_from(spec().keys()), values), none=st.one_of(st.none(), st.floats(-9, 9)))
def test_results_are_plain_numbers_and_an_empty_range_is_skipped_unless_aggregate_none(row, none):
    s = spec(none=none)
    shaped = aggregate.shape(row, s)
    assert list(shaped) == s.keys()
    assert isinstance(shaped["count"], int) and not any(isinstance(v, Decimal) for v in shaped.values())
    filled = aggregate.fill_none(shaped, s)
    if shaped["count"]:
        assert filled == shaped  # samples in the range: written as they are, NULLs and all
    elif none is None:
        assert filled is None    # no sample: the propagation is skipped (aggregate_empty)
    else:
        assert filled is not None and filled["count"] == 0
        assert all(filled[k] == (none if shaped[k] is None else shaped[k]) for k in s.keys() if k != "count")


def test_no_row_at_all_shapes_to_a_zero_count():
    assert aggregate.shape(None, spec())["count"] == 0
