//! Turning client reports and process readings into the summary: a human
//! table and one JSON line.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use benches::procstat::{self, Sample};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Args;
use crate::client::Report;
use crate::marker;

/// Samples the servers' memory until stopped; yields the peaks seen.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Peaks>,
    task: tokio::task::JoinHandle<()>,
}

/// Highest resident memory seen, in bytes.
#[derive(Debug, Default)]
pub struct Peaks {
    /// Of the servers together, sampled at the same moment (not the sum of
    /// each one's peak, which may come at different times).
    pub total: AtomicU64,
    /// Of each server process, in `--server-pid` order.
    pub each: Vec<AtomicU64>,
}

impl Sampler {
    /// Starts sampling `pids` every 100 ms (a no-op without pids).
    pub fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Peaks {
            total: AtomicU64::new(0),
            each: pids.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        let task = tokio::spawn({
            let (stop, peaks) = (stop.clone(), peaks.clone());
            async move {
                while !stop.load(Ordering::Relaxed) && !pids.is_empty() {
                    let mut total = 0;
                    for (pid, peak) in pids.iter().zip(&peaks.each) {
                        if let Some(s) = procstat::sample(Some(*pid)) {
                            peak.fetch_max(s.rss_bytes, Ordering::Relaxed);
                            total += s.rss_bytes;
                        }
                    }
                    peaks.total.fetch_max(total, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { stop, peaks, task }
    }

    /// Stops and returns the peaks seen.
    pub async fn stop(self) -> Arc<Peaks> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peaks
    }
}

/// Server and generator readings at one moment.
#[derive(Debug, Clone)]
pub struct Readings {
    /// Wall-clock time, so readings taken outside the generator (Redis and
    /// PostgreSQL counters, say) can be lined up with the window.
    wall: SystemTime,
    /// One per `--server-pid`, `None` if it could not be read.
    servers: Vec<Option<Sample>>,
    generator: Option<Sample>,
}

impl Readings {
    /// Reads every server process and the generator now.
    pub fn now(server_pids: &[u32]) -> Self {
        Self {
            wall: SystemTime::now(),
            servers: server_pids
                .iter()
                .map(|&p| procstat::sample(Some(p)))
                .collect(),
            generator: procstat::sample(None),
        }
    }
}

/// Everything the summary is built from.
pub struct Inputs {
    pub args: Args,
    pub clients: Vec<Report>,
    pub late_joiners: Vec<Report>,
    pub connect_time: Duration,
    pub drain_time: Duration,
    pub window_start: Readings,
    pub window_end: Readings,
    pub peak_rss: Arc<Peaks>,
}

/// The results of a run.
pub struct Summary {
    json: Value,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Count and quantiles of a latency histogram; quantiles are null when it
/// is empty.
fn quantiles(h: &Histogram<u64>) -> Value {
    let q = |p: f64| (!h.is_empty()).then(|| ms(h.value_at_quantile(p)));
    json!({ "count": h.len(), "p50": q(0.5), "p99": q(0.99), "max": q(1.0) })
}

/// Expected and delivered markers, split by where the sender was.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    expected: u64,
    delivered: u64,
}

impl Summary {
    pub fn build(i: Inputs) -> Self {
        let args = &i.args;
        let window = args.duration;
        let connected = i.clients.iter().filter(|c| c.handshake.is_some()).count();
        let connect_failed = i.clients.len() - connected;
        let dropped = i
            .clients
            .iter()
            .filter(|c| c.handshake.is_some() && c.error.is_some())
            .count();
        let mut handshake = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for c in &i.clients {
            if let Some(h) = c.handshake {
                let _ = handshake.record((h.as_micros() as u64).max(1));
            }
        }

        // Deliveries: every marker a client sent is expected once at every
        // other synced client of its document.
        let mut sent: HashMap<u32, u64> = HashMap::new();
        for (index, c) in i.clients.iter().enumerate() {
            sent.insert(index as u32, c.sent);
        }
        let mut expected = 0u64;
        let mut delivered = 0u64;
        let mut duplicates = 0u64;
        // [same node, another node]
        let mut by_place = [Tally::default(); 2];
        let per_doc = args.clients;
        let nodes = args.urls.len();
        for (index, c) in i.clients.iter().enumerate() {
            if c.handshake.is_none() {
                continue;
            }
            let doc_first = (index / per_doc * per_doc) as u32;
            let receiver_node = (index - doc_first as usize) % nodes;
            for sender in doc_first..doc_first + per_doc as u32 {
                if sender as usize == index || i.clients[sender as usize].handshake.is_none() {
                    continue;
                }
                let want = sent[&sender];
                let got = u64::from(c.received_from[(sender - doc_first) as usize]);
                expected += want;
                delivered += got.min(want);
                duplicates += got.saturating_sub(want);
                let place = &mut by_place
                    [usize::from((sender - doc_first) as usize % nodes != receiver_node)];
                place.expected += want;
                place.delivered += got.min(want);
            }
        }
        let mut latency = crate::client::latency_histogram();
        let mut latency_cross = crate::client::latency_histogram();
        let mut cross_deliveries = 0;
        let (mut frames_in, mut bytes_in, mut frames_out, mut bytes_out) = (0, 0, 0, 0);
        let (mut window_deliveries, mut late_sends, mut sends) = (0, 0, 0);
        for c in &i.clients {
            let _ = latency.add(&c.latency_us);
            if let Some(h) = &c.latency_cross_us {
                let _ = latency_cross.add(h);
            }
            cross_deliveries += c.cross_deliveries_in_window;
            frames_in += c.frames_in;
            bytes_in += c.bytes_in;
            frames_out += c.frames_out;
            bytes_out += c.bytes_out;
            window_deliveries += c.deliveries_in_window;
            late_sends += c.late_sends;
            sends += c.sent;
        }

        let (convergence, converged) = check(&i);

        let mut latency_same = latency.clone();
        let _ = latency_same.subtract(&latency_cross);

        // Each server process, then their sum (only if every one was read:
        // a node that died would make a partial sum look like a saving).
        let processes: Vec<(Option<f64>, Option<u64>)> = (0..args.server_pids.len())
            .map(|p| {
                let (start, end) = (i.window_start.servers[p], i.window_end.servers[p]);
                let cores = start.zip(end).map(|(a, b)| procstat::cores_between(&a, &b));
                (cores, end.map(|s| s.rss_bytes))
            })
            .collect();
        let all_read = !processes.is_empty() && processes.iter().all(|p| p.0.is_some());
        let server_cores = all_read.then(|| processes.iter().filter_map(|p| p.0).sum::<f64>());
        let server_rss = all_read.then(|| processes.iter().filter_map(|p| p.1).sum::<u64>());
        let peak_total = i.peak_rss.total.load(Ordering::Relaxed);
        let process_json: Vec<Value> = args
            .server_pids
            .iter()
            .zip(&processes)
            .zip(&i.peak_rss.each)
            .map(|((pid, (cores, rss)), peak)| {
                let peak = peak.load(Ordering::Relaxed);
                json!({
                    "pid": pid,
                    "cpu_cores": cores,
                    "rss_mb": rss.map(mb),
                    "peak_rss_mb": (peak > 0).then(|| mb(peak)),
                })
            })
            .collect();
        let node_json: Vec<Value> = args
            .urls
            .iter()
            .enumerate()
            .map(|(n, url)| {
                let clients = (0..per_doc).filter(|c| c % nodes == n).count() * args.docs;
                // A PID per URL, in the same order, makes the figures per node.
                let process = (args.server_pids.len() == nodes).then(|| &process_json[n]);
                json!({ "url": url, "clients": clients, "process": process })
            })
            .collect();
        let generator_cores = match (i.window_start.generator, i.window_end.generator) {
            (Some(a), Some(b)) => procstat::cores_between(&a, &b),
            _ => 0.0,
        };
        let cpu_us_per_delivery = server_cores
            .filter(|_| window_deliveries > 0)
            .map(|cores| cores * window * 1e6 / window_deliveries as f64);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let late_fraction = if sends > 0 {
            late_sends as f64 / sends as f64
        } else {
            0.0
        };
        let busy = generator_cores + server_cores.unwrap_or(0.0);
        let saturated_reason = if late_fraction > 0.01 {
            Some(format!(
                "{:.1}% of edits were sent late",
                late_fraction * 100.0
            ))
        } else if busy > 0.95 * cores {
            Some(format!(
                "machine CPU-bound ({busy:.2} of {cores} cores busy)"
            ))
        } else {
            None
        };
        let q = |h: &Histogram<u64>, p: f64| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };

        let json = json!({
            "label": args.label,
            "dialect": format!("{:?}", args.dialect),
            "docs": args.docs,
            "clients_per_doc": args.clients,
            "rate_per_client": args.rate,
            "awareness_every_s": args.awareness_every,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "window": {
                "start_unix_ms": unix_ms(i.window_start.wall),
                "end_unix_ms": unix_ms(i.window_end.wall),
            },
            "connect": {
                "ok": connected,
                "failed": connect_failed,
                "dropped_later": dropped,
                "seconds": i.connect_time.as_secs_f64(),
                "handshake_ms": { "p50": q(&handshake, 0.5), "p99": q(&handshake, 0.99), "max": q(&handshake, 1.0) },
            },
            "nodes": node_json,
            "delivery": {
                "sent": sends,
                "expected": expected,
                "delivered": delivered,
                "same_node": { "expected": by_place[0].expected, "delivered": by_place[0].delivered },
                "cross_node": { "expected": by_place[1].expected, "delivered": by_place[1].delivered },
                "ratio": if expected > 0 { delivered as f64 / expected as f64 } else { 1.0 },
                "duplicates": duplicates,
                "drain_s": i.drain_time.as_secs_f64(),
            },
            "latency_ms": {
                "count": latency.len(),
                "p50": q(&latency, 0.5),
                "p99": q(&latency, 0.99),
                "max": q(&latency, 1.0),
                "same_node": quantiles(&latency_same),
                "cross_node": quantiles(&latency_cross),
            },
            "throughput": {
                "deliveries_per_s": window_deliveries as f64 / window,
                "cross_node_deliveries_per_s": cross_deliveries as f64 / window,
                "frames_in_per_s": frames_in as f64 / window,
                "bytes_in_per_s": bytes_in as f64 / window,
                "frames_out_per_s": frames_out as f64 / window,
                "bytes_out_per_s": bytes_out as f64 / window,
            },
            "server": {
                "pid": args.server_pids.first(),
                "pids": args.server_pids,
                "cpu_cores": server_cores,
                "rss_mb": server_rss.map(mb),
                "peak_rss_mb": (peak_total > 0).then(|| mb(peak_total)),
                "cpu_us_per_delivery": cpu_us_per_delivery,
                "processes": process_json,
            },
            "generator": {
                "cpu_cores": generator_cores,
                "late_sends": late_sends,
                "saturated": saturated_reason.is_some(),
                "saturation_reason": saturated_reason,
            },
            "converged": converged,
            "convergence": convergence,
        });
        Self { json }
    }

    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn human(&self) -> String {
        let j = &self.json;
        let f = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |x| format!("{x:.2}"));
        let summary = format!(
            "== {label}: {docs} doc(s) x {clients} clients, {rate} edits/s each, {dur}s ==\n\
             connect     {ok} ok, {failed} failed, {dropped} dropped later; handshake p50 {h50} ms, p99 {h99} ms\n\
             delivery    {delivered}/{expected} ({ratio:.4}), {dups} duplicates\n\
             latency     p50 {l50} ms, p99 {l99} ms, max {lmax} ms ({lcount} samples)\n\
             throughput  {dps} deliveries/s; in {fin} frames/s, {bin} B/s; out {fout} frames/s\n\
             server      {scpu} cores, {srss} MB RSS (peak {speak} MB), {sper} us CPU per delivery\n\
             generator   {gcpu} cores, {late} late sends{sat}\n\
             converged   {conv} ({convdetail})",
            label = j["label"].as_str().unwrap_or(""),
            docs = j["docs"],
            clients = j["clients_per_doc"],
            rate = j["rate_per_client"],
            dur = j["duration_s"],
            ok = j["connect"]["ok"],
            failed = j["connect"]["failed"],
            dropped = j["connect"]["dropped_later"],
            h50 = f(&j["connect"]["handshake_ms"]["p50"]),
            h99 = f(&j["connect"]["handshake_ms"]["p99"]),
            delivered = j["delivery"]["delivered"],
            expected = j["delivery"]["expected"],
            ratio = j["delivery"]["ratio"].as_f64().unwrap_or(0.0),
            dups = j["delivery"]["duplicates"],
            l50 = f(&j["latency_ms"]["p50"]),
            l99 = f(&j["latency_ms"]["p99"]),
            lmax = f(&j["latency_ms"]["max"]),
            lcount = j["latency_ms"]["count"],
            dps = f(&j["throughput"]["deliveries_per_s"]),
            fin = f(&j["throughput"]["frames_in_per_s"]),
            bin = f(&j["throughput"]["bytes_in_per_s"]),
            fout = f(&j["throughput"]["frames_out_per_s"]),
            scpu = f(&j["server"]["cpu_cores"]),
            srss = f(&j["server"]["rss_mb"]),
            speak = f(&j["server"]["peak_rss_mb"]),
            sper = f(&j["server"]["cpu_us_per_delivery"]),
            gcpu = f(&j["generator"]["cpu_cores"]),
            late = j["generator"]["late_sends"],
            sat = match j["generator"]["saturation_reason"].as_str() {
                Some(reason) => format!(" — SATURATED: {reason}"),
                None => String::new(),
            },
            conv = j["converged"],
            convdetail = j["convergence"].as_str().unwrap_or(""),
        );
        let nodes = j["nodes"].as_array().map_or(&[][..], Vec::as_slice);
        if nodes.len() < 2 {
            return summary;
        }
        let cross = &j["latency_ms"]["cross_node"];
        let same = &j["latency_ms"]["same_node"];
        let mut lines = vec![
            summary,
            format!(
                "cross-node  p50 {} ms, p99 {} ms, max {} ms ({} samples); delivered {}/{}\n\
                 same-node   p50 {} ms, p99 {} ms, max {} ms ({} samples); delivered {}/{}",
                f(&cross["p50"]),
                f(&cross["p99"]),
                f(&cross["max"]),
                cross["count"],
                j["delivery"]["cross_node"]["delivered"],
                j["delivery"]["cross_node"]["expected"],
                f(&same["p50"]),
                f(&same["p99"]),
                f(&same["max"]),
                same["count"],
                j["delivery"]["same_node"]["delivered"],
                j["delivery"]["same_node"]["expected"],
            ),
        ];
        for (n, node) in nodes.iter().enumerate() {
            let process = &node["process"];
            lines.push(format!(
                "node {n}      {} ({} clients): {} cores, {} MB RSS (peak {} MB)",
                node["url"].as_str().unwrap_or(""),
                node["clients"],
                f(&process["cpu_cores"]),
                f(&process["rss_mb"]),
                f(&process["peak_rss_mb"]),
            ));
        }
        lines.join("\n")
    }
}

/// Every full client and the late joiner of a document hold the same text,
/// and it contains every edit sent to that document.
fn check(i: &Inputs) -> (String, bool) {
    if i.args.no_check {
        return ("not checked".into(), true);
    }
    let per_doc = i.args.clients;
    // A seeded document must still hold the seed: a server that lost it
    // (Hocuspocus unloads a document whose last connection closed) would
    // otherwise pass, with a join measured on an empty document.
    let seed_len = (i.args.seed_kib * 1024) as u32;
    for (d, joiner) in i.late_joiners.iter().enumerate() {
        let Some(reference) = joiner.text.as_deref() else {
            return (
                format!("doc {d}: late joiner failed: {:?}", joiner.error),
                false,
            );
        };
        let clients = &i.clients[d * per_doc..(d + 1) * per_doc];
        let seeds = std::iter::once(joiner).chain(clients.iter().filter(|c| c.error.is_none()));
        if let Some(short) = seeds.filter_map(|c| c.seed_len).find(|&n| n != seed_len) {
            return (
                format!("doc {d}: a full client holds {short} seeded characters, not {seed_len}"),
                false,
            );
        }
        let mut found: HashMap<u32, u64> = HashMap::new();
        marker::scan(reference.as_bytes(), |m| {
            *found.entry(m.sender).or_default() += 1
        });
        for c in 0..per_doc {
            let index = d * per_doc + c;
            let client = &i.clients[index];
            if found.get(&(index as u32)).copied().unwrap_or(0) != client.sent {
                return (
                    format!(
                        "doc {d}: client {index} sent {} edits, late joiner holds {}",
                        client.sent,
                        found.get(&(index as u32)).copied().unwrap_or(0)
                    ),
                    false,
                );
            }
            if let (Some(text), None) = (&client.text, &client.error)
                && text != reference
            {
                return (
                    format!("doc {d}: full client {index} differs from the late joiner"),
                    false,
                );
            }
        }
    }
    (
        format!(
            "{} document(s): every full client and a late joiner agree and hold every edit",
            i.late_joiners.len()
        ),
        true,
    )
}
