//! `ordo serve`: the embedded node behind a TCP listener speaking the wire
//! protocol of `ordo_client::protocol`.
//!
//! Each connection: a handshake (magic, version, token), then a reader
//! that turns request frames into node submissions and a writer that
//! sends the answers. The path is built to cost few syscalls and wake-ups
//! per request: the reader decodes every whole frame a read brought and
//! submits them with one lock; the node answers a batch with one message
//! per connection, on an async channel; the writer frames every answer
//! that is ready into one buffer and writes it with one syscall. A malformed, truncated
//! or oversized frame closes only that connection.

use std::sync::Arc;
use std::time::Duration;

use ordo_client::protocol::{
    Encoding, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES, FrameDecoder, Hello,
    ProcedureDescription, ProtocolError, RefusalReason, Request, RequestBody, RequestRefusal,
    Response, ResponseBody, StatusInfo, Welcome, decode_payload, encode_frame, encode_frame_into,
    frame_payload_bytes,
};
use ordo_engine::{Outcome, TxOutcome};
use ordo_sequencer::entry::ArgsEncoding;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::node::{CallError, Completion, Node, NodeError, RemoteCall, Session};

pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Buffers of framed responses queued for one connection's writer. A
/// client that stops reading fills it, and then its answers wait in the
/// node (bounded by the node's in-flight limit) instead of growing here.
const CONNECTION_RESPONSE_BUFFERS_QUEUED_MAX: usize = 256;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 << 10;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub connections_max: usize,
    pub frame_bytes_max: usize,
    /// Required from every client, if set.
    pub client_token: Option<String>,
    /// Required for deploys, if set.
    pub admin_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            client_token: None,
            admin_token: None,
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

/// Accepts connections until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.connections_max));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: keep serving the
                // connections we have.
                Err(err) => {
                    eprintln!("ordo serve: accept failed: {err}");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let permit = slots.clone().try_acquire_owned().ok();
        let (node, config) = (node.clone(), config.clone());
        tokio::spawn(async move {
            let result = match permit {
                Some(_permit) => connection(node, config, stream).await,
                None => {
                    refuse(
                        stream,
                        RefusalReason::TooManyConnections,
                        "too many connections; retry later",
                    )
                    .await
                }
            };
            if let Err(err) = result {
                eprintln!("ordo serve: connection from {peer} closed: {err}");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("no handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("refused: {0}")]
    Refused(String),
}

async fn read_frame(
    stream: &mut (impl AsyncReadExt + Unpin),
    frame_bytes_max: usize,
) -> Result<Option<Vec<u8>>, ConnectionError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let bytes = frame_payload_bytes(header, frame_bytes_max)?;
    let mut payload = vec![0u8; bytes];
    stream.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

async fn write_message<T: serde::Serialize>(
    stream: &mut (impl AsyncWriteExt + Unpin),
    message: &T,
    frame_bytes_max: usize,
) -> Result<(), ConnectionError> {
    let frame = encode_frame(message, frame_bytes_max)?;
    stream.write_all(&frame).await?;
    stream.flush().await?;
    Ok(())
}

async fn refuse(
    mut stream: TcpStream,
    reason: RefusalReason,
    message: &str,
) -> Result<(), ConnectionError> {
    let welcome = Welcome::Refused {
        reason,
        message: message.to_string(),
    };
    write_message(&mut stream, &welcome, FRAME_BYTES_MAX_DEFAULT).await?;
    Err(ConnectionError::Refused(message.to_string()))
}

async fn connection(
    node: Arc<Node>,
    config: Arc<ServerConfig>,
    mut stream: TcpStream,
) -> Result<(), ConnectionError> {
    let hello = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_frame(&mut stream, config.frame_bytes_max),
    )
    .await
    .map_err(|_| ConnectionError::HandshakeTimeout)??;
    let Some(hello) = hello else { return Ok(()) };
    let hello: Hello = match decode_payload(&hello).and_then(|hello: Hello| {
        hello.check()?;
        Ok(hello)
    }) {
        Ok(hello) => hello,
        Err(err) => {
            return refuse(stream, RefusalReason::BadHandshake, &err.to_string()).await;
        }
    };
    if !token_ok(&config.client_token, &hello.token) {
        return refuse(
            stream,
            RefusalReason::Unauthorized,
            "wrong or missing client token (--token / ORDO_CLIENT_TOKEN)",
        )
        .await;
    }
    let welcome = Welcome::Accepted {
        version: ordo_client::protocol::PROTOCOL_VERSION,
        position: node.status().engine.position,
        node_id: node.cluster_status().map(|cluster| cluster.node_id),
    };
    write_message(&mut stream, &welcome, config.frame_bytes_max).await?;

    let (session, completions) = node.async_session(hello.client_id);
    let session = Arc::new(session);
    let (mut reader, writer) = stream.into_split();
    let (buffers_tx, buffers_rx) = mpsc::channel::<Vec<u8>>(CONNECTION_RESPONSE_BUFFERS_QUEUED_MAX);
    let responses = Responses {
        buffers: buffers_tx,
        frame_bytes_max: config.frame_bytes_max,
    };
    let writer_task = tokio::spawn(write_responses(
        writer,
        completions,
        buffers_rx,
        config.frame_bytes_max,
    ));
    let result = read_requests(&node, &config, &session, &mut reader, &responses).await;
    // Closing the reader's side of the buffers channel stops the writer.
    // Answers still in flight are delivered by the node to the session's
    // channel and dropped there; a client that reconnects and retries
    // gets them from the exactly-once table.
    drop(responses);
    let _ = writer_task.await;
    result
}

/// The way to a connection's writer: framed responses, many per buffer.
#[derive(Clone)]
struct Responses {
    buffers: mpsc::Sender<Vec<u8>>,
    frame_bytes_max: usize,
}

/// Frames `responses` into one buffer. A response too large for a frame
/// becomes a refusal saying so (the call itself did run).
fn frame_all(responses: impl Iterator<Item = Response>, frame_bytes_max: usize) -> Vec<u8> {
    let mut buffer = Vec::new();
    for response in responses {
        if let Err(err) = encode_frame_into(&mut buffer, &response, frame_bytes_max) {
            let refusal = Response {
                request_id: response.request_id,
                body: ResponseBody::Refused {
                    reason: RequestRefusal::BadRequest,
                    message: format!("the answer cannot be sent: {err}"),
                },
            };
            encode_frame_into(&mut buffer, &refusal, frame_bytes_max)
                .expect("a short refusal fits in any frame");
        }
    }
    buffer
}

impl Responses {
    fn frame_all(&self, responses: impl Iterator<Item = Response>) -> Vec<u8> {
        frame_all(responses, self.frame_bytes_max)
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
    node: &Arc<Node>,
    config: &Arc<ServerConfig>,
    session: &Arc<Session>,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    responses: &Responses,
) -> Result<(), ConnectionError> {
    let mut decoder = FrameDecoder::new(config.frame_bytes_max);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut calls = Vec::new();
    loop {
        let read = reader.read(&mut chunk).await?;
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
        while let Some(payload) = decoder.next_payload_slice()? {
            let request: Request = decode_payload(payload)?;
            let request_id = request.request_id;
            let body = match request.body {
                RequestBody::Call {
                    procedure,
                    encoding,
                    args,
                } => {
                    calls.push(RemoteCall {
                        request_id,
                        acked_below: request.acked_below,
                        procedure,
                        encoding: args_encoding(encoding),
                        args,
                    });
                    continue;
                }
                other => other,
            };
            // Keep the order of requests: calls before this one go first.
            if !submit_calls(session, &mut calls, responses).await {
                return Ok(());
            }
            if let Some(answer) = other_request(node, config, session, responses, request_id, body)
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
    config: &Arc<ServerConfig>,
    session: &Arc<Session>,
    responses: &Responses,
    request_id: u64,
    body: RequestBody,
) -> Option<ResponseBody> {
    match body {
        RequestBody::Call { .. } => unreachable!("calls are batched by the reader"),
        RequestBody::Session(change) => session
            .submit_session_change(request_id, crate::node::session_change(change))
            .err()
            .map(|err| refusal_body(&err)),
        RequestBody::Deploy {
            name,
            wasm,
            admin_token,
        } => {
            if !token_ok(&config.admin_token, &admin_token) {
                return Some(ResponseBody::Refused {
                    reason: RequestRefusal::Unauthorized,
                    message: "deploy needs the admin token (--admin-token / ORDO_ADMIN_TOKEN)"
                        .to_string(),
                });
            }
            // Compiling takes milliseconds: off the async threads.
            let (session, responses) = (session.clone(), responses.clone());
            tokio::spawn(async move {
                let deployed = tokio::task::spawn_blocking(move || {
                    session.deploy_with_id(request_id, &name, &wasm)
                })
                .await;
                let body = match deployed {
                    Ok(Ok(deployed)) => ResponseBody::Deployed {
                        seq: deployed.seq,
                        name: deployed.value.name,
                        sha256: deployed.value.sha256,
                        procedures: deployed.value.procedures,
                    },
                    Ok(Err(CallError::Aborted { seq, abort })) => ResponseBody::Aborted {
                        seq,
                        kind: abort.kind.as_str().to_string(),
                        message: abort.message,
                    },
                    Ok(Err(CallError::Node(err))) => refusal_body(&err),
                    Ok(Err(other)) => ResponseBody::Refused {
                        reason: RequestRefusal::BadRequest,
                        message: other.to_string(),
                    },
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
        } => {
            let (node, responses) = (node.clone(), responses.clone());
            tokio::spawn(async move {
                let encoding = args_encoding(encoding);
                let read =
                    tokio::task::spawn_blocking(move || node.read(&procedure, encoding, args))
                        .await;
                let body = match read {
                    Ok(Ok(read)) => match read.outcome {
                        Outcome::Committed { result } => ResponseBody::ReadDone {
                            position: read.position,
                            result,
                        },
                        Outcome::Aborted(abort) => ResponseBody::Aborted {
                            seq: read.position,
                            kind: abort.kind.as_str().to_string(),
                            message: abort.message,
                        },
                        Outcome::Deployed(_) => ResponseBody::Refused {
                            reason: RequestRefusal::BadRequest,
                            message: "a read cannot deploy".to_string(),
                        },
                    },
                    Ok(Err(err)) => refusal_body(&err),
                    Err(_) => ResponseBody::Refused {
                        reason: RequestRefusal::Unavailable,
                        message: "read task failed".to_string(),
                    },
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
    }
}

/// Writes the node's answers and the reader's immediate answers as they
/// come, every answer that is ready framed into one buffer, flushing when
/// nothing more is waiting, so answers that are ready together leave in
/// one write. Stops when the reader's side of `buffers` is dropped, so
/// nothing else may hold a sender of it.
async fn write_responses(
    writer: tokio::net::tcp::OwnedWriteHalf,
    mut completions: mpsc::UnboundedReceiver<Vec<Completion>>,
    mut buffers: mpsc::Receiver<Vec<u8>>,
    frame_bytes_max: usize,
) -> Result<(), ConnectionError> {
    let mut writer = BufWriter::with_capacity(64 << 10, writer);
    loop {
        let buffer = tokio::select! {
            Some(mut ready) = completions.recv() => {
                while let Ok(more) = completions.try_recv() {
                    ready.extend(more);
                }
                let responses = ready.into_iter().map(|completion| Response {
                    request_id: completion.request_id,
                    body: match completion.result {
                        Ok(tx) => outcome_body(tx),
                        Err(err) => refusal_body(&err),
                    },
                });
                frame_all(responses, frame_bytes_max)
            }
            buffer = buffers.recv() => match buffer {
                Some(buffer) => buffer,
                None => break,
            },
        };
        writer.write_all(&buffer).await?;
        if buffers.is_empty() && completions.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    Ok(())
}

fn outcome_body(tx: TxOutcome) -> ResponseBody {
    match tx.outcome {
        Outcome::Committed { result } => ResponseBody::Committed {
            seq: tx.seq,
            result,
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
    };
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

fn refusal_body(err: &NodeError) -> ResponseBody {
    if let NodeError::NotLeader { leader_addr } = err {
        return ResponseBody::NotLeader {
            leader: leader_addr.clone(),
        };
    }
    let reason = match err {
        NodeError::Overloaded { .. } => RequestRefusal::Overloaded,
        NodeError::ArgsTooLarge { .. } => RequestRefusal::BadRequest,
        NodeError::Deploy(_) => RequestRefusal::DeployRejected,
        _ => RequestRefusal::Unavailable,
    };
    ResponseBody::Refused {
        reason,
        message: err.to_string(),
    }
}

/// Largest HTTP request head the metrics endpoint reads.
const METRICS_REQUEST_BYTES_MAX: usize = 8 << 10;

/// Serves `GET /metrics` in the Prometheus text format until `shutdown`.
/// Deliberately minimal HTTP/1.1: one request per connection, then close.
pub async fn serve_metrics(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let mut stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let node = node.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            let complete = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    let read = stream.read(&mut chunk).await.ok()?;
                    if read == 0 || head.len() + read > METRICS_REQUEST_BYTES_MAX {
                        return None;
                    }
                    head.extend_from_slice(&chunk[..read]);
                }
                Some(())
            })
            .await;
            if !matches!(complete, Ok(Some(()))) {
                return;
            }
            let (status, body) = if head.starts_with(b"GET /metrics ") {
                ("200 OK", node.metrics_text())
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_string(),
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
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
}
