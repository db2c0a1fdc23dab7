//! A minimal y-websocket client over yrs, used by the interop tests.
//!
//! ```text
//! cargo run -p sync-server --example yclient -- URL NAME EDITS PAUSE_MS SETTLE_MS
//! ```
//!
//! Connects to `URL` (for example `ws://127.0.0.1:8787/ws/doc`), syncs,
//! inserts `EDITS` markers `<NAME:i>` into the text root `t` at
//! pseudo-random marker boundaries (after a `>`, never inside another
//! marker) with `PAUSE_MS` between them, keeps syncing for
//! `SETTLE_MS`, then prints `{"text": ...}` on stdout.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, name, edits, pause, settle] = &args[..] else {
        anyhow::bail!("usage: yclient URL NAME EDITS PAUSE_MS SETTLE_MS");
    };
    let edits: usize = edits.parse()?;
    let pause = Duration::from_millis(pause.parse()?);
    let settle = Duration::from_millis(settle.parse()?);

    let (mut ws, _) = connect_async(url.as_str()).await?;
    let doc = Doc::new();
    let text = doc.get_or_insert_text("t");
    let sv = doc.transact().state_vector();
    ws.send(WsMessage::Binary(
        Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1().into(),
    ))
    .await?;

    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
    let mut made = 0;
    let mut next_edit = Instant::now() + pause;
    let mut deadline: Option<Instant> = None;
    loop {
        if made == edits && deadline.is_none() {
            deadline = Some(Instant::now() + settle);
        }
        let wake = deadline.unwrap_or(next_edit);
        tokio::select! {
            frame = ws.next() => {
                let Some(frame) = frame else { break };
                let WsMessage::Binary(bytes) = frame? else { continue };
                match Message::decode_v1(&bytes)? {
                    Message::Sync(SyncMessage::SyncStep1(sv)) => {
                        let diff = doc.transact().encode_state_as_update_v1(&sv);
                        let reply = Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1();
                        ws.send(WsMessage::Binary(reply.into())).await?;
                    }
                    Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                        doc.transact_mut().apply_update(Update::decode_v1(&u)?)?;
                    }
                    _ => {}
                }
            }
            _ = sleep_until(wake) => {
                if deadline.is_some() {
                    break;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let update = {
                    let mut txn = doc.transact_mut();
                    let current = text.get_string(&txn);
                    let spots: Vec<u32> = std::iter::once(0)
                        .chain(current.match_indices('>').map(|(i, _)| i as u32 + 1))
                        .collect();
                    let at = spots[(seed % spots.len() as u64) as usize];
                    text.insert(&mut txn, at, &format!("<{name}:{made}>"));
                    txn.encode_update_v1()
                };
                let frame = Message::Sync(SyncMessage::Update(update)).encode_v1();
                ws.send(WsMessage::Binary(frame.into())).await?;
                made += 1;
                next_edit = Instant::now() + pause;
            }
        }
    }
    let final_text = text.get_string(&doc.transact());
    println!("{}", serde_json::json!({ "text": final_text }));
    let _ = ws.close(None).await;
    Ok(())
}
