//! `ordo serve`: the embedded node behind a TCP listener speaking the wire
//! protocol of `ordo_client::protocol`, in clear or over TLS.
//!
//! Each connection: a handshake (TLS if configured, then magic, version,
//! token, all within [`HANDSHAKE_TIMEOUT`] and with frames of at most
//! [`HANDSHAKE_FRAME_BYTES_MAX`]), then a reader that turns request frames
//! into node submissions and a writer that sends the answers. The path is
//! built to cost few syscalls and wake-ups per request: the reader decodes
//! every whole frame a read brought and submits them with one lock; the
//! node answers a batch with one message per connection, on an async
//! channel; the writer frames every answer that is ready into one buffer
//! and writes it with one syscall. A malformed, truncated or oversized
//! frame closes only that connection.
//!
//! Every connection is bounded: a connection limit (refusals say so and
//! are logged at most once a second), an idle timeout and TCP keepalive,
//! and a budget of answer bytes waiting to be written. A client over the
//! budget is no longer read (so it submits nothing more), and one that
//! stays over it for [`ServerConfig::slow_reader_timeout`], or goes far
//! over it, is disconnected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ordo_client::protocol::{
    BackupAnswer, BackupStep, Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, FrameDecoder,
    HANDSHAKE_FRAME_BYTES_MAX, Hello, ProcedureDescription, ProtocolError, RefusalReason, Request,
    RequestBody, RequestRefusal, Response, ResponseBody, StatusInfo, Welcome, decode_payload,
    encode_frame, encode_frame_into,
};
use ordo_client::{rustls, tokio_rustls};
use ordo_engine::{Outcome, ReadOutcome, TxOutcome};
use ordo_frame::ReadFrameError;
use ordo_sequencer::entry::ArgsEncoding;
use ordo_sequencer::rate_limited::RateLimitedLog;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::node::{CallError, Completion, Node, NodeError, RemoteCall, Session};

pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Connections being refused at the connection limit at once. Each is told
/// why; past this many, further ones are closed without a word, so a flood
/// cannot make the refusals themselves a cost without bound.
const REFUSALS_IN_PROGRESS_MAX: usize = 64;
/// How long a refused connection may take to receive its refusal (and,
/// with TLS, to finish the TLS handshake it needs first).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read and dropped after a refusal, so that closing the socket
/// with the client's hello unread does not reset the connection before
/// the client has read why.
const REFUSAL_DRAIN_BYTES_MAX: usize = 64 << 10;
/// Buffers of framed responses queued for one connection's writer, from
/// the reader and the deploy and read tasks (the node's answers come on
/// their own channel and are counted in the answer budget).
const CONNECTION_RESPONSE_BUFFERS_QUEUED_MAX: usize = 256;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// From accept to the welcome: the TLS handshake, the hello, the welcome.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`ServerConfig::idle_timeout`].
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// Default [`ServerConfig::answer_bytes_queued_max`].
pub const ANSWER_BYTES_QUEUED_MAX_DEFAULT: usize = 8 << 20;
/// A connection whose queued answers exceed this many times its budget is
/// disconnected at once, without waiting out the slow-reader timeout:
/// what a client has already pipelined keeps producing answers after its
/// reads stop, and memory must stay bounded whatever it pipelined.
pub const ANSWER_BYTES_QUEUED_HARD_FACTOR: usize = 8;
/// Default [`ServerConfig::slow_reader_timeout`].
pub const SLOW_READER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// TCP keepalive: the first probe after this much silence, then one per
/// interval; after the probes go unanswered the kernel drops the socket,
/// so a peer that vanished (half-open) frees its slot.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;
/// Accept failures (out of file descriptors, say) wait this long before
/// the next try, doubling up to the maximum, instead of spinning.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Each kind of repeated log line (accept failures, refusals, connections
/// closed on an error) is printed at most once per interval; the next
/// line printed says how many were left out.
const LOG_LINES_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub connections_max: usize,
    pub frame_bytes_max: usize,
    /// Required from every client, if set.
    pub client_token: Option<String>,
    /// Required for deploys, if set.
    pub admin_token: Option<String>,
    /// Serve the port over TLS with this configuration
    /// ([`crate::tls::server_config`]); plain TCP if `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A connection that has received nothing and sent nothing for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// Bytes of answers a connection may have waiting to be written before
    /// the server stops reading its requests.
    pub answer_bytes_queued_max: usize,
    /// How long a connection may stay over its answer budget before it is
    /// disconnected as a slow reader.
    pub slow_reader_timeout: Duration,
    /// Whether a deploy may empty tables (`reset_tables`): development
    /// only, off by default.
    pub allow_table_reset: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            client_token: None,
            admin_token: None,
            tls: None,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            answer_bytes_queued_max: ANSWER_BYTES_QUEUED_MAX_DEFAULT,
            allow_table_reset: false,
            slow_reader_timeout: SLOW_READER_TIMEOUT_DEFAULT,
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    let (expected, given) = (expected.as_bytes(), given.as_bytes());
    let mut difference = (expected.len() != given.len()) as u8;
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!byte);
    }
    difference == 0
}

fn token_ok(expected: &Option<String>, given: &Option<String>) -> bool {
    match expected {
        None => true,
        Some(expected) => given
            .as_deref()
            .is_some_and(|given| tokens_match(expected, given)),
    }
}

/// The next connection on `listener`. Accept errors (out of file
/// descriptors and the like) are logged through `failures` and retried
/// after a pause that doubles up to [`ACCEPT_BACKOFF_MAX`], so the
/// connections already open keep being served rather than the loop
/// spinning on an error that would repeat as fast as it is asked. Cancel
/// it (a `select!` on shutdown) to stop waiting.
pub(crate) async fn accept_backing_off(
    listener: &TcpListener,
    failures: &RateLimitedLog,
    what: &str,
) -> (TcpStream, std::net::SocketAddr) {
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => {
                failures.warn_with(|| format!("{what} failed: {err}; retrying in {backoff:?}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// What every connection task of one server shares.
struct Listener {
    node: Arc<Node>,
    config: ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    accept_failures: RateLimitedLog,
    refused: RateLimitedLog,
    closed: RateLimitedLog,
}

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Listener {
        node,
        tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        connections: Arc::new(Semaphore::new(config.connections_max)),
        refusals: Arc::new(Semaphore::new(REFUSALS_IN_PROGRESS_MAX)),
        config,
        accept_failures: RateLimitedLog::new(LOG_LINES_INTERVAL),
        refused: RateLimitedLog::new(LOG_LINES_INTERVAL),
        closed: RateLimitedLog::new(LOG_LINES_INTERVAL),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = accept_backing_off(&listener, &shared.accept_failures, "accept") => accepted,
        };
        configure_socket(&stream);
        match shared.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(err) = connection(&shared, stream).await {
                        shared
                            .closed
                            .warn_with(|| format!("connection from {peer} closed: {err}"));
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                shared.refused.warn_with(|| {
                    format!(
                        "refusing connections: all {} are in use (--connections-max); the first refused came from {peer}",
                        shared.config.connections_max
                    )
                });
                if let Ok(permit) = shared.refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse_at_limit(shared.clone(), stream, permit));
                }
            }
        }
    }
}

fn configure_socket(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("no handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error(
        "a TLS client on a port that serves plain TCP (start the server with --tls-cert to serve TLS)"
    )]
    TlsOnPlainPort,
    #[error("refused: {0}")]
    Refused(String),
    #[error("idle for {0:?} (--client-idle-timeout)")]
    Idle(Duration),
    #[error(
        "a slow reader: {queued} bytes of answers waited to be written, over the {max}-byte budget (--answer-bytes-queued-max) {how}"
    )]
    SlowReader {
        queued: usize,
        max: usize,
        how: String,
    },
}

async fn write_message<T: serde::Serialize>(
    stream: &mut (impl AsyncWrite + Unpin),
    message: &T,
    frame_bytes_max: usize,
) -> Result<(), ConnectionError> {
    let frame = encode_frame(message, frame_bytes_max)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Tells a client why it is refused, then closes after the client has had
/// a chance to read it.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reason: RefusalReason,
    message: &str,
) -> ConnectionError {
    let welcome = Welcome::Refused {
        reason,
        message: message.to_string(),
    };
    if let Err(err) = write_message(stream, &welcome, HANDSHAKE_FRAME_BYTES_MAX).await {
        return err;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, drain(stream)).await;
    ConnectionError::Refused(message.to_string())
}

/// Reads and drops what the client still sends, up to a limit, until it
/// closes.
async fn drain(stream: &mut (impl AsyncRead + Unpin)) {
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES_MAX {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

/// Refuses a connection over the connection limit, with TLS if the port
/// serves TLS (a TLS client could not read a plain refusal).
async fn refuse_at_limit(shared: Arc<Listener>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let message = format!(
        "too many connections: all {} are in use; retry later",
        shared.config.connections_max
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        match &shared.tls {
            None => {
                let mut stream = stream;
                refuse(&mut stream, RefusalReason::TooManyConnections, &message).await;
            }
            Some(acceptor) => {
                if let Ok(mut stream) = acceptor.accept(stream).await {
                    refuse(&mut stream, RefusalReason::TooManyConnections, &message).await;
                }
            }
        }
    })
    .await;
}

/// Whether a connection's first bytes open a TLS ClientHello: a handshake
/// record (22) of protocol version 3.1 to 3.4. An ordo hello starts with
/// its length, little-endian, so its third byte is 0 for any hello under
/// 64 KiB (and the server refuses those over [`HANDSHAKE_FRAME_BYTES_MAX`]).
fn looks_like_tls(header: &[u8; FRAME_HEADER_BYTES]) -> bool {
    header[0] == 0x16 && header[1] == 0x03 && (1..=4).contains(&header[2])
}

async fn connection(shared: &Arc<Listener>, mut stream: TcpStream) -> Result<(), ConnectionError> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match tokio::time::timeout_at(deadline, stream.read_exact(&mut header)).await {
        Err(_) => return Err(ConnectionError::HandshakeTimeout),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        Ok(Err(err)) => return Err(err.into()),
        Ok(Ok(_)) => {}
    }
    match (&shared.tls, looks_like_tls(&header)) {
        (None, false) => {
            let hello = within(deadline, handshake(shared, &mut stream, Some(header))).await?;
            serve_session(shared, stream, hello).await
        }
        (None, true) => Err(ConnectionError::TlsOnPlainPort),
        (Some(_), false) => {
            let refusal = refuse(
                &mut stream,
                RefusalReason::BadHandshake,
                "this port serves TLS: connect with TLS (--tls-ca FILE or ORDO_TLS_CA, the CA that signed the server's certificate)",
            );
            Err(tokio::time::timeout_at(deadline, refusal)
                .await
                .unwrap_or(ConnectionError::HandshakeTimeout))
        }
        (Some(acceptor), true) => {
            let stream = Prefixed {
                prefix: header,
                consumed: 0,
                inner: stream,
            };
            let mut stream = tokio::time::timeout_at(deadline, acceptor.accept(stream))
                .await
                .map_err(|_| ConnectionError::HandshakeTimeout)?
                .map_err(ConnectionError::Tls)?;
            let hello = within(deadline, handshake(shared, &mut stream, None)).await?;
            serve_session(shared, stream, hello).await
        }
    }
}

async fn within<T>(
    deadline: tokio::time::Instant,
    work: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| ConnectionError::HandshakeTimeout)?
}

/// Reads the hello (whose length prefix may have been read already),
/// checks it and the token, and welcomes the client. Nothing larger than
/// [`HANDSHAKE_FRAME_BYTES_MAX`] is read or allocated before the token is
/// checked.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Listener,
    stream: &mut S,
    header: Option<[u8; FRAME_HEADER_BYTES]>,
) -> Result<Hello, ConnectionError> {
    let header = match header {
        Some(header) => header,
        None => {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            stream.read_exact(&mut header).await?;
            header
        }
    };
    let mut payload = Vec::new();
    match ordo_frame::read_payload_into(stream, header, HANDSHAKE_FRAME_BYTES_MAX, &mut payload)
        .await
    {
        Ok(()) => {}
        Err(ReadFrameError::TooLarge(err)) => {
            let message = format!("the hello is too large: {err} before the handshake");
            return Err(refuse(stream, RefusalReason::BadHandshake, &message).await);
        }
        Err(ReadFrameError::Io(err)) => return Err(err.into()),
        Err(ReadFrameError::Closed) => {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    let hello: Hello = match decode_payload(&payload).and_then(|hello: Hello| {
        hello.check()?;
        Ok(hello)
    }) {
        Ok(hello) => hello,
        Err(err) => {
            return Err(refuse(stream, RefusalReason::BadHandshake, &err.to_string()).await);
        }
    };
    if !token_ok(&shared.config.client_token, &hello.token) {
        return Err(refuse(
            stream,
            RefusalReason::Unauthorized,
            "wrong or missing client token (--token / ORDO_CLIENT_TOKEN)",
        )
        .await);
    }
    let welcome = Welcome::Accepted {
        version: ordo_client::protocol::PROTOCOL_VERSION,
        position: shared.node.status().engine.position,
        node_id: shared.node.cluster_status().map(|cluster| cluster.node_id),
    };
    write_message(stream, &welcome, HANDSHAKE_FRAME_BYTES_MAX).await?;
    Ok(hello)
}

/// A stream whose first bytes were already read (to tell TLS from plain
/// TCP) and are handed out again before the rest.
struct Prefixed<S> {
    prefix: [u8; FRAME_HEADER_BYTES],
    consumed: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.consumed < self.prefix.len() {
            let rest = &self.prefix[self.consumed..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            self.consumed += taken;
            return Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A welcomed connection that splits into halves its reader and writer
/// own: plain TCP splits without a lock; TLS shares one session.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;
    fn split_halves(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for tokio_rustls::server::TlsStream<Prefixed<TcpStream>> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;
    fn split_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// What a connection's reader and writer share about the answers waiting
/// to be written.
struct AnswerQueue {
    /// Bytes framed and not yet handed to the socket.
    bytes: AtomicUsize,
    budget: usize,
    /// Signalled when the queue falls back under its budget.
    drained: Notify,
    /// When the connection was welcomed, and milliseconds after that of
    /// the last write that moved bytes: the idle timer counts from the
    /// later of the last read and the last write.
    since: Instant,
    written_after_ms: AtomicU64,
}

impl AnswerQueue {
    fn over_budget(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.budget
    }

    fn last_write(&self) -> Instant {
        self.since + Duration::from_millis(self.written_after_ms.load(Ordering::Relaxed))
    }

    fn mark_written(&self) {
        let after = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.written_after_ms.store(after, Ordering::Relaxed);
    }
}

async fn serve_session<S: Transport>(
    shared: &Arc<Listener>,
    stream: S,
    hello: Hello,
) -> Result<(), ConnectionError> {
    let config = &shared.config;
    let (session, completions) = shared.node.async_session(hello.client_id);
    let session = Arc::new(session);
    let (mut reader, writer) = stream.split_halves();
    let (buffers_tx, buffers_rx) = mpsc::channel::<Vec<u8>>(CONNECTION_RESPONSE_BUFFERS_QUEUED_MAX);
    let responses = Responses {
        buffers: buffers_tx,
        frame_bytes_max: config.frame_bytes_max,
    };
    let queue = Arc::new(AnswerQueue {
        bytes: AtomicUsize::new(0),
        budget: config.answer_bytes_queued_max,
        drained: Notify::new(),
        since: Instant::now(),
        written_after_ms: AtomicU64::new(0),
    });
    let mut writer_task = tokio::spawn(write_responses(
        writer,
        completions,
        buffers_rx,
        queue.clone(),
        config.frame_bytes_max,
        config.slow_reader_timeout,
    ));
    let result = {
        let reading = read_requests(shared, &session, &mut reader, &responses, &queue);
        tokio::pin!(reading);
        tokio::select! {
            read = &mut reading => read,
            // The writer gave up (a slow reader, a broken socket): stop
            // reading too, which closes the connection.
            written = &mut writer_task => return written.unwrap_or(Ok(())),
        }
    };
    // Closing the reader's side of the buffers channel stops the writer.
    // Answers still in flight are delivered by the node to the session's
    // channel and dropped there; a client that reconnects and retries
    // gets them from the exactly-once table.
    drop(responses);
    let written = writer_task.await.unwrap_or(Ok(()));
    result.and(written)
}

/// The way to a connection's writer: framed responses, many per buffer.
#[derive(Clone)]
struct Responses {
    buffers: mpsc::Sender<Vec<u8>>,
    frame_bytes_max: usize,
}

/// Frames `responses` onto the end of `buffer`. A response too large for a
/// frame becomes a refusal saying so (the call itself did run).
fn frame_all_into(
    buffer: &mut Vec<u8>,
    responses: impl Iterator<Item = Response>,
    frame_bytes_max: usize,
) {
    for response in responses {
        if let Err(err) = encode_frame_into(buffer, &response, frame_bytes_max) {
            let refusal = Response {
                request_id: response.request_id,
                body: ResponseBody::Refused {
                    reason: RequestRefusal::BadRequest,
                    message: format!("the answer cannot be sent: {err}"),
                },
            };
            encode_frame_into(buffer, &refusal, frame_bytes_max)
                .expect("a short refusal fits in any frame");
        }
    }
}

impl Responses {
    fn frame_all(&self, responses: impl Iterator<Item = Response>) -> Vec<u8> {
        let mut buffer = Vec::new();
        frame_all_into(&mut buffer, responses, self.frame_bytes_max);
        buffer
    }

    /// False once the writer has gone.
    async fn send(&self, response: Response) -> bool {
        self.buffers
            .send(self.frame_all(std::iter::once(response)))
            .await
            .is_ok()
    }
}

/// Reads requests until the client closes the connection. Every whole
/// frame that one read brought is decoded, and consecutive calls among
/// them are submitted to the node together.
async fn read_requests(
    shared: &Arc<Listener>,
    session: &Arc<Session>,
    reader: &mut (impl AsyncRead + Unpin),
    responses: &Responses,
    queue: &AnswerQueue,
) -> Result<(), ConnectionError> {
    let (node, config) = (&shared.node, &shared.config);
    let mut decoder = FrameDecoder::new(config.frame_bytes_max);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut calls = Vec::new();
    // The backup this connection began, if any: it keeps the node from
    // removing the log records it reads until the connection closes.
    let backup: ConnectionBackup = Default::default();
    let idle_timeout = config.idle_timeout;
    let mut last_read = Instant::now();
    // One timer, moved forward only when it fires early: re-arming it on
    // every read would cost a timer-wheel update per read.
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        // Back-pressure: a client whose answers are not being taken off
        // the socket gets nothing more read until they are.
        while queue.over_budget() {
            queue.drained.notified().await;
        }
        let read = tokio::select! {
            biased;
            read = reader.read(&mut chunk) => match read {
                // A TLS client that hangs up without close_notify (most
                // do, on exit): between frames that is a clean end.
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                read => read?,
            },
            () = &mut idle => {
                let active = last_read.max(queue.last_write());
                if active.elapsed() >= idle_timeout {
                    return Err(ConnectionError::Idle(idle_timeout));
                }
                idle.as_mut().reset((active + idle_timeout).into());
                continue;
            }
        };
        last_read = Instant::now();
        if read == 0 {
            if decoder.buffered_bytes() > 0 {
                return Err(ConnectionError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection closed in the middle of a frame",
                )));
            }
            return Ok(());
        }
        decoder.extend(&chunk[..read]);
        while let Some(payload) = decoder.next_payload_slice().map_err(ProtocolError::from)? {
            let request: Request = decode_payload(payload)?;
            let request_id = request.request_id;
            let body = match request.body {
                RequestBody::Call {
                    procedure,
                    encoding,
                    args,
                    signature,
                } => {
                    calls.push(RemoteCall {
                        request_id,
                        acked_below: request.acked_below,
                        procedure,
                        encoding: args_encoding(encoding),
                        args,
                        signature,
                    });
                    continue;
                }
                other => other,
            };
            // Keep the order of requests: calls before this one go first.
            if !submit_calls(session, &mut calls, responses).await {
                return Ok(());
            }
            if let Some(answer) =
                other_request(node, config, session, responses, &backup, request_id, body)
                && !responses
                    .send(Response {
                        request_id,
                        body: answer,
                    })
                    .await
            {
                return Ok(());
            }
        }
        if !submit_calls(session, &mut calls, responses).await {
            return Ok(());
        }
    }
}

/// Submits and clears `calls`, answering refusals at once; false once the
/// writer has gone.
async fn submit_calls(
    session: &Session,
    calls: &mut Vec<RemoteCall>,
    responses: &Responses,
) -> bool {
    if calls.is_empty() {
        return true;
    }
    let refused = session.submit_many_with_ack(std::mem::take(calls));
    if refused.is_empty() {
        return true;
    }
    let buffer = responses.frame_all(refused.into_iter().map(|(request_id, err)| Response {
        request_id,
        body: refusal_body(&err),
    }));
    responses.buffers.send(buffer).await.is_ok()
}

/// Handles a request other than a call; returns its answer if it has one
/// now (a deploy answers later, from its own task).
fn other_request(
    node: &Arc<Node>,
    config: &ServerConfig,
    session: &Arc<Session>,
    responses: &Responses,
    backup: &ConnectionBackup,
    request_id: u64,
    body: RequestBody,
) -> Option<ResponseBody> {
    match body {
        RequestBody::Backup { admin_token, step } => {
            if let Some(refused) = unless_admin(config, &admin_token, "a backup", None) {
                return Some(refused);
            }
            // Reading the snapshot and the log touches files: off the
            // async threads.
            let (node, backup, responses) = (node.clone(), backup.clone(), responses.clone());
            tokio::spawn(async move {
                let stepped =
                    tokio::task::spawn_blocking(move || backup_step(&node, &backup, step)).await;
                let body = match stepped {
                    Ok(Ok(answer)) => ResponseBody::Backup(answer),
                    Ok(Err(message)) => ResponseBody::Refused {
                        reason: RequestRefusal::BadRequest,
                        message,
                    },
                    Err(_) => ResponseBody::Refused {
                        reason: RequestRefusal::Unavailable,
                        message: "backup task failed".to_string(),
                    },
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::ReadAt {
            admin_token,
            at,
            procedure,
            encoding,
            args,
        } => {
            if let Some(refused) = unless_admin(config, &admin_token, "a time-travel read", None) {
                return Some(refused);
            }
            let Some(running) = TimeTravelReadSlot::take() else {
                return Some(ResponseBody::Refused {
                    reason: RequestRefusal::Overloaded,
                    message: format!(
                        "another time-travel read is running (at most {TIME_TRAVEL_READS_MAX} at once: each rebuilds a copy of the state); retry when it is done"
                    ),
                });
            };
            // Rebuilding a past state reads files and runs wasm for as
            // long as the replay takes: off the async threads.
            let (node, responses) = (node.clone(), responses.clone());
            tokio::spawn(async move {
                let read = tokio::task::spawn_blocking(move || {
                    let _running = running;
                    node.read_at(at, &procedure, args_encoding(encoding), &args)
                })
                .await;
                let body = match read {
                    Ok(Ok(read)) => read_answer(read),
                    Ok(Err(err)) => ResponseBody::Refused {
                        reason: RequestRefusal::BadRequest,
                        message: err.to_string(),
                    },
                    Err(_) => ResponseBody::Refused {
                        reason: RequestRefusal::Unavailable,
                        message: "the time-travel read's task failed".to_string(),
                    },
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::Scan {
            admin_token,
            start,
            end,
            limit,
        } => {
            if let Some(refused) = unless_admin(
                config,
                &admin_token,
                "a scan",
                Some("it reads rows past every procedure's checks"),
            ) {
                return Some(refused);
            }
            let scanned = match node.submit_scan(start, end, limit as usize) {
                Ok(scanned) => scanned,
                Err(err) => return Some(refusal_body(&err)),
            };
            let (node, responses) = (node.clone(), responses.clone());
            tokio::spawn(async move {
                let body = match scanned.await {
                    Ok(Ok(scanned)) => ResponseBody::Rows {
                        position: scanned.position,
                        rows: scanned.rows,
                        more: scanned.more,
                    },
                    Ok(Err(err)) => refusal_body(&err),
                    Err(_) => refusal_body(&node_refusal(&node)),
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::Logs {
            admin_token,
            since_seq,
            procedure,
            level_max,
            limit,
        } => {
            if let Some(refused) = unless_admin(
                config,
                &admin_token,
                "reading the procedure log",
                Some("its lines can hold any data a procedure saw"),
            ) {
                return Some(refused);
            }
            let page = node.procedure_log_page(&crate::procedure_logs::LogQuery {
                since_seq,
                procedure: procedure.as_deref(),
                level_max,
                limit,
            });
            Some(ResponseBody::Logs {
                lines: page.lines,
                next_seq: page.next_seq,
                oldest_seq: page.oldest_seq,
            })
        }
        RequestBody::Undeploy { name, admin_token } => {
            if let Some(refused) = unless_admin(config, &admin_token, "undeploy", None) {
                return Some(refused);
            }
            let (session, responses) = (session.clone(), responses.clone());
            tokio::spawn(async move {
                let undeployed = tokio::task::spawn_blocking(move || {
                    session.undeploy_with_id(request_id, &name)
                })
                .await;
                let body = match undeployed {
                    Ok(Ok(seq)) => ResponseBody::Committed {
                        seq,
                        result: Vec::new(),
                        fuel_used: 0,
                    },
                    Ok(Err(err)) => call_error_body(err),
                    Err(_) => ResponseBody::Refused {
                        reason: RequestRefusal::Unavailable,
                        message: "undeploy task failed".to_string(),
                    },
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::Call { .. } => unreachable!("calls are batched by the reader"),
        RequestBody::Session(change) => session
            .submit_session_change(request_id, crate::node::session_change(change))
            .err()
            .map(|err| refusal_body(&err)),
        RequestBody::Deploy {
            name,
            wasm,
            admin_token,
            reset_tables,
        } => {
            if let Some(refused) = unless_admin(config, &admin_token, "deploy", None) {
                return Some(refused);
            }
            if !reset_tables.is_empty() && !config.allow_table_reset {
                return Some(ResponseBody::Refused {
                    reason: RequestRefusal::BadRequest,
                    message: "resetting tables deletes their data, so this server refuses it; start it with --allow-table-reset (development only)"
                        .to_string(),
                });
            }
            // Compiling takes milliseconds: off the async threads.
            let (session, responses) = (session.clone(), responses.clone());
            tokio::spawn(async move {
                let deployed = tokio::task::spawn_blocking(move || {
                    session.deploy_resetting_with_id(request_id, &name, &wasm, reset_tables)
                })
                .await;
                let body = match deployed {
                    Ok(Ok(deployed)) => ResponseBody::Deployed {
                        seq: deployed.seq,
                        name: deployed.value.name,
                        sha256: deployed.value.sha256,
                        procedures: deployed.value.procedures,
                    },
                    Ok(Err(err)) => call_error_body(err),
                    Err(_) => ResponseBody::Refused {
                        reason: RequestRefusal::Unavailable,
                        message: "deploy task failed".to_string(),
                    },
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::Status => Some(ResponseBody::Status(status_info(node))),
        RequestBody::Read {
            procedure,
            encoding,
            args,
            min_position,
        } => {
            // Queued here, answered on the executor thread: a read that
            // waits for its `min_position` holds no thread meanwhile.
            let answer =
                match node.submit_read(&procedure, args_encoding(encoding), args, min_position) {
                    Ok(answer) => answer,
                    Err(err) => return Some(refusal_body(&err)),
                };
            let (node, responses) = (node.clone(), responses.clone());
            tokio::spawn(async move {
                let read = match answer.await {
                    Ok(read) => read,
                    Err(_) => Err(node_refusal(&node)),
                };
                let body = match read {
                    Ok(read) => read_answer(read),
                    Err(err) => refusal_body(&err),
                };
                responses.send(Response { request_id, body }).await;
            });
            None
        }
        RequestBody::Procedures => Some(ResponseBody::Procedures(
            node.procedures()
                .into_iter()
                .map(|procedure| ProcedureDescription {
                    name: procedure.name,
                    module: procedure.module,
                    params: procedure.params.map(|params| {
                        params
                            .into_iter()
                            .map(|param| (param.name, param.ty))
                            .collect()
                    }),
                    read_only: procedure.read_only,
                })
                .collect(),
        )),
        RequestBody::Describe => Some(ResponseBody::Described(
            node.modules()
                .iter()
                .map(crate::describe::module_description)
                .collect(),
        )),
    }
}

/// The refusal of a request that needs the admin token and lacks it
/// (`what` names the request, `why` says why it needs the token).
fn unless_admin(
    config: &ServerConfig,
    admin_token: &Option<String>,
    what: &str,
    why: Option<&str>,
) -> Option<ResponseBody> {
    if token_ok(&config.admin_token, admin_token) {
        return None;
    }
    let why = why.map(|why| format!(": {why}")).unwrap_or_default();
    Some(ResponseBody::Refused {
        reason: RequestRefusal::Unauthorized,
        message: format!("{what} needs the admin token (--admin-token / ORDO_ADMIN_TOKEN){why}"),
    })
}

/// The answer to a deploy or undeploy that did not take effect.
fn call_error_body(err: CallError) -> ResponseBody {
    match err {
        CallError::Aborted { seq, abort } => ResponseBody::Aborted {
            seq,
            kind: abort.kind.as_str().to_string(),
            message: abort.message,
            fuel_used: 0,
        },
        CallError::Node(err) => refusal_body(&err),
        other => ResponseBody::Refused {
            reason: RequestRefusal::BadRequest,
            message: other.to_string(),
        },
    }
}

/// The answer to a read (stale or time-travel) that ran.
fn read_answer(read: ReadOutcome) -> ResponseBody {
    match read.outcome {
        Outcome::Committed { result } => ResponseBody::ReadDone {
            position: read.position,
            result,
        },
        Outcome::Aborted(abort) => ResponseBody::Aborted {
            seq: read.position,
            kind: abort.kind.as_str().to_string(),
            message: abort.message,
            fuel_used: 0,
        },
        Outcome::Deployed(_) => ResponseBody::Refused {
            reason: RequestRefusal::BadRequest,
            message: "a read cannot deploy".to_string(),
        },
    }
}

/// Time-travel reads that may run at once in this process (a process
/// serves one node): each holds a second copy of the state while it
/// rebuilds the past, so they are not allowed to pile up.
pub const TIME_TRAVEL_READS_MAX: usize = 1;

static TIME_TRAVEL_READS_RUNNING: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// One of the [`TIME_TRAVEL_READS_MAX`] slots, given back on drop.
struct TimeTravelReadSlot;

impl TimeTravelReadSlot {
    fn take() -> Option<TimeTravelReadSlot> {
        use std::sync::atomic::Ordering;
        TIME_TRAVEL_READS_RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < TIME_TRAVEL_READS_MAX).then_some(running + 1)
            })
            .ok()
            .map(|_| TimeTravelReadSlot)
    }
}

impl Drop for TimeTravelReadSlot {
    fn drop(&mut self) {
        TIME_TRAVEL_READS_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A connection's backup in progress.
type ConnectionBackup = Arc<parking_lot::Mutex<Option<crate::backup::ServedBackup>>>;

fn backup_step(
    node: &Node,
    backup: &ConnectionBackup,
    step: BackupStep,
) -> Result<BackupAnswer, String> {
    let mut backup = backup.lock();
    if step == BackupStep::Begin {
        *backup = None;
        *backup = Some(node.begin_backup().map_err(|err| err.to_string())?);
    }
    match &*backup {
        Some(backup) => backup.step(step),
        None => Err("no backup begun on this connection: send Begin first".to_string()),
    }
}

/// Framed bytes the writer prepares ahead of the socket: every answer
/// that is ready goes into one write up to this much; the rest waits
/// unframed (counted by its size), so a client that does not read costs
/// no framing work.
const WRITE_BATCH_BYTES: usize = 256 << 10;
/// What an answer costs beyond its result or message: while it waits
/// unframed, its `Completion`; once framed, the frame header, request id,
/// variant tags and sequence number (fewer bytes than that).
const ANSWER_OVERHEAD_BYTES: usize = std::mem::size_of::<Completion>() + 16;

/// The bytes an answer will take on the wire, near enough to count it
/// against the budget before it is framed; O(1).
fn answer_bytes(completion: &Completion) -> usize {
    ANSWER_OVERHEAD_BYTES
        + match &completion.result {
            Ok(tx) => match &tx.outcome {
                Outcome::Committed { result } => result.len(),
                Outcome::Aborted(abort) => abort.message.len(),
                Outcome::Deployed(summary) => {
                    summary.name.len() + summary.sha256.len() + 64 * summary.procedures.len()
                }
            },
            Err(_) => 256,
        }
}

/// Writes the node's answers and the reader's immediate answers as they
/// come, every answer that is ready framed into one buffer (up to
/// [`WRITE_BATCH_BYTES`]), so answers that are ready together leave in one
/// write. While the socket does not take them, it keeps taking answers off
/// the node's channel and counts their bytes in `queue` (the reader stops
/// reading over the budget), and gives up on a client that stays over the
/// budget for `slow_reader_timeout` or goes
/// [`ANSWER_BYTES_QUEUED_HARD_FACTOR`] times over it. Stops when the
/// reader's side of `buffers` is dropped, so nothing else may hold a
/// sender of it.
async fn write_responses<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut completions: mpsc::UnboundedReceiver<Vec<Completion>>,
    mut buffers: mpsc::Receiver<Vec<u8>>,
    queue: Arc<AnswerQueue>,
    frame_bytes_max: usize,
    slow_reader_timeout: Duration,
) -> Result<(), ConnectionError> {
    let budget = queue.budget;
    let hard_max = budget.saturating_mul(ANSWER_BYTES_QUEUED_HARD_FACTOR);
    // Framed answers; `pending[written..]` has not reached the socket yet.
    let mut pending: Vec<u8> = Vec::new();
    let mut written = 0;
    // Answers received and not framed yet, and their estimated bytes.
    let mut unframed: std::collections::VecDeque<Completion> = std::collections::VecDeque::new();
    let mut unframed_bytes = 0;
    let mut needs_flush = false;
    let mut over_budget_since: Option<tokio::time::Instant> = None;
    let mut open = true;
    let over_hard_max = |queued: usize| ConnectionError::SlowReader {
        queued,
        max: budget,
        how: format!("and reached {ANSWER_BYTES_QUEUED_HARD_FACTOR} times the budget"),
    };
    let take = |unframed: &mut std::collections::VecDeque<Completion>,
                unframed_bytes: &mut usize,
                ready: Vec<Completion>| {
        for completion in ready {
            *unframed_bytes += answer_bytes(&completion);
            unframed.push_back(completion);
        }
    };
    loop {
        // Take everything that is ready before writing, so it shares a write.
        while let Ok(ready) = completions.try_recv() {
            take(&mut unframed, &mut unframed_bytes, ready);
            if unframed_bytes > hard_max {
                return Err(over_hard_max(pending.len() - written + unframed_bytes));
            }
        }
        while open {
            match buffers.try_recv() {
                Ok(buffer) => pending.extend_from_slice(&buffer),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        while pending.len() - written < WRITE_BATCH_BYTES
            && let Some(completion) = unframed.pop_front()
        {
            unframed_bytes -= answer_bytes(&completion);
            let response = Response {
                request_id: completion.request_id,
                body: match completion.result {
                    Ok(tx) => outcome_body(tx),
                    Err(err) => refusal_body(&err),
                },
            };
            frame_all_into(&mut pending, std::iter::once(response), frame_bytes_max);
        }
        let framed = pending.len() - written;
        let queued = framed + unframed_bytes;
        queue.bytes.store(queued, Ordering::Relaxed);
        if queued > hard_max {
            return Err(over_hard_max(queued));
        }
        if queued > budget {
            over_budget_since.get_or_insert_with(tokio::time::Instant::now);
        } else if over_budget_since.take().is_some() {
            queue.drained.notify_one();
        }
        if framed == 0 {
            pending.clear();
            written = 0;
            if !open && !needs_flush {
                return Ok(());
            }
        }
        let slow_deadline = over_budget_since.map(|since| since + slow_reader_timeout);
        tokio::select! {
            biased;
            // Either the write of what is framed or, once all is written,
            // the flush (a no-op on TCP; TLS may still hold records).
            progress = async {
                if framed > 0 {
                    writer.write(&pending[written..]).await.map(Some)
                } else {
                    writer.flush().await.map(|()| None)
                }
            }, if framed > 0 || needs_flush => match progress? {
                Some(0) => {
                    return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                }
                Some(wrote) => {
                    written += wrote;
                    needs_flush = true;
                    queue.mark_written();
                    // Keep the buffer from holding a large burst's memory,
                    // and from moving a long tail forward byte by byte.
                    if written == pending.len() {
                        pending.clear();
                        written = 0;
                        if pending.capacity() > WRITE_BATCH_BYTES * 4 {
                            pending.shrink_to(WRITE_BATCH_BYTES);
                        }
                    } else if written > WRITE_BATCH_BYTES && written * 2 > pending.len() {
                        pending.drain(..written);
                        written = 0;
                    }
                }
                None => needs_flush = false,
            },
            Some(ready) = completions.recv() => take(&mut unframed, &mut unframed_bytes, ready),
            buffer = buffers.recv(), if open => match buffer {
                Some(buffer) => pending.extend_from_slice(&buffer),
                None => open = false,
            },
            () = sleep_until_some(slow_deadline) => {
                return Err(ConnectionError::SlowReader {
                    queued,
                    max: budget,
                    how: format!("for {slow_reader_timeout:?} (--slow-reader-timeout)"),
                });
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn outcome_body(tx: TxOutcome) -> ResponseBody {
    match tx.outcome {
        Outcome::Committed { result } => ResponseBody::Committed {
            seq: tx.seq,
            result,
            fuel_used: tx.fuel_used,
        },
        Outcome::Deployed(summary) => ResponseBody::Deployed {
            seq: tx.seq,
            name: summary.name,
            sha256: summary.sha256,
            procedures: summary.procedures,
        },
        Outcome::Aborted(abort) => ResponseBody::Aborted {
            seq: tx.seq,
            kind: abort.kind.as_str().to_string(),
            message: abort.message,
            fuel_used: tx.fuel_used,
        },
    }
}

/// The node's status as the protocol reports it.
pub fn status_info(node: &Node) -> StatusInfo {
    let status = node.status();
    let mut info = StatusInfo {
        position: status.engine.position,
        state_hash: status.engine.state_hash_hex(),
        chain_hash: status.engine.chain_hash_hex(),
        keys: status.engine.keys,
        log_records: status.log_records,
        node_id: None,
        role: ordo_client::protocol::ROLE_STANDALONE.to_string(),
        term: 0,
        leader: None,
        commit: 0,
        applied: status.raft_applied,
        partitions: node.partitions() as u32,
        sessions: status.engine.sessions,
        stored_result_bytes: status.engine.stored_result_bytes,
        snapshot_position: None,
        log_bytes: 0,
    };
    if let Some(storage) = node.storage_status() {
        info.snapshot_position = storage.snapshot_position;
        info.log_bytes = storage.log_bytes;
    }
    if let Some(cluster) = node.cluster_status() {
        info.log_records = cluster.last_log_index;
        info.node_id = Some(cluster.node_id);
        info.role = cluster.role.to_string();
        info.term = cluster.term;
        info.leader = cluster.leader;
        info.commit = cluster.commit;
    }
    info
}

/// The engine's name for a protocol encoding (the client crate must not
/// depend on the engine, so the two enums mirror each other).
fn args_encoding(encoding: Encoding) -> ArgsEncoding {
    match encoding {
        Encoding::Postcard => ArgsEncoding::Postcard,
        Encoding::Json => ArgsEncoding::Json,
    }
}

/// Why the node dropped a request unanswered: it stopped, or failed.
fn node_refusal(node: &Node) -> NodeError {
    match node.failure() {
        Some(reason) => NodeError::Failed(reason),
        None => NodeError::Stopped,
    }
}

fn refusal_body(err: &NodeError) -> ResponseBody {
    if let NodeError::NotLeader { leader_addr } = err {
        return ResponseBody::NotLeader {
            leader: leader_addr.clone(),
        };
    }
    if let NodeError::Behind { applied, wanted } = err {
        return ResponseBody::Behind {
            applied: *applied,
            wanted: *wanted,
        };
    }
    if let NodeError::SignatureMismatch { contract } = err {
        return ResponseBody::SignatureMismatch {
            message: err.to_string(),
            schema: Box::new(contract.schema.clone()),
        };
    }
    let reason = match err {
        NodeError::Overloaded { .. } => RequestRefusal::Overloaded,
        NodeError::ArgsTooLarge { .. } | NodeError::BadProcedureName { .. } => {
            RequestRefusal::BadRequest
        }
        NodeError::Deploy(_) => RequestRefusal::DeployRejected,
        NodeError::BadArguments { .. } => RequestRefusal::BadArguments,
        _ => RequestRefusal::Unavailable,
    };
    ResponseBody::Refused {
        reason,
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("secret", "secret"));
        assert!(!tokens_match("secret", "secreT"));
        assert!(!tokens_match("secret", "secret2"));
        assert!(!tokens_match("secret", "secre"));
        assert!(!tokens_match("secret", ""));
        assert!(token_ok(&None, &None));
        assert!(!token_ok(&Some("a".into()), &None));
        assert!(token_ok(&Some("a".into()), &Some("a".into())));
    }

    #[test]
    fn no_hello_the_server_accepts_looks_like_tls() {
        for bytes in 0..=HANDSHAKE_FRAME_BYTES_MAX as u32 {
            assert!(!looks_like_tls(&bytes.to_le_bytes()), "{bytes}");
        }
        // A TLS 1.2/1.3 ClientHello record: handshake, version 3.1, length.
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x03, 0x00]));
    }

    #[tokio::test]
    async fn a_tls_client_hello_looks_like_tls() {
        use ordo_client::tokio_rustls::TlsConnector;
        let (client, mut server) = tokio::io::duplex(64 << 10);
        let roots = rustls::RootCertStore::empty();
        let config =
            rustls::ClientConfig::builder_with_provider(ordo_client::tls::crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let name = ordo_client::tls::server_name("127.0.0.1:1").unwrap();
        tokio::spawn(async move { connector.connect(name, client).await });
        let mut header = [0u8; FRAME_HEADER_BYTES];
        server.read_exact(&mut header).await.unwrap();
        assert!(looks_like_tls(&header), "{header:?}");
    }
}
