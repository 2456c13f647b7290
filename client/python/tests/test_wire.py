"""The hand-written postcard codec, byte for byte (the expected bytes are
the ones `client/src/protocol.rs` pins in its own tests)."""

import pytest

from ordo_client import errors, wire


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
        (2**64 - 1, b"\xff" * 9 + b"\x01"),
    ],
)
def test_varints(value, encoded):
    assert wire.enc_u64(value) == encoded
    assert wire.Reader(encoded).u64() == value


def test_varint_limits():
    assert len(wire.enc_u128(2**128 - 1)) == 19
    assert wire.Reader(wire.enc_u128(2**128 - 1)).varint(128) == 2**128 - 1
    with pytest.raises(ValueError):
        wire.enc_u32(2**32)
    with pytest.raises(ValueError):
        wire.enc_u64(-1)
    with pytest.raises(errors.MalformedFrame, match="overflows"):
        wire.Reader(b"\xff\xff\xff\xff\x1f").u32()
    with pytest.raises(errors.MalformedFrame, match="longer"):
        wire.Reader(b"\x80" * 6).u32()


def test_bodies_keep_their_variant_indexes():
    assert wire.body_status() == b"\x02"
    assert wire.body_procedures() == b"\x03"
    assert wire.body_session(wire.SESSION_REGISTER) == b"\x05\x00"
    assert wire.body_session(wire.SESSION_END) == b"\x05\x01"
    call = wire.body_call("incr", wire.ENCODING_JSON, b"{}")
    # variant 0, "incr", Json (1), 2 bytes of args, no signature
    assert call == b"\x00\x04incr\x01\x02{}\x00"
    read = wire.body_read("get", wire.ENCODING_JSON, b"{}", 300)
    assert read == b"\x04\x03get\x01\x02{}\xac\x02"
    deploy = wire.body_deploy("kv", b"\x00asm", "tok", ["t"])
    assert deploy == b"\x01\x02kv\x04\x00asm\x01\x03tok\x01\x01t"


def test_responses_decode():
    behind = wire.decode_response(b"\x07\x0b\x01\x02")
    assert (behind.request_id, behind.kind, behind.applied, behind.wanted) == (7, "Behind", 1, 2)
    refused = wire.decode_response(b"\x01\x05\x00\x00")
    assert (refused.kind, refused.reason, refused.message) == ("Refused", "Overloaded", "")
    not_leader = wire.decode_response(b"\x01\x06\x00")
    assert not_leader.kind == "NotLeader" and not_leader.leader is None
    named = wire.decode_response(b"\x01\x06\x01\x0d10.0.0.2:7878")
    assert named.leader == "10.0.0.2:7878"
    aborted = wire.decode_response(b"\x02\x01\x09\x04user\x02no\x2a")
    assert aborted.fields == {"seq": 9, "kind": "user", "message": "no", "fuel_used": 42}
    committed = wire.decode_response(b"\x03\x00\x05\x01x\x07")
    assert committed.fields == {"seq": 5, "result": b"x", "fuel_used": 7}


def test_hello_and_welcome():
    hello = wire.encode_hello(1, None)
    assert hello == b"ORDO\x06\x01\x00"
    accepted = wire.decode_welcome(b"\x00\x05\x2a\x01\x03")
    assert accepted.accepted and (accepted.version, accepted.position, accepted.node_id) == (5, 42, 3)
    refused = wire.decode_welcome(b"\x01\x01\x03bad")
    assert not refused.accepted and refused.reason == "Unauthorized" and refused.message == "bad"
    with pytest.raises(errors.MalformedFrame):
        wire.decode_welcome(b"\x01\x05\x00")


def test_frames():
    assert wire.frame(b"abc", 3) == b"\x03\x00\x00\x00abc"
    with pytest.raises(errors.FrameTooLarge) as caught:
        wire.frame(b"abcd", 3)
    assert caught.value.outgoing and not caught.value.outcome_unknown
    assert wire.frame_payload_bytes(b"\x00\x01\x00\x00", 256) == 256
    with pytest.raises(errors.FrameTooLarge):
        wire.frame_payload_bytes(b"\x01\x01\x00\x00", 256)


def test_addresses():
    assert wire.split_addr("127.0.0.1:7878") == ("127.0.0.1", 7878)
    assert wire.split_addr("[::1]:7878") == ("::1", 7878)
    assert wire.split_addr("db.internal:1") == ("db.internal", 1)
    for bad in ("nohost", ":1", "a:", "a:99999", "a:x"):
        with pytest.raises(ValueError):
            wire.split_addr(bad)


def test_retryable_flags():
    assert errors.Overloaded().retryable
    assert errors.Unavailable("x").retryable
    assert errors.Behind(1, 2).retryable
    assert errors.ConnectError("a:1", "refused").retryable
    assert not errors.Unauthorized().retryable
    assert not errors.BadRequest("x").retryable
    assert not errors.Aborted(1, "user", "x").retryable
    assert not errors.SessionExpired("x").retryable
    assert errors.ConnectionLost(False).retryable and not errors.ConnectionLost(True).retryable
    assert errors.ConnectionLost(True).outcome_unknown
    assert errors.Timeout(1.0, True).outcome_unknown and not errors.Timeout(1.0, True).retryable
    assert errors.ConnectionRefusedByServer("TooManyConnections", "").retryable
    assert not errors.ConnectionRefusedByServer("BadHandshake", "").retryable
    for cls in (errors.UnknownProcedure, errors.MalformedFrame, errors.NotLeader, errors.TlsError):
        assert issubclass(cls, errors.OrdoError)
    assert issubclass(errors.UnknownProcedure, errors.Aborted)
