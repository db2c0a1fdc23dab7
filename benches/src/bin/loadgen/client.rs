//! One simulated client: connects, syncs, edits at a fixed rate, sends
//! presence, and counts and times the markers it receives.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

use crate::framing::Dialect;
use crate::marker;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Clients connect and sync.
    Connecting,
    /// Clients edit; nothing is measured yet.
    Warmup,
    /// Clients edit; everything is measured.
    Measuring,
    /// Clients stop editing and keep receiving.
    Draining,
    /// Clients report and leave.
    Done,
}

/// What every client shares.
pub struct Shared {
    /// When the run started; every timestamp counts from it.
    pub start: Instant,
    /// The current phase.
    pub phase: watch::Receiver<Phase>,
    /// Limits handshakes in flight.
    pub connect_slots: Arc<Semaphore>,
    /// Live counters, for progress and the drain check.
    pub live: Live,
}

/// Counters read while the run goes on.
#[derive(Default)]
pub struct Live {
    /// Clients synced.
    pub connected: AtomicU64,
    /// Clients that failed to connect or were disconnected.
    pub failed: AtomicU64,
    /// Edits sent, by document.
    pub sent_by_doc: Vec<AtomicU64>,
    /// Markers received from other clients.
    pub received: AtomicU64,
}

impl Live {
    /// Counters for `docs` documents.
    pub fn new(docs: usize) -> Self {
        Self {
            sent_by_doc: (0..docs).map(|_| AtomicU64::new(0)).collect(),
            ..Self::default()
        }
    }
}

/// Who a client is and what it does.
#[derive(Debug, Clone)]
pub struct Spec {
    /// WebSocket URL to connect to.
    pub url: String,
    /// Index of the server node `url` belongs to.
    pub node: usize,
    /// Number of server nodes; client `c` of a document is on node
    /// `c mod nodes`, which tells a receiver where each sender is.
    pub nodes: usize,
    /// Document name.
    pub doc: String,
    /// Index of the document.
    pub doc_index: usize,
    /// Global client index (unique in the run).
    pub global: u32,
    /// Global index of the document's first client, and how many it has:
    /// markers from these senders are counted.
    pub doc_clients: std::ops::Range<u32>,
    /// Whether it applies every update (otherwise it only scans for markers).
    pub full: bool,
    /// Whether it edits at all (the late joiner does not).
    pub edits: bool,
    /// Edits per second.
    pub rate: f64,
    /// Presence update interval.
    pub awareness_every: Option<Duration>,
    /// Wire dialect.
    pub dialect: Dialect,
}

/// What a client measured.
pub struct Report {
    /// Handshake time (connect to step 2), if it synced.
    pub handshake: Option<Duration>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Edits sent (all phases).
    pub sent: u64,
    /// Markers received from each client of the document, indexed by
    /// `sender - doc_clients.start`.
    pub received_from: Vec<u32>,
    /// Latency of markers sent while measuring, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The part of `latency_us` whose senders were on another node. Made
    /// on the first such marker: a histogram is ~170 KB and a run can have
    /// 10,000 clients, so single-node runs do not pay for it.
    pub latency_cross_us: Option<Histogram<u64>>,
    /// Frames and bytes received while measuring.
    pub frames_in: u64,
    /// Bytes received while measuring.
    pub bytes_in: u64,
    /// Frames sent while measuring.
    pub frames_out: u64,
    /// Bytes sent while measuring.
    pub bytes_out: u64,
    /// Markers received while measuring (deliveries in the window).
    pub deliveries_in_window: u64,
    /// The part of `deliveries_in_window` sent on another node.
    pub cross_deliveries_in_window: u64,
    /// Edits sent more than 50 ms after their schedule (the generator
    /// could not keep up).
    pub late_sends: u64,
    /// The final text, for clients that apply updates.
    pub text: Option<String>,
    /// Length of the seeded text (`--seed-kib`) the client holds at the
    /// end, for clients that apply updates.
    pub seed_len: Option<u32>,
}

impl Report {
    fn new(spec: &Spec) -> Self {
        Self {
            handshake: None,
            error: None,
            sent: 0,
            received_from: vec![0; spec.doc_clients.len()],
            latency_us: latency_histogram(),
            latency_cross_us: None,
            frames_in: 0,
            bytes_in: 0,
            frames_out: 0,
            bytes_out: 0,
            deliveries_in_window: 0,
            cross_deliveries_in_window: 0,
            late_sends: 0,
            text: None,
            seed_len: None,
        }
    }
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// Whether a marker from `sender` (a global index) was sent on another
/// node than `spec`'s.
fn crossed_nodes(spec: &Spec, sender: u32) -> bool {
    spec.nodes > 1
        && sender
            .checked_sub(spec.doc_clients.start)
            .is_some_and(|i| i as usize % spec.nodes != spec.node)
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest frame or message a client reads.
const MAX_MESSAGE: usize = 256 << 20;
const LATE: Duration = Duration::from_millis(50);

/// Runs one client until the phase is `Done`.
pub async fn run(spec: Spec, shared: Arc<Shared>) -> Report {
    let mut report = Report::new(&spec);
    if let Err(error) = session(&spec, &shared, &mut report).await {
        shared.live.failed.fetch_add(1, Ordering::Relaxed);
        report.error = Some(error);
    }
    report
}

/// A client's documents. Edits come from `writer`, which holds only this
/// client's own text: each marker goes right after the client's previous
/// one, the way a person keeps typing in their own paragraph. Inserting
/// everything at position 0 instead makes every update conflict with the
/// ~1000 inserts other clients just made there, and the benchmark would
/// measure YATA conflict scans (yrs's `resolve_conflict`), not the server.
struct State {
    writer: Doc,
    writer_text: yrs::TextRef,
    /// Everything, own and received (full clients only).
    replica: Option<Doc>,
    seq: u32,
    awareness_clock: u32,
}

async fn session(spec: &Spec, shared: &Shared, report: &mut Report) -> Result<(), String> {
    let permit = shared
        .connect_slots
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let began = Instant::now();
    // No Nagle: edits are small and latency is what is measured. A small
    // read buffer: tungstenite zero-fills its whole read chunk (128 KiB by
    // default) on every read, which cost the generator 8% of its CPU. No
    // 16 MiB frame limit (tungstenite's default): the Node servers answer a
    // join with the whole state in one frame, and browsers accept it.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_frame_size(Some(MAX_MESSAGE))
        .max_message_size(Some(MAX_MESSAGE));
    let connect = connect_async_with_config(spec.url.as_str(), Some(config), true);
    let (mut ws, _) = timeout(HANDSHAKE_TIMEOUT, connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let writer = Doc::new();
    let writer_text = writer.get_or_insert_text("t");
    let mut state = State {
        replica: spec
            .full
            .then(|| Doc::with_client_id(writer.client_id().get())),
        writer,
        writer_text,
        seq: 0,
        awareness_clock: 0,
    };
    let send = |message: Vec<u8>| WsMessage::Binary(spec.dialect.wrap(&spec.doc, &message).into());
    if let Some(hello) = spec.dialect.hello(&spec.doc) {
        ws.send(WsMessage::Binary(hello.into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    ws.send(send(step1)).await.map_err(|e| e.to_string())?;

    // Handshake: wait for the server's step 2.
    let synced = timeout(HANDSHAKE_TIMEOUT, async {
        while let Some(frame) = ws.next().await {
            let WsMessage::Binary(bytes) = frame.map_err(|e| e.to_string())? else {
                continue;
            };
            let Some(message) = spec.dialect.unwrap(&spec.doc, &bytes) else {
                continue;
            };
            if let Some(refusal) = spec.dialect.refusal(message) {
                return Err(refusal);
            }
            let (is_step2, reply) = handle(spec, shared, &mut state, report, message, false);
            if let Some(reply) = reply {
                ws.send(send(reply)).await.map_err(|e| e.to_string())?;
            }
            if is_step2 {
                return Ok(());
            }
        }
        Err("closed during handshake".to_owned())
    })
    .await
    .map_err(|_| "handshake timed out".to_owned())?;
    synced?;
    report.handshake = Some(began.elapsed());
    drop(permit);
    shared.live.connected.fetch_add(1, Ordering::Relaxed);

    let mut phase = shared.phase.clone();
    let interval = (spec.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / spec.rate));
    // Spread the first edits over one interval so clients do not beat in step.
    let jitter = |d: Duration| d.mul_f64(fastrand_unit(spec.global));
    let mut next_edit = Instant::now() + interval.map(jitter).unwrap_or(Duration::from_secs(3600));
    let mut next_awareness = Instant::now()
        + spec
            .awareness_every
            .map(jitter)
            .unwrap_or(Duration::from_secs(3600));
    loop {
        let current = *phase.borrow();
        if current == Phase::Done {
            break;
        }
        let sending = spec.edits && matches!(current, Phase::Warmup | Phase::Measuring);
        let measuring = current == Phase::Measuring;
        tokio::select! {
            frame = ws.next() => {
                let Some(frame) = frame else { return Err("server closed the connection".into()) };
                let frame = frame.map_err(|e| e.to_string())?;
                let WsMessage::Binary(bytes) = frame else {
                    if let WsMessage::Close(close) = frame {
                        return Err(format!("closed by server: {close:?}"));
                    }
                    continue;
                };
                if measuring {
                    report.frames_in += 1;
                    report.bytes_in += bytes.len() as u64;
                }
                let Some(message) = spec.dialect.unwrap(&spec.doc, &bytes) else { continue };
                if let Some(refusal) = spec.dialect.refusal(message) {
                    return Err(refusal);
                }
                if let (_, Some(reply)) = handle(spec, shared, &mut state, report, message, measuring) {
                    ws.send(send(reply)).await.map_err(|e| e.to_string())?;
                }
            }
            _ = sleep_until(next_edit.into()), if sending && interval.is_some() => {
                let interval = interval.expect("checked");
                if next_edit.elapsed() > LATE {
                    report.late_sends += 1;
                }
                let frame = send(edit(spec, shared, &mut state));
                if measuring {
                    report.frames_out += 1;
                    report.bytes_out += frame.len() as u64;
                }
                ws.send(frame).await.map_err(|e| e.to_string())?;
                report.sent += 1;
                shared.live.sent_by_doc[spec.doc_index].fetch_add(1, Ordering::Relaxed);
                next_edit += interval;
            }
            _ = sleep_until(next_awareness.into()), if sending && spec.awareness_every.is_some() => {
                state.awareness_clock += 1;
                let frame = send(awareness(&state, spec.global));
                ws.send(frame).await.map_err(|e| e.to_string())?;
                next_awareness += spec.awareness_every.expect("checked");
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(replica) = &state.replica {
        report.text = Some(
            replica
                .get_or_insert_text("t")
                .get_string(&replica.transact()),
        );
        report.seed_len = Some(
            replica
                .get_or_insert_text(crate::seed::ROOT)
                .len(&replica.transact()),
        );
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Handles one message; returns whether it was a step 2 and a reply.
fn handle(
    spec: &Spec,
    shared: &Shared,
    state: &mut State,
    report: &mut Report,
    message: &[u8],
    measuring: bool,
) -> (bool, Option<Vec<u8>>) {
    match message {
        // Sync step 1 from the server: answer with what we have that it lacks.
        [0, 0, ..] => {
            let reply = Message::decode_v1(message).ok().and_then(|m| match m {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let diff = state.writer.transact().encode_state_as_update_v1(&sv);
                    Some(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1())
                }
                _ => None,
            });
            (false, reply)
        }
        // Step 2 or update: count markers; apply if this client keeps a replica.
        [0, kind @ (1 | 2), ..] => {
            let now_us = shared.start.elapsed().as_micros() as u64;
            let mut received = 0;
            marker::scan(message, |m| {
                if m.sender == spec.global {
                    return;
                }
                received += 1;
                if let Some(count) = m
                    .sender
                    .checked_sub(spec.doc_clients.start)
                    .and_then(|i| report.received_from.get_mut(i as usize))
                {
                    *count += 1;
                }
                if measuring {
                    let latency = now_us.saturating_sub(m.sent_us).max(1);
                    report.deliveries_in_window += 1;
                    let _ = report.latency_us.record(latency);
                    if crossed_nodes(spec, m.sender) {
                        report.cross_deliveries_in_window += 1;
                        let _ = report
                            .latency_cross_us
                            .get_or_insert_with(latency_histogram)
                            .record(latency);
                    }
                }
            });
            shared.live.received.fetch_add(received, Ordering::Relaxed);
            if let Some(replica) = &state.replica
                && let Ok(Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u))) =
                    Message::decode_v1(message)
            {
                apply(replica, &u);
            }
            (*kind == 1, None)
        }
        _ => (false, None),
    }
}

/// Appends a marker after this client's previous one and returns the
/// update frame.
fn edit(spec: &Spec, shared: &Shared, state: &mut State) -> Vec<u8> {
    let sent_us = shared.start.elapsed().as_micros() as u64;
    let marker = marker::text(spec.global, state.seq, sent_us);
    state.seq += 1;
    let update = {
        let mut txn = state.writer.transact_mut();
        let end = state.writer_text.len(&txn);
        state.writer_text.insert(&mut txn, end, &marker);
        txn.encode_update_v1()
    };
    if let Some(replica) = &state.replica {
        apply(replica, &update);
    }
    Message::Sync(SyncMessage::Update(update)).encode_v1()
}

fn apply(doc: &Doc, update: &[u8]) {
    if let Ok(update) = Update::decode_v1(update) {
        let _ = doc.transact_mut().apply_update(update);
    }
}

fn awareness(state: &State, global: u32) -> Vec<u8> {
    let json = format!(
        r#"{{"user":{{"name":"client {global}"}},"cursor":{}}}"#,
        state.seq
    );
    let update = yrs::sync::AwarenessUpdate {
        clients: HashMap::from([(
            state.writer.client_id(),
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock: state.awareness_clock,
                json: Arc::from(json),
            },
        )]),
    };
    Message::Awareness(update).encode_v1()
}

/// A number in [0, 1) that differs between clients (a hash of the index).
fn fastrand_unit(seed: u32) -> f64 {
    let mut x = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(node: usize, nodes: usize) -> Spec {
        Spec {
            url: String::new(),
            node,
            nodes,
            doc: "d".into(),
            doc_index: 1,
            global: 10 + node as u32,
            doc_clients: 10..15,
            full: false,
            edits: true,
            rate: 1.0,
            awareness_every: None,
            dialect: Dialect::YWebsocket,
        }
    }

    #[test]
    fn senders_alternate_between_nodes_like_clients_do() {
        // Two nodes: the document's clients 10, 12, 14 are on node 0.
        let on_0 = spec(0, 2);
        let crossed: Vec<bool> = (10..15).map(|s| crossed_nodes(&on_0, s)).collect();
        assert_eq!(crossed, [false, true, false, true, false]);
        let on_1 = spec(1, 2);
        let crossed: Vec<bool> = (10..15).map(|s| crossed_nodes(&on_1, s)).collect();
        assert_eq!(crossed, [true, false, true, false, true]);
    }

    #[test]
    fn one_node_never_crosses() {
        let alone = spec(0, 1);
        assert!((10..15).all(|s| !crossed_nodes(&alone, s)));
    }
}
