//! One WebSocket connection: decodes frames on its own task, hands messages
//! to the document task, writes what the document queues for it, and keeps
//! the connection alive (or ends it with a reason).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use crdt_core::{FrameError, Scope, wire};
use futures_util::SinkExt;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::auth::credentials::Credentials;
use crate::auth::limits::ConnectionMeter;
use crate::auth::{AccessChange, AuthMethod, Caller, Principal, Target};
use crate::docs::{
    CloseReason, Command, ConnId, Control, DocError, DocHandle, DocName, Outbound, PeerLink,
};
use crate::state::AppState;
use governance::audit::{Action, Outcome};

/// Most queued frames written to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// How one connection ended, for metrics.
enum Ending {
    /// The server closed it, with this reason.
    Server(CloseReason),
    /// The client closed it or went away.
    Client,
}

/// Who is on a connection: as resolved at the upgrade, and what is needed
/// to resolve them again when their access changes.
pub struct Who {
    /// The caller at the upgrade.
    pub caller: Arc<Caller>,
    /// Who they are, before the workspace.
    pub principal: Principal,
    /// What they presented (re-checked: a key may be revoked).
    pub credentials: Credentials,
}

/// Serves one upgraded connection until it ends.
pub async fn serve(
    mut socket: WebSocket,
    state: AppState,
    name: DocName,
    scope: Scope,
    who: Who,
    _permit: OwnedSemaphorePermit,
) {
    let Who {
        caller,
        principal,
        credentials,
    } = who;
    // Subscribed before joining, so no change between the upgrade and the
    // join goes unseen.
    let changes = state.auth.subscribe();
    let metrics = state.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();
    let id = state.next_conn_id();
    // Attribution names signed-in users; anonymous connections by id.
    let origin: Arc<str> = match caller.method {
        AuthMethod::Anonymous => Arc::from(id.to_string()),
        _ => Arc::from(caller.author()),
    };
    let config = &state.config;
    let (link, outbound, control) = PeerLink::new(
        id,
        origin,
        config.outbound_queue_frames,
        config.outbound_queue_bytes,
    );
    let link = link.with_caller(caller.clone());

    let ending = match join(&state, &name, link, scope).await {
        Ok(handle) => {
            let mut conn = Connection {
                socket: &mut socket,
                state: &state,
                id,
                handle: handle.clone(),
                control,
                name: &name,
                principal,
                credentials,
                changes,
                meter: ConnectionMeter::new(config.connection_limits, Instant::now()),
            };
            let ending = conn.run(outbound).await;
            // The document may already have removed us; a stopped task has.
            let _stopped = handle.send(Command::Leave { conn: id }).await;
            ending
        }
        Err(error) => Ending::Server(match error {
            DocError::ShuttingDown => CloseReason::GoingAway,
            other => CloseReason::StorageUnavailable(other.to_string()),
        }),
    };
    match &ending {
        Ending::Server(reason) => metrics.disconnect(reason.label()),
        Ending::Client => metrics.disconnect("client_closed"),
    }
    metrics.connections.dec();
    let (outcome, why) = match &ending {
        Ending::Server(reason) => (
            Outcome::Failed {
                reason: reason.text(),
            },
            reason.label(),
        ),
        Ending::Client => (Outcome::Allowed, "client_closed"),
    };
    state.guard.record_fact(
        Action::Disconnect,
        &caller,
        &name,
        outcome,
        serde_json::json!({ "connection": id.to_string(), "ended": why }),
    );
    if let Ending::Server(reason) = &ending {
        close(&mut socket, reason).await;
    }
}

/// Joins the document, retrying if its task was unloading.
async fn join(
    state: &AppState,
    name: &DocName,
    link: PeerLink,
    scope: Scope,
) -> Result<DocHandle, DocError> {
    for _ in 0..3 {
        let handle = state.registry.handle(name)?;
        let (reply, joined) = oneshot::channel();
        let command = Command::Join {
            peer: link.clone(),
            scope,
            reply,
        };
        if handle.send(command).await.is_err() {
            continue;
        }
        match joined.await {
            Ok(Ok(())) => return Ok(handle),
            Ok(Err(DocError::Closed)) | Err(_) => continue,
            Ok(Err(error)) => return Err(error),
        }
    }
    Err(DocError::Closed)
}

/// Sends a close frame with the reason, then waits briefly for the peer's
/// close so the frame is not lost in a reset.
async fn close(socket: &mut WebSocket, reason: &CloseReason) {
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.text().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        let _timed_out = timeout(Duration::from_secs(1), async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

struct Connection<'a> {
    socket: &'a mut WebSocket,
    state: &'a AppState,
    id: ConnId,
    handle: DocHandle,
    control: Arc<Control>,
    name: &'a DocName,
    principal: Principal,
    credentials: Credentials,
    changes: tokio::sync::broadcast::Receiver<AccessChange>,
    meter: ConnectionMeter,
}

impl Connection<'_> {
    async fn run(&mut self, mut outbound: mpsc::Receiver<Outbound>) -> Ending {
        let config = &self.state.config;
        let shutdown = self.state.shutdown.clone();
        let mut ticker = interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_received = Instant::now();
        let mut last_sent = Instant::now();
        let mut last_ping = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = self.control.closed() => {
                    return Ending::Server(self.control.reason().cloned().unwrap_or(CloseReason::GoingAway));
                }
                _ = shutdown.cancelled() => return Ending::Server(CloseReason::GoingAway),
                change = self.changes.recv() => {
                    let concerns = match &change {
                        Ok(change) => change.concerns(&self.principal.user, self.name.workspace()),
                        // Missed some: re-check rather than guess.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                    };
                    if concerns && let Err(reason) = self.recheck().await {
                        return Ending::Server(reason);
                    }
                }
                frame = outbound.recv() => {
                    let Some(frame) = frame else {
                        return Ending::Server(CloseReason::GoingAway);
                    };
                    if self.write(frame, &mut outbound).await.is_err() {
                        return Ending::Client;
                    }
                    last_sent = Instant::now();
                }
                message = self.socket.recv() => {
                    last_received = Instant::now();
                    match message {
                        Some(Ok(Message::Binary(frame))) => {
                            if let Err(reason) = self.receive(frame).await {
                                return Ending::Server(reason);
                            }
                        }
                        Some(Ok(Message::Text(_))) => return Ending::Server(CloseReason::TextFrame),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => return Ending::Client,
                        Some(Err(error)) => return read_error(error),
                    }
                }
                _ = ticker.tick() => {
                    if last_received.elapsed() >= config.ping_interval * 2 {
                        return Ending::Server(CloseReason::Timeout);
                    }
                    if last_ping.elapsed() >= config.ping_interval {
                        last_ping = Instant::now();
                        if self.socket.send(Message::Ping(Bytes::new())).await.is_err() {
                            return Ending::Client;
                        }
                    }
                    if last_sent.elapsed() >= config.keepalive_interval {
                        last_sent = Instant::now();
                        let frame = Message::Binary(Bytes::from(wire::keepalive()));
                        if self.socket.send(frame).await.is_err() {
                            return Ending::Client;
                        }
                    }
                }
            }
        }
    }

    /// Resolves the caller again after an access change: with no role left
    /// (or a credential no longer valid) the connection ends with 4403;
    /// otherwise the document decides its next writes with the new role.
    async fn recheck(&mut self) -> Result<(), CloseReason> {
        let auth = &self.state.auth;
        let resolved = match auth.authenticate(&self.credentials).await {
            Ok(principal) => {
                self.principal = principal;
                auth.caller(
                    &self.principal,
                    Target::Document(self.name),
                    &self.credentials,
                )
                .await
            }
            Err(error) => Err(error),
        };
        let caller = match resolved {
            Ok(caller) if caller.role.is_some() => caller,
            Ok(caller) => {
                return Err(CloseReason::AccessRevoked(format!(
                    "{} has no role in workspace {:?}",
                    caller.user,
                    self.name.workspace()
                )));
            }
            Err(error) => return Err(CloseReason::AccessRevoked(error.to_string())),
        };
        let command = Command::SetCaller {
            conn: self.id,
            caller: Arc::new(caller),
        };
        self.handle
            .send(command)
            .await
            .map_err(|_| CloseReason::StorageUnavailable("document task stopped; reconnect".into()))
    }

    /// Writes `first` and whatever else is queued, flushing once. A sync
    /// reply's frames are flushed one by one, so a large document streams
    /// out instead of piling up in the socket's buffer.
    async fn write(
        &mut self,
        first: Outbound,
        outbound: &mut mpsc::Receiver<Outbound>,
    ) -> Result<(), axum::Error> {
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(frame) => {
                    let len = frame.len();
                    self.socket.feed(Message::Binary(frame)).await?;
                    self.control.written(len);
                }
                Outbound::Reply(frames) => {
                    for frame in frames {
                        let len = frame.len();
                        self.socket.send(Message::Binary(frame)).await?;
                        self.control.written(len);
                    }
                }
            }
            written += 1;
            if written < WRITE_BATCH {
                next = outbound.try_recv().ok();
            }
        }
        self.socket.flush().await
    }

    /// Decodes a frame here, in parallel with other connections, and hands
    /// the messages to the document task.
    async fn receive(&mut self, frame: Bytes) -> Result<(), CloseReason> {
        let metrics = &self.state.metrics;
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(frame.len() as u64);
        let messages = crdt_core::wire::decode_frame(&frame, &self.state.config.docs.limits)
            .map_err(|error| frame_close_reason(&error))?;
        let now = Instant::now();
        for message in &messages {
            use yrs::sync::{Message as M, SyncMessage as S};
            let counted = match message {
                M::Sync(S::SyncStep2(_) | S::Update(_)) => self.meter.update(now),
                M::Awareness(_) => self.meter.awareness(now),
                _ => Ok(()),
            };
            counted.map_err(CloseReason::PolicyViolation)?;
        }
        let command = Command::Messages {
            conn: self.id,
            messages,
            frame,
            received_at: Instant::now(),
        };
        self.handle
            .send(command)
            .await
            .map_err(|_| CloseReason::StorageUnavailable("document task stopped; reconnect".into()))
    }
}

fn frame_close_reason(error: &FrameError) -> CloseReason {
    match error {
        FrameError::TooLarge { .. } | FrameError::UpdateTooLarge { .. } => {
            CloseReason::FrameTooLarge(error.to_string())
        }
        other => CloseReason::BadFrame(other.to_string()),
    }
}

fn read_error(error: axum::Error) -> Ending {
    // tungstenite stops a frame over its size limit before buffering it all.
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(capacity)) => Ending::Server(CloseReason::FrameTooLarge(
            format!("frame refused: {capacity}"),
        )),
        _ => Ending::Client,
    }
}
