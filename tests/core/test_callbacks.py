"""Callback delivery: HMAC signatures and retries, against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from zyrak8s_core import callbacks
from tests.fixtures.servers import free_port

SECRET = "s3cret"
PAYLOAD = {"job_id": "run-0123456789abcdef", "status": "succeeded", "exit_code": 0}


def deliver(url: str, **kwargs) -> bool:
    kwargs.setdefault("backoff", 0.01)
    return asyncio.run(callbacks.deliver(url, PAYLOAD, secret=SECRET, **kwargs))


def test_sign_and_verify() -> None:
    body = b'{"a": 1}'
    ts = str(int(time.time()))
    signature = callbacks.sign(SECRET, ts, body)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert callbacks.verify(SECRET, ts, body, signature)
    assert not callbacks.verify("other", ts, body, signature)
    assert not callbacks.verify(SECRET, ts, b'{"a": 2}', signature)
    assert not callbacks.verify(SECRET, str(int(ts) + 1), body, signature)
    old = str(int(time.time()) - 3600)
    assert not callbacks.verify(SECRET, old, body, callbacks.sign(SECRET, old, body))  # a replay of an old one


def check_signed(received) -> dict:
    headers = received.headers
    assert headers["content-type"] == "application/json"
    assert callbacks.verify(SECRET, headers["x-zyra-timestamp"], received.body, headers["x-zyra-signature"])
    return json.loads(received.body)


def test_one_signed_post_on_success(http_receiver) -> None:
    receiver = http_receiver()
    assert deliver(receiver.url) is True
    assert len(receiver.received) == 1
    assert check_signed(receiver.received[0]) == PAYLOAD
    assert receiver.received[0].path == "/hook"


def test_server_errors_are_retried_until_success(http_receiver) -> None:
    receiver = http_receiver([500, 503])
    assert deliver(receiver.url) is True
    assert len(receiver.received) == 3
    assert [check_signed(r) for r in receiver.received] == [PAYLOAD] * 3


@pytest.mark.parametrize("status", [408, 429])
def test_timeouts_and_throttling_are_retried(http_receiver, status: int) -> None:
    receiver = http_receiver([status])
    assert deliver(receiver.url) is True
    assert len(receiver.received) == 2


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_a_refusal_is_not_retried(http_receiver, status: int) -> None:
    receiver = http_receiver([status])
    assert deliver(receiver.url) is False
    assert len(receiver.received) == 1


def test_gives_up_after_max_attempts(http_receiver) -> None:
    receiver = http_receiver([500] * 10)
    assert deliver(receiver.url, max_attempts=3) is False
    assert len(receiver.received) == 3


def test_an_unreachable_receiver_is_retried_then_given_up() -> None:
    assert deliver(f"http://127.0.0.1:{free_port()}/hook", max_attempts=2, timeout=2) is False


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "example.org/hook", "http://", "javascript:alert(1)"])
def test_check_url_refuses_what_is_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        callbacks.check_url(url)


def test_check_url_accepts_http_and_https() -> None:
    for url in ("http://127.0.0.1:5678/webhook/abc", "https://n8n.example.org/webhook-waiting/1"):
        assert callbacks.check_url(url) == url
