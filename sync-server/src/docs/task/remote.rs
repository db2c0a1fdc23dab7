//! A document task's side of the cluster: announcing what this node
//! committed and who is present here, applying what other nodes announce,
//! and catching up from the store when announcements went missing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use crdt_core::wire::validate_awareness;
use crdt_core::{Applied, Encoding};
use yrs::sync::AwarenessUpdate;
use yrs::updates::decoder::Decode;

use super::{DocTask, now_ms};
use crate::cluster::Remote;
use crate::docs::fanout::Accepted;
use crate::store::Appended;

/// How long a gap in the sequence may stay open before the store is read:
/// announcements of one batch may arrive out of order or a little late.
const GAP_GRACE: Duration = Duration::from_secs(1);
/// How often a document with peers reads the store anyway: an announcement
/// lost at the end of a burst leaves no later one to reveal the gap.
const SAFETY_INTERVAL: Duration = Duration::from_secs(10);

impl DocTask {
    /// Tells other nodes what this node just made durable.
    pub(super) fn announce_commit(&self, appended: Appended, merged: Option<Bytes>) {
        let (Some(cluster), Some(merged)) = (&self.shared.cluster, merged) else {
            return;
        };
        cluster.publish_updates(&self.name, appended.first_seq, appended.last_seq, merged);
    }

    /// Tells other nodes about a presence change of this node's peers.
    pub(super) fn announce_presence(&self, frame: &Bytes) {
        if let Some(cluster) = &self.shared.cluster {
            // The frame is `[1, varUint8Array(update)]`; nodes exchange the
            // update itself.
            if let Ok(yrs::sync::Message::Awareness(update)) = yrs::sync::Message::decode_v1(frame)
            {
                cluster.publish_presence(
                    &self.name,
                    Bytes::from(yrs::updates::encoder::Encode::encode_v1(&update)),
                );
            }
        }
    }

    pub(super) async fn on_remote(&mut self, remote: Remote) {
        match remote {
            Remote::Updates {
                first_seq,
                last_seq,
                update,
            } => {
                if self.sequence.covers(last_seq) {
                    return;
                }
                self.apply_durable(update, Encoding::V1);
                self.sequence.mark(first_seq, last_seq, Instant::now());
            }
            Remote::Presence(bytes) => {
                let limits = self.doc.limits().clone();
                let Ok(update) = AwarenessUpdate::decode_v1(&bytes) else {
                    return;
                };
                if validate_awareness(&update, &limits).is_err() {
                    return;
                }
                let change = self.presence.apply(update, now_ms());
                if !change.is_empty() {
                    let frame = Bytes::from(crdt_core::wire::awareness(&change.accepted));
                    self.broadcast(None, frame);
                }
            }
            Remote::Resync => self.catch_up().await,
        }
    }

    /// Applies an update that is durable already (committed by another node)
    /// and sends it to this node's peers at once. Peers speak v1.
    fn apply_durable(&mut self, update: Bytes, encoding: Encoding) {
        let update = match encoding {
            Encoding::V1 => update,
            Encoding::V2 => match yrs::Update::decode_v2(&update) {
                Ok(decoded) => Bytes::from(yrs::updates::encoder::Encode::encode_v1(&decoded)),
                Err(error) => {
                    tracing::warn!(doc = %self.name, %error, "a stored v2 state did not decode");
                    return;
                }
            },
        };
        match self.doc.apply_stored(&update, Encoding::V1) {
            Ok(Applied::Changed) => {
                let accepted = Accepted {
                    from: None,
                    update,
                    clocks: Vec::new(),
                    origin: "cluster".into(),
                    at_ms: now_ms(),
                    received: Instant::now(),
                };
                self.fan_out(&[accepted]);
            }
            Ok(Applied::Empty) => {}
            // Another node stored it, so it is valid there; the next catch-up
            // reads it from the store. A poisoned replica is rebuilt then.
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "an update from another node did not apply");
            }
        }
    }

    /// Whether to read the store for entries other nodes committed: a gap
    /// stayed open, or a while passed (announcements can be lost).
    pub(super) fn catch_up_due(&self) -> bool {
        let now = Instant::now();
        self.sequence.gap_open_for(GAP_GRACE, now)
            || (!self.peers.is_empty() && now.duration_since(self.caught_up_at) >= SAFETY_INTERVAL)
    }

    /// Reads what the store holds after the watermark and applies it.
    pub(super) async fn catch_up(&mut self) {
        self.caught_up_at = Instant::now();
        let after = self.sequence.watermark();
        let stored = match self.shared.store.load_since(&self.name, after).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(doc = %self.name, %error, "catching up from the store failed; will retry");
                return;
            }
        };
        if stored.is_empty() {
            return;
        }
        self.shared.metrics.cluster_healed.inc();
        let last = stored.last_seq();
        if let Some(snapshot) = stored.snapshot {
            self.apply_durable(Bytes::from(snapshot.state), snapshot.encoding);
        }
        for entry in stored.log {
            self.apply_durable(Bytes::from(entry.update), entry.encoding);
        }
        if self.doc.is_poisoned() {
            self.rebuild().await;
        }
        self.sequence.caught_up(last);
    }
}
