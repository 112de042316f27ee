"""`make run`'s projector processes and partitions: what the settings ask for, refused clearly."""

from __future__ import annotations

import pytest

from services.devstack.projectors import extra_projectors, partitions_setting, projector_workers
from services.devstack.stack import SERVICES, Stack, StackProblem


def test_one_projector_and_no_partition_setting_by_default() -> None:
    assert projector_workers({}) == 1
    assert partitions_setting({}) is None
    assert partitions_setting({"COHORTFLOW_PARTITIONS": " 8 "}) == 8


@pytest.mark.parametrize("text", ["0", "17", "two", "-1", "1.5"])
def test_a_number_of_workers_out_of_range_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match=rf"PROJECTOR_WORKERS='{text}': expected a whole"):
        projector_workers({"PROJECTOR_WORKERS": text})


def test_the_other_projectors_run_the_projector_on_ports_of_their_own() -> None:
    (projector,) = [s for s in SERVICES if s.name == "projector"]
    second, third = extra_projectors(projector, 3)
    assert (second.name, third.name) == ("projector-2", "projector-3")
    for spec in (second, third):
        assert spec.module == projector.module and spec.listen_env == projector.listen_env
        assert spec.client_env is None and not spec.own_settings
    assert extra_projectors(projector, 1) == []


def test_the_plan_gives_each_projector_its_own_ports_even_when_the_first_is_set() -> None:
    environ = {"PROJECTOR_WORKERS": "2", "PROJECTOR_LISTEN": "127.0.0.1:0"}
    _plan, children = Stack._plan(environ, {})
    projectors = [c for c in children if c.spec.module == "services.projector"]
    assert [c.spec.name for c in projectors] == ["projector", "projector-2"]
    ports = [c.listen.port for c in projectors] + [c.metrics.port for c in projectors if c.metrics]
    assert len(ports) == len(set(ports)) == 4
    with pytest.raises(StackProblem, match="COHORTFLOW_PARTITIONS='0'"):
        Stack._plan({"COHORTFLOW_PARTITIONS": "0"}, {})
