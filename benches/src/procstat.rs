//! CPU time and memory of a process, read from `/proc/PID` (Linux).

use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// User plus system CPU time used so far.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Kernel clock ticks per second (`USER_HZ`), which is 100 on every Linux
/// this runs on.
const TICKS_PER_SEC: u64 = 100;
const PAGE: u64 = 4096;

/// Reads `/proc/{pid}/stat`; `pid` of `None` means this process.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is parenthesised and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(Sample {
        at: Instant::now(),
        cpu: Duration::from_millis((utime + stime) * 1000 / TICKS_PER_SEC),
        rss_bytes: rss_pages * PAGE,
    })
}

/// CPU use between two samples, in cores (1.0 = one core fully busy).
pub fn cores_between(start: &Sample, end: &Sample) -> f64 {
    let wall = end.at.duration_since(start.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    end.cpu.saturating_sub(start.cpu).as_secs_f64() / wall
}

/// Peak resident memory of a process so far (`VmHWM`), in bytes.
pub fn peak_rss(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
