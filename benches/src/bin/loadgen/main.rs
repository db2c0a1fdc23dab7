//! Load generator for Yjs sync servers.
//!
//! D documents × C clients each edit at R edits per second; every edit
//! carries its sender and send time, so receivers measure fan-out latency.
//! Only K clients per document apply updates; the others scan frames for
//! markers, which keeps the generator cheaper than the server it loads. At
//! the end every full client and a fresh late joiner must hold the same
//! content, including every edit sent.
//!
//! Several server nodes can share the load: give `--url` once per node
//! (or comma-separated) and client `c` of every document connects to node
//! `c mod N`. Receivers then report latency separately for edits sent on
//! their own node and edits that crossed to another node, which is what a
//! scale-out deployment adds.
//!
//! ```text
//! cargo run --release -p benches --bin loadgen -- \
//!     --url ws://127.0.0.1:8787/ws --docs 1 --clients 200 --rate 1 \
//!     --duration 30 --warmup 5 --server-pid $(pgrep sync-server)
//!
//! # two nodes: clients alternate between them; PIDs in the same order
//! cargo run --release -p benches --bin loadgen -- \
//!     --url ws://127.0.0.1:8787/ws,ws://127.0.0.1:8788/ws --docs 1 --clients 500 \
//!     --server-pid $PID_A,$PID_B
//! ```
//!
//! Prints a human summary and one JSON line (the last line of output).

mod client;
mod framing;
mod marker;
mod report;
mod seed;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Semaphore, watch};

use client::{Live, Phase, Shared, Spec};
use framing::Dialect;

/// Load generator for Yjs sync servers (y-websocket or Hocuspocus dialect).
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Args {
    /// Base WebSocket URL of a server node; documents are appended as
    /// `/{name}`. Repeat the flag or separate URLs with commas to spread
    /// clients over several nodes: client `c` of every document connects to
    /// URL `c mod N`.
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8787/ws"
    )]
    pub urls: Vec<String>,
    /// Number of documents.
    #[arg(long, default_value_t = 1)]
    pub docs: usize,
    /// Clients per document.
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// Edits per second per client (0: idle clients).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Seconds between presence updates per client (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub awareness_every: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of editing before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Clients per document that apply every update (the rest only scan
    /// frames for markers).
    #[arg(long, default_value_t = 2)]
    pub full_clients: usize,
    /// Most connections handshaking at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Longest wait, in seconds, for in-flight deliveries after editing stops.
    #[arg(long, default_value_t = 20.0)]
    pub drain: f64,
    /// PID of a server process, for its CPU and memory (read from /proc).
    /// Repeat the flag or separate PIDs with commas; the figures are summed,
    /// and reported per process too. Give them in `--url` order to read
    /// them per node.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Wire dialect of the server.
    #[arg(long, value_enum, default_value_t = Dialect::YWebsocket)]
    pub dialect: Dialect,
    /// Prefix of document names (a fresh one per run keeps runs apart).
    #[arg(long)]
    pub doc_prefix: Option<String>,
    /// Skip the convergence check (for idle-connection memory runs).
    #[arg(long)]
    pub no_check: bool,
    /// A label for this run in the JSON output.
    #[arg(long, default_value = "run")]
    pub label: String,
    /// Before clients join, write this many KiB of text into every
    /// document (as 1 KiB pieces, 1 MiB per update), then let every client
    /// join at once: the large-document join scenario.
    #[arg(long, default_value_t = 0)]
    pub seed_kib: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.clients >= 1 && args.docs >= 1,
        "--docs and --clients must be at least 1"
    );
    anyhow::ensure!(!args.urls.is_empty(), "--url must name at least one server");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let summary = runtime.block_on(run(args))?;
    println!("{}", summary.human());
    println!("{}", serde_json::to_string(&summary.json())?);
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<report::Summary> {
    let prefix = args
        .doc_prefix
        .clone()
        .unwrap_or_else(|| format!("load-{}", std::process::id()));
    let docs: Vec<String> = (0..args.docs)
        .map(|d| format!("{prefix}/doc-{d}"))
        .collect();
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let shared = Arc::new(Shared {
        start: Instant::now(),
        phase: phase_rx,
        connect_slots: Arc::new(Semaphore::new(args.connect_concurrency.max(1))),
        live: Live::new(args.docs),
    });
    let awareness_every =
        (args.awareness_every > 0.0).then(|| Duration::from_secs_f64(args.awareness_every));

    let mut seeders = Vec::new();
    if args.seed_kib > 0 {
        let bar = progress(args.docs as u64, "seeding");
        for doc in &docs {
            let open = seed::seed(
                &args.dialect.url(&args.urls[0], doc),
                doc,
                args.dialect,
                args.seed_kib,
            )
            .await?;
            if let Some(ws) = open {
                seeders.push(tokio::spawn(seed::hold(ws, shared.phase.clone())));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    // Sample from before the join: a large-document join is where memory peaks.
    let server_sampler = report::Sampler::start(args.server_pids.clone());

    let total = args.docs * args.clients;
    let mut tasks = Vec::with_capacity(total);
    for (d, doc) in docs.iter().enumerate() {
        for c in 0..args.clients {
            let node = c % args.urls.len();
            let spec = Spec {
                url: args.dialect.url(&args.urls[node], doc),
                node,
                nodes: args.urls.len(),
                doc: doc.clone(),
                doc_index: d,
                global: (d * args.clients + c) as u32,
                doc_clients: doc_clients(d, args.clients),
                full: c < args.full_clients,
                edits: true,
                rate: args.rate,
                awareness_every,
                dialect: args.dialect,
            };
            tasks.push(tokio::spawn(client::run(spec, shared.clone())));
        }
    }

    // Connect.
    let bar = progress(total as u64, "connecting");
    let connect_started = Instant::now();
    loop {
        let done = shared.live.connected.load(Ordering::Relaxed)
            + shared.live.failed.load(Ordering::Relaxed);
        bar.set_position(done);
        if done >= total as u64 || connect_started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let connect_time = connect_started.elapsed();

    // Warm up, then measure.
    phase_tx.send_replace(Phase::Warmup);
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let window_start = report::Readings::now(&args.server_pids);
    phase_tx.send_replace(Phase::Measuring);
    let bar = progress((args.duration * 10.0) as u64, "measuring");
    let measure_started = Instant::now();
    while measure_started.elapsed().as_secs_f64() < args.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position((measure_started.elapsed().as_secs_f64() * 10.0) as u64);
    }
    let window_end = report::Readings::now(&args.server_pids);
    bar.finish_and_clear();

    // Drain: stop editing, wait for everything sent to be delivered.
    phase_tx.send_replace(Phase::Draining);
    let drain_started = Instant::now();
    let expected = |live: &Live| -> u64 {
        let connected_per_doc = shared.live.connected.load(Ordering::Relaxed) / args.docs as u64;
        live.sent_by_doc
            .iter()
            .map(|s| s.load(Ordering::Relaxed) * connected_per_doc.saturating_sub(1))
            .sum()
    };
    while drain_started.elapsed().as_secs_f64() < args.drain
        && shared.live.received.load(Ordering::Relaxed) < expected(&shared.live)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_time = drain_started.elapsed();

    // Late joiners: one fresh full client per document.
    let joiners: Vec<_> = if args.no_check {
        Vec::new()
    } else {
        docs.iter()
            .enumerate()
            .map(|(d, doc)| {
                // Joiners spread over the nodes too; each must hold every
                // edit, wherever it was sent.
                let node = d % args.urls.len();
                let spec = Spec {
                    url: args.dialect.url(&args.urls[node], doc),
                    node,
                    nodes: args.urls.len(),
                    doc: doc.clone(),
                    doc_index: d,
                    global: u32::MAX - d as u32,
                    doc_clients: doc_clients(d, args.clients),
                    full: true,
                    edits: false,
                    rate: 0.0,
                    awareness_every: None,
                    dialect: args.dialect,
                };
                tokio::spawn(client::run(spec, shared.clone()))
            })
            .collect()
    };
    // Give joiners time to sync before telling everyone to finish.
    let joined_by = Instant::now() + Duration::from_secs(30);
    while !args.no_check
        && shared.live.connected.load(Ordering::Relaxed) < (total + args.docs) as u64
        && Instant::now() < joined_by
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase_tx.send_replace(Phase::Done);

    let mut clients = Vec::with_capacity(total);
    for task in tasks {
        clients.push(task.await.context("client task")?);
    }
    let mut late = Vec::with_capacity(joiners.len());
    for task in joiners {
        late.push(task.await.context("joiner task")?);
    }
    for task in seeders {
        task.await.context("seeder task")?;
    }
    let peak_rss = server_sampler.stop().await;
    Ok(report::Summary::build(report::Inputs {
        args,
        clients,
        late_joiners: late,
        connect_time,
        drain_time,
        window_start,
        window_end,
        peak_rss,
    }))
}

/// Global indexes of document `d`'s clients.
fn doc_clients(d: usize, per_doc: usize) -> std::ops::Range<u32> {
    (d * per_doc) as u32..((d + 1) * per_doc) as u32
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:12} [{bar:40}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
