"""The DBI tables built from a spec: DBI's layout column for column, idempotent creation, ddl() text."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from scraperd.dbi.context import Context
from scraperd.dbi.spec import DBTYPE_ARGS, find_spec, parse_spec
from scraperd.dbi.tables import END_OF_TIME, create_tables, ddl, drop_tables, tables_for
from scraperd.dbi.writer import Record, write
from scraperd.errors import ConfigError

if TYPE_CHECKING:
    from tests.conftest import TestDB

SPECS = ("DcsPmtHv", "DcsAdTemp", "DcsAdLidSensor")
VLD = ["SEQNO", "TIMESTART", "TIMEEND", "SITEMASK", "SIMMASK", "SUBSITE", "TASK", "AGGREGATENO", "VERSIONDATE",
       "INSERTDATE"]
VLD_NOT_NULL = {"SEQNO", "TIMESTART", "TIMEEND", "VERSIONDATE", "INSERTDATE"}


def column_facts(db: TestDB, table: str) -> list[tuple[str, str, bool]]:
    """(name, declared type, nullable) in column order, as the server reports them."""
    with db.engine.connect() as conn:
        if db.backend == "mysql":
            rows = conn.execute(sa.text(
                "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t ORDER BY ORDINAL_POSITION"), {"t": table})
            return [(n, t, nullable == "YES") for n, t, nullable in rows]
        rows = conn.execute(sa.select(sa.column("name"), sa.column("type"), sa.column("notnull"), sa.column("pk"))
                            .select_from(sa.func.pragma_table_info(table)))
        return [(n, t, not notnull and not pk) for n, t, notnull, pk in rows]


def schema_snapshot(db: TestDB) -> dict[str, Any]:
    """Every table's CREATE statement and the LOCALSEQNO rows."""
    with db.engine.connect() as conn:
        if db.backend == "mysql":
            names = sorted(sa.inspect(conn).get_table_names())
            creates = {n: conn.exec_driver_sql(f"SHOW CREATE TABLE `{n}`").one()[1] for n in names}
        else:
            creates = {n: s for n, s in conn.execute(sa.text(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"))}
        seqnos = sorted(conn.execute(sa.text("SELECT TABLENAME, LASTUSEDSEQNO FROM LOCALSEQNO")).all())
    return {"creates": creates, "localseqno": seqnos}


def test_payload_table_is_seqno_row_counter_then_the_spec_columns_nullable(db: TestDB) -> None:
    tables = create_tables(db.engine, find_spec("DcsPmtHv"))
    ints = ("int(11)", "tinyint(4)") if db.backend == "mysql" else ("INTEGER", "SMALLINT")
    decimal = "decimal(6,2)" if db.backend == "mysql" else "NUMERIC(6, 2)"
    assert column_facts(db, "DcsPmtHv") == [
        ("SEQNO", ints[0], False), ("ROW_COUNTER", ints[0], False), ("ladder", ints[1], True),
        ("col", ints[1], True), ("ring", ints[1], True), ("voltage", decimal, True), ("pw", ints[1], True)]
    insp = sa.inspect(db.engine)
    assert insp.get_pk_constraint("DcsPmtHv")["constrained_columns"] == ["SEQNO", "ROW_COUNTER"]
    assert insp.get_indexes("DcsPmtHv") == []
    assert tables.name == "DcsPmtHv" and tables.vld.name == "DcsPmtHvVld"


def test_vld_table_has_dbi_ten_columns_in_order_and_time_indexes(db: TestDB) -> None:
    create_tables(db.engine, find_spec("DcsAdTemp"))
    facts = column_facts(db, "DcsAdTempVld")
    assert [(n, nullable) for n, _, nullable in facts] == [(c, c not in VLD_NOT_NULL) for c in VLD]
    if db.backend == "mysql":
        assert [t for _, t, _ in facts] == ["int(11)", "datetime", "datetime", "tinyint(4)", "tinyint(4)",
                                            "int(11)", "int(11)", "int(11)", "datetime", "datetime"]
    else:
        assert [t for _, t, _ in facts] == ["INTEGER", "DATETIME", "DATETIME", "SMALLINT", "SMALLINT",
                                            "INTEGER", "INTEGER", "INTEGER", "DATETIME", "DATETIME"]
    insp = sa.inspect(db.engine)
    assert insp.get_pk_constraint("DcsAdTempVld")["constrained_columns"] == ["SEQNO"]
    indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("DcsAdTempVld")}
    if db.backend == "mysql":
        assert indexes == {"TIMESTART": ["TIMESTART"], "TIMEEND": ["TIMEEND"]}  # DBI's key names
    else:
        assert indexes == {"DcsAdTempVld_TIMESTART": ["TIMESTART"], "DcsAdTempVld_TIMEEND": ["TIMEEND"]}


def test_lid_sensor_payload_has_73_float_and_count_columns(db: TestDB) -> None:
    create_tables(db.engine, find_spec("DcsAdLidSensor"))
    facts = column_facts(db, "DcsAdLidSensor")
    assert len(facts) == 75
    types = {t for n, t, _ in facts[2:-1]}
    assert types == ({"float"} if db.backend == "mysql" else {"FLOAT"})
    assert facts[-1] == ("count", "int(11)" if db.backend == "mysql" else "INTEGER", True)


def test_localseqno_is_primed_with_star_and_the_table_row(db: TestDB) -> None:
    create_tables(db.engine, find_spec("DcsAdTemp"))
    assert column_facts(db, "LOCALSEQNO") == (
        [("TABLENAME", "char(64)", False), ("LASTUSEDSEQNO", "int(11)", True)] if db.backend == "mysql"
        else [("TABLENAME", "CHAR(64)", False), ("LASTUSEDSEQNO", "INTEGER", True)])
    assert sa.inspect(db.engine).get_pk_constraint("LOCALSEQNO")["constrained_columns"] == ["TABLENAME"]
    assert schema_snapshot(db)["localseqno"] == [("*", 0), ("DcsAdTemp", 0)]


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)])
def test_mysql_tables_are_innodb_without_auto_increment_or_fractional_seconds(db: TestDB) -> None:
    for name in SPECS:
        create_tables(db.engine, find_spec(name))
    with db.engine.connect() as conn:
        engines = dict(conn.execute(sa.text(
            "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")).all())
        extras = conn.execute(sa.text(
            "SELECT TABLE_NAME, COLUMN_NAME, EXTRA, DATETIME_PRECISION, DATA_TYPE, COLUMN_COMMENT "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()")).all()
    assert engines == {t: "InnoDB" for n in SPECS for t in (n, f"{n}Vld")} | {"LOCALSEQNO": "InnoDB"}
    assert {e for _, _, e, _, _, _ in extras} == {""}  # no auto_increment anywhere
    assert {p for _, _, _, p, t, _ in extras if t == "datetime"} == {0}
    comments = {(t, c): comment for t, c, _, _, _, comment in extras}
    assert comments[("DcsPmtHv", "voltage")] == "HV read-back voltage in V"
    assert comments[("DcsAdLidSensor", "count")] == "number of source samples behind the record"


def test_create_tables_again_changes_nothing(db: TestDB) -> None:
    spec = find_spec("DcsAdTemp")
    tables = create_tables(db.engine, spec)
    write(db.engine, tables, Record(datetime(2012, 1, 1), END_OF_TIME, Context(1, 1), [{"Temp_PT1": 20.5}]))
    before = schema_snapshot(db)
    create_tables(db.engine, spec)
    assert schema_snapshot(db) == before
    assert before["localseqno"] == [("*", 0), ("DcsAdTemp", 1)]
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.payload)).scalar() == 1


def test_create_tables_completes_a_half_created_schema(db: TestDB) -> None:
    spec = find_spec("DcsAdTemp")
    create_tables(db.engine, spec)
    expected = schema_snapshot(db)
    # As if a creator died between its statements (MySQL's DDL is not transactional).
    index = "TIMEEND" if db.backend == "mysql" else "DcsAdTempVld_TIMEEND"
    with db.engine.begin() as conn:
        conn.execute(sa.schema.DropIndex(sa.Index(index, tables_for(spec).vld.c.TIMEEND)))
        conn.execute(sa.text("DELETE FROM LOCALSEQNO WHERE TABLENAME = 'DcsAdTemp'"))
        conn.execute(sa.schema.DropTable(tables_for(spec).payload))
    assert schema_snapshot(db) != expected
    create_tables(db.engine, spec)
    assert schema_snapshot(db) == expected


def test_create_tables_from_concurrent_callers_all_succeed(db: TestDB) -> None:
    specs = [find_spec(n) for n in SPECS]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            for spec in specs:
                create_tables(db.engine, spec)
        except BaseException as exc:  # reported by the assertion below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert schema_snapshot(db)["localseqno"] == [("*", 0), ("DcsAdLidSensor", 0), ("DcsAdTemp", 0), ("DcsPmtHv", 0)]
    assert sorted(sa.inspect(db.engine).get_table_names()) == sorted(
        ["LOCALSEQNO", *SPECS, *(f"{n}Vld" for n in SPECS)])


def test_tables_for_shares_one_localseqno_in_one_metadata() -> None:
    md = sa.MetaData()
    a, b = tables_for(find_spec("DcsAdTemp"), md), tables_for(find_spec("DcsPmtHv"), md)
    assert a.localseqno is b.localseqno
    assert tables_for(find_spec("DcsAdTemp"), md).payload is a.payload


def test_drop_tables_drops_the_pair_and_its_localseqno_row_only(db: TestDB) -> None:
    temp, hv = find_spec("DcsAdTemp"), find_spec("DcsPmtHv")
    t_temp, t_hv = create_tables(db.engine, temp), create_tables(db.engine, hv)
    for tables in (t_temp, t_hv):
        write(db.engine, tables, Record(datetime(2012, 1, 1), END_OF_TIME, Context(1, 1), [{}]))
    drop_tables(db.engine, temp)
    assert sorted(sa.inspect(db.engine).get_table_names()) == ["DcsPmtHv", "DcsPmtHvVld", "LOCALSEQNO"]
    assert schema_snapshot(db)["localseqno"] == [("*", 0), ("DcsPmtHv", 1)]
    drop_tables(db.engine, temp)  # dropping what is gone is fine
    t_temp = create_tables(db.engine, temp)
    assert write(db.engine, t_temp, Record(datetime(2012, 1, 1), END_OF_TIME, Context(1, 1), [{}])) == 1


def test_ddl_text_creates_the_same_schema_as_create_tables(make_db: Callable[[str], TestDB]) -> None:
    by_create, by_text = make_db("created"), make_db("fromddl")
    for name in SPECS:
        create_tables(by_create.engine, find_spec(name))
        text = ddl(find_spec(name), by_text.engine.dialect.name)
        with by_text.engine.begin() as conn:
            for statement in text.split(";\n\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement.strip().rstrip(";"))
    assert schema_snapshot(by_text) == schema_snapshot(by_create)


def test_ddl_for_mysql_has_dbi_keys_innodb_and_comments() -> None:
    text = ddl(find_spec("DcsPmtHv"), "mysql")
    assert "CREATE TABLE `DcsPmtHv` (" in text and "CREATE TABLE `DcsPmtHvVld` (" in text
    assert "CREATE INDEX `TIMESTART` ON `DcsPmtHvVld` (`TIMESTART`);" in text
    assert "CREATE INDEX `TIMEEND` ON `DcsPmtHvVld` (`TIMEEND`);" in text
    assert text.count("ENGINE=InnoDB") == 3
    assert ddl(find_spec("DcsPmtHv"), "mariadb").count("ENGINE=InnoDB") == 3
    assert "voltage DECIMAL(6, 2) COMMENT 'HV read-back voltage in V'" in text  # the spec's spelling
    assert "INSERT IGNORE INTO `LOCALSEQNO` (`TABLENAME`, `LASTUSEDSEQNO`) VALUES ('*', 0);" in text
    assert "AUTO_INCREMENT" not in text.upper()


def test_ddl_rejects_an_unknown_dialect() -> None:
    with pytest.raises(ConfigError, match=r"unknown SQL dialect 'oracle' \(known: mysql, mariadb, sqlite\)"):
        ddl(find_spec("DcsPmtHv"), "oracle")


@pytest.mark.parametrize("base", DBTYPE_ARGS)
def test_every_spec_dbtype_compiles_on_mysql_and_sqlite(base: str) -> None:
    dbtype = {0: base, 1: f"{base}(10)", 2: f'"{base}(10,3)"'}[max(DBTYPE_ARGS[base])]
    spec = parse_spec(f"meta,class,table\n1,GX,X\n;\nname,codetype,dbtype,description\nv,x,{dbtype},d\n", "x.spec")
    for dialect in ("mysql", "sqlite"):
        assert "CREATE TABLE" in ddl(spec, dialect)
