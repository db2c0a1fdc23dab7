//! Retention and legal hold: deleting what has expired, never what is held,
//! without breaking verification.
//!
//! # Design
//!
//! Each workspace may set how long audit entries and document history are
//! kept ([`crate::settings::RetentionPolicy`]). [`sweep`] (run by the
//! server on a timer, and by hand) deletes, per workspace, the longest
//! *prefix* of its chain whose entries are all older than the period. A
//! chain is only ever shortened from its start, so what remains is still
//! one unbroken chain.
//!
//! Verification needs to know where the remainder starts and what it links
//! to: the sweep stores a signed **anchor** ("entries through seq N were
//! pruned; entry N's hash was H", see [`crate::audit::Anchor`]) in the same
//! transaction that deletes them, together with the checkpoints at or
//! before N. Verification then starts at N + 1 expecting `prev_hash == H`.
//! Deleting entries without the key leaves a gap or an unsigned start,
//! which verification reports.
//!
//! Before deleting, the sweep verifies the prefix it is about to delete: a
//! tampered entry is evidence, and is never deleted by routine retention
//! (the workspace is reported as refused instead). Large prefixes are
//! deleted in chunks, each with its own anchor, so a crash midway leaves a
//! consistent chain.
//!
//! A **legal hold** suspends all of it: a held workspace is skipped, and the
//! store re-checks the hold in the deleting transaction, so a hold placed
//! while a sweep runs stops it before its next chunk. Document history
//! follows the same rule through [`HistoryPruner`]: the sweep tells the
//! server what history may go, never while a hold is in force.

use async_trait::async_trait;
use serde::Serialize;

use crate::audit::{Action, Actor, AuditError, AuditEvent, AuditLog, verify_chain};
use crate::settings::{self, SettingsError};
use crate::store::{PruneOutcome, StoreError};

/// Entries deleted per transaction.
const CHUNK: u64 = 10_000;
/// Entries read per page while looking for the end of the expired prefix.
const PAGE: usize = 1024;

/// The server's side of history retention.
#[async_trait]
pub trait HistoryPruner: Send + Sync {
    /// Deletes `workspace`'s document history (versions, old log entries)
    /// from before `before_ms`; returns how many items went.
    async fn prune_history(&self, workspace: &str, before_ms: u64) -> Result<u64, String>;
}

/// A [`HistoryPruner`] for a server without history.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

#[async_trait]
impl HistoryPruner for NoHistory {
    async fn prune_history(&self, _workspace: &str, _before_ms: u64) -> Result<u64, String> {
        Ok(0)
    }
}

/// Why a sweep could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The sweep could not be audited.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What the sweep did to one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum SweepOutcome {
    /// Nothing had expired.
    NothingExpired,
    /// Expired entries were deleted.
    Pruned {
        /// Audit entries deleted.
        entries: u64,
        /// The chain now starts after this seq.
        through_seq: u64,
    },
    /// A legal hold is in force; nothing was deleted.
    Held {
        /// The hold's reason ("" when placed during the sweep).
        reason: String,
    },
    /// The expired entries do not verify; they were kept as evidence.
    Refused {
        /// The first problem.
        problem: String,
    },
}

/// One workspace's part of a sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceSweep {
    /// The workspace.
    pub workspace: String,
    /// What happened to its audit entries.
    pub audit: SweepOutcome,
    /// History items the server deleted, or why it could not.
    pub history: Option<Result<u64, String>>,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// One entry per workspace with a retention period.
    pub workspaces: Vec<WorkspaceSweep>,
}

/// The seq and hash of the last expired entry, and the chunk boundaries
/// (seq, hash) on the way to it.
async fn expired_prefix(
    log: &AuditLog,
    workspace: &str,
    cutoff_ms: u64,
) -> Result<Vec<(u64, crate::audit::Digest)>, StoreError> {
    let store = log.store();
    let start = store.anchor(workspace).await?.map_or(0, |a| a.through_seq);
    let mut boundaries = Vec::new();
    let mut last = None;
    let mut from = start + 1;
    'pages: loop {
        let page = store.read_chain(workspace, from, PAGE).await?;
        for raw in &page {
            let at_ms = serde_json::from_str::<AuditEvent>(&raw.event_json)
                .map(|e| e.at_ms)
                .unwrap_or(u64::MAX);
            if at_ms >= cutoff_ms {
                break 'pages;
            }
            last = Some((raw.seq, raw.hash));
            if raw.seq - start >= CHUNK * (boundaries.len() as u64 + 1) {
                boundaries.push((raw.seq, raw.hash));
            }
        }
        match page.last() {
            Some(l) if page.len() == PAGE => from = l.seq + 1,
            _ => break,
        }
    }
    if let Some(last) = last
        && boundaries.last() != Some(&last)
    {
        boundaries.push(last);
    }
    Ok(boundaries)
}

async fn sweep_audit(
    log: &AuditLog,
    workspace: &str,
    cutoff_ms: u64,
    now_ms: u64,
) -> Result<SweepOutcome, RetentionError> {
    let boundaries = expired_prefix(log, workspace, cutoff_ms).await?;
    let Some(&(through, _)) = boundaries.last() else {
        return Ok(SweepOutcome::NothingExpired);
    };
    let report = verify_chain(
        log.store().as_ref(),
        log.keys(),
        workspace,
        Some(through),
        &mut |_| {},
    )
    .await?;
    if let Some(problem) = report.problems.iter().find(|p| p.seq <= through) {
        tracing::error!(%problem, "retention refused to delete audit entries that do not verify");
        return Ok(SweepOutcome::Refused {
            problem: problem.to_string(),
        });
    }
    let mut deleted = 0;
    let mut pruned_through = None;
    for (seq, hash) in boundaries {
        let anchor = log.keys().anchor(workspace, seq, hash, now_ms);
        match log.store().prune(anchor).await? {
            PruneOutcome::Pruned { entries } => {
                deleted += entries;
                pruned_through = Some(seq);
            }
            PruneOutcome::Held => break,
        }
    }
    let Some(through_seq) = pruned_through else {
        return Ok(SweepOutcome::Held {
            reason: String::new(),
        });
    };
    let event = AuditEvent::new(
        Action::RetentionSweep,
        Actor::system("retention"),
        workspace,
        now_ms,
    )
    .details(serde_json::json!({
        "pruned_through": through_seq,
        "entries": deleted,
        "cutoff_ms": cutoff_ms,
    }));
    log.append(event).await?;
    Ok(SweepOutcome::Pruned {
        entries: deleted,
        through_seq,
    })
}

/// Deletes, in every workspace with a retention period and no legal hold,
/// audit entries older than the period (keeping the chain verifiable), and
/// asks `history` to delete document history older than its period. Each
/// workspace that lost entries gets a `retention.sweep` entry.
pub async fn sweep(
    log: &AuditLog,
    now_ms: u64,
    history: &dyn HistoryPruner,
) -> Result<SweepReport, RetentionError> {
    let mut report = SweepReport::default();
    for workspace in log.store().configured_workspaces().await? {
        let settings = settings::read(log.store().as_ref(), &workspace).await?;
        let policy = settings.retention;
        if policy.audit_ms.is_none() && policy.history_ms.is_none() {
            continue;
        }
        if let Some(hold) = settings.legal_hold {
            report.workspaces.push(WorkspaceSweep {
                workspace,
                audit: SweepOutcome::Held {
                    reason: hold.reason,
                },
                history: None,
            });
            continue;
        }
        let audit = match policy.audit_ms {
            Some(period) => {
                sweep_audit(log, &workspace, now_ms.saturating_sub(period), now_ms).await?
            }
            None => SweepOutcome::NothingExpired,
        };
        let history = match (policy.history_ms, &audit) {
            (_, SweepOutcome::Held { .. }) | (None, _) => None,
            (Some(period), _) => Some(
                history
                    .prune_history(&workspace, now_ms.saturating_sub(period))
                    .await,
            ),
        };
        report.workspaces.push(WorkspaceSweep {
            workspace,
            audit,
            history,
        });
    }
    Ok(report)
}
