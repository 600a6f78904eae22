"""The .spec reader: the shipped DCS specs, name lookup, and a file:line error for each malformed spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from scraperd.dbi.spec import DEFAULT_SPEC_DIR, Column, find_spec, load_spec, load_specs, parse_spec
from scraperd.errors import ConfigError, SpecError

LID_QUANTITIES = (
    "Ultrasonic_GdLS", "Ultrasonic_LS", "Temp_GdLS", "Temp_LS", "Tiltx_Sensor1", "Tilty_Sensor1",
    "Tiltx_Sensor2", "Tilty_Sensor2", "Tiltx_Sensor3", "Tilty_Sensor3", "Capacitance_GdLS",
    "Capacitance_Temp_GdLS", "Capacitance_LS", "Capacitance_Temp_LS", "Capacitance_MO",
    "Capacitance_Temp_MO", "PS_Output_V", "PS_Output_I",
)

GOOD = """\
meta , class      , table     , CanL2Cache
1    , GDcsAdTemp , DcsAdTemp , kTRUE
;
name     , codetype , dbtype , description , code2db
Temp_PT1 , double   , float  , probe 1     ,
Temp_PT2 , double   , float  , probe 2     ,
"""


def test_shipped_specs_are_the_three_dcs_targets() -> None:
    specs = load_specs()
    assert sorted(specs) == ["DcsAdLidSensor", "DcsAdTemp", "DcsPmtHv"]
    assert {s.table: s.klass for s in specs.values()} == {
        "DcsAdLidSensor": "GDcsAdLidSensor", "DcsAdTemp": "GDcsAdTemp", "DcsPmtHv": "GDcsPmtHv"}


def test_pmthv_spec_has_ladder_col_ring_voltage_pw() -> None:
    spec = find_spec("DcsPmtHv")
    assert [(c.name, c.dbtype) for c in spec.columns] == [
        ("ladder", "tinyint(4)"), ("col", "tinyint(4)"), ("ring", "tinyint(4)"),
        ("voltage", "decimal(6,2)"), ("pw", "tinyint(4)")]


def test_adtemp_spec_has_five_float_probes() -> None:
    spec = find_spec("DcsAdTemp")
    assert [(c.name, c.dbtype) for c in spec.columns] == [(f"Temp_PT{n}", "float") for n in range(1, 6)]


def test_lid_sensor_spec_has_avg_min_max_std_of_18_quantities_and_count() -> None:
    spec = find_spec("DcsAdLidSensor")
    expected = [(f"{q}_{s}", "float") for q in LID_QUANTITIES for s in ("avg", "min", "max", "std")]
    assert [(c.name, c.dbtype) for c in spec.columns] == [*expected, ("count", "int(11)")]
    assert len(spec.columns) == 73


def test_find_spec_accepts_table_or_class_name() -> None:
    assert find_spec("DcsAdTemp") == find_spec("GDcsAdTemp")
    assert find_spec("GDcsAdTemp").table == "DcsAdTemp"


def test_find_spec_unknown_name_is_a_config_error_listing_known_specs() -> None:
    with pytest.raises(SpecError) as err:
        find_spec("DcsAdTmp")
    assert isinstance(err.value, ConfigError)
    assert str(err.value) == (f"{DEFAULT_SPEC_DIR}: no spec for 'DcsAdTmp' (known: DcsAdLidSensor (GDcsAdLidSensor), "
                              "DcsAdTemp (GDcsAdTemp), DcsPmtHv (GDcsPmtHv))")


def test_parse_strips_whitespace_and_reads_quoted_fields() -> None:
    spec = parse_spec('meta,class,table\n1,  GX ,  X  \n ;\n name , codetype , dbtype , description , code2db\n'
                      '  v , double , "decimal(6,2)" , "volts, read back" , .v() \n', "x.spec")
    assert spec.klass == "GX" and spec.table == "X" and spec.path == "x.spec"
    assert spec.meta == {"class": "GX", "table": "X"}
    assert spec.columns == (Column("v", "double", "decimal(6,2)", "volts, read back", ".v()"),)


def test_blank_lines_are_ignored_and_code2db_is_optional() -> None:
    text = "\nmeta,class,table\n\n1,GX,X\n;\n\nname,codetype,dbtype,description\na,int,int,the a\n\n"
    spec = parse_spec(text, "x.spec")
    assert spec.columns == (Column("a", "int", "int", "the a", ""),)


MALFORMED = {
    "empty file": ("", "x.spec:1: empty spec: expected a 'meta,class,table,...' header, a meta row, ';' "
                       "and columns"),
    "no meta header": (GOOD.split("\n", 2)[2],
                       "x.spec:1: missing meta row: expected a 'meta,class,table,...' header first, got ';'"),
    "meta header without its row": (
        GOOD.replace("1    , GDcsAdTemp , DcsAdTemp , kTRUE\n", ""),
        "x.spec:2: missing meta row: the meta header must be followed by a row of values"),
    "meta header lacks table": (
        GOOD.replace(", table     ,", ", tabel     ,"), "x.spec:1: meta header lacks 'table'"),
    "meta row with too few fields": (
        GOOD.replace("1    , GDcsAdTemp , DcsAdTemp , kTRUE", "1, GDcsAdTemp, DcsAdTemp"),
        "x.spec:2: expected 4 fields (meta, class, table, CanL2Cache), got 3"),
    "no semicolon line": (
        GOOD.replace(";\n", ""),
        "x.spec:3: missing ';' line: expected a line starting with ';' before the column header, got "
        "'name,codetype,dbtype,description,code2db'"),
    "nothing after the meta row": (
        "\n".join(GOOD.splitlines()[:2]) + "\n", "x.spec:2: missing ';' line and column header after the meta row"),
    "no column header after the semicolon": (
        "\n".join(GOOD.splitlines()[:3]) + "\n",
        "x.spec:3: missing column header 'name,codetype,dbtype,description,code2db' after ';'"),
    "column header lacks dbtype": (
        GOOD.replace(", dbtype ,", ", dbtyp ,"),
        "x.spec:4: unknown column header field 'dbtyp' (expected name, codetype, dbtype, description, code2db)"),
    "no columns": (
        "\n".join(GOOD.splitlines()[:4]) + "\n", "x.spec:4: no columns under the column header"),
    "unknown dbtype": (
        GOOD.replace("Temp_PT2 , double   , float ", "Temp_PT2 , double   , flaot "),
        "x.spec:6: unknown dbtype 'flaot' for column 'Temp_PT2' (known: tinyint(n), smallint(n), mediumint(n), "
        "int(n), integer(n), bigint(n), float, double, decimal(p,s), datetime, char(n), varchar(n), text)"),
    "decimal with too many digits": (
        GOOD.replace("Temp_PT2 , double   , float ", 'Temp_PT2 , double   , "decimal(66,2)" '),
        "x.spec:6: unknown dbtype 'decimal(66,2)' for column 'Temp_PT2' (known: tinyint(n), smallint(n), "
        "mediumint(n), int(n), integer(n), bigint(n), float, double, decimal(p,s), datetime, char(n), "
        "varchar(n), text)"),
    "duplicate column name": (
        GOOD.replace("Temp_PT2 ,", "temp_pt1 ,"), "x.spec:6: duplicate column name 'temp_pt1' (first on line 5)"),
    "empty column name": (GOOD.replace("Temp_PT2 ,", "         ,"), "x.spec:6: empty column name"),
    "column named SEQNO": (
        GOOD.replace("Temp_PT2 ,", "SEQNO    ,"),
        "x.spec:6: column 'SEQNO' is reserved: every DBI payload table has SEQNO and ROW_COUNTER"),
    "column named row_counter": (
        GOOD.replace("Temp_PT1 ,", "row_counter ,"),
        "x.spec:5: column 'row_counter' is reserved: every DBI payload table has SEQNO and ROW_COUNTER"),
    "column name not an identifier": (
        GOOD.replace("Temp_PT2 ,", "Temp PT2 ,"),
        "x.spec:6: bad column name 'Temp PT2': expected letters, digits and _ (at most 64)"),
    "column row with too many fields": (
        GOOD.replace("probe 2     ,", "probe 2     , , extra"),
        "x.spec:6: expected 5 fields (name, codetype, dbtype, description, code2db), got 6"),
    "column row with too few fields": (
        GOOD.replace("Temp_PT1 , double   , float  , probe 1     ,", "Temp_PT1 , double , float"),
        "x.spec:5: expected 5 fields (name, codetype, dbtype, description, code2db), got 3"),
    "unquoted decimal": (
        GOOD.replace("Temp_PT2 , double   , float ", "Temp_PT2 , double   , decimal(6,2) "),
        'x.spec:6: expected 5 fields (name, codetype, dbtype, description, code2db), got 6 '
        '(quote a dbtype holding a comma: "decimal(6,2)")'),
    "bad table name": (
        GOOD.replace(", DcsAdTemp ,", ", Dcs-AdTemp ,"),
        "x.spec:2: bad table name 'Dcs-AdTemp': expected a letter then letters, digits or _ (at most 61), "
        "not ending in Vld, not LOCALSEQNO/GLOBALSEQNO"),
    "table name ending in Vld": (
        GOOD.replace(", DcsAdTemp ,", ", DcsAdTempVld ,"),
        "x.spec:2: bad table name 'DcsAdTempVld': expected a letter then letters, digits or _ (at most 61), "
        "not ending in Vld, not LOCALSEQNO/GLOBALSEQNO"),
    "table name too long for its Vld": (
        GOOD.replace(", DcsAdTemp ,", f", {'T' * 62} ,"),
        f"x.spec:2: bad table name '{'T' * 62}': expected a letter then letters, digits or _ (at most 61), "
        "not ending in Vld, not LOCALSEQNO/GLOBALSEQNO"),
    "empty class name": (
        GOOD.replace(", GDcsAdTemp ,", ",  ,"), "x.spec:2: bad class name '': expected letters, digits and _"),
    "second semicolon section": (
        GOOD + ";\n", "x.spec:7: a second ';' line: a spec has one column section"),
}


@pytest.mark.parametrize("text, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_spec_is_an_error_naming_file_and_line(text: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(text, "x.spec")
    assert str(err.value) == message
    assert err.value.exit_code == 78


def test_good_spec_text_used_by_the_error_cases_parses() -> None:
    assert parse_spec(GOOD, "x.spec").column_names == ("Temp_PT1", "Temp_PT2")


def test_load_spec_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^.*nope\.spec: cannot read spec: No such file or directory$"):
        load_spec(tmp_path / "nope.spec")


def test_load_specs_refuses_two_files_defining_one_table(tmp_path: Path) -> None:
    (tmp_path / "a.spec").write_text(GOOD)
    (tmp_path / "b.spec").write_text(GOOD.replace("GDcsAdTemp", "GOther"))
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    assert str(err.value) == f"{tmp_path / 'b.spec'}: table 'DcsAdTemp' is also defined in {tmp_path / 'a.spec'}"


def test_error_in_a_spec_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "Bad.spec").write_text(GOOD.replace("Temp_PT2 ,", "SEQNO ,"))
    with pytest.raises(SpecError) as err:
        find_spec("DcsAdTemp", tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'Bad.spec'}:6: column 'SEQNO' is reserved")
