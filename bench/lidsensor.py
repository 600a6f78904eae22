"""Build the benchmarks' lid-sensor source table on MariaDB, once, and reuse it while it is right.

`AD1_LidSensor` of etc/fake_dcs.sql in the database `scraperd_bench`: a row every 3 s from
2011-01-10 00:00:00 (local), 18 value columns and Quality, all derived from the row number so the
table is the same on every machine; about 1 row in 10 has Quality = 0. It is filled by one
`INSERT ... SELECT` from MariaDB's SEQUENCE engine (`seq_1_to_N`): no rows pass through Python.
`AD2_LidSensor` is created empty, as the regime names both tables.

The finished table carries a comment naming its recipe and row count; a table whose comment
matches is reused, anything else is dropped and built again. Refuses to run on anything but
MySQL/MariaDB (the SEQUENCE engine is MariaDB's).
"""

from __future__ import annotations

import os
import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL

from scraperd import databases, dcsddl

BENCH_DB = "scraperd_bench"
TABLE = "AD1_LidSensor"
EMPTY_TABLES = ("AD2_LidSensor",)
START = datetime(2011, 1, 10)
STEP_S = 3
RECIPE = "scraperd bench lidsensor v1"  # change when the values below change: old tables are rebuilt

QUANTITIES = (
    "Ultrasonic_GdLS", "Ultrasonic_LS", "Temp_GdLS", "Temp_LS",
    "Tiltx_Sensor1", "Tilty_Sensor1", "Tiltx_Sensor2", "Tilty_Sensor2", "Tiltx_Sensor3", "Tilty_Sensor3",
    "Capacitance_GdLS", "Capacitance_Temp_GdLS", "Capacitance_LS", "Capacitance_Temp_LS",
    "Capacitance_MO", "Capacitance_Temp_MO", "PS_Output_V", "PS_Output_I",
)

# Each value a function of the row number `seq`: integers for the int(11) columns, two decimals for
# decimal(6,2). Different moduli per column so that no two columns move together. `seq` is unsigned:
# subtract after dividing, never before (an unsigned result below zero is an error).
_VALUES = {
    "Ultrasonic_GdLS": "230 + MOD(seq, 17)",
    "Ultrasonic_LS": "295 + MOD(seq, 13)",
    "Temp_GdLS": "18.00 + MOD(seq, 200) / 100",
    "Temp_LS": "18.50 + MOD(seq, 150) / 100",
    "Tiltx_Sensor1": "MOD(seq * 3, 201) / 100 - 1.00",
    "Tilty_Sensor1": "MOD(seq * 5, 199) / 100 - 0.99",
    "Tiltx_Sensor2": "MOD(seq * 7, 197) / 100 - 0.98",
    "Tilty_Sensor2": "MOD(seq * 11, 193) / 100 - 0.96",
    "Tiltx_Sensor3": "MOD(seq * 13, 191) / 100 - 0.95",
    "Tilty_Sensor3": "MOD(seq * 17, 181) / 100 - 0.90",
    "Capacitance_GdLS": "MOD(seq, 11)",
    "Capacitance_Temp_GdLS": "19.00 + MOD(seq, 37) / 100",
    "Capacitance_LS": "10 + MOD(seq, 7)",
    "Capacitance_Temp_LS": "19.00 + MOD(seq, 41) / 100",
    "Capacitance_MO": "MOD(seq, 5)",
    "Capacitance_Temp_MO": "19.00 + MOD(seq, 43) / 100",
    "PS_Output_V": "18.00 + MOD(seq, 9) / 100",
    "PS_Output_I": "0.80 + MOD(seq, 5) / 100",
}
QUALITY = "IF(MOD(seq, 10) = 3, 0, 1)"


def server_url(database: str | None = BENCH_DB) -> URL:
    """The MariaDB the benchmarks use: $SCRAPERD_BENCH_MYSQL_HOST/PORT, else 127.0.0.1:3306 as root."""
    return URL.create("mysql+mysqldb", username=os.environ.get("SCRAPERD_BENCH_MYSQL_USER", "root"),
                      password=os.environ.get("SCRAPERD_BENCH_MYSQL_PASSWORD") or None,
                      host=os.environ.get("SCRAPERD_BENCH_MYSQL_HOST", "127.0.0.1"),
                      port=int(os.environ.get("SCRAPERD_BENCH_MYSQL_PORT", "3306")),
                      database=database, query={"charset": "utf8mb4"})


def _comment(rows: int) -> str:
    return f"{RECIPE} rows={rows}"


def _current_comment(conn: sa.Connection, table: str) -> str | None:
    return conn.execute(sa.text("SELECT TABLE_COMMENT FROM information_schema.TABLES "
                                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"), {"t": table}).scalar()


def insert_select(rows: int) -> str:
    """The one statement that fills the table with `rows` rows from the SEQUENCE engine."""
    columns = ["id", "date_time", *QUANTITIES, "Quality"]
    values = ["seq", f"TIMESTAMP'{START:%Y-%m-%d %H:%M:%S}' + INTERVAL (seq - 1) * {STEP_S} SECOND",
              *(_VALUES[q] for q in QUANTITIES), QUALITY]
    # rows is an int we chose; the SEQUENCE engine names its tables by their bounds
    return (f"INSERT INTO `{TABLE}` ({', '.join(f'`{c}`' for c in columns)}) "
            f"SELECT {', '.join(values)} FROM seq_1_to_{int(rows)}")


def build(rows: int) -> tuple[URL, bool, float]:
    """The table with `rows` rows, built unless it exists already: (url, reused?, seconds spent)."""
    t0 = time.monotonic()
    url = server_url()
    databases.ensure_database(url)
    engine = databases.make_engine(url)
    try:
        with engine.begin() as conn:
            if _current_comment(conn, TABLE) == _comment(rows):
                _create_empty(conn)
                return url, True, time.monotonic() - t0
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{TABLE}`")
            md = dcsddl.parse(dcsddl.read(dcsddl.DEFAULT_DDL), str(dcsddl.DEFAULT_DDL))
            md.create_all(conn, tables=[md.tables[TABLE]])
            _create_empty(conn)
            conn.exec_driver_sql(insert_select(rows))
            # the comment marks the table finished: an interrupted build is never reused
            conn.exec_driver_sql(f"ALTER TABLE `{TABLE}` COMMENT = '{_comment(rows)}'")
            conn.exec_driver_sql(f"ANALYZE TABLE `{TABLE}`")
    finally:
        engine.dispose()
    return url, False, time.monotonic() - t0


def _create_empty(conn: sa.Connection) -> None:
    """The regime's other source tables, empty (recreated, so they stay empty)."""
    md = dcsddl.parse(dcsddl.read(dcsddl.DEFAULT_DDL), str(dcsddl.DEFAULT_DDL))
    for name in EMPTY_TABLES:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{name}`")
        md.create_all(conn, tables=[md.tables[name]])
