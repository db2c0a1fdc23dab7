//! Rate limits: per-connection token buckets for updates and awareness,
//! and fixed-window request counters for the HTTP API (per API key, else
//! per client IP), kept in Redis when the cluster has one so that every
//! node counts against the same limit.
//!
//! Over a limit a connection is closed with 1008 and a reason naming the
//! limit, and a request gets 429 with `Retry-After`: never a silent drop,
//! since a dropped CRDT update would leave the client believing it was
//! delivered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(rate).max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; false if the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-connection message limits (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Sync updates a second.
    pub updates_per_sec: u32,
    /// Awareness updates a second.
    pub awareness_per_sec: u32,
    /// Seconds of messages a client may send at once above the rate.
    pub burst_secs: u32,
}

/// One connection's buckets.
#[derive(Debug)]
pub struct ConnectionMeter {
    limits: ConnectionLimits,
    updates: TokenBucket,
    awareness: TokenBucket,
}

impl ConnectionMeter {
    /// Full buckets for `limits`.
    pub fn new(limits: ConnectionLimits, now: Instant) -> Self {
        let burst = |rate: u32| rate.saturating_mul(limits.burst_secs.max(1));
        Self {
            limits,
            updates: TokenBucket::new(limits.updates_per_sec, burst(limits.updates_per_sec), now),
            awareness: TokenBucket::new(
                limits.awareness_per_sec,
                burst(limits.awareness_per_sec),
                now,
            ),
        }
    }

    /// Counts one update; `Err` names the limit exceeded.
    pub fn update(&mut self, now: Instant) -> Result<(), String> {
        let rate = self.limits.updates_per_sec;
        if rate == 0 || self.updates.take(now) {
            return Ok(());
        }
        Err(format!(
            "update rate limit exceeded: more than {rate} updates/s (burst {})",
            rate.saturating_mul(self.limits.burst_secs.max(1))
        ))
    }

    /// Counts one awareness update; `Err` names the limit exceeded.
    pub fn awareness(&mut self, now: Instant) -> Result<(), String> {
        let rate = self.limits.awareness_per_sec;
        if rate == 0 || self.awareness.take(now) {
            return Ok(());
        }
        Err(format!(
            "awareness rate limit exceeded: more than {rate} awareness updates/s (burst {})",
            rate.saturating_mul(self.limits.burst_secs.max(1))
        ))
    }
}

/// HTTP request limits per minute (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Requests a minute from one client IP without an API key.
    pub per_ip_per_min: u32,
    /// Requests a minute with one API key.
    pub per_key_per_min: u32,
}

/// Fixed one-minute windows, counted here or in Redis.
pub struct RequestCounter {
    redis: Option<(redis::Client, String)>,
    /// The shared Redis connection, made on first use and dropped on an
    /// error so the next request reconnects. A tokio mutex: connecting
    /// awaits while holding it, so only one request connects.
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// A std mutex: held for one map update, never across `.await`.
    local: Mutex<HashMap<String, (u64, u32)>>,
}

/// Seconds in a window.
const WINDOW_SECS: u64 = 60;

impl RequestCounter {
    /// Counts in Redis at `redis_url` (keys under `prefix`) when given,
    /// else in this process.
    pub fn new(redis: Option<(&str, &str)>) -> Result<Self, redis::RedisError> {
        let redis = redis
            .map(|(url, prefix)| {
                Ok::<_, redis::RedisError>((redis::Client::open(url)?, prefix.to_owned()))
            })
            .transpose()?;
        Ok(Self {
            redis,
            conn: tokio::sync::Mutex::new(None),
            local: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a request under `key`; `Err(retry_after_secs)` when it is
    /// over `limit` in the current window.
    pub async fn hit(&self, key: &str, limit: u32, now_secs: u64) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let window = now_secs / WINDOW_SECS;
        let retry_after = (window + 1) * WINDOW_SECS - now_secs;
        let count = match &self.redis {
            Some((client, prefix)) => match self.redis_hit(client, prefix, key, window).await {
                Ok(count) => count,
                Err(error) => {
                    // Redis down: count here rather than refuse everyone
                    // or let everyone through.
                    tracing::warn!(%error, "rate limit counter: Redis unavailable, counting locally");
                    self.local_hit(key, window)
                }
            },
            None => self.local_hit(key, window),
        };
        if count > u64::from(limit) {
            Err(retry_after.max(1))
        } else {
            Ok(())
        }
    }

    fn local_hit(&self, key: &str, window: u64) -> u64 {
        let mut local = self.local.lock().expect("request counters");
        if local.len() > 100_000 {
            local.retain(|_, (w, _)| *w == window);
        }
        let entry = local.entry(key.to_owned()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        u64::from(entry.1)
    }

    async fn redis_hit(
        &self,
        client: &redis::Client,
        prefix: &str,
        key: &str,
        window: u64,
    ) -> Result<u64, redis::RedisError> {
        let mut conn = {
            let mut cached = self.conn.lock().await;
            match cached.as_ref() {
                Some(conn) => conn.clone(),
                None => {
                    let conn = tokio::time::timeout(
                        Duration::from_secs(1),
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((redis::ErrorKind::Io, "connect timed out"))
                    })??;
                    *cached = Some(conn.clone());
                    conn
                }
            }
        };
        let name = format!("{prefix}:ratelimit:{key}:{window}");
        let (count, _): (u64, bool) = redis::pipe()
            .atomic()
            .incr(&name, 1)
            .expire(&name, (WINDOW_SECS * 2) as i64)
            .query_async(&mut conn)
            .await
            .inspect_err(|_| {
                if let Ok(mut cached) = self.conn.try_lock() {
                    *cached = None;
                }
            })?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 20, start);
        assert!((0..20).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        let later = start + Duration::from_millis(500);
        assert!((0..5).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }

    #[test]
    fn the_meter_names_the_limit() {
        let now = Instant::now();
        let limits = ConnectionLimits {
            updates_per_sec: 2,
            awareness_per_sec: 0,
            burst_secs: 1,
        };
        let mut meter = ConnectionMeter::new(limits, now);
        assert!(meter.update(now).is_ok() && meter.update(now).is_ok());
        assert_eq!(
            meter.update(now).unwrap_err(),
            "update rate limit exceeded: more than 2 updates/s (burst 2)"
        );
        assert!((0..1000).all(|_| meter.awareness(now).is_ok()));
    }

    #[tokio::test]
    async fn requests_over_the_limit_wait_for_the_next_window() {
        let counter = RequestCounter::new(None).unwrap();
        assert!(counter.hit("ip:1", 2, 120).await.is_ok());
        assert!(counter.hit("ip:1", 2, 130).await.is_ok());
        assert_eq!(counter.hit("ip:1", 2, 150).await, Err(30));
        assert!(counter.hit("ip:1", 2, 180).await.is_ok());
    }
}
