//! `ordo serve --http-listen`: the HTTP/JSON API (docs/HTTP.md), and the
//! Prometheus endpoint of `--metrics-listen`, both on axum's router over
//! hyper's HTTP/1.1 server.
//!
//! The accept loop is our own (not `axum::serve`) so that every
//! connection is bounded the way the binary port's are: a connection
//! limit (refusals answered `503 too_many_connections`), a limit on
//! header bytes and header count, a time limit for a request's head (it
//! also closes idle keep-alive connections), and a time limit on a write
//! the client does not take (a slow reader). Inside, every request holds
//! one of a fixed number of in-flight slots from before its body is read
//! until its answer is ready (`503 overloaded` + `Retry-After` when none
//! is free); bodies are refused by their `Content-Length` before a byte of
//! them is read, read under a byte limit otherwise, and within the same
//! client time limit. The tokens are checked, in constant time, before
//! any body is read.
//!
//! A call goes to the node as the binary port sends it (a `RemoteCall`
//! through a session): the node's own in-flight limit and argument checks
//! apply unchanged. With an `Idempotency-Key` the call is sent under a
//! client id derived from the key, so the exactly-once table answers a
//! retry with the original outcome (see [`idempotency_client_id`]).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ordo_engine::{AbortKind, Outcome, ReadOutcome, TxOutcome};
use ordo_sequencer::entry::ArgsEncoding;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::node::{CallError, Node, NodeError, RemoteCall};
use crate::server::tokens_match;
use ordo_client::{rustls, tokio_rustls};
use ordo_sequencer::rate_limited::RateLimitedLog;

/// Default [`HttpConfig::requests_in_flight_max`].
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 128;
/// Default [`HttpConfig::connections_max`].
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Default [`HttpConfig::client_timeout`].
pub const CLIENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Deploys whose module bodies may be read and compiled at once; each
/// holds up to [`HttpConfig::deploy_body_bytes_max`]. More are answered
/// `503 overloaded`.
pub const DEPLOYS_IN_FLIGHT_MAX: usize = 2;
/// Bytes of a request's start line and headers together; more are
/// answered `431` by hyper, and the connection closed.
pub const HEADER_BYTES_MAX: usize = 16 << 10;
/// Header fields in one request; more are answered `431`.
pub const HEADERS_COUNT_MAX: usize = 64;
/// Bytes hyper buffers per connection while reading (the head, then body
/// chunks until the handler takes them).
const READ_BUFFER_BYTES_MAX: usize = 64 << 10;
/// Bytes of an `Idempotency-Key` (visible ASCII only).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;
/// Connections over the limit being answered `503` at once; past this
/// many, further ones are closed without a word.
const REFUSALS_IN_PROGRESS_MAX: usize = 64;
/// How long a refused connection may take to receive its `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Seconds an `overloaded`, `behind` or `not_leader` answer asks the
/// client to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 1;
/// Connections the metrics endpoint serves at once, and how long a
/// scraper may take to send its request.
const METRICS_CONNECTIONS_MAX: usize = 64;
const METRICS_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Each kind of repeated log line (accept failures, refusals) is printed
/// at most once per interval; the next one printed says how many were
/// left out.
const LOG_LINES_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Required (`Authorization: Bearer`) on every request, if set; the
    /// admin token is accepted in its place.
    pub client_token: Option<String>,
    /// Required for deploys, if set.
    pub admin_token: Option<String>,
    /// Requests being handled at once, from before their body is read to
    /// their answer; more are answered `503 overloaded` at once.
    pub requests_in_flight_max: usize,
    /// Open connections; more are answered `503 too_many_connections` and
    /// closed.
    pub connections_max: usize,
    /// Largest call body (the JSON arguments), in bytes: the engine's
    /// argument limit, which a larger body could never pass.
    pub call_body_bytes_max: usize,
    /// Largest deploy body (the module), in bytes: the engine's module
    /// size limit.
    pub deploy_body_bytes_max: usize,
    /// How long a client may take to send a request's head, then its
    /// body, and the longest a write to it may stall. An idle keep-alive
    /// connection is closed after this long too (and a TLS handshake must
    /// be done within it).
    pub client_timeout: Duration,
    /// Serve HTTPS with this configuration (the client port's, from
    /// `--tls-cert`), so the tokens never cross the wire in clear when the
    /// client port keeps them off it; plain HTTP if `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            client_token: None,
            admin_token: None,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            call_body_bytes_max: ordo_engine::config::ARGS_BYTES_MAX_DEFAULT,
            deploy_body_bytes_max: ordo_engine::config::MODULE_BYTES_MAX_DEFAULT,
            client_timeout: CLIENT_TIMEOUT_DEFAULT,
            tls: None,
        }
    }
}

/// Serves the HTTP/JSON API on `listener` until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    config: HttpConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = ConnectionLimits {
        connections_max: config.connections_max,
        client_timeout: config.client_timeout,
        keep_alive: true,
        tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
    };
    let api = Arc::new(Api::new(node, config));
    serve_router(listener, router(api), limits, shutdown).await
}

/// Serves `GET /metrics` in the Prometheus text format until `shutdown`.
pub async fn serve_metrics(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(crate::metrics::METRICS_CONTENT_TYPE),
                    )],
                    node.metrics_text(),
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "only GET /metrics is served here\n".to_string(),
            )
        });
    let limits = ConnectionLimits {
        connections_max: METRICS_CONNECTIONS_MAX,
        client_timeout: METRICS_CLIENT_TIMEOUT,
        // One scrape per connection, then close, as scrapers that read to
        // the end of the stream expect.
        keep_alive: false,
        tls: None,
    };
    serve_router(listener, router, limits, shutdown).await
}

/// What the API's handlers share.
struct Api {
    node: Arc<Node>,
    config: HttpConfig,
    requests_in_flight: Arc<Semaphore>,
    deploys_in_flight: Arc<Semaphore>,
    calls: UnkeyedCalls,
    /// Requests refused for want of a slot, logged at most once a second.
    overloads: RateLimitedLog,
}

impl Api {
    fn new(node: Arc<Node>, config: HttpConfig) -> Api {
        // A fresh unregistered client id from the node, as a binary
        // client without a session has.
        let client_id = node.session().client_id();
        Api {
            node,
            requests_in_flight: Arc::new(Semaphore::new(config.requests_in_flight_max)),
            deploys_in_flight: Arc::new(Semaphore::new(DEPLOYS_IN_FLIGHT_MAX)),
            overloads: RateLimitedLog::new(LOG_LINES_INTERVAL),
            config,
            calls: UnkeyedCalls {
                client_id,
                ids: parking_lot::Mutex::new(RequestIds {
                    next: 1,
                    outstanding: BTreeSet::new(),
                }),
            },
        }
    }
}

/// The one client id every call without an `Idempotency-Key` is sent
/// under, with request ids counted up. Such a call can never be retried
/// (nothing names it again), so its outcome need only stay in the
/// exactly-once table until it is answered: each call's `acked_below` is
/// the lowest request id still unanswered, which frees the others.
struct UnkeyedCalls {
    client_id: u128,
    ids: parking_lot::Mutex<RequestIds>,
}

struct RequestIds {
    next: u64,
    /// Ids handed out and not yet answered; at most one per in-flight
    /// request.
    outstanding: BTreeSet<u64>,
}

impl UnkeyedCalls {
    /// A request id and its `acked_below`. The id is outstanding until
    /// the returned guard drops.
    fn begin(&self) -> (UnkeyedCall<'_>, u64) {
        let mut ids = self.ids.lock();
        let request_id = ids.next;
        ids.next += 1;
        ids.outstanding.insert(request_id);
        let acked_below = *ids.outstanding.first().expect("just inserted");
        (
            UnkeyedCall {
                calls: self,
                request_id,
            },
            acked_below,
        )
    }
}

/// Removes its request id from the outstanding ones when dropped: once
/// answered, or once the client has gone (the call is in the log by then,
/// ahead of any later call that would forget it).
struct UnkeyedCall<'a> {
    calls: &'a UnkeyedCalls,
    request_id: u64,
}

impl Drop for UnkeyedCall<'_> {
    fn drop(&mut self) {
        self.calls.ids.lock().outstanding.remove(&self.request_id);
    }
}

/// The exactly-once client id of an `Idempotency-Key`.
///
/// Each key gets a client id of its own, the first 128 bits of SHA-256
/// over a domain tag, the kind of request (`call` or `deploy`) and the
/// key, and its request is always request id 1. So a retry with the same
/// key is the same (client id, request id) pair, which the exactly-once
/// table answers with the original outcome without running anything; and
/// a key is one unregistered client in the table, retained and evicted
/// like any other (docs/HTTP.md says for how long). The id never carries
/// the registered-session tag (the one id in 2^64 that would is moved
/// off it), so a key never passes for a registered session. Tokens are
/// not hashed in: the server has one client token, so every caller holding
/// it shares one key space, and rotating the token keeps retries working.
pub fn idempotency_client_id(kind: &str, key: &str) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(b"ordo http Idempotency-Key v1\0");
    hasher.update(kind.as_bytes());
    hasher.update(b"\0");
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let mut client_id = u128::from_be_bytes(first);
    if (client_id >> 64) as u64 == ordo_client::protocol::SESSION_CLIENT_ID_TAG {
        client_id ^= 1 << 64;
    }
    client_id
}

/// The request id of every keyed request (see [`idempotency_client_id`]).
const KEYED_REQUEST_ID: u64 = 1;

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/call/{procedure}", post(call))
        .route("/v1/procedures", get(procedures))
        .route("/v1/modules", get(modules))
        .route("/v1/modules/{name}", post(deploy))
        .route("/v1/status", get(status))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint: see docs/HTTP.md for the /v1 endpoints",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method: calls and deploys are POST, the rest GET",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            limit_in_flight,
        ))
        .with_state(api)
}

/// Holds one in-flight slot for the whole of a request, from before its
/// body is read to its answer; with none free, answers `503 overloaded`.
async fn limit_in_flight(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = api.requests_in_flight.clone().try_acquire_owned() else {
        api.overloads.warn_with(|| {
            format!(
                "refusing HTTP requests: all {} request slots are in use (--http-requests-max)",
                api.config.requests_in_flight_max
            )
        });
        return ApiError::overloaded(format!(
            "all {} request slots are in use (--http-requests-max); retry later",
            api.config.requests_in_flight_max
        ))
        .into_response();
    };
    next.run(request).await
}

/// A refusal or a failure, as the API answers it:
/// `{"error":{"code":CODE,"message":TEXT}}`, plus `seq` (and `position`)
/// when the request was sequenced (or read at a position), and `leader`
/// on `not_leader`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    seq: Option<u64>,
    position: Option<u64>,
    leader: Option<String>,
    retry_after: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            seq: None,
            position: None,
            leader: None,
            retry_after: false,
        }
    }

    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    fn overloaded(message: String) -> ApiError {
        ApiError {
            retry_after: true,
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn too_large(what: &str, bytes: Option<u64>, max: usize) -> ApiError {
        let size = match bytes {
            Some(bytes) => format!("of {bytes} bytes "),
            None => String::new(),
        };
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("{what} {size}is over the {max}-byte limit"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "error": { "code": self.code, "message": self.message },
        });
        if let Some(seq) = self.seq {
            body["seq"] = seq.into();
        }
        if let Some(position) = self.position {
            body["position"] = position.into();
        }
        if let Some(leader) = self.leader {
            body["leader"] = leader.into();
        }
        let mut response = (self.status, json_body(&body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn json_body(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("a JSON value serialises");
    bytes.push(b'\n');
    bytes
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// What a request needs its bearer token to be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Calls, reads, listings, the status: the client token (or the admin
    /// token), if the server has one.
    Client,
    /// Deploys: the admin token, if the server has one (and the client
    /// check too).
    Admin,
}

/// Checks the `Authorization: Bearer` token against the server's, in time
/// independent of where they differ.
fn authorize(config: &HttpConfig, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let given = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_request",
                "more than one Authorization header",
            ));
        }
        (Some(value), None) => {
            // The scheme is case-insensitive (RFC 9110, section 11.1).
            let token = value
                .to_str()
                .ok()
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            match token {
                Some(token) => Some(token),
                None => {
                    return Err(ApiError::unauthorized(
                        "the Authorization header must be `Bearer <token>`",
                    ));
                }
            }
        }
    };
    let matches = |expected: &Option<String>| {
        expected
            .as_deref()
            .zip(given)
            .is_some_and(|(expected, given)| tokens_match(expected, given))
    };
    let is_admin = matches(&config.admin_token);
    let is_client = config.client_token.is_none() || matches(&config.client_token) || is_admin;
    if !is_client {
        return Err(ApiError::unauthorized(match given {
            None => {
                "this server needs a token: send `Authorization: Bearer <token>` (the server's --client-token / ORDO_CLIENT_TOKEN)"
            }
            Some(_) => "wrong token (the server's --client-token / ORDO_CLIENT_TOKEN)",
        }));
    }
    if access == Access::Admin && config.admin_token.is_some() && !is_admin {
        let message = "a deploy needs the admin token: send `Authorization: Bearer <admin token>` (the server's --admin-token / ORDO_ADMIN_TOKEN)";
        return Err(if given.is_some() && config.client_token.is_some() {
            // Who they are is known (the client token), what they ask is
            // not theirs to do.
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
        } else {
            ApiError::unauthorized(message)
        });
    }
    Ok(())
}

/// The request's `Idempotency-Key`, if it has one: 1 to
/// [`IDEMPOTENCY_KEY_BYTES_MAX`] visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_idempotency_key",
                "more than one Idempotency-Key header",
            ));
        }
        (Some(value), None) => value.as_bytes(),
    };
    if value.is_empty()
        || value.len() > IDEMPOTENCY_KEY_BYTES_MAX
        || !value.iter().all(|byte| (0x21..=0x7e).contains(byte))
    {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            format!(
                "an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_BYTES_MAX} visible ASCII characters (a UUID, say)"
            ),
        ));
    }
    Ok(Some(
        std::str::from_utf8(value).expect("visible ASCII is UTF-8"),
    ))
}

/// Refuses a body whose `Content-Type` is not one of `accepted` (the
/// media type, parameters ignored). Requiring it also keeps a web page
/// from posting to a local server without a CORS preflight, which this
/// server never grants.
fn require_content_type(headers: &HeaderMap, accepted: &[&str]) -> Result<(), ApiError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim());
    if media_type.is_some_and(|media_type| {
        accepted
            .iter()
            .any(|accepted| media_type.eq_ignore_ascii_case(accepted))
    }) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("send the body with Content-Type: {}", accepted.join(" or ")),
    ))
}

/// Reads a request body of at most `bytes_max` bytes within the client
/// timeout. A `Content-Length` over the limit is refused before any of
/// the body is read; a body without one is read up to the limit and
/// refused there.
async fn read_body(
    config: &HttpConfig,
    headers: &HeaderMap,
    body: Body,
    what: &str,
    bytes_max: usize,
) -> Result<Bytes, ApiError> {
    if let Some(length) = headers.get(header::CONTENT_LENGTH) {
        // hyper has checked that it is a number.
        let length: Option<u64> = length.to_str().ok().and_then(|text| text.parse().ok());
        if length.is_none_or(|length| length > bytes_max as u64) {
            return Err(ApiError::too_large(what, length, bytes_max));
        }
    }
    let limited = http_body_util::Limited::new(body, bytes_max);
    match tokio::time::timeout(config.client_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {:?} (--http-client-timeout)",
                config.client_timeout
            ),
        )),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(what, None, bytes_max))
        }
        Ok(Err(err)) => Err(ApiError::bad_request(
            "bad_request",
            format!("the body could not be read: {err}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// How fresh a read of a read-only procedure must be (`?read=`).
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum ReadMode {
    /// On this node, at its own position, without going through the log.
    Stale,
    /// Through the log, like any call: it sees every earlier commit.
    Linearizable,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CallQuery {
    read: Option<ReadMode>,
    /// A stale read runs at this position or later.
    min_position: Option<u64>,
}

/// `POST /v1/call/{procedure}` with the JSON arguments as the body.
async fn call(
    State(api): State<Arc<Api>>,
    procedure: Result<Path<String>, PathRejection>,
    query: Result<Query<CallQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&api.config, &headers, Access::Client)?;
    let Path(procedure) =
        procedure.map_err(|err| ApiError::bad_request("bad_request", err.body_text()))?;
    let Query(query) =
        query.map_err(|err| ApiError::bad_request("bad_request", err.body_text()))?;
    if query.min_position.is_some() && !matches!(query.read, Some(ReadMode::Stale)) {
        return Err(ApiError::bad_request(
            "bad_request",
            "min_position applies to stale reads only (?read=stale&min_position=N)",
        ));
    }
    let key = idempotency_key(&headers)?;
    require_content_type(&headers, &["application/json"])?;
    let body = read_body(
        &api.config,
        &headers,
        body,
        "a call's body (its JSON arguments)",
        api.config.call_body_bytes_max,
    )
    .await?;
    let args = if body.is_empty() {
        // No body: the arguments of a procedure without parameters.
        b"{}".to_vec()
    } else {
        if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Err(ApiError::bad_request(
                "bad_json",
                format!("the body is not JSON: {err}"),
            ));
        }
        // Takes the buffer over without a copy (the body is its only
        // owner).
        Vec::from(body)
    };
    match query.read {
        Some(ReadMode::Stale) => stale_read(&api, &procedure, args, query.min_position).await,
        Some(ReadMode::Linearizable) => {
            if let Some(info) = api
                .node
                .procedures()
                .into_iter()
                .find(|info| info.name == procedure)
                && !info.read_only
            {
                return Err(ApiError::bad_request(
                    "not_read_only",
                    format!(
                        "`{procedure}` is not read-only, so it cannot be read (?read=); call it without ?read"
                    ),
                ));
            }
            let tx = submit_call(&api, key, &procedure, args).await?;
            committed_or_aborted(tx, true)
        }
        None => {
            let tx = submit_call(&api, key, &procedure, args).await?;
            committed_or_aborted(tx, false)
        }
    }
}

/// Sends a call to the node and waits for its outcome: under the key's
/// client id with a key, or the shared one without.
async fn submit_call(
    api: &Api,
    key: Option<&str>,
    procedure: &str,
    args: Vec<u8>,
) -> Result<TxOutcome, ApiError> {
    let mut unkeyed = None;
    let (client_id, request_id, acked_below) = match key {
        Some(key) => (
            idempotency_client_id("call", key),
            KEYED_REQUEST_ID,
            KEYED_REQUEST_ID,
        ),
        None => {
            let (call, acked_below) = api.calls.begin();
            let request_id = call.request_id;
            unkeyed = Some(call);
            (api.calls.client_id, request_id, acked_below)
        }
    };
    let (session, mut completions) = api.node.async_session(client_id);
    let refused = session.submit_many_with_ack(vec![RemoteCall {
        request_id,
        acked_below,
        procedure: procedure.to_string(),
        encoding: ArgsEncoding::Json,
        args,
        signature: None,
    }]);
    // The entry holds its own sender: once the node answers or drops it,
    // the channel ends, so nothing waits on a node that stopped.
    drop(session);
    if let Some((_, err)) = refused.into_iter().next() {
        return Err(node_error(&err));
    }
    let answer = completions
        .recv()
        .await
        .and_then(|completions| completions.into_iter().next());
    drop(unkeyed);
    match answer {
        Some(completion) => completion.result.map_err(|err| node_error(&err)),
        None => Err(node_error(&node_refusal(&api.node))),
    }
}

/// Why the node dropped a request unanswered: it stopped, or failed.
fn node_refusal(node: &Node) -> NodeError {
    match node.failure() {
        Some(reason) => NodeError::Failed(reason),
        None => NodeError::Stopped,
    }
}

async fn stale_read(
    api: &Api,
    procedure: &str,
    args: Vec<u8>,
    min_position: Option<u64>,
) -> Result<Response, ApiError> {
    let answer = api
        .node
        .submit_read(
            procedure,
            ArgsEncoding::Json,
            args,
            min_position.unwrap_or(0),
        )
        .map_err(|err| node_error(&err))?;
    let read: ReadOutcome = match answer.await {
        Ok(read) => read.map_err(|err| node_error(&err))?,
        Err(_) => return Err(node_error(&node_refusal(&api.node))),
    };
    match read.outcome {
        Outcome::Committed { result } => {
            let body =
                result_body(&[("position", read.position)], &result).map_err(|err| ApiError {
                    position: Some(read.position),
                    ..err
                })?;
            Ok(json_response(StatusCode::OK, body))
        }
        Outcome::Aborted(abort) => Err(ApiError {
            position: Some(read.position),
            ..abort_error(abort.kind, abort.message)
        }),
        Outcome::Deployed(_) => Err(unexpected_deploy()),
    }
}

/// The answer to a sequenced call: `{"seq":N,"result":R}` (and
/// `"position":N` for a linearizable read), or its abort.
fn committed_or_aborted(tx: TxOutcome, is_read: bool) -> Result<Response, ApiError> {
    let seq = tx.seq;
    let mut response = match tx.outcome {
        Outcome::Committed { result } => {
            let fields: &[(&str, u64)] = if is_read {
                &[("seq", seq), ("position", seq)]
            } else {
                &[("seq", seq)]
            };
            let body = result_body(fields, &result).map_err(|err| ApiError {
                seq: Some(seq),
                ..err
            })?;
            json_response(StatusCode::OK, body)
        }
        Outcome::Aborted(abort) => ApiError {
            seq: Some(seq),
            position: is_read.then_some(seq),
            ..abort_error(abort.kind, abort.message)
        }
        .into_response(),
        Outcome::Deployed(_) => return Err(unexpected_deploy()),
    };
    if tx.duplicate {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn unexpected_deploy() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "a call was answered as a deploy",
    )
}

/// `{"<field>":N,...,"result":<the result>}`, the result bytes embedded as
/// the JSON value they are (checked to be one: an unchecked procedure can
/// write any bytes as its JSON result).
fn result_body(fields: &[(&str, u64)], result: &[u8]) -> Result<Vec<u8>, ApiError> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(result).is_err() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "result_not_json",
            format!(
                "the procedure ran, but its result ({} bytes) is not JSON (a procedure without a schema wrote it)",
                result.len()
            ),
        ));
    }
    let mut body = Vec::with_capacity(result.len() + 64);
    body.push(b'{');
    for (name, value) in fields {
        body.extend_from_slice(format!("\"{name}\":{value},").as_bytes());
    }
    body.extend_from_slice(b"\"result\":");
    body.extend_from_slice(result);
    body.extend_from_slice(b"}\n");
    Ok(body)
}

/// An abort: its kind is the error code. A user abort (and every other
/// abort of a procedure that ran) is `422`; a call of a procedure no
/// module has is `404`; arguments that do not fit are `400`; a retry that
/// cannot be answered exactly once is `409`.
fn abort_error(kind: AbortKind, message: String) -> ApiError {
    let status = match kind {
        AbortKind::UnknownProcedure => StatusCode::NOT_FOUND,
        AbortKind::BadArguments | AbortKind::NotReadOnly | AbortKind::SignatureMismatch => {
            StatusCode::BAD_REQUEST
        }
        AbortKind::RequestForgotten | AbortKind::ResultNotRetained | AbortKind::SessionExpired => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, kind.as_str(), message)
}

/// A request the node refused before sequencing it.
fn node_error(err: &NodeError) -> ApiError {
    let message = err.to_string();
    match err {
        NodeError::Overloaded { .. } => ApiError::overloaded(message),
        NodeError::ArgsTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
        }
        // No module could export the name, so no such procedure exists.
        NodeError::BadProcedureName { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_procedure", message)
        }
        NodeError::BadArguments { .. } => ApiError::bad_request("bad_arguments", message),
        NodeError::SignatureMismatch { .. } => ApiError::bad_request("signature_mismatch", message),
        NodeError::Deploy(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "deploy_rejected", message)
        }
        NodeError::BadResetTables(_) => ApiError::bad_request("bad_request", message),
        NodeError::Behind { .. } => ApiError {
            retry_after: true,
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "behind", message)
        },
        NodeError::NotLeader { leader_addr } => ApiError {
            retry_after: true,
            leader: leader_addr.clone(),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", message)
        },
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
    }
}

/// `POST /v1/modules/{name}` with the module's bytes as the body (admin
/// token).
async fn deploy(
    State(api): State<Arc<Api>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&api.config, &headers, Access::Admin)?;
    let Path(name) = name.map_err(|err| ApiError::bad_request("bad_request", err.body_text()))?;
    let key = idempotency_key(&headers)?;
    require_content_type(&headers, &["application/wasm", "application/octet-stream"])?;
    let Ok(_deploying) = api.deploys_in_flight.clone().try_acquire_owned() else {
        return Err(ApiError::overloaded(format!(
            "{DEPLOYS_IN_FLIGHT_MAX} deploys are already being read or compiled; retry later"
        )));
    };
    let wasm = read_body(
        &api.config,
        &headers,
        body,
        "a deploy's body (the module)",
        api.config.deploy_body_bytes_max,
    )
    .await?;
    let session = match key {
        Some(key) => api
            .node
            .resume_session(idempotency_client_id("deploy", key), KEYED_REQUEST_ID),
        None => api.node.session(),
    };
    tracing::info!(module = %name, bytes = wasm.len(), "deploy over HTTP");
    // Compiling takes milliseconds to seconds: off the async threads.
    let deployed =
        tokio::task::spawn_blocking(move || session.deploy_with_id(KEYED_REQUEST_ID, &name, &wasm))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the deploy task failed",
                )
            })?;
    match deployed {
        Ok(deployed) => {
            let body = serde_json::json!({
                "seq": deployed.seq,
                "name": deployed.value.name,
                "sha256": deployed.value.sha256,
                "procedures": deployed.value.procedures,
            });
            Ok(json_response(StatusCode::OK, json_body(&body)))
        }
        Err(CallError::Aborted { seq, abort }) => Err(ApiError {
            seq: Some(seq),
            ..abort_error(abort.kind, abort.message)
        }),
        Err(CallError::Node(err)) => Err(node_error(&err)),
        Err(other) => Err(ApiError::bad_request("bad_request", other.to_string())),
    }
}

/// `GET /v1/procedures`: every callable procedure.
async fn procedures(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api.config, &headers, Access::Client)?;
    let procedures: Vec<serde_json::Value> = api
        .node
        .procedures()
        .into_iter()
        .map(|procedure| {
            let params = procedure.params.map(|params| {
                params
                    .into_iter()
                    .map(|param| serde_json::json!({ "name": param.name, "type": param.ty }))
                    .collect::<Vec<_>>()
            });
            serde_json::json!({
                "name": procedure.name,
                "module": procedure.module,
                "read_only": procedure.read_only,
                "params": params,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json_body(&serde_json::json!({ "procedures": procedures })),
    ))
}

/// `GET /v1/modules`: every deployed module.
async fn modules(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api.config, &headers, Access::Client)?;
    let modules: Vec<serde_json::Value> = api
        .node
        .modules()
        .into_iter()
        .map(|module| {
            serde_json::json!({
                "name": module.name,
                "sha256": module.sha256,
                "deployed_at": module.deployed_at,
                "wasm_bytes": module.wasm_bytes,
                "procedures": module.procedures,
                "tables": module.contract.tables.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json_body(&serde_json::json!({ "modules": modules })),
    ))
}

/// `GET /v1/status`: the node's status, as `ordo status --json` has it.
async fn status(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&api.config, &headers, Access::Client)?;
    let status = crate::server::status_info(&api.node);
    let body = serde_json::to_value(&status).expect("the status serialises");
    Ok(json_response(StatusCode::OK, json_body(&body)))
}

/// What bounds every connection of one listener, and how it is served.
#[derive(Clone)]
struct ConnectionLimits {
    connections_max: usize,
    client_timeout: Duration,
    /// Whether a connection may carry more than one request.
    keep_alive: bool,
    /// HTTPS if set.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts connections until `shutdown` resolves, and serves each with
/// `router` under `limits`.
async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_PROGRESS_MAX));
    let connections_max = limits.connections_max;
    let refusal_router = Router::new().fallback(move || async move {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!("all {connections_max} connections are in use; retry later"),
        )
    });
    let accept_failures = Arc::new(RateLimitedLog::new(LOG_LINES_INTERVAL));
    let refused = Arc::new(RateLimitedLog::new(LOG_LINES_INTERVAL));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = crate::server::accept_backing_off(&listener, &accept_failures, "HTTP accept") => accepted,
        };
        let _ = stream.set_nodelay(true);
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_connection(
                    stream,
                    router.clone(),
                    limits.clone(),
                    permit,
                ));
            }
            Err(_) => {
                refused.warn_with(|| {
                    format!(
                        "refusing HTTP connections: all {connections_max} are in use; the first refused came from {peer}"
                    )
                });
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    let (refusal_router, limits) = (refusal_router.clone(), limits.clone());
                    tokio::spawn(async move {
                        let served = serve_connection(stream, refusal_router, limits, permit);
                        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, served).await;
                    });
                }
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    _permit: OwnedSemaphorePermit,
) {
    match &limits.tls {
        None => serve_http1(stream, router, &limits).await,
        Some(acceptor) => {
            // A client that fails the handshake, or stalls in it, ends
            // here: it has not reached the API.
            let accepted = tokio::time::timeout(limits.client_timeout, acceptor.accept(stream));
            if let Ok(Ok(stream)) = accepted.await {
                serve_http1(stream, router, &limits).await;
            }
        }
    }
}

async fn serve_http1<S>(stream: S, router: Router, limits: &ConnectionLimits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(WriteStallTimeout {
        inner: stream,
        stall_max: limits.client_timeout,
        stalled: None,
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .keep_alive(limits.keep_alive)
        .header_read_timeout(limits.client_timeout)
        .max_buf_size(READ_BUFFER_BYTES_MAX)
        .max_header_size(HEADER_BYTES_MAX)
        .max_headers(HEADERS_COUNT_MAX);
    // An error here is the client's (a malformed request, a timeout, a
    // reset): hyper has answered what it could, and only this connection
    // ends.
    let _ = http1
        .serve_connection(io, TowerToHyperService::new(router))
        .await;
}

/// A socket whose writes fail once one has waited `stall_max` for the
/// client to take bytes: a client that does not read its answers cannot
/// hold a connection (and its buffered answer) for ever.
struct WriteStallTimeout<S> {
    inner: S,
    stall_max: Duration,
    /// Armed when a write first waits; cleared when one makes progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    /// Called when a write waits: an error once it has waited too long.
    fn poll_stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        let stall_max = self.stall_max;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall_max)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took no bytes for {stall_max:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, ready: Poll<T>) -> Poll<T> {
        if ready.is_ready() {
            self.stalled = None;
        }
        ready
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.poll_stalled(cx),
            ready => self.progressed(ready),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.poll_stalled(cx),
            ready => self.progressed(ready),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.poll_stalled(cx),
            ready => self.progressed(ready),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_ids_are_stable_distinct_and_never_sessions() {
        let id = idempotency_client_id("call", "order-17");
        assert_eq!(id, idempotency_client_id("call", "order-17"));
        assert_ne!(id, idempotency_client_id("call", "order-18"));
        assert_ne!(id, idempotency_client_id("deploy", "order-17"));
        for key in 0..10_000 {
            let id = idempotency_client_id("call", &key.to_string());
            assert!(!ordo_sequencer::entry::is_session_client_id(id));
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn tokens_decide_access() {
        let config = HttpConfig {
            client_token: Some("client".into()),
            admin_token: Some("admin".into()),
            ..HttpConfig::default()
        };
        let status = |pairs: &[(&'static str, &str)], access| {
            authorize(&config, &headers(pairs), access)
                .err()
                .map(|err| (err.status.as_u16(), err.code))
        };
        assert_eq!(status(&[], Access::Client), Some((401, "unauthorized")));
        let client = [("authorization", "Bearer client")];
        let admin = [("authorization", "Bearer admin")];
        let wrong = [("authorization", "Bearer nope")];
        assert_eq!(status(&client, Access::Client), None);
        let lower_case = [("authorization", "bearer client")];
        assert_eq!(status(&lower_case, Access::Client), None);
        assert_eq!(status(&admin, Access::Client), None);
        assert_eq!(status(&wrong, Access::Client), Some((401, "unauthorized")));
        assert_eq!(
            status(&[("authorization", "Basic client")], Access::Client),
            Some((401, "unauthorized"))
        );
        assert_eq!(status(&admin, Access::Admin), None);
        assert_eq!(status(&client, Access::Admin), Some((403, "forbidden")));
        assert_eq!(status(&wrong, Access::Admin), Some((401, "unauthorized")));
        // Without a client token, anyone may call; deploys still need the
        // admin token.
        let open = HttpConfig {
            client_token: None,
            ..config.clone()
        };
        assert!(authorize(&open, &headers(&[]), Access::Client).is_ok());
        let refused = authorize(&open, &headers(&wrong), Access::Admin).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert_eq!(idempotency_key(&headers(&[])).unwrap(), None);
        let key = headers(&[("idempotency-key", "a-1")]);
        assert_eq!(idempotency_key(&key).unwrap(), Some("a-1"));
        for bad in ["", "has space", &"k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1)] {
            let refused = idempotency_key(&headers(&[("idempotency-key", bad)])).unwrap_err();
            assert_eq!(refused.code, "bad_idempotency_key", "{bad:?}");
        }
        let twice = headers(&[("idempotency-key", "a"), ("idempotency-key", "b")]);
        assert!(idempotency_key(&twice).is_err());
    }

    #[test]
    fn results_are_embedded_as_json_values() {
        let body = result_body(&[("seq", 7)], br#"{"a":[1,2]}"#).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"seq": 7, "result": {"a": [1, 2]}})
        );
        let err = result_body(&[("seq", 7)], b"\x00not json").unwrap_err();
        assert_eq!(err.code, "result_not_json");
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_take_fails_after_the_stall_limit() {
        use tokio::io::AsyncWriteExt;
        // A peer that never reads, behind a 1 KiB pipe.
        let (near, _far) = tokio::io::duplex(1024);
        let stall_max = Duration::from_millis(200);
        let mut stream = WriteStallTimeout {
            inner: near,
            stall_max,
            stalled: None,
        };
        stream.write_all(&[0u8; 1024]).await.unwrap();
        let started = std::time::Instant::now();
        let err = stream.write_all(&[0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= stall_max && waited < stall_max * 10, "{waited:?}");
    }

    #[test]
    fn unkeyed_calls_acknowledge_below_the_oldest_outstanding() {
        let calls = UnkeyedCalls {
            client_id: 1,
            ids: parking_lot::Mutex::new(RequestIds {
                next: 1,
                outstanding: BTreeSet::new(),
            }),
        };
        let (first, acked) = calls.begin();
        assert_eq!((first.request_id, acked), (1, 1));
        let (second, acked) = calls.begin();
        assert_eq!((second.request_id, acked), (2, 1));
        drop(first);
        let (third, acked) = calls.begin();
        assert_eq!((third.request_id, acked), (3, 2));
        drop(second);
        drop(third);
        assert!(calls.ids.lock().outstanding.is_empty());
    }
}
