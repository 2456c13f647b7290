"""The exceptions an ordo client raises.

Every one derives from :class:`OrdoError`. Its ``retryable`` attribute
says whether the request certainly did not run and the same operation may
be tried again later (``Overloaded``, ``Unavailable``, ``Behind``, a
connection that could not be opened, ...). ``outcome_unknown`` says the
request may or may not have run (a connection lost for good, a timeout, a
server that broke the protocol): check its effect before retrying it.
Everything else means the request ran and failed (an abort, sequenced at
``seq``, wrote nothing) or was refused as it stands (fix it first).
"""

from __future__ import annotations

from typing import Optional


class OrdoError(Exception):
    """The base of every error the client raises."""

    retryable = False
    outcome_unknown = False


# ------------------------------------------------------------ connections


class ConnectError(OrdoError):
    """The TCP connection (or TLS) could not be opened, or timed out.
    Nothing was sent."""

    retryable = True

    def __init__(self, addr: str, cause: str):
        self.addr = addr
        self.cause = cause
        super().__init__(f"cannot connect to {addr}: {cause}; is `ordo serve` running at {addr}?")


class NoServerReachable(ConnectError):
    """Several servers were listed and none accepted the connection."""

    def __init__(self, tried, last: OrdoError):
        self.tried = list(tried)
        self.last = last
        OrdoError.__init__(
            self, f"cannot connect to any of {', '.join(self.tried)}; the last one failed with: {last}"
        )
        self.addr = self.tried[-1] if self.tried else ""
        self.cause = str(last)


class TlsError(ConnectError):
    """The TLS handshake failed (unknown CA, a certificate that does not name
    the host, or a server that does not speak TLS)."""

    retryable = False


class HandshakeError(OrdoError):
    """The server did not answer the hello with a protocol-4 welcome."""

    def __init__(self, addr: str, message: str):
        self.addr = addr
        super().__init__(
            f"handshake with {addr} failed: {message}; check that it is `ordo serve` speaking protocol v5"
        )


class ConnectionRefusedByServer(OrdoError):
    """The server refused the connection at the handshake (`reason` is
    ``BadHandshake`` or ``TooManyConnections``; a bad client token is
    :class:`Unauthorized`)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        self.retryable = reason == "TooManyConnections"
        super().__init__(f"the server refused the connection ({reason}): {message}")


class ConnectionLost(OrdoError):
    """The connection was lost and every reconnect attempt failed."""

    def __init__(self, outcome_unknown: bool, detail: str = ""):
        self.outcome_unknown = outcome_unknown
        self.retryable = not outcome_unknown
        note = (
            "the request may or may not have run: check before retrying it"
            if outcome_unknown
            else "the request was never sent, so retrying it is safe once the server is reachable"
        )
        extra = f" ({detail})" if detail else ""
        super().__init__(f"the connection to the server was lost and reconnecting failed{extra}; {note}")


class Timeout(OrdoError):
    """No answer within the request timeout."""

    def __init__(self, after: float, outcome_unknown: bool):
        self.after = after
        self.outcome_unknown = outcome_unknown
        self.retryable = not outcome_unknown
        note = (
            "the request may or may not have run: check before retrying it"
            if outcome_unknown
            else "the request was never sent"
        )
        super().__init__(f"no answer within {after:g} s; {note}")


class ProtocolViolation(OrdoError):
    """The server sent something that is not ordo's protocol; the
    connection was closed and the request's outcome is unknown."""

    outcome_unknown = True


class MalformedFrame(ProtocolViolation):
    """A frame whose payload does not decode."""

    def __init__(self, message: str):
        self.detail = message
        super().__init__(f"the server broke the protocol (frame does not decode: {message})")


class FrameTooLarge(ProtocolViolation):
    """A frame over the size limit: announced by the server (the payload is
    never read), or a request too large to send (``outgoing``; it was not
    sent, so the outcome is known)."""

    def __init__(self, size: int, limit: int, outgoing: bool = False):
        self.size = size
        self.limit = limit
        self.outgoing = outgoing
        if outgoing:
            self.outcome_unknown = False
            super().__init__(
                f"the request is {size} bytes, over the {limit}-byte frame limit; it was not sent"
            )
        else:
            super().__init__(
                f"the server broke the protocol (a frame of {size} bytes is over the {limit}-byte limit)"
            )


class UnexpectedResponse(ProtocolViolation):
    """The server answered with a response of the wrong kind."""

    def __init__(self, expected: str, got: str):
        self.expected = expected
        self.got = got
        super().__init__(f"the server answered a {expected} request with {got}")


# ------------------------------------------------------------- refusals


class Unauthorized(OrdoError):
    """The server refused the client token (at connect) or the admin token
    (on a deploy)."""

    def __init__(self, message: str = ""):
        self.message = message
        super().__init__(
            "the server refused the credentials; pass the token it expects "
            f"(token= to connect, admin_token= to deploy){': ' + message if message else ''}"
        )


class Overloaded(OrdoError):
    """Too many requests in flight on the server; this one was not run."""

    retryable = True

    def __init__(self, message: str = ""):
        self.message = message
        super().__init__("the server is overloaded and did not run the request; retry after a short pause")


class BadRequest(OrdoError):
    """The request was malformed or over a server limit; it was not run."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"the server rejected the request: {message}")


class DeployRejected(OrdoError):
    """The module failed validation before reaching the log."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"the module was rejected: {message}")


class Unavailable(OrdoError):
    """The node is stopping or has failed; the request was not run."""

    retryable = True

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"the server is unavailable: {message}; the request was not run")


class NotLeader(OrdoError):
    """A follower answered and the client may not move (reconnects are
    off). The request was not run."""

    retryable = True

    def __init__(self, leader: Optional[str]):
        self.leader = leader
        where = f"the leader is at {leader}" if leader else "no leader is known"
        super().__init__(f"the server is not the cluster's leader ({where}) and did not run the request")


class Behind(OrdoError):
    """A stale read found no node at the position this client has already
    seen within the request timeout; nothing ran."""

    retryable = True

    def __init__(self, applied: int, wanted: int):
        self.applied = applied
        self.wanted = wanted
        super().__init__(
            f"the read wants position {wanted} or later but the node has executed only up to {applied}"
        )


class SignatureMismatch(OrdoError):
    """A checked call's argument types are not the procedure's."""

    def __init__(self, procedure: str, message: str):
        self.procedure = procedure
        self.message = message
        super().__init__(f"`{procedure}` was not called: {message}")


class BadArguments(OrdoError):
    """The arguments do not match the procedure's parameters. `seq` is the
    abort's sequence number, or None when the node refused them before
    logging them (they do not match the schema)."""

    def __init__(self, message: str, seq: Optional[int] = None):
        self.message = message
        self.seq = seq
        super().__init__(f"the procedure rejected its arguments: {message}")


# ---------------------------------------------------------------- aborts


class Aborted(OrdoError):
    """The procedure (or deploy) aborted at `seq` and wrote nothing. `kind`
    is the engine's stable abort kind (``user``, ``out_of_fuel``, ...)."""

    def __init__(self, seq: int, kind: str, message: str):
        self.seq = seq
        self.kind = kind
        self.message = message
        super().__init__(f"the transaction aborted at seq {seq} ({kind}): {message}; it wrote nothing")


class UnknownProcedure(Aborted):
    """No procedure of that name is deployed (an abort of kind
    ``unknown_procedure``)."""

    def __init__(self, procedure: str, seq: int, message: str):
        self.procedure = procedure
        Aborted.__init__(self, seq, "unknown_procedure", message)
        OrdoError.__init__(self, f"no procedure `{procedure}` is deployed ({message})")


class SessionExpired(OrdoError):
    """This client's session is not open on the server, so the request did
    not run now; every later request of this client fails the same way
    without being sent. A request resent after a reconnect may have run on
    its earlier attempt: make a new client and check before retrying."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"the client's session is no longer open on the server ({message}); create a new client")


class ResultNotRetained(OrdoError):
    """A retry of a request that ran once, at `seq`, whose outcome the
    server did not keep. Nothing ran again."""

    def __init__(self, seq: int, message: str):
        self.seq = seq
        self.message = message
        super().__init__(f"the request ran once, at seq {seq}, but its outcome was not kept for retries ({message})")


class DecodeError(OrdoError):
    """The call ran (at `seq`) but its result is not JSON."""

    def __init__(self, procedure: str, seq: int, message: str):
        self.procedure = procedure
        self.seq = seq
        super().__init__(f"`{procedure}` ran at seq {seq} but its result does not decode: {message}")


def abort_error(procedure: str, seq: int, kind: str, message: str) -> OrdoError:
    if kind == "unknown_procedure":
        return UnknownProcedure(procedure, seq, message)
    if kind == "bad_arguments":
        return BadArguments(message, seq)
    if kind == "session_expired":
        return SessionExpired(message)
    if kind == "result_not_retained":
        return ResultNotRetained(seq, message)
    return Aborted(seq, kind, message)


def refusal_error(reason: str, message: str) -> OrdoError:
    if reason == "Overloaded":
        return Overloaded(message)
    if reason == "Unauthorized":
        return Unauthorized(message)
    if reason == "BadRequest":
        return BadRequest(message)
    if reason == "DeployRejected":
        return DeployRejected(message)
    if reason == "Unavailable":
        return Unavailable(message)
    return BadArguments(message, None)
