//! Retention of history, per workspace: keep everything, keep a number of
//! days, or keep only named versions.
//!
//! The sweep deletes, for every stored document of a workspace: automatic
//! and restore versions past the policy, and, for a number of days,
//! activity and the timing of attribution older than that (authorship, who
//! inserted and deleted which items, is kept while the document exists).
//! Named versions are kept under every policy. What the API lists is read
//! from the store, so it is always what is kept.
//!
//! Two sources set periods: `--history-retention` for the server, and each
//! workspace's governance settings (`PATCH /api/workspaces/{ws}/settings`,
//! audit entries and history), applied by [`governance::retention::sweep`]
//! through [`StorePruner`]. One sweeper runs both, and a workspace under a
//! legal hold loses nothing to either.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Bucket, HistoryStore, VersionKind, workspace_of};
use crate::docs::DocName;
use crate::store::{DocStore, StoreError};

/// How long a workspace keeps history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionPolicy {
    /// Keep everything.
    All,
    /// Keep this many days (named versions are kept regardless).
    Days(u32),
    /// Keep named versions only.
    NamedOnly,
}

impl FromStr for RetentionPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "named" => Ok(Self::NamedOnly),
            days => days
                .strip_suffix('d')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .map(Self::Days)
                .ok_or_else(|| format!("history retention must be \"all\", \"named\" or a number of days like \"30d\", not {days:?}")),
        }
    }
}

impl fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::NamedOnly => f.write_str("named"),
            Self::Days(n) => write!(f, "{n}d"),
        }
    }
}

/// Retention for every workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// For workspaces not listed.
    pub default: RetentionPolicy,
    /// Per workspace.
    pub workspaces: BTreeMap<String, RetentionPolicy>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            default: RetentionPolicy::All,
            workspaces: BTreeMap::new(),
        }
    }
}

impl Retention {
    /// Parses `workspace=policy` entries (`*` sets the default).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut retention = Self::default();
        for entry in entries {
            let (workspace, policy) = entry.split_once('=').ok_or_else(|| {
                format!("history retention entry {entry:?} is not workspace=policy")
            })?;
            let policy: RetentionPolicy = policy.trim().parse()?;
            match workspace.trim() {
                "*" => retention.default = policy,
                workspace => {
                    retention.workspaces.insert(workspace.to_owned(), policy);
                }
            }
        }
        Ok(retention)
    }

    /// The policy of a workspace.
    pub fn policy(&self, workspace: &str) -> RetentionPolicy {
        self.workspaces
            .get(workspace)
            .copied()
            .unwrap_or(self.default)
    }
}

impl Retention {
    /// Whether every workspace keeps everything (no sweep needed).
    pub fn keeps_everything(&self) -> bool {
        self.default == RetentionPolicy::All
            && self.workspaces.values().all(|p| *p == RetentionPolicy::All)
    }
}

/// Sweeps every `interval` until `shutdown`, logging what was deleted:
/// the workspaces' governance retention (audit entries and history, see
/// [`governance::retention::sweep`]) and `retention`, skipping workspaces
/// under a legal hold.
pub async fn run_sweeper(
    store: Arc<dyn DocStore>,
    log: Arc<governance::audit::AuditLog>,
    retention: Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let pruner = StorePruner(store.clone());
        match governance::retention::sweep(&log, now_ms, &pruner).await {
            Ok(report) => {
                for ws in report.workspaces {
                    tracing::info!(workspace = %ws.workspace, audit = ?ws.audit, history = ?ws.history, "workspace retention applied");
                }
            }
            Err(error) => tracing::warn!(%error, "workspace retention sweep failed; will retry"),
        }
        if retention.keeps_everything() {
            continue;
        }
        let held = match held_workspaces(&log).await {
            Ok(held) => held,
            Err(error) => {
                // Without knowing the holds, deleting nothing is the safe side.
                tracing::warn!(%error, "legal holds could not be read; history retention skipped");
                continue;
            }
        };
        match sweep(&*store, &*store, &retention, &held, now_ms).await {
            Ok(swept) => tracing::info!(
                versions = swept.versions,
                attribution = swept.attribution,
                activity = swept.activity,
                "history retention applied"
            ),
            Err(error) => tracing::warn!(%error, "history retention sweep failed; will retry"),
        }
    }
}

/// Workspaces under a legal hold now.
pub async fn held_workspaces(
    log: &governance::audit::AuditLog,
) -> Result<BTreeSet<String>, String> {
    let store = log.store();
    let mut held = BTreeSet::new();
    for workspace in store
        .configured_workspaces()
        .await
        .map_err(|e| e.to_string())?
    {
        let settings = governance::settings::read(store.as_ref(), &workspace)
            .await
            .map_err(|e| e.to_string())?;
        if settings.legal_hold.is_some() {
            held.insert(workspace);
        }
    }
    Ok(held)
}

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Versions deleted.
    pub versions: usize,
    /// Attribution rows deleted.
    pub attribution: usize,
    /// Activity events deleted.
    pub activity: usize,
}

impl Swept {
    fn total(&self) -> usize {
        self.versions + self.attribution + self.activity
    }
}

/// Applies `retention` at time `now_ms` to everything stored, except the
/// `held` workspaces.
pub async fn sweep(
    documents: &dyn DocStore,
    history: &dyn HistoryStore,
    retention: &Retention,
    held: &BTreeSet<String>,
    now_ms: u64,
) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut workspaces_swept = BTreeSet::new();
    for doc in documents.list().await? {
        let workspace = workspace_of(doc.as_str()).to_owned();
        if held.contains(&workspace) {
            continue;
        }
        let cutoff_ms = match retention.policy(&workspace) {
            RetentionPolicy::All => continue,
            RetentionPolicy::Days(days) => now_ms.saturating_sub(u64::from(days) * 86_400_000),
            RetentionPolicy::NamedOnly => {
                swept.versions += expire_versions(history, &doc, u64::MAX).await?;
                continue;
            }
        };
        let first_of_workspace = workspaces_swept.insert(workspace.clone());
        prune(history, &doc, cutoff_ms, first_of_workspace, &mut swept).await?;
    }
    Ok(swept)
}

/// Deletes `doc`'s history from before `cutoff_ms`: automatic and restore
/// versions, the timing of attribution, and (when `with_activity`) its
/// workspace's activity.
async fn prune(
    history: &dyn HistoryStore,
    doc: &DocName,
    cutoff_ms: u64,
    with_activity: bool,
    swept: &mut Swept,
) -> Result<(), StoreError> {
    swept.versions += expire_versions(history, doc, cutoff_ms).await?;
    swept.attribution += fold_attribution(history, doc, cutoff_ms / 60_000).await?;
    if with_activity {
        swept.activity += history
            .delete_activity_before(workspace_of(doc.as_str()), cutoff_ms)
            .await?;
    }
    Ok(())
}

/// Deletes `doc`'s automatic and restore versions from before `cutoff_ms`.
async fn expire_versions(
    history: &dyn HistoryStore,
    doc: &DocName,
    cutoff_ms: u64,
) -> Result<usize, StoreError> {
    let expired: Vec<u64> = history
        .versions(doc)
        .await?
        .into_iter()
        .filter(|v| v.kind != VersionKind::Named && v.created_ms < cutoff_ms)
        .map(|v| v.id)
        .collect();
    history.delete_versions(doc, &expired).await
}

/// Deletes history for governance's per-workspace retention.
pub struct StorePruner(pub Arc<dyn DocStore>);

#[async_trait::async_trait]
impl governance::retention::HistoryPruner for StorePruner {
    async fn prune_history(&self, workspace: &str, before_ms: u64) -> Result<u64, String> {
        let mut swept = Swept::default();
        let mut first = true;
        for doc in self.0.list().await.map_err(|e| e.to_string())? {
            if workspace_of(doc.as_str()) != workspace {
                continue;
            }
            prune(&*self.0, &doc, before_ms, first, &mut swept)
                .await
                .map_err(|e| e.to_string())?;
            first = false;
        }
        Ok(swept.total() as u64)
    }
}

/// Expires attribution from before `cutoff_minute`, keeping authorship:
/// when and how often someone edited goes, but which items they inserted
/// and deleted stays, folded into one row per author at the cutoff, for as
/// long as the document exists. Diffs still name who wrote what, and a GDPR
/// access report or erasure still finds a user's old content. Returns the
/// rows deleted.
async fn fold_attribution(
    history: &dyn HistoryStore,
    doc: &DocName,
    cutoff_minute: u64,
) -> Result<usize, StoreError> {
    let mut folded: BTreeMap<String, Bucket> = BTreeMap::new();
    for bucket in history.attribution(doc).await? {
        if bucket.minute >= cutoff_minute {
            continue;
        }
        match folded.get_mut(&bucket.origin) {
            Some(into) => into.absorb(bucket),
            None => {
                let origin = bucket.origin.clone();
                folded.insert(
                    origin,
                    Bucket {
                        minute: cutoff_minute,
                        ..bucket
                    },
                );
            }
        }
    }
    if folded.is_empty() {
        return Ok(0);
    }
    // Written before the old rows go: a crash in between leaves both, which
    // readers merge, never neither.
    history
        .add_attribution(doc, folded.into_values().collect())
        .await?;
    history.delete_attribution_before(doc, cutoff_minute).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_clear_errors() {
        let r = Retention::parse(&["*=90d".into(), "legal=all".into(), "scratch=named".into()])
            .unwrap();
        assert_eq!(r.policy("acme"), RetentionPolicy::Days(90));
        assert_eq!(r.policy("legal"), RetentionPolicy::All);
        assert_eq!(r.policy("scratch"), RetentionPolicy::NamedOnly);
        let err = Retention::parse(&["acme=forever".into()]).unwrap_err();
        assert!(err.contains("\"forever\""), "{err}");
        assert!(Retention::parse(&["acme".into()]).is_err());
    }
}
