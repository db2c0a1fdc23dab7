//! Which log entries a document holds, so it notices what it missed.
//!
//! Every committed update has a sequence number, gap-free per document (the
//! store assigns them). A node applies its own commits and those other
//! nodes announce; entries can arrive out of order, or not at all if an
//! announcement is lost. The watermark is the last entry below which the
//! document holds everything; entries beyond it are remembered until the
//! gap closes. A gap that stays open is healed from the store.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Applied entries of one document's log.
#[derive(Debug, Clone)]
pub struct Sequence {
    watermark: u64,
    /// Ranges applied beyond the watermark: first → last.
    ahead: BTreeMap<u64, u64>,
    /// Since when a gap has been open.
    gap_since: Option<Instant>,
}

impl Sequence {
    /// A document that holds every entry up to `watermark`.
    pub fn new(watermark: u64) -> Self {
        Self {
            watermark,
            ahead: BTreeMap::new(),
            gap_since: None,
        }
    }

    /// The last entry below which everything is held.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Whether entries up to `last` are all held already.
    pub fn covers(&self, last: u64) -> bool {
        last <= self.watermark
    }

    /// Records that entries `first..=last` are held.
    pub fn mark(&mut self, first: u64, last: u64, now: Instant) {
        if last <= self.watermark {
            return;
        }
        if first <= self.watermark + 1 {
            self.watermark = last;
        } else {
            let end = self.ahead.entry(first).or_insert(last);
            *end = (*end).max(last);
        }
        self.absorb();
        if self.ahead.is_empty() {
            self.gap_since = None;
        } else {
            self.gap_since.get_or_insert(now);
        }
    }

    /// Records that everything up to `seq` is held (after reading the store).
    pub fn caught_up(&mut self, seq: u64) {
        self.watermark = self.watermark.max(seq);
        self.absorb();
        if self.ahead.is_empty() {
            self.gap_since = None;
        }
    }

    /// Whether a gap has been open for at least `grace`.
    pub fn gap_open_for(&self, grace: Duration, now: Instant) -> bool {
        self.gap_since
            .is_some_and(|since| now.duration_since(since) >= grace)
    }

    fn absorb(&mut self) {
        while let Some((&first, &last)) = self.ahead.first_key_value() {
            if first > self.watermark + 1 {
                break;
            }
            self.ahead.remove(&first);
            self.watermark = self.watermark.max(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_ranges_close_the_gap() {
        let now = Instant::now();
        let mut s = Sequence::new(4);
        s.mark(5, 6, now);
        assert_eq!(s.watermark(), 6);
        s.mark(9, 10, now);
        assert_eq!(s.watermark(), 6, "7 and 8 missing");
        assert!(s.gap_open_for(Duration::ZERO, now));
        assert!(!s.gap_open_for(Duration::from_secs(1), now));
        s.mark(7, 8, now);
        assert_eq!(s.watermark(), 10);
        assert!(!s.gap_open_for(Duration::ZERO, now));
        assert!(s.covers(10) && !s.covers(11));
    }

    #[test]
    fn catching_up_from_the_store_absorbs_what_came_ahead() {
        let now = Instant::now();
        let mut s = Sequence::new(0);
        s.mark(3, 3, now);
        s.mark(7, 9, now);
        s.caught_up(6);
        assert_eq!(s.watermark(), 9);
        assert!(!s.gap_open_for(Duration::ZERO, now));
    }
}
