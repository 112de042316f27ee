"""The pure parts of ingest's HTTP edge: its listen setting, write keys, JSON reading."""

from __future__ import annotations

import pytest

from services.common.grpc.auth import ApiKeys
from services.ingest.config import IngestSettings
from services.ingest.http.auth import app_of
from services.ingest.http.body import parse_json
from services.ingest.http.refusal import Refusal
from tests.support.segment_http import basic


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:8088", ("127.0.0.1", 8088)),
        (":9000", ("127.0.0.1", 9000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("0", None),
        ("", None),
    ],
)
def test_the_http_listen_setting(listen: str, address: tuple[str, int] | None) -> None:
    assert IngestSettings(INGEST_HTTP_LISTEN=listen).http_address() == address


def test_the_http_api_is_on_by_default_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_HTTP_LISTEN", raising=False)
    assert IngestSettings().http_address() == ("127.0.0.1", 8088)


def test_a_write_key_names_its_app_whatever_the_password() -> None:
    keys = ApiKeys([("shop", "key-shop"), ("news", "key-news")])
    assert app_of(basic("key-shop"), keys) == "shop"
    assert app_of(basic("key-news", "ignored"), keys) == "news"
    assert app_of("basic " + basic("key-shop").split()[1], keys) == "shop"
    with pytest.raises(Refusal) as refused:
        app_of(basic("key-shop-typo"), keys)
    assert refused.value.status == 401 and refused.value.fields[0][0] == "Authorization"


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b'{"a": 1e400}', {"a": float("inf")}),
        (b'{"a": -Infinity}', {"a": float("-inf")}),
        (b'{"a": 123456789012345678901234567890}', {"a": 1.2345678901234568e29}),
    ],
)
def test_json_numbers_past_a_double_are_read_to_be_named_later(body: bytes, value: object) -> None:
    assert parse_json(body) == value


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b'{"a": "\xc3"}', "not UTF-8: byte 7 is 0xc3"),
        (b'{"a": "\\udc00"}', "not JSON"),
        (b"[" * 3000 + b"]" * 3000, "not JSON"),
    ],
)
def test_bodies_that_are_no_json_are_refused_naming_the_body(body: bytes, why: str) -> None:
    with pytest.raises(Refusal) as refused:
        parse_json(body)
    assert refused.value.status == 400
    ((field, message),) = refused.value.fields
    assert field == "body" and why in message
