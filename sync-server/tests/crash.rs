//! `kill -9` while clients edit, then restart: every update that any client
//! received from the server is still there.
//!
//! Each client appends markers `<cN:i>` and records what it sees. A marker
//! of another client in its text was delivered by the server, so it must
//! survive the crash. Its own markers may be lost (it sent them, nobody
//! confirmed them), and the provider would resend them on reconnect anyway.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Client;

struct Server {
    child: Child,
    addr: String,
}

fn start(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.split("serving on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

fn markers_of_others(text: &str, me: usize) -> Vec<String> {
    text.split_inclusive('>')
        .filter(|m| m.starts_with("<c") && !m.starts_with(&format!("<c{me}:")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_any_client_received() {
    let data = tempfile::tempdir().unwrap();
    let mut server = start(data.path());
    let url = format!("ws://{}/ws/crash/doc", server.addr);

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for me in 0..3 {
        let url = url.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && client.closed.is_none() {
                if !client.try_insert(&format!("<c{me}:{i}>")).await {
                    break;
                }
                i += 1;
                client.pump_for(Duration::from_millis(3)).await;
            }
            // Take whatever was already on the wire before the kill.
            client.pump_for(Duration::from_millis(50)).await;
            (me, client.text())
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL"); // std's kill() sends SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);

    let mut received = Vec::new();
    for writer in writers {
        let (me, text) = writer.await.unwrap();
        received.extend(markers_of_others(&text, me));
    }
    assert!(
        received.len() > 100,
        "only {} markers were delivered before the kill; the test proves little",
        received.len()
    );

    let mut server = start(data.path());
    let mut fresh = Client::connect(&format!("ws://{}/ws/crash/doc", server.addr)).await;
    fresh.pump_for(Duration::from_millis(200)).await;
    let recovered = fresh.text();
    let lost: Vec<&String> = received
        .iter()
        .filter(|m| !recovered.contains(m.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} delivered markers lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
