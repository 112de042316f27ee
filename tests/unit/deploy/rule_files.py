"""The Prometheus rule-file format (what `promtool check rules` reads), as pydantic models.

No promtool wheel exists on PyPI, so rule files are read with these models (unknown keys
refused, durations in Prometheus' syntax) and their expressions with promql-parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import promql_parser
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _duration(text: str) -> str:
    promql_parser.parse_duration(text)  # ValueError on "5 minutes", "1m30", ...
    return text


def _expression(text: str) -> str:
    promql_parser.parse(text)  # ValueError naming the syntax error
    return text


Duration = Annotated[str, AfterValidator(_duration)]
Expression = Annotated[str, AfterValidator(_expression)]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    alert: str | None = None
    record: str | None = None
    expr: Expression
    for_: Duration | None = Field(None, alias="for")
    keep_firing_for: Duration | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _alert_or_record(self) -> Rule:
        if (self.alert is None) == (self.record is None):
            raise ValueError("a rule has exactly one of alert and record")
        if self.record is not None and (self.for_ or self.annotations):
            raise ValueError("a recording rule has no for or annotations")
        return self


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    interval: Duration | None = None
    query_offset: Duration | None = None
    limit: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    rules: list[Rule]


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[Group]


def load(path: Path) -> RuleFile:
    return RuleFile.model_validate(yaml.safe_load(path.read_text()))
