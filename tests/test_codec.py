"""Payload encryption, without a server: the codec, its settings, tokens and the codec server.

The end-to-end proofs (nothing readable on a real server, key rotation, the Web UI) are in
tests/test_codec_e2e.py and tests/test_codec_web_ui.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from aiops.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecConfigError,
    CodecError,
    EncryptionCodec,
    UnknownKeyError,
    codec_data_converter,
    data_converter_from_env,
    load_keys,
)
from aiops.codec.settings import keys_from_env, new_key, parse_key
from aiops.codec.tokens import new_token, parse_hash_lines
from aiops.gateway.app import Gateway
from aiops.gateway.codec_server import CodecServerSettings, check_settings
from aiops.gateway.delivery import Connector
from aiops.gateway.server import running

CANARY = "canary-7f3a-do-not-store"
KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
WEB_UI = "http://127.0.0.1:8233"


def codec(current: str = "a") -> EncryptionCodec:
    return EncryptionCodec({"a": KEY_A, "b": KEY_B}, current)


async def test_a_sealed_payload_hides_its_data_and_encoding_and_opens_again() -> None:
    converter = codec_data_converter(codec())
    [sealed] = await converter.encode([{"note": CANARY}])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"a"
    assert CANARY.encode() not in sealed.SerializeToString()
    assert b"json" not in sealed.SerializeToString()  # the inner encoding is sealed too
    assert await converter.decode([sealed], [dict]) == [{"note": CANARY}]


async def test_every_payload_gets_a_fresh_nonce() -> None:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec().encode([payload, payload])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_rotation_seals_with_the_current_key_and_opens_with_any_listed() -> None:
    old = await codec("a").encode([Payload(data=b"x")])
    new = await codec("b").encode([Payload(data=b"y")])
    assert new[0].metadata[KEY_ID_METADATA] == b"b"
    assert [p.data for p in await codec("b").decode([*old, *new])] == [b"x", b"y"]


async def test_an_unknown_key_id_is_an_error_naming_it() -> None:
    sealed = await EncryptionCodec({"retired": KEY_A}, "retired").encode([Payload(data=b"x")])
    with pytest.raises(UnknownKeyError, match=r"'retired'.*its keys: a, b"):
        await codec().decode(sealed)


async def test_a_tampered_payload_or_a_swapped_key_id_does_not_open() -> None:
    [sealed] = await codec().encode([Payload(data=b"x")])
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1]))
    with pytest.raises(CodecError, match="altered"):
        await codec().decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"b"}, data=sealed.data)
    with pytest.raises(CodecError, match="does not open"):
        await codec().decode([relabelled])
    with pytest.raises(CodecError, match="truncated"):
        await codec().decode([Payload(metadata=sealed.metadata, data=b"short")])


async def test_clear_payloads_written_before_encryption_still_read() -> None:
    clear = Payload(metadata={"encoding": b"json/plain"}, data=b'{"a": 1}')
    assert await codec().decode([clear]) == [clear]


async def test_failure_messages_and_stack_traces_are_sealed_too() -> None:
    converter = codec_data_converter(codec())
    failure = Failure()
    try:
        raise ApplicationError(f"disk full on {CANARY}")
    except ApplicationError as err:
        await converter.encode_failure(err, failure)
    assert failure.message == "Encoded failure"
    assert CANARY not in failure.stack_trace
    assert CANARY.encode() not in failure.SerializeToString()
    assert CANARY in str(await converter.decode_failure(failure))


def test_no_keys_means_no_encryption_and_the_plain_converter() -> None:
    assert data_converter_from_env({}).payload_codec is None


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"AIOPS_CODEC_CURRENT": "a"}, "refusing to write in clear text"),
        ({"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_CODEC_MISSING"}, "AIOPS_TEST_CODEC_MISSING is not set"),
        ({"AIOPS_CODEC_KEYS": "a=file:/nonexistent/key"}, "cannot read secret file"),
        ({"AIOPS_CODEC_KEYS": "a=" + "00" * 32}, "not a reference"),
        ({"AIOPS_CODEC_KEYS": "just-a-word"}, "is not id=reference"),
        ({"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_SHORT_KEY"}, "16 bytes; AES-256 needs 32"),
        ({"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_NOT_A_KEY"}, "not a key"),
        ({"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_KEY_A,a=env:AIOPS_TEST_KEY_A"}, "listed twice"),
        ({"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_KEY_A", "AIOPS_CODEC_CURRENT": "z"}, "'z' is not among"),
        ({"AIOPS_CODEC_KEYS": " , "}, "lists no keys"),
    ],
)
def test_a_wrong_setting_is_a_clear_error_at_start(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], problem: str
) -> None:
    monkeypatch.setenv("AIOPS_TEST_KEY_A", new_key())
    monkeypatch.setenv("AIOPS_TEST_SHORT_KEY", base64.b64encode(b"x" * 16).decode())
    monkeypatch.setenv("AIOPS_TEST_NOT_A_KEY", "correct horse battery staple")
    with pytest.raises(CodecConfigError, match=problem):
        data_converter_from_env(environ)


def test_keys_come_from_env_and_file_references_in_hex_or_base64(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIOPS_TEST_KEY_HEX", KEY_A.hex())
    (tmp_path / "k2").write_text(base64.urlsafe_b64encode(KEY_B).decode().rstrip("=") + "\n")
    keys = keys_from_env({"AIOPS_CODEC_KEYS": f"k1=env:AIOPS_TEST_KEY_HEX, k2=file:{tmp_path}/k2"})
    assert keys is not None
    assert dict(keys.keys) == {"k1": KEY_A, "k2": KEY_B}
    assert keys.current == "k1"  # the first listed, unless AIOPS_CODEC_CURRENT says
    assert load_keys(f"k1=env:AIOPS_TEST_KEY_HEX,k2=file:{tmp_path}/k2", "k2").current == "k2"
    assert parse_key(new_key(), "new") != parse_key(new_key(), "new")


def test_a_token_is_stored_only_as_its_hash_line() -> None:
    token, line = new_token("alice")
    assert token not in line
    assert parse_hash_lines(f"# the team\n{line}\n", "T") == {
        "alice": hashlib.sha256(token.encode()).digest()
    }
    with pytest.raises(CodecConfigError, match="entry 1 is not a hash line") as refused:
        parse_hash_lines(token, "T")
    assert token[:16] not in str(refused.value)  # a token pasted by mistake is not echoed
    with pytest.raises(CodecConfigError, match="not a token name"):
        new_token("alice smith")


# ----- the codec server, served by the gateway --------------------------------------------------


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    alice, alice_line = new_token("alice")
    _, ci_line = new_token("ci")
    (tmp_path / "tokens").write_text(f"{alice_line}\n{ci_line}\n")
    monkeypatch.setenv("AIOPS_TEST_KEY_A", base64.b64encode(KEY_A).decode())
    monkeypatch.setenv("AIOPS_CODEC_KEYS", "a=env:AIOPS_TEST_KEY_A")
    monkeypatch.setenv("AIOPS_CODEC_SERVER_TOKENS", f"file:{tmp_path}/tokens")
    monkeypatch.setenv("AIOPS_CODEC_SERVER_ORIGINS", f"{WEB_UI}/")
    monkeypatch.setenv("AIOPS_CODEC_SERVER_MAX_BYTES", "4096")
    return {"alice": alice}


@pytest_asyncio.fixture
async def gateway_url(tokens: dict[str, str], tmp_path: Path) -> AsyncIterator[str]:
    routes = tmp_path / "gateway.yaml"
    routes.write_text(json.dumps({"version": 1, "sources": {"default": {"auth": {"type": "none"}}}}))

    async def no_temporal() -> object:
        raise OSError("no Temporal in this test")

    gateway = Gateway(routes, Connector(no_temporal), reload_every=0)  # type: ignore[arg-type]
    async with running(gateway) as server:
        yield server.url


def payloads_json(*payloads: Payload) -> dict[str, object]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


async def test_the_codec_server_encodes_and_decodes_for_a_token_holder(
    gateway_url: str, tokens: dict[str, str]
) -> None:
    clear = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CANARY).encode())
    auth = {"Authorization": f"Bearer {tokens['alice']}", "X-Namespace": "default", "Origin": WEB_UI}
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        encoded = await http.post("/codec/encode", json=payloads_json(clear), headers=auth)
        assert encoded.status_code == 200, encoded.text
        assert encoded.headers["access-control-allow-origin"] == WEB_UI
        [sealed] = encoded.json()["payloads"]
        assert base64.b64decode(sealed["metadata"]["encoding"]) == ENCODING
        assert CANARY not in encoded.text
        decoded = await http.post("/codec/decode", json=encoded.json(), headers=auth)
        assert decoded.status_code == 200, decoded.text
        [opened] = decoded.json()["payloads"]
        assert json.loads(base64.b64decode(opened["data"])) == CANARY
        assert base64.b64decode(opened["metadata"]["encoding"]) == b"json/plain"
        # A clear payload (a history from before encryption) comes back as it is.
        passthrough = await http.post("/codec/decode", json=payloads_json(clear), headers=auth)
        assert passthrough.json() == payloads_json(clear)


async def test_the_codec_server_refuses_with_one_line_and_counts(
    gateway_url: str, tokens: dict[str, str]
) -> None:
    [sealed] = await codec().encode([Payload(data=json.dumps(CANARY).encode())])
    body = payloads_json(sealed)
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        for headers, status, error in (
            ({}, 401, "missing Authorization"),
            ({"Authorization": "Basic YWxpY2U6eA=="}, 401, "must be 'Bearer"),
            ({"Authorization": "Bearer aiops-codec-guess"}, 401, "bad codec server token"),
            ({"Authorization": f"Bearer {tokens['alice']}x"}, 401, "bad codec server token"),
            (
                {"Authorization": f"Bearer {tokens['alice']}", "Origin": "https://evil.example"},
                403,
                "origin 'https://evil.example' is not allowed",
            ),
        ):
            answer = await http.post("/codec/decode", json=body, headers=headers)
            assert (answer.status_code, list(answer.json())) == (status, ["error"]), answer.text
            assert error in answer.json()["error"]
            assert CANARY not in answer.text
            assert "\n" not in answer.json()["error"]
        auth = {"Authorization": f"Bearer {tokens['alice']}"}
        big = await http.post("/codec/decode", content=b"{" + b" " * 5000 + b"}", headers=auth)
        assert big.status_code == 413 and "over the limit of 4096" in big.json()["error"]
        bad = await http.post("/codec/decode", content=b'{"payloads": 3}', headers=auth)
        assert bad.status_code == 400 and "not a Payloads JSON body" in bad.json()["error"]
        # A payload sealed with a key the gateway does not have: the id is named.
        [other] = await EncryptionCodec({"old": KEY_B}, "old").encode([Payload(data=b"x")])
        unknown = await http.post("/codec/decode", json=payloads_json(other), headers=auth)
        assert unknown.status_code == 422 and "key 'old'" in unknown.json()["error"]
        metrics = (await http.get("/metrics")).text
    assert 'aiops_gateway_codec_requests_total{code="401",operation="decode"} 4.0' in metrics
    assert 'aiops_gateway_codec_requests_total{code="403",operation="decode"} 1.0' in metrics
    assert 'aiops_gateway_codec_requests_total{code="413",operation="decode"} 1.0' in metrics


async def test_the_codec_server_answers_the_web_ui_preflight(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        preflight = await http.options(
            "/codec/decode",
            headers={
                "Origin": WEB_UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == WEB_UI
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= {h.strip() for h in allowed.split(",")}
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-credentials"] == "true"
        refused = await http.options(
            "/codec/decode",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers


def test_the_codec_server_is_off_without_tokens_and_refuses_tokens_without_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIOPS_CODEC_KEYS", raising=False)
    monkeypatch.delenv("AIOPS_CODEC_SERVER_TOKENS", raising=False)
    assert check_settings() is None
    _, line = new_token("alice")
    with pytest.raises(CodecConfigError, match="encryption is off"):
        CodecServerSettings.from_env({"AIOPS_CODEC_SERVER_TOKENS": line})
    monkeypatch.setenv("AIOPS_TEST_KEY_A", new_key())
    with pytest.raises(CodecConfigError, match="never put the token itself"):
        CodecServerSettings.from_env(
            {"AIOPS_CODEC_KEYS": "a=env:AIOPS_TEST_KEY_A", "AIOPS_CODEC_SERVER_TOKENS": "a-plain-token"}
        )
