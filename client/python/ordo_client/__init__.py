"""ordo_client: a pure-Python client for ordo, the deterministic
stored-procedure transaction engine.

    from ordo_client import Client
    client = Client("127.0.0.1:7878")
    client.call("incr", {"key": "a", "by": 1})                 # -> 1
    client.call_with_position("incr", {"key": "a", "by": 1})   # -> Result(value=2, seq=...)

:class:`Client` is synchronous, :class:`AsyncClient` its asyncio twin
(pipelined). Both speak protocol version 6 (see ``wire``), reuse one
connection, register a session and resend a request with the same ids
after a lost connection (exactly once), follow a cluster's leader, and
raise a subclass of :class:`OrdoError` for every failure.
"""

from ._core import Deployed, Result
from .aio import AsyncClient
from .client import Client
from .errors import (
    Aborted,
    BadArguments,
    BadRequest,
    Behind,
    ConnectError,
    ConnectionLost,
    ConnectionRefusedByServer,
    DecodeError,
    DeployRejected,
    FrameTooLarge,
    HandshakeError,
    MalformedFrame,
    NoServerReachable,
    NotLeader,
    OrdoError,
    Overloaded,
    ProtocolViolation,
    ResultNotRetained,
    SessionExpired,
    SignatureMismatch,
    Timeout,
    TlsError,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnknownProcedure,
)
from .wire import PROTOCOL_VERSION, ProcedureDescription, StatusInfo

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "Deployed",
    "Result",
    "StatusInfo",
    "ProcedureDescription",
    "PROTOCOL_VERSION",
    "OrdoError",
    "Aborted",
    "BadArguments",
    "BadRequest",
    "Behind",
    "ConnectError",
    "ConnectionLost",
    "ConnectionRefusedByServer",
    "DecodeError",
    "DeployRejected",
    "FrameTooLarge",
    "HandshakeError",
    "MalformedFrame",
    "NoServerReachable",
    "NotLeader",
    "Overloaded",
    "ProtocolViolation",
    "ResultNotRetained",
    "SessionExpired",
    "SignatureMismatch",
    "Timeout",
    "TlsError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnknownProcedure",
]
