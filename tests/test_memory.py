"""Memory rules: add, list, toggle and edit."""

import pytest

from mcp_server.core.errors import InvalidInput, NotFound
from mcp_server.core.services import Services


def test_rules_are_added_listed_and_switched_off(services: Services) -> None:
    memory = services.memory
    lr = memory.add(title="lr ceiling", content="lr > 1e-3 diverges", tags=["LR", "stability", "lr"])
    oom = memory.add(title="bs 512 OOMs", content="on 24 GB cards", tags=["oom"], source="user")
    assert lr.active and lr.tags == ["lr", "stability"] and lr.source == "agent"
    assert [m.id for m in memory.list().memories] == [oom.id, lr.id]
    off = memory.update(lr.id, active=False)
    assert not off.active and off.content == "lr > 1e-3 diverges"
    assert [m.id for m in memory.list(active_only=True).memories] == [oom.id]
    assert memory.list(tag="lr").total == 1
    edited = memory.update(lr.id, content="lr > 3e-3 diverges", active=True)
    assert edited.active and edited.content == "lr > 3e-3 diverges"


def test_bad_rules_are_refused(services: Services) -> None:
    with pytest.raises(InvalidInput, match="tag 'has space' is not allowed"):
        services.memory.add(title="t", content="c", tags=["has space"])
    with pytest.raises(InvalidInput, match="content must be"):
        services.memory.add(title="t", content="")
    with pytest.raises(NotFound, match="no memory with id"):
        services.memory.update("mem-20000101-000000-00000000", active=False)
    rule = services.memory.add(title="t", content="c")
    with pytest.raises(InvalidInput, match="nothing to update"):
        services.memory.update(rule.id)
    assert services.memory.list().total == 1
