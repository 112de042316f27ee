"""API keys bind to apps; key configuration errors name the bad entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ApiKeySettings
from services.common.grpc.auth import ApiKeys, _bearer


def test_keys_resolve_to_their_app_only() -> None:
    keys = ApiKeys([("shop", "k-shop"), ("news", "k-news")])
    assert keys.app_for("k-shop") == "shop"
    assert keys.app_for("k-news") == "news"
    assert keys.app_for("k-other") is None
    assert keys.app_for("") is None


def test_bearer_token_is_read_from_metadata() -> None:
    assert _bearer([("authorization", "Bearer abc")]) == "abc"
    assert _bearer([("authorization", "bearer  abc ")]) == "abc"
    assert _bearer([("authorization", "Basic abc")]) is None
    assert _bearer([("x-other", "Bearer abc")]) is None
    assert _bearer(None) is None


def test_keys_come_from_env_and_file(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# app key\nnews k-news\n\nshop2 k2  # trailing comment\n")
    settings = ApiKeySettings(
        COHORTFLOW_API_KEYS="shop:k-shop, a:b", COHORTFLOW_API_KEYS_FILE=keyfile
    )
    assert settings.pairs() == [("shop", "k-shop"), ("a", "b"), ("news", "k-news"), ("shop2", "k2")]


def test_malformed_keys_name_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="entry 2"):
        ApiKeySettings(COHORTFLOW_API_KEYS="a:b,nocolon").pairs()
    keyfile = tmp_path / "keys"
    keyfile.write_text("ok key\nbroken\n")
    with pytest.raises(ValueError, match=r"keys:2"):
        ApiKeySettings(COHORTFLOW_API_KEYS_FILE=keyfile).pairs()
