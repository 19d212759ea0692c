"""core.annotated_csv: Flux's annotated CSV read table by table, with InfluxDB's mid-answer errors classified."""

from __future__ import annotations

import csv

import pytest

from telestack.core.annotated_csv import iter_rows, parse_rfc3339_ns
from telestack.core.errors import InfluxError, InfluxQueryError, InfluxRejectedError
from telestack.core.lineproto import UInt

ANSWER = """#datatype,string,long,dateTime:RFC3339,unsignedLong,boolean,string,string,string
#group,false,false,false,false,false,true,true,true
#default,_result,,,,,,,
,result,table,_time,_value,ok,_field,_measurement,host
,,0,2023-11-14T22:13:20.000000017Z,18446744073709551615,true,v,m,
,,0,2023-11-14T22:13:21Z,,false,v,m,a

#datatype,string,string
#group,true,true
#default,,
,error,reference
,"panic: query ran out of memory",
"""


def rows(text: str) -> list[tuple[list[str], list[object]]]:
    return [(table.columns, values) for table, values in iter_rows(csv.reader(text.splitlines()))]


def test_cells_are_typed_and_empty_cells_of_typed_columns_are_none() -> None:
    with pytest.raises(InfluxQueryError):
        rows(ANSWER)  # the error table comes after the data rows
    first, second = rows(ANSWER.split("\n\n")[0])
    assert first[1] == [1_700_000_000_000_000_017, UInt(2**64 - 1), True, "v", "m", ""]
    assert second[1][1] is None and second[1][2] is False and second[1][5] == "a"


def test_an_error_table_after_a_200_is_a_refused_query_with_influxdbs_text() -> None:
    with pytest.raises(InfluxQueryError) as caught:
        rows(ANSWER)
    assert isinstance(caught.value, InfluxRejectedError)  # retrying the same query cannot help
    assert caught.value.reason == "panic: query ran out of memory"
    assert "could not run the query" in str(caught.value)


def test_a_cell_not_of_its_column_type_is_an_influx_error_naming_it() -> None:
    text = "#datatype,string,long,double\n,result,table,_value\n,,0,not-a-number\n"
    with pytest.raises(InfluxError, match="unreadable double 'not-a-number'"):
        rows(text)


@pytest.mark.parametrize("text", ["2023-11-14T22:13:20+01:00", "2023-11-14", ""])
def test_a_time_that_is_not_utc_rfc3339_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="expected UTC RFC 3339"):
        parse_rfc3339_ns(text)


def test_each_table_names_its_result_from_the_default_row_or_its_cells() -> None:
    """A query with several ``yield``s answers several results; the downsampler reads only one of them."""
    answer = """#datatype,string,long,string,double
#group,false,false,true,false
#default,aggregates,,,
,result,table,_field,_value
,,0,f_mean,1.5

#datatype,string,long,string,long
#group,false,false,true,false
#default,,,,
,result,table,_field,_value
,series,0,f,3
,series,0,f,4
"""
    found = [(table.result, values) for table, values in iter_rows(csv.reader(answer.splitlines()))]
    assert found == [("aggregates", ["f_mean", 1.5]), ("series", ["f", 3]), ("series", ["f", 4])]
