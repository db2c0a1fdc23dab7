//! Writing a large document before a join scenario.
//!
//! Pieces of 1 KiB, each inserted at the start of the text: such inserts
//! never merge into one struct (a struct is the unit a sync reply can be
//! cut at), as a document that many people edited over time would not be a
//! single struct either.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{Doc, ReadTxn, Text, Transact};

use crate::client::Phase;
use crate::framing::Dialect;

/// The text root the seed is written to (clients edit another one).
pub const ROOT: &str = "seed";
const PIECE: usize = 1024;
const PIECES_PER_UPDATE: usize = 1024;

/// The seeding connection, when it has to stay open.
pub type Connection = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Writes `kib` KiB into `doc` through the server and returns once the
/// server has answered a sync request sent after the last update (it
/// answers only once everything before is durable).
///
/// A Hocuspocus server unloads a document as soon as its last connection
/// closes; without a persistence extension (the comparison runs it bare)
/// the seed would be gone before anyone joins. For that dialect the
/// connection is returned open, for [`hold`]; otherwise it is closed.
pub async fn seed(
    url: &str,
    doc: &str,
    dialect: Dialect,
    kib: usize,
) -> anyhow::Result<Option<Connection>> {
    let (mut ws, _) = connect_async(url).await?;
    if let Some(hello) = dialect.hello(doc) {
        ws.send(WsMessage::Binary(hello.into())).await?;
    }
    let local = Doc::new();
    let text = local.get_or_insert_text(ROOT);
    let piece: String = (0..PIECE)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut written = 0;
    while written < kib {
        let n = PIECES_PER_UPDATE.min(kib - written);
        let update = {
            let mut txn = local.transact_mut();
            for _ in 0..n {
                text.insert(&mut txn, 0, &piece);
            }
            txn.encode_update_v1()
        };
        let frame = Message::Sync(SyncMessage::Update(update)).encode_v1();
        ws.send(WsMessage::Binary(dialect.wrap(doc, &frame).into()))
            .await?;
        written += n;
    }
    let sv = local.transact().state_vector();
    let step1 = Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1();
    ws.send(WsMessage::Binary(dialect.wrap(doc, &step1).into()))
        .await?;
    while let Some(frame) = ws.next().await {
        let WsMessage::Binary(bytes) = frame? else {
            continue;
        };
        let message = dialect.unwrap(doc, &bytes);
        if let Some(refusal) = message.and_then(|m| dialect.refusal(m)) {
            anyhow::bail!("seeding {doc}: {refusal}");
        }
        if let Some([0, 1, ..]) = message {
            if dialect == Dialect::Hocuspocus {
                return Ok(Some(ws));
            }
            let _ = ws.close(None).await;
            return Ok(None);
        }
    }
    anyhow::bail!("the server closed the seeding connection")
}

/// Keeps a seeding connection open, reading and dropping what arrives (so
/// pings are answered), until the run is done.
pub async fn hold(mut ws: Connection, mut phase: watch::Receiver<Phase>) {
    loop {
        if *phase.borrow() == Phase::Done {
            break;
        }
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                _ => return,
            },
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
}
