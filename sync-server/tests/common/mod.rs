//! Test harness: a real server on 127.0.0.1:0 and a y-websocket client
//! written against yrs, speaking the protocol the way stock clients do.

#![allow(dead_code, missing_docs)]

pub mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sync_server::Config;
use sync_server::store::{DocStore, SledConfig, SledStore};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, TextRef, Transact, Update};

/// A server running in this process on its own data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data: TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), sync_server::ServerError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test defaults adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        Self::start_in(data, tune).await
    }

    /// Starts on an existing data directory (for restarts).
    pub async fn start_in(data: TempDir, tune: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_test(data.path());
        tune(&mut config);
        let store = open_store(data.path(), &config);
        Self::serve(data, config, store).await
    }

    /// Serves `store` (of any kind) with `config`; `data` is the data
    /// directory the configuration names.
    pub async fn serve(data: TempDir, config: Config, store: Arc<dyn DocStore>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sync_server::serve(
            config,
            store,
            listener,
            shutdown.clone(),
        ));
        Self {
            addr,
            data,
            shutdown,
            task,
        }
    }

    /// Graceful shutdown; returns the data directory for a restart.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        self.data
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws(&self, doc: &str) -> String {
        format!("ws://{}/ws/{}", self.addr, doc)
    }

    pub async fn client(&self, doc: &str) -> Client {
        Client::connect(&self.ws(doc)).await
    }

    /// The value of a metric summed over its label sets, or of one series
    /// when `name` includes labels (`name{label="v"}`).
    pub async fn metric(&self, name: &str) -> f64 {
        let body = reqwest::get(self.http("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let metric = if name.contains('{') {
                    key
                } else {
                    key.split('{').next()?
                };
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

/// Sends a request; returns the status and the body as JSON (a string
/// when it is not JSON).
pub async fn call(request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

pub fn open_store(path: &Path, config: &Config) -> Arc<dyn DocStore> {
    SledStore::open(SledConfig {
        path: path.to_owned(),
        cache_bytes: 8 << 20,
        fsync: config.fsync,
        commit_delay: config.commit_delay,
    })
    .expect("open sled")
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A y-websocket client over a yrs document. Edits go to the text root `t`.
pub struct Client {
    ws: Socket,
    pub doc: Doc,
    text: TextRef,
    /// The server's step 2 arrived.
    pub synced: bool,
    /// Awareness states received, by client id (`None` once removed).
    pub presence: HashMap<u64, Option<String>>,
    /// Binary frames received.
    pub frames: usize,
    /// Size of the largest frame received.
    pub largest_frame: usize,
    /// Update and step-2 frames received.
    pub update_frames: usize,
    /// Permission-denied reasons received.
    pub denied: Vec<String>,
    /// The close frame, once the server closed the connection.
    pub closed: Option<(u16, String)>,
}

impl Client {
    /// Connects and completes the handshake.
    pub async fn connect(url: &str) -> Client {
        let mut client = Self::open(url).await;
        client.handshake().await;
        client
    }

    /// Connects without the handshake.
    pub async fn open(url: &str) -> Client {
        let (ws, _) = connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        Client {
            ws,
            doc,
            text,
            synced: false,
            presence: HashMap::new(),
            frames: 0,
            largest_frame: 0,
            update_frames: 0,
            denied: Vec::new(),
            closed: None,
        }
    }

    /// Connects with `Authorization: Bearer <bearer>` (when given) and
    /// completes the handshake; a refused upgrade is `Err((status, body))`.
    pub async fn connect_as(url: &str, bearer: Option<&str>) -> Result<Client, (u16, String)> {
        let mut client = Self::open_as(url, bearer).await?;
        client.handshake().await;
        Ok(client)
    }

    /// [`Client::connect_as`] without the handshake.
    pub async fn open_as(url: &str, bearer: Option<&str>) -> Result<Client, (u16, String)> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a WebSocket URL");
        if let Some(token) = bearer {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header value"),
            );
        }
        let ws = match connect_async(request).await {
            Ok((ws, _)) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Err((response.status().as_u16(), body));
            }
            Err(e) => panic!("connect {url}: {e}"),
        };
        let doc = Doc::new();
        let text = doc.get_or_insert_text("t");
        Ok(Client {
            ws,
            doc,
            text,
            synced: false,
            presence: HashMap::new(),
            frames: 0,
            largest_frame: 0,
            update_frames: 0,
            denied: Vec::new(),
            closed: None,
        })
    }

    /// Connects again, to `url`, keeping the document, as a provider does
    /// after its connection dropped: the handshake sends what the server
    /// lacks and receives what this client lacks.
    pub async fn reconnect(&mut self, url: &str) {
        let (ws, _) = connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        self.ws = ws;
        self.synced = false;
        self.closed = None;
        self.handshake().await;
    }

    /// Sends step 1 and waits for the server's step 2.
    pub async fn handshake(&mut self) {
        let sv = self.doc.transact().state_vector();
        self.send(Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1())
            .await;
        assert!(
            self.pump_until(|c| c.synced, Duration::from_secs(10)).await,
            "no step 2 from the server"
        );
    }

    pub async fn send(&mut self, frame: Vec<u8>) {
        self.ws
            .send(WsMessage::Binary(frame.into()))
            .await
            .expect("send");
    }

    /// Appends `s` to the text and sends the update.
    pub async fn insert(&mut self, s: &str) {
        assert!(self.try_insert(s).await, "send failed");
    }

    /// Appends `s` and sends the update; false if the connection is gone.
    pub async fn try_insert(&mut self, s: &str) -> bool {
        let update = {
            let mut txn = self.doc.transact_mut();
            let len = self.text.len(&txn);
            self.text.insert(&mut txn, len, s);
            txn.encode_update_v1()
        };
        let frame = crdt_core::wire::sync_update(&update);
        self.ws.send(WsMessage::Binary(frame.into())).await.is_ok()
    }

    /// Applies `(position, deleted, inserted)` patches to the text in one
    /// transaction and sends the update.
    pub async fn edit(&mut self, patches: &[(u32, u32, String)]) {
        let update = {
            let mut txn = self.doc.transact_mut();
            for (pos, del, ins) in patches {
                if *del > 0 {
                    self.text.remove_range(&mut txn, *pos, *del);
                }
                if !ins.is_empty() {
                    self.text.insert(&mut txn, *pos, ins);
                }
            }
            txn.encode_update_v1()
        };
        self.send(crdt_core::wire::sync_update(&update)).await;
    }

    /// Sets this client's awareness state.
    pub async fn set_presence(&mut self, clock: u32, json: &str) {
        let client = self.doc.client_id();
        let update = yrs::sync::AwarenessUpdate {
            clients: HashMap::from([(
                client,
                yrs::sync::awareness::AwarenessUpdateEntry {
                    clock,
                    json: Arc::from(json),
                },
            )]),
        };
        self.send(crdt_core::wire::awareness(&update)).await;
    }

    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Handles frames until `done` holds or `limit` passes; false on timeout
    /// or close.
    pub async fn pump_until(&mut self, done: impl Fn(&Client) -> bool, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.pump_one(left).await {
                return done(self);
            }
        }
        true
    }

    /// Handles whatever arrives for `period`.
    pub async fn pump_for(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.pump_one(left).await {
                return;
            }
        }
    }

    /// Handles one frame; false on timeout or close.
    pub async fn pump_one(&mut self, limit: Duration) -> bool {
        let frame = match timeout(limit, self.ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            WsMessage::Binary(bytes) => {
                self.frames += 1;
                self.largest_frame = self.largest_frame.max(bytes.len());
                self.on_frame(&bytes).await;
                true
            }
            WsMessage::Close(frame) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                false
            }
            _ => true,
        }
    }

    async fn on_frame(&mut self, bytes: &[u8]) {
        let message = Message::decode_v1(bytes).expect("server frames decode");
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                self.send(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1())
                    .await;
            }
            Message::Sync(SyncMessage::SyncStep2(update)) => {
                self.apply(&update);
                self.synced = true;
            }
            Message::Sync(SyncMessage::Update(update)) => self.apply(&update),
            Message::Awareness(update) => {
                for (client, entry) in update.clients {
                    let state = (entry.json.as_ref() != "null").then(|| entry.json.to_string());
                    self.presence.insert(client.get(), state);
                }
            }
            Message::Auth(Some(reason)) => self.denied.push(reason),
            _ => {}
        }
    }

    fn apply(&mut self, update: &[u8]) {
        self.update_frames += 1;
        let update = Update::decode_v1(update).expect("server updates decode");
        self.doc.transact_mut().apply_update(update).expect("apply");
    }

    /// Waits for the server to close the connection; returns code and reason.
    pub async fn expect_close(&mut self, limit: Duration) -> (u16, String) {
        let deadline = Instant::now() + limit;
        while self.closed.is_none() && Instant::now() < deadline {
            if !self
                .pump_one(deadline.saturating_duration_since(Instant::now()))
                .await
                && self.closed.is_none()
            {
                break;
            }
        }
        self.closed
            .clone()
            .expect("server did not close the connection")
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The `"error"` of a JSON error body, or the body itself.
pub fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

/// A v1 update that inserts `s` into the text root `t`, from a fresh client.
pub fn text_update(s: &str) -> Vec<u8> {
    let doc = Doc::new();
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, s);
    txn.encode_update_v1()
}
