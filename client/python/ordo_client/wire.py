"""ordo's wire protocol (version 6), encoded and decoded by hand.

Every frame is a 4-byte little-endian payload length followed by the
postcard encoding of one message. Postcard writes unsigned integers wider
than a byte as LEB128 varints, signed ones zigzagged first, `u8` and
`bool` as one byte, fixed-size byte arrays as their bytes, `String` and
`Vec` as a varint length then the items, `Option` as a 0/1 byte then the
value, structs and tuples as their fields in order, and enums as the
varint index of the variant followed by its fields.

The messages mirror `client/src/protocol.rs`; the variant indexes below
must stay in the order of the Rust enums. Everything that comes from the
socket is treated as hostile: lengths are checked against the bytes left
before anything is sliced, and any inconsistency raises
:class:`MalformedFrame`.

This module is pure: it does no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import FrameTooLarge, MalformedFrame

MAGIC = b"ORDO"
PROTOCOL_VERSION = 6
FRAME_HEADER_BYTES = 4
#: Largest frame payload accepted by default (as the Rust client).
FRAME_BYTES_MAX_DEFAULT = 17 << 20
#: Largest frame read or written before the handshake is done.
HANDSHAKE_FRAME_BYTES_MAX = 4 << 10
#: High 64 bits of a registered session's client id (ASCII ``ordosess``).
SESSION_CLIENT_ID_TAG = int.from_bytes(b"ordosess", "big")

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
U128_MAX = (1 << 128) - 1

# Encoding
ENCODING_POSTCARD = 0
ENCODING_JSON = 1

# RequestBody variants
REQ_CALL = 0
REQ_DEPLOY = 1
REQ_STATUS = 2
REQ_PROCEDURES = 3
REQ_READ = 4
REQ_SESSION = 5
REQ_DESCRIBE = 6
REQ_BACKUP = 7

# SessionRequest variants
SESSION_REGISTER = 0
SESSION_END = 1

# RefusalReason (of a Welcome) variants
REFUSAL_REASONS = ("BadHandshake", "Unauthorized", "TooManyConnections")
# RequestRefusal variants
REQUEST_REFUSALS = (
    "Overloaded",
    "Unauthorized",
    "BadRequest",
    "DeployRejected",
    "Unavailable",
    "BadArguments",
)


# ---------------------------------------------------------------- encoding


def _varint(value: int, max_value: int) -> bytes:
    if value < 0 or value > max_value:
        raise ValueError(f"{value} does not fit the integer type (max {max_value})")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def enc_u32(value: int) -> bytes:
    return _varint(value, U32_MAX)


def enc_u64(value: int) -> bytes:
    return _varint(value, U64_MAX)


def enc_u128(value: int) -> bytes:
    return _varint(value, U128_MAX)


def enc_bytes(value: bytes) -> bytes:
    return enc_u64(len(value)) + bytes(value)


def enc_str(value: str) -> bytes:
    return enc_bytes(value.encode("utf-8"))


def enc_opt_str(value: Optional[str]) -> bytes:
    return b"\x00" if value is None else b"\x01" + enc_str(value)


def encode_hello(client_id: int, token: Optional[str]) -> bytes:
    """The payload of the client's first frame."""
    return MAGIC + enc_u32(PROTOCOL_VERSION) + enc_u128(client_id) + enc_opt_str(token)


def body_call(procedure: str, encoding: int, args: bytes) -> bytes:
    # `signature: None`: JSON calls are checked by the server against the
    # procedure's schema at every depth, and carry no fingerprint.
    return (
        enc_u32(REQ_CALL)
        + enc_str(procedure)
        + enc_u32(encoding)
        + enc_bytes(args)
        + b"\x00"
    )


def body_deploy(name: str, wasm: bytes, admin_token: Optional[str], reset_tables=()) -> bytes:
    out = enc_u32(REQ_DEPLOY) + enc_str(name) + enc_bytes(wasm) + enc_opt_str(admin_token)
    out += enc_u64(len(reset_tables))
    for table in reset_tables:
        out += enc_str(table)
    return out


def body_status() -> bytes:
    return enc_u32(REQ_STATUS)


def body_procedures() -> bytes:
    return enc_u32(REQ_PROCEDURES)


def body_read(procedure: str, encoding: int, args: bytes, min_position: int) -> bytes:
    return (
        enc_u32(REQ_READ)
        + enc_str(procedure)
        + enc_u32(encoding)
        + enc_bytes(args)
        + enc_u64(min_position)
    )


def body_session(change: int) -> bytes:
    return enc_u32(REQ_SESSION) + enc_u32(change)


def encode_request(request_id: int, acked_below: int, body: bytes) -> bytes:
    return enc_u64(request_id) + enc_u64(acked_below) + body


def frame(payload: bytes, frame_bytes_max: int) -> bytes:
    """Prefixes `payload` with its length; refuses one over the limit."""
    if len(payload) > frame_bytes_max:
        raise FrameTooLarge(len(payload), frame_bytes_max, outgoing=True)
    return struct.pack("<I", len(payload)) + payload


def frame_payload_bytes(header: bytes, frame_bytes_max: int) -> int:
    """The payload length a frame header announces, checked against the
    limit before any memory is reserved for it."""
    if len(header) != FRAME_HEADER_BYTES:
        raise MalformedFrame(f"a frame header is {FRAME_HEADER_BYTES} bytes, got {len(header)}")
    (length,) = struct.unpack("<I", header)
    if length > frame_bytes_max:
        raise FrameTooLarge(length, frame_bytes_max)
    return length


# ---------------------------------------------------------------- decoding


class Reader:
    """A cursor over one payload; every read checks the bytes left."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count < 0 or count > self.left():
            raise MalformedFrame(
                f"needs {count} more bytes at offset {self.pos}, the payload has {self.left()}"
            )
        out = bytes(self.data[self.pos : self.pos + count])
        self.pos += count
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def varint(self, bits: int) -> int:
        # Postcard's limit: ceil(bits / 7) bytes, and the last one may not
        # carry bits beyond the type's width.
        max_bytes = (bits + 6) // 7
        value = 0
        for index in range(max_bytes):
            if self.pos >= len(self.data):
                raise MalformedFrame(f"a varint runs past the end of the payload (offset {self.pos})")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                if value >> bits:
                    raise MalformedFrame(f"a varint overflows u{bits}")
                return value
        raise MalformedFrame(f"a varint is longer than a u{bits} can be")

    def u32(self) -> int:
        return self.varint(32)

    def u64(self) -> int:
        return self.varint(64)

    def usize(self) -> int:
        return self.varint(64)

    def boolean(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise MalformedFrame(f"a bool is 0 or 1, got {byte}")
        return byte == 1

    def option_tag(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise MalformedFrame(f"an Option tag is 0 or 1, got {byte}")
        return byte == 1

    def byte_vec(self) -> bytes:
        length = self.usize()
        if length > self.left():
            raise MalformedFrame(
                f"a byte string of {length} bytes is announced, the payload has {self.left()} left"
            )
        return self.take(length)

    def string(self) -> str:
        raw = self.byte_vec()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise MalformedFrame(f"a string is not UTF-8: {err}") from None

    def opt_u64(self) -> Optional[int]:
        return self.u64() if self.option_tag() else None

    def opt_string(self) -> Optional[str]:
        return self.string() if self.option_tag() else None

    def seq_len(self, min_item_bytes: int = 1) -> int:
        """A sequence length, checked against the bytes left (every item
        takes at least `min_item_bytes`), so a hostile count cannot make the
        decoder loop or allocate beyond the payload."""
        length = self.usize()
        if length * min_item_bytes > self.left():
            raise MalformedFrame(
                f"a sequence of {length} items is announced, the payload has {self.left()} bytes left"
            )
        return length

    def variant(self, names) -> int:
        index = self.u32()
        if index >= len(names):
            raise MalformedFrame(f"unknown {names[0]}.. variant {index}")
        return index

    def end(self) -> None:
        if self.left():
            raise MalformedFrame(f"{self.left()} trailing bytes")


@dataclass
class Welcome:
    accepted: bool
    version: int = 0
    position: int = 0
    node_id: Optional[int] = None
    reason: str = ""
    message: str = ""


def decode_welcome(payload: bytes) -> Welcome:
    r = Reader(payload)
    tag = r.u32()
    if tag == 0:
        welcome = Welcome(True, version=r.u32(), position=r.u64(), node_id=r.opt_u64())
    elif tag == 1:
        reason = REFUSAL_REASONS[r.variant(REFUSAL_REASONS)]
        welcome = Welcome(False, reason=reason, message=r.string())
    else:
        raise MalformedFrame(f"unknown Welcome variant {tag}")
    r.end()
    return welcome


@dataclass
class StatusInfo:
    """A node's status (any node answers it)."""

    position: int
    state_hash: str
    chain_hash: str
    keys: int
    log_records: int
    node_id: Optional[int]
    role: str
    term: int
    leader: Optional[int]
    commit: int
    applied: int
    # Version 5:
    partitions: int = 1
    sessions: int = 0
    stored_result_bytes: int = 0
    snapshot_position: Optional[int] = None
    log_bytes: int = 0


@dataclass
class ProcedureDescription:
    name: str
    module: str
    params: Optional[list]  # [(name, type)] if the module describes them
    read_only: bool


@dataclass
class Response:
    """One decoded answer. `kind` names the ResponseBody variant; `fields`
    holds that variant's fields by their Rust names."""

    request_id: int
    kind: str
    fields: dict = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


RESPONSE_KINDS = (
    "Committed",
    "Aborted",
    "Deployed",
    "Status",
    "Procedures",
    "Refused",
    "NotLeader",
    "ReadDone",
    "SignatureMismatch",
    "Described",
    "Backup",
    "Behind",
    "Rows",
    "Logs",
)


def _status(r: Reader) -> StatusInfo:
    return StatusInfo(
        position=r.u64(),
        state_hash=r.string(),
        chain_hash=r.string(),
        keys=r.u64(),
        log_records=r.u64(),
        node_id=r.opt_u64(),
        role=r.string(),
        term=r.u64(),
        leader=r.opt_u64(),
        commit=r.u64(),
        applied=r.u64(),
        partitions=r.u32(),
        sessions=r.u64(),
        stored_result_bytes=r.u64(),
        snapshot_position=r.opt_u64(),
        log_bytes=r.u64(),
    )


def _procedure(r: Reader) -> ProcedureDescription:
    name = r.string()
    module = r.string()
    params = None
    if r.option_tag():
        params = [(r.string(), r.string()) for _ in range(r.seq_len(2))]
    return ProcedureDescription(name, module, params, r.boolean())


def decode_response(payload: bytes) -> Response:
    """Decodes one Response payload. `Described`, `Backup`, `Rows` and `Logs` answers (to
    requests this client never sends) and the schema inside a
    `SignatureMismatch` are not decoded: they are kept as raw bytes."""
    r = Reader(payload)
    request_id = r.u64()
    index = r.u32()
    if index >= len(RESPONSE_KINDS):
        raise MalformedFrame(f"unknown response variant {index}")
    kind = RESPONSE_KINDS[index]
    f: dict = {}
    if kind == "Committed":
        f = {"seq": r.u64(), "result": r.byte_vec(), "fuel_used": r.u64()}
    elif kind == "Aborted":
        f = {"seq": r.u64(), "kind": r.string(), "message": r.string(), "fuel_used": r.u64()}
    elif kind == "Deployed":
        f = {"seq": r.u64(), "name": r.string(), "sha256": r.string()}
        f["procedures"] = [r.string() for _ in range(r.seq_len())]
    elif kind == "Status":
        f = {"status": _status(r)}
    elif kind == "Procedures":
        f = {"procedures": [_procedure(r) for _ in range(r.seq_len(4))]}
    elif kind == "Refused":
        reason = REQUEST_REFUSALS[r.variant(REQUEST_REFUSALS)]
        f = {"reason": reason, "message": r.string()}
    elif kind == "NotLeader":
        f = {"leader": r.opt_string()}
    elif kind == "ReadDone":
        f = {"position": r.u64(), "result": r.byte_vec()}
    elif kind == "SignatureMismatch":
        f = {"message": r.string(), "schema": r.take(r.left())}
    elif kind in ("Described", "Backup", "Rows", "Logs"):
        f = {"raw": r.take(r.left())}
    elif kind == "Behind":
        f = {"applied": r.u64(), "wanted": r.u64()}
    r.end()
    return Response(request_id, kind, f)


def decode_request(payload: bytes) -> tuple:
    """(request_id, acked_below, body variant index) of a request payload;
    for tests and tools that look at what a client sends."""
    r = Reader(payload)
    return r.u64(), r.u64(), r.u32()


def split_addr(addr: str) -> tuple:
    """`host:port` (or `[v6]:port`) as (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{addr!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)
