"""Import lines into events: JSONL objects and CSV rows, every problem with line and field."""

from __future__ import annotations

import io

import pytest

from services.cli.csv_rows import read_csv
from services.cli.lines import read_lines
from services.cli.records import FileProblem, LineProblem, Record, read_jsonl


def jsonl(*lines: str) -> list[Record | LineProblem]:
    data = ("\n".join(lines) + "\n").encode()
    return list(read_jsonl(read_lines(io.BytesIO(data))))


def csv_rows(text: str) -> list[Record | LineProblem]:
    return list(read_csv(read_lines(io.BytesIO(text.encode()))))


def problems(items: list[Record | LineProblem]) -> list[str]:
    return [item.at("f") for item in items if isinstance(item, LineProblem)]


def test_a_jsonl_line_becomes_an_event_with_every_field() -> None:
    (record,) = jsonl(
        '{"event_id": "e1", "user_id": "u1", "name": "Order Completed",'
        ' "event_time": "2024-05-01T10:00:00Z", "properties": {"revenue": 9.5, "tags": ["a"],'
        ' "at": {"$time": "2024-05-01T09:00:00Z"}}, "context": {"platform": "ios",'
        ' "country": "DE", "timezone": "Europe/Berlin", "latitude": 52.5, "longitude": 13.4}}'
    )
    assert isinstance(record, Record) and record.line == 1
    event = record.event
    assert (event.event_id, event.user_id, event.name) == ("e1", "u1", "Order Completed")
    assert event.event_time.seconds == 1714557600
    assert event.properties["revenue"].number_value == 9.5
    assert event.properties["tags"].list_value.values[0].string_value == "a"
    assert event.properties["at"].HasField("timestamp_value")
    assert event.context.country == "DE" and event.context.location.latitude == 52.5


def test_numeric_ids_are_read_as_text() -> None:
    (record,) = jsonl('{"event_id": 7, "user_id": 42, "name": "Opened"}')
    assert isinstance(record, Record)
    assert (record.event.event_id, record.event.user_id) == ("7", "42")


def test_a_line_without_event_id_gets_one_from_its_text_the_same_every_time() -> None:
    line = '{"user_id": "u1", "name": "Opened"}'
    first, second = jsonl(line, line + "  ")
    assert isinstance(first, Record) and isinstance(second, Record)
    assert first.event.event_id.startswith("imp-")
    assert first.event.event_id == second.event.event_id
    (other,) = jsonl('{"user_id": "u2", "name": "Opened"}')
    assert isinstance(other, Record) and other.event.event_id != first.event.event_id


def test_every_bad_jsonl_line_is_named_by_number_and_field() -> None:
    items = jsonl(
        '{"event_id": "ok", "user_id": "u", "name": "Opened"}',
        "",
        "not json",
        "[1, 2]",
        '{"event_id": "e", "user": "u"}',
        '{"event_id": "e", "properties": {"cart": {"a": 1}}}',
        '{"event_id": "e", "properties": [1]}',
        '{"event_id": "e", "event_time": "tomorrow"}',
        '{"event_id": "e", "context": {"latitude": 1}}',
        '{"event_id": "e", "context": {"planet": "mars"}}',
        '{"event_id": "e", "context": {"latitude": "north", "longitude": 1}}',
        '{"event_id": true}',
    )
    assert [item.line for item in items if isinstance(item, Record)] == [1]
    found = problems(items)
    assert found[0].startswith("f:3: not valid JSON (")
    assert found[1:] == [
        "f:4: must be a JSON object, one event per line",
        "f:5: user: unknown key; expected one of event_id, user_id, anonymous_id, name,"
        " event_time, properties, context",
        'f:6: properties["cart"]: objects are not values (only {"$time": "<ISO-8601>"}'
        " for a timestamp)",
        "f:7: properties: must be a JSON object",
        "f:8: event_time: 'tomorrow' is not an ISO-8601 date-time like 2024-05-01T10:00:00Z",
        "f:9: context.latitude: latitude and longitude go together",
        "f:10: context.planet: unknown; expected one of platform, os, app_version, locale,"
        " timezone, country, city, latitude, longitude",
        "f:11: context.latitude: 'north' is not a number",
        "f:12: event_id: must be a string, got bool",
    ]


CSV = (
    "event_id,user_id,name,event_time,platform,country,latitude,longitude,"
    "prop.revenue,prop.sku:string,prop.gift,prop.note,properties\n"
)


def test_csv_rows_become_events_with_typed_property_columns() -> None:
    items = csv_rows(
        CSV + 'c1,u1,Order Completed,2024-05-01T10:00:00Z,ios,FR,48.8,2.3,12.5,007,true,"a, b",'
        '"{""coupon"": ""X""}"\n' + "c2,u1,Opened,,,,,,,,,,\n"
    )
    first, second = items
    assert isinstance(first, Record) and isinstance(second, Record)
    props = first.event.properties
    assert props["revenue"].number_value == 12.5
    assert props["sku"].string_value == "007"
    assert props["gift"].bool_value is True
    assert props["note"].string_value == "a, b"
    assert props["coupon"].string_value == "X"
    assert first.event.context.location.longitude == 2.3
    assert (first.line, second.line) == (2, 3)
    assert dict(second.event.properties) == {}
    assert not second.event.HasField("event_time") and not second.event.HasField("context")


def test_csv_problems_name_the_line_and_column() -> None:
    items = csv_rows(
        CSV
        + "c1,u1,Opened,,,,48.8,,,,,,\n"
        + 'c2,u1,"Multi\nline",,,,,,,,,,\n'
        + "c3,u1,Opened,soon,,,,,,,,,\n"
        + "c4,u1,Opened\n"
        + "\n"
        + "c5,u1,Opened,,,,,,,,,,{bad\n"
    )
    assert problems(items) == [
        "f:2: latitude: latitude and longitude go together",
        "f:5: event_time: 'soon' is not an ISO-8601 date-time like 2024-05-01T10:00:00Z",
        "f:6: has 3 cells, the header has 13",
        "f:8: properties: is not a valid JSON object",
    ]
    assert [i.line for i in items if isinstance(i, Record)] == [3]


def test_a_typed_csv_column_refuses_a_cell_of_another_kind() -> None:
    (item,) = csv_rows("event_id,user_id,name,prop.n:number\ne,u,Opened,many\n")
    assert isinstance(item, LineProblem)
    assert item.at("f") == "f:2: prop.n:number: 'many' is not a number"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("event_id,user,name", "unknown column 'user'"),
        ("event_id,name,name", "column 'name' appears twice"),
        ("event_id,prop.", "names no property"),
        ("event_id,prop.x:color", "unknown type 'color'"),
    ],
)
def test_a_csv_header_that_is_not_understood_stops_the_import(header: str, message: str) -> None:
    with pytest.raises(FileProblem, match=message):
        csv_rows(header + "\n")


def test_an_empty_csv_file_has_no_events() -> None:
    assert csv_rows("") == []
