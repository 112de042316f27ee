"""Set-based history: tracker states of a segment version computed in SQL over the facts.

For a version defined at log position P, every tracker's state as of P is what the
live tracker would hold after folding the log up to P. Here it is one GROUP BY per
tracker over `projector_facts` (position <= P): windows keep the matching events
newer than the recorded clock at P minus the window, totals aggregate, "last"
takes the latest time, inaction the latest did and not_did. The differential
test proves these equal the incremental path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import sql

from services.common.segments.definition import Filter, TimeValue
from services.eventlog.partitions import partition_floor
from services.projector import schema
from services.projector.domain.changeset import TICK_FACT
from services.projector.domain.segments import trackers as tr

Query = tuple[sql.Composable, list[Any]]

# Memory for the sorts and hashes of one set-based query (GROUP BY of millions of facts
# by up to millions of users): with the server default (4MB) they spill to disk.
WORK_MEM = "256MB"


def tune(cursor: Any, work_mem: str = WORK_MEM) -> None:
    """Settings for big set-based queries, for the current transaction only.

    More memory for sorts and hashes; no JIT (compiling cost more than it saved); and
    parallel scans and partial aggregates whenever the server allows workers (the
    default costs keep the planner serial for aggregates over a few million facts; on
    2 cores these settings made the bench previews about 18% faster).
    """
    cursor.execute(
        "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true),"
        " set_config('parallel_setup_cost', '0', true),"
        " set_config('parallel_tuple_cost', '0', true)",
        (work_mem,),
    )


def _json_value(value: Any) -> str:
    return orjson.dumps(value.us if isinstance(value, TimeValue) else value).decode()


@dataclass(frozen=True)
class Source:
    """Where values live: event facts (properties, timestamps, context) or a profile."""

    plain: str = "props"
    times: str = "(props->'$times')"
    context: str | None = "(props->'$context')"


EVENT = Source()
PROFILE = Source(plain="u.traits", times="u.time_traits", context=None)


def _path(prop: str, timed: bool, source: Source = EVENT) -> sql.Composable:
    """The jsonb value of a property (or context field, or timestamp property)."""
    if prop.startswith("context."):
        if source.context is None:
            return sql.SQL("NULL::jsonb")
        return sql.SQL("({}->{})").format(sql.SQL(source.context), sql.Literal(prop[8:]))
    if timed:
        return sql.SQL("({}->{})").format(sql.SQL(source.times), sql.Literal(prop))
    return sql.SQL("({}->{})").format(sql.SQL(source.plain), sql.Literal(prop))


def _looked_up(prop: str, source: Source = EVENT) -> sql.Composable:
    """Like trackers.lookup: a plain property first, else a timestamp property."""
    if prop.startswith("context."):
        return _path(prop, False, source)
    return sql.SQL("coalesce({}, {})").format(_path(prop, False, source), _path(prop, True, source))


def _number(prop: str) -> sql.Composable:
    """Like trackers._number: a number, or a timestamp's microseconds, else NULL."""
    value = _looked_up(prop)
    return sql.SQL("(CASE WHEN jsonb_typeof({v}) = 'number' THEN ({v})::float8 END)").format(
        v=value
    )


def _same(value: sql.Composable, expected: Any) -> sql.Composable:
    return sql.SQL("{} = {}::jsonb").format(value, sql.Literal(_json_value(expected)))


def filter_sql(f: Filter, source: Source = EVENT) -> sql.Composable:
    """The SQL twin of trackers.compare(lookup(property), op, value)."""
    expected = f.value
    timed = isinstance(expected, TimeValue) or (
        isinstance(expected, tuple) and any(isinstance(e, TimeValue) for e in expected)
    )
    op = f.op
    if op == "exists":
        return sql.SQL("({} IS NOT NULL)").format(_looked_up(f.property, source))
    # A plain value is compared with plain properties only, a timestamp with timestamp
    # properties only: in Python the other kind never compares equal or in order.
    value = _path(f.property, timed, source)
    if op == "=":
        return sql.SQL("({} IS NOT NULL AND {})").format(value, _same(value, expected))
    if op == "!=":
        return sql.SQL("({} IS NULL OR NOT {})").format(value, _same(value, expected))
    if op == "in":
        # One lookup per row (PostgreSQL hashes a constant array of more than 8 values), not
        # one comparison per value: over 1M facts, 100 values took 111 s as an OR, 1.2 s so.
        items: list[sql.Composable] = [
            sql.SQL("{}::jsonb").format(sql.Literal(_json_value(e)))
            for e in expected  # type: ignore[union-attr]
        ]
        alternatives = sql.SQL(", ").join(items)
        return sql.SQL("({} IS NOT NULL AND {} = ANY(ARRAY[{}]::jsonb[]))").format(
            value, value, alternatives
        )
    if op == "contains":
        return sql.SQL(
            "(CASE jsonb_typeof({v}) WHEN 'array' THEN {v} @> {arr}::jsonb"
            " WHEN 'string' THEN {isstr} AND strpos({v} #>> '{{}}', {text}) > 0"
            " ELSE false END)"
        ).format(
            v=value,
            arr=sql.Literal(
                _json_value([expected.us if isinstance(expected, TimeValue) else expected])
            ),
            isstr=sql.Literal(isinstance(expected, str)),
            text=sql.Literal(expected if isinstance(expected, str) else ""),
        )
    if op == "starts_with":
        return sql.SQL(
            "(jsonb_typeof({v}) = 'string' AND starts_with({v} #>> '{{}}', {text}))"
        ).format(v=value, text=sql.Literal(str(expected)))
    # <, <=, >, >=: numbers with numbers, timestamps with timestamps.
    if isinstance(expected, bool | str) or expected is None:
        return sql.SQL("false")
    number = expected.us if isinstance(expected, TimeValue) else expected
    return sql.SQL("(jsonb_typeof({v}) = 'number' AND ({v})::float8 {op} {n})").format(
        v=value,
        op=sql.SQL(op),
        n=sql.Literal(float(number)),  # type: ignore[arg-type]
    )


def _where(
    app_id: str, names: list[str], where: tuple[Filter, ...], through: int | None
) -> sql.Composable:
    parts = [
        sql.SQL("app_id = {}").format(sql.Literal(app_id)),
        sql.SQL("name = ANY({})").format(sql.Literal(names)),
        *(filter_sql(f) for f in where),
    ]
    if through is not None:
        # The partition's own facts up to `through` (all of them with one partition).
        parts.insert(
            2,
            sql.SQL("position BETWEEN {} AND {}").format(
                sql.Literal(partition_floor(through)), sql.Literal(through)
            ),
        )
    return sql.SQL(" AND ").join(parts)


def tracker_query(app_id: str, spec: tr.TrackerSpec, through: int, now_us: int) -> sql.Composable:
    """(user_id, state jsonb) of every user with a state for `spec` as of position `through`."""
    table = sql.Identifier(schema.FACTS_TABLE)
    if spec.kind == tr.WINDOW:
        assert spec.window_us is not None
        value = _number(spec.prop) if spec.prop else sql.SQL("NULL::float8")
        return sql.SQL(
            "SELECT user_id, jsonb_agg(jsonb_build_array(event_time_us, {value})"
            " ORDER BY event_time_us, position) FROM {table}"
            " WHERE {where} AND event_time_us > {edge} GROUP BY user_id"
        ).format(
            value=value,
            table=table,
            where=_where(app_id, [spec.name], spec.where, through),
            edge=sql.Literal(now_us - spec.window_us),
        )
    if spec.kind == tr.TOTAL:
        value = _number(spec.prop) if spec.prop else sql.SQL("NULL::float8")
        return sql.SQL(
            "SELECT user_id, jsonb_build_array(count(*), coalesce(sum(v), 0), min(v), max(v),"
            " count(v)) FROM (SELECT user_id, {value} AS v FROM {table} WHERE {where}) f"
            " GROUP BY user_id"
        ).format(value=value, table=table, where=_where(app_id, [spec.name], spec.where, through))
    if spec.kind == tr.LAST:
        return sql.SQL(
            "SELECT user_id, jsonb_build_array(max(event_time_us)) FROM {table}"
            " WHERE {where} GROUP BY user_id"
        ).format(table=table, where=_where(app_id, [spec.name], spec.where, through))
    # INACTION: latest `did` (filtered) and latest `not_did`.
    did = sql.SQL("name = {} AND {}").format(
        sql.Literal(spec.name),
        sql.SQL(" AND ").join([sql.SQL("true"), *(filter_sql(f) for f in spec.where)]),
    )
    return sql.SQL(
        "SELECT user_id, jsonb_build_array("
        " max(event_time_us) FILTER (WHERE {did}),"
        " max(event_time_us) FILTER (WHERE name = {other})) FROM {table}"
        " WHERE {where} GROUP BY user_id"
        " HAVING max(event_time_us) FILTER (WHERE {did}) IS NOT NULL"
        " OR max(event_time_us) FILTER (WHERE name = {other}) IS NOT NULL"
    ).format(
        did=did,
        other=sql.Literal(spec.other),
        table=table,
        where=_where(app_id, [spec.name, spec.other], (), through),
    )


def keyed_states_query(
    app_id: str, spec: tr.TrackerSpec, through: int, now_us: int
) -> sql.Composable:
    """(user_id, {spec.key: state}) of every user with a state: a row of compute_states."""
    return sql.SQL(
        "SELECT user_id, jsonb_build_object({key}::text, state) AS states"
        " FROM ({query}) AS q (user_id, state)"
    ).format(key=sql.Literal(spec.key), query=tracker_query(app_id, spec, through, now_us))


def clock_query(through: int) -> sql.Composable:
    return sql.SQL(
        "SELECT coalesce(max(event_time_us), 0) AS now_us FROM {table}"
        " WHERE app_id = '' AND name = {tick} AND position BETWEEN {floor} AND {through}"
    ).format(
        table=sql.Identifier(schema.FACTS_TABLE),
        tick=sql.Literal(TICK_FACT),
        floor=sql.Literal(partition_floor(through)),
        through=sql.Literal(through),
    )


def compute_states(
    cursor: Any,
    app_id: str,
    specs: list[tr.TrackerSpec],
    through: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, dict[str, Any]]:
    """user_id -> {tracker key: state} as of position `through`, one query per tracker."""
    cursor.execute(clock_query(through))
    now_us = int(cursor.fetchone()[0])
    states: dict[str, dict[str, Any]] = {}
    for index, spec in enumerate(specs):
        cursor.execute(tracker_query(app_id, spec, through, now_us))
        for user_id, state in cursor.fetchall():
            if spec.kind == tr.INACTION and state == [None, None]:
                continue
            states.setdefault(user_id, {})[spec.key] = state
        progress(index + 1, len(specs))
    return states
