"""Unit tests of the federated channel: MAC, replay guard, malformed and oversized messages."""

from __future__ import annotations

import http.client
import secrets

import numpy as np
import pytest

from orchard.federated.channel import (
    ChannelError,
    Message,
    PartyServer,
    PeerClient,
    ReplayGuard,
    decode,
    encode,
    open_sealed,
    seal,
)

KEY = secrets.token_bytes(32)


def _echo(message: Message) -> Message:
    return Message("echo", fields={"n": len(message.arrays.get("x", []))})


def test_round_trip_keeps_fields_and_arrays() -> None:
    # given a message with fields and arrays
    message = Message("k", fields={"a": 1}, arrays={"x": np.arange(5, dtype="<f8")}, seq=1, nonce="n" * 32)
    # when encoded and decoded
    back = decode(encode(message))
    # then nothing is lost
    assert back.fields == {"a": 1} and back.kind == "k", "fields survive"
    assert np.array_equal(back.arrays["x"], np.arange(5.0)), "arrays survive"


def test_replayed_and_tampered_messages_are_rejected() -> None:
    # given a sealed message accepted once
    guard = ReplayGuard()
    body, tag = seal(KEY, Message("k", session="s", sender="guest", seq=1))
    open_sealed(KEY, body, tag, guard)
    # when the same bytes arrive again, then they are a replay
    with pytest.raises(ChannelError, match="replay"):
        open_sealed(KEY, body, tag, guard)
    # when one byte is flipped, then the MAC fails
    flipped = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(ChannelError, match="MAC"):
        open_sealed(KEY, flipped, tag, ReplayGuard())
    # when a lower sequence number comes with a fresh nonce, then it is rejected too
    old, old_tag = seal(KEY, Message("k", session="s", sender="guest", seq=1))
    with pytest.raises(ChannelError, match="sequence"):
        open_sealed(KEY, old, old_tag, guard)


@pytest.mark.parametrize(
    "body", [b"", b"XXXX\x00\x00\x00\x02{}", b"ORC1\x00\x00\x00\x05{bad}", b"ORC1\xff\xff\xff\xff"]
)
def test_malformed_bodies_are_rejected(body: bytes) -> None:
    # given garbage, when decoded, then a ChannelError names it malformed
    with pytest.raises(ChannelError, match="malformed"):
        decode(body)


def test_blob_with_forbidden_dtype_is_rejected() -> None:
    # given a body whose blob claims an object dtype (pickle-like), when decoded, then it is refused
    good = encode(Message("k", arrays={"x": np.zeros(2)}, nonce="n" * 32))
    evil = good.replace(b'"<f8"', b'"|O8"')
    with pytest.raises(ChannelError):
        decode(evil)


def test_server_rejects_replay_and_oversize_over_http() -> None:
    # given a live server on loopback
    server = PartyServer(KEY, "host", _echo, max_bytes=10_000).start()
    try:
        client = PeerClient(KEY, "guest", "127.0.0.1", server.port, session="s1")
        reply = client.call(Message("echo", arrays={"x": np.zeros(3)}))
        assert reply.fields["n"] == 3, "a valid message is answered"
        # when the same sealed bytes are posted twice, then the second is refused
        body, tag = seal(KEY, Message("echo", session="s1", sender="guest", seq=99))
        assert client.raw_post(body, tag)[0] == 200, "first delivery accepted"
        status, text = client.raw_post(body, tag)
        assert status == 400 and b"replay" in text, f"replay must be refused, got {status} {text!r}"
        # when a message is over the size limit, then it is refused before being read
        with pytest.raises(ChannelError, match="limit"):
            client.call(Message("echo", arrays={"x": np.zeros(5_000)}))
        client.close()
        # when the MAC key is wrong, then the server refuses
        stranger = PeerClient(secrets.token_bytes(32), "guest", "127.0.0.1", server.port, session="s2")
        with pytest.raises(ChannelError, match="MAC"):
            stranger.call(Message("echo"))
        stranger.close()
    finally:
        server.shutdown()


def test_dead_peer_gives_a_clear_error() -> None:
    # given a port nobody listens on, when called, then the error names the peer and the step
    server = PartyServer(KEY, "host", _echo).start()
    port = server.port
    server.shutdown()
    client = PeerClient(KEY, "guest", "127.0.0.1", port, session="s", timeout_seconds=2)
    with pytest.raises(ChannelError, match="stopped responding during training"):
        client.call(Message("echo"), "training epoch 1")
    assert isinstance(http.client.HTTPConnection, type), "stdlib client in use"
