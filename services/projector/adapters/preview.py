"""A whole segment definition as one SQL query: who would be a member, right now.

Used to preview a draft (count, sample, difference to the live version) without
changing anything, and for membership queries over the full history. Event
conditions aggregate the facts set-based (one GROUP BY per distinct tracker,
joined to the app's users); profile conditions read the profile row; segment
references read the live memberships. The meaning is the live engine's
(compile.py), at the projector's recorded clock; a differential test compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from psycopg import sql

from services.common.segments.definition import (
    AllOf,
    AnyOf,
    Definition,
    Events,
    Filter,
    FirstSeen,
    Geo,
    Inaction,
    Lifecycle,
    Node,
    NoneOf,
    Recency,
    Rfm,
    SegmentRef,
    Trait,
)
from services.projector import schema
from services.projector.adapters.history import PROFILE, _number, _where, filter_sql
from services.projector.domain.segments import trackers as tr

EARTH_RADIUS_KM = 6371.0088  # the mean radius the haversine package uses


def _holds(number: float, op: str, value: float) -> bool:
    """`number op value`, as SQL compares two finite numbers."""
    return {
        "=": number == value,
        "!=": number != value,
        "<": number < value,
        "<=": number <= value,
        ">": number > value,
        ">=": number >= value,
    }.get(op, True)  # an unknown operator: assume it may hold (requires nothing)


@dataclass
class _Compiler:
    app_id: str
    # The log position facts are read up to; None: every fact the snapshot holds.
    through: int | None
    now_us: int
    trackers: dict[str, tuple[str, tr.TrackerSpec]] = field(default_factory=dict)

    def tracker(self, spec: tr.TrackerSpec) -> str:
        """The alias of a tracker's per-user aggregate (one CTE per distinct tracker)."""
        if spec.key not in self.trackers:
            self.trackers[spec.key] = (f"t{len(self.trackers)}", spec)
        return self.trackers[spec.key][0]

    def node(self, node: Node) -> sql.Composable:
        if isinstance(node, AllOf | AnyOf | NoneOf):
            parts = [self.node(child) for child in node.children]
            joined = sql.SQL(" AND " if isinstance(node, AllOf) else " OR ").join(parts)
            if isinstance(node, NoneOf):
                return sql.SQL("(NOT ({}))").format(joined)
            return sql.SQL("({})").format(joined)
        method = getattr(self, f"_{type(node).__name__.lower()}")
        return method(node)  # type: ignore[no-any-return]

    def _trait(self, node: Trait) -> sql.Composable:
        condition = filter_sql(Filter(node.key, node.op, node.value), PROFILE)
        return sql.SQL("coalesce({}, false)").format(condition)

    def _geo(self, node: Geo) -> sql.Composable:
        parts: list[sql.Composable] = []
        if node.countries:
            parts.append(
                sql.SQL("upper(u.geo_country) = ANY({})").format(
                    sql.Literal(sorted(node.countries))
                )
            )
        if node.cities:
            parts.append(
                sql.SQL("lower(u.geo_city) = ANY({})").format(sql.Literal(sorted(node.cities)))
            )
        if node.center is not None:
            lat, lng = (math.radians(v) for v in node.center)
            parts.append(
                sql.SQL(
                    "(u.geo_latitude IS NOT NULL AND u.geo_longitude IS NOT NULL AND"
                    " 2 * {r} * asin(sqrt(power(sin((radians(u.geo_latitude) - {lat}) / 2), 2)"
                    " + cos({lat}) * cos(radians(u.geo_latitude))"
                    " * power(sin((radians(u.geo_longitude) - {lng}) / 2), 2))) <= {km})"
                ).format(
                    r=sql.Literal(EARTH_RADIUS_KM),
                    lat=sql.Literal(lat),
                    lng=sql.Literal(lng),
                    km=sql.Literal(node.radius_km),
                )
            )
        return sql.SQL("({})").format(sql.SQL(" OR ").join(parts)) if parts else sql.SQL("false")

    def _lifecycle(self, node: Lifecycle) -> sql.Composable:
        return sql.SQL("u.lifecycle_state = ANY({})").format(sql.Literal(sorted(node.states)))

    def _rfm(self, node: Rfm) -> sql.Composable:
        return sql.SQL("u.rfm_group = ANY({})").format(sql.Literal(sorted(node.groups)))

    def _events_alias(self, node: Events) -> str:
        kind = tr.TOTAL if node.window_us is None else tr.WINDOW
        return self.tracker(
            tr.TrackerSpec(kind, node.name, node.where, node.window_us, node.property)
        )

    def _events(self, node: Events) -> sql.Composable:
        alias = sql.Identifier(self._events_alias(node))
        op, value = sql.SQL(node.op), sql.Literal(node.value)
        if node.aggregate == "count":
            return sql.SQL("coalesce({a}.n, 0) {op} {v}").format(a=alias, op=op, v=value)
        if node.aggregate == "sum":
            return sql.SQL("coalesce({a}.s, 0) {op} {v}").format(a=alias, op=op, v=value)
        if node.aggregate in ("min", "max"):
            column = sql.Identifier("lo" if node.aggregate == "min" else "hi")
            return sql.SQL("({a}.{c} IS NOT NULL AND {a}.{c} {op} {v})").format(
                a=alias, c=column, op=op, v=value
            )
        return sql.SQL("(coalesce({a}.nv, 0) > 0 AND {a}.s / {a}.nv {op} {v})").format(
            a=alias, op=op, v=value
        )

    def _recency_alias(self, node: Recency) -> str:
        return self.tracker(tr.TrackerSpec(tr.LAST, node.name, node.where))

    def _recency(self, node: Recency) -> sql.Composable:
        alias = sql.Identifier(self._recency_alias(node))
        span = node.more_than_us if node.more_than_us is not None else node.less_than_us
        op = sql.SQL(">=" if node.more_than_us is not None else "<")
        return sql.SQL("({a}.last IS NOT NULL AND {now} - {a}.last {op} {span})").format(
            a=alias, now=sql.Literal(self.now_us), op=op, span=sql.Literal(span)
        )

    def _firstseen(self, node: FirstSeen) -> sql.Composable:
        parts: list[sql.Composable] = [sql.SQL("u.first_seen_us IS NOT NULL")]
        now = sql.Literal(self.now_us)
        if node.before_us is not None:
            parts.append(sql.SQL("u.first_seen_us < {}").format(sql.Literal(node.before_us)))
        if node.after_us is not None:
            parts.append(sql.SQL("u.first_seen_us > {}").format(sql.Literal(node.after_us)))
        if node.more_than_us is not None:
            parts.append(
                sql.SQL("{} - u.first_seen_us >= {}").format(now, sql.Literal(node.more_than_us))
            )
        if node.less_than_us is not None:
            parts.append(
                sql.SQL("{} - u.first_seen_us < {}").format(now, sql.Literal(node.less_than_us))
            )
        return sql.SQL("({})").format(sql.SQL(" AND ").join(parts))

    def _inaction_alias(self, node: Inaction) -> str:
        return self.tracker(tr.TrackerSpec(tr.INACTION, node.did, node.where, other=node.not_did))

    def _inaction(self, node: Inaction) -> sql.Composable:
        alias = sql.Identifier(self._inaction_alias(node))
        return sql.SQL(
            "({a}.did IS NOT NULL AND ({a}.ended IS NULL OR {a}.ended < {a}.did)"
            " AND {now} >= {a}.did + {within})"
        ).format(a=alias, now=sql.Literal(self.now_us), within=sql.Literal(node.within_us))

    def _segmentref(self, node: SegmentRef) -> sql.Composable:
        return sql.SQL(
            "EXISTS (SELECT 1 FROM {m} m WHERE m.app_id = u.app_id AND m.segment_id = {s}"
            " AND m.user_id = u.user_id)"
        ).format(m=sql.Identifier(schema.SEGMENT_MEMBERS_TABLE), s=sql.Literal(node.segment_id))

    def required(self, node: Node) -> frozenset[str]:
        """Aliases of trackers in which a user needs a row for `node` to hold.

        Sound, not complete: a user without a row in one of them is never a member, so
        the members can be found starting from that tracker's rows. Conditions a user
        without facts can meet (count < 2, sum <= 0, none of ...) require nothing.
        """
        if isinstance(node, AllOf):
            return frozenset().union(*(self.required(child) for child in node.children))
        if isinstance(node, AnyOf):
            each = [self.required(child) for child in node.children]
            return frozenset.intersection(*each) if each else frozenset()
        if isinstance(node, Events):
            if node.aggregate in ("count", "sum") and (
                not math.isfinite(node.value) or _holds(0.0, node.op, node.value)
            ):
                return frozenset()  # no row reads as 0, which may meet the condition
            return frozenset({self._events_alias(node)})
        if isinstance(node, Recency):
            return frozenset({self._recency_alias(node)})
        if isinstance(node, Inaction):
            return frozenset({self._inaction_alias(node)})
        return frozenset()  # profile conditions, segment references, none of ...

    def cte(self, alias: str, spec: tr.TrackerSpec) -> sql.Composable:
        facts = sql.Identifier(schema.FACTS_TABLE)
        value = _number(spec.prop) if spec.prop else sql.SQL("NULL::float8")
        if spec.kind in (tr.WINDOW, tr.TOTAL):
            edge = (
                sql.SQL(" AND event_time_us > {}").format(
                    sql.Literal(self.now_us - spec.window_us)  # type: ignore[operator]
                )
                if spec.kind == tr.WINDOW
                else sql.SQL("")
            )
            body = sql.SQL(
                "SELECT user_id, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi,"
                " count(v) AS nv FROM (SELECT user_id, {value} AS v FROM {facts}"
                " WHERE {where}{edge}) f GROUP BY user_id"
            ).format(
                value=value,
                facts=facts,
                where=_where(self.app_id, [spec.name], spec.where, self.through),
                edge=edge,
            )
        elif spec.kind == tr.LAST:
            body = sql.SQL(
                "SELECT user_id, max(event_time_us) AS last FROM {facts} WHERE {where}"
                " GROUP BY user_id"
            ).format(facts=facts, where=_where(self.app_id, [spec.name], spec.where, self.through))
        else:
            did = sql.SQL(" AND ").join(
                [
                    sql.SQL("name = {}").format(sql.Literal(spec.name)),
                    *(filter_sql(f) for f in spec.where),
                ]
            )
            body = sql.SQL(
                "SELECT user_id, max(event_time_us) FILTER (WHERE {did}) AS did,"
                " max(event_time_us) FILTER (WHERE name = {other}) AS ended FROM {facts}"
                " WHERE {where} GROUP BY user_id"
            ).format(
                did=did,
                other=sql.Literal(spec.other),
                facts=facts,
                where=_where(self.app_id, [spec.name, spec.other], (), self.through),
            )
        return sql.SQL("{} AS NOT MATERIALIZED ({})").format(sql.Identifier(alias), body)


def members_query(
    app_id: str, definition: Definition, through: int | None, now_us: int
) -> sql.Composable:
    """SELECT user_id of every member as of log position `through` and clock `now_us`."""
    compiler = _Compiler(app_id, through, now_us)
    condition = compiler.node(definition.root)
    aliases = [alias for alias, _spec in compiler.trackers.values()]
    required = compiler.required(definition.root)
    # Where every member needs a row of some tracker, start from that tracker's users and
    # look their profiles up by key, instead of reading every profile of the app.
    driver = next((alias for alias in aliases if alias in required), None)
    profiles = sql.SQL("{} u").format(sql.Identifier(schema.PROFILES_TABLE))
    if driver is None:
        source = profiles
    else:
        source = sql.SQL("{d} JOIN {p} ON u.app_id = {app} AND u.user_id = {d}.user_id").format(
            d=sql.Identifier(driver), p=profiles, app=sql.Literal(app_id)
        )
    joins = [
        sql.SQL(" LEFT JOIN {a} ON {a}.user_id = u.user_id").format(a=sql.Identifier(alias))
        for alias in aliases
        if alias != driver
    ]
    ctes = [compiler.cte(alias, spec) for alias, spec in compiler.trackers.values()]
    with_clause = sql.SQL("WITH {} ").format(sql.SQL(", ").join(ctes)) if ctes else sql.SQL("")
    return sql.SQL(
        "{with_}SELECT u.user_id FROM {source}{joins} WHERE u.app_id = {app} AND ({cond})"
    ).format(
        with_=with_clause,
        source=source,
        joins=sql.SQL("").join(joins),
        app=sql.Literal(app_id),
        cond=condition,
    )


def preview_query(
    app_id: str,
    segment_id: str,
    definition: Definition,
    through: int | None,
    now_us: int,
    sample: int,
) -> sql.Composed:
    """One row: members, entering, exiting, and samples of each (vs the live members)."""
    members = members_query(app_id, definition, through, now_us)
    return sql.SQL(
        "WITH draft AS MATERIALIZED ({members}),"
        " live AS MATERIALIZED (SELECT user_id FROM {m}"
        "   WHERE app_id = {app} AND segment_id = {seg})"
        " SELECT (SELECT count(*) FROM draft) AS members,"
        " (SELECT count(*) FROM draft d WHERE NOT EXISTS"
        "   (SELECT 1 FROM live l WHERE l.user_id = d.user_id)) AS entering,"
        " (SELECT count(*) FROM live l WHERE NOT EXISTS"
        "   (SELECT 1 FROM draft d WHERE d.user_id = l.user_id)) AS exiting,"
        " ARRAY(SELECT user_id FROM draft ORDER BY user_id LIMIT {n}) AS sample,"
        " ARRAY(SELECT d.user_id FROM draft d WHERE NOT EXISTS"
        "   (SELECT 1 FROM live l WHERE l.user_id = d.user_id) ORDER BY 1 LIMIT {n})"
        " AS enter_sample,"
        " ARRAY(SELECT l.user_id FROM live l WHERE NOT EXISTS"
        "   (SELECT 1 FROM draft d WHERE d.user_id = l.user_id) ORDER BY 1 LIMIT {n})"
        " AS exit_sample"
    ).format(
        members=members,
        m=sql.Identifier(schema.SEGMENT_MEMBERS_TABLE),
        app=sql.Literal(app_id),
        seg=sql.Literal(segment_id),
        n=sql.Literal(sample),
    )
