//! Per-workspace governance settings: retention periods, legal hold and
//! the GDPR erasure mode. Stored as named values beside the audit trail;
//! every change is audited before it is made (the same write-ahead rule the
//! server follows for every operation).

use serde::{Deserialize, Serialize};

use crate::audit::{Action, Actor, AuditError, AuditEvent, AuditLog, AuditRef, Outcome, Source};
use crate::compliance::ErasureMode;
use crate::store::{AuditStore, LEGAL_HOLD_KEY, StoreError};

const RETENTION_KEY: &str = "retention";
const ERASURE_MODE_KEY: &str = "erasure_mode";

/// How long a workspace keeps what.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Audit entries older than this are deleted (ms); `None` keeps them.
    pub audit_ms: Option<u64>,
    /// Document history older than this is deleted by the server (ms);
    /// `None` keeps it.
    pub history_ms: Option<u64>,
}

/// A legal hold: while set, nothing of the workspace is deleted by
/// retention, and erasure keeps document content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    /// Why (a case or matter reference).
    pub reason: String,
    /// Who placed it.
    pub set_by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// Everything governance stores about one workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceSettings {
    /// Retention periods.
    pub retention: RetentionPolicy,
    /// The legal hold in force, if any.
    pub legal_hold: Option<LegalHold>,
    /// What GDPR erasure does to content in this workspace.
    pub erasure_mode: ErasureMode,
}

/// Why settings could not be read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change could not be audited, so it was not made.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A stored value does not parse.
    #[error("setting {name:?} of workspace {workspace:?} is unreadable: {reason}")]
    Corrupt {
        /// The workspace.
        workspace: String,
        /// The setting.
        name: String,
        /// The parse error.
        reason: String,
    },
}

fn parse<T: for<'de> Deserialize<'de>>(
    workspace: &str,
    name: &str,
    value: Option<&String>,
) -> Result<Option<T>, SettingsError> {
    value
        .map(|v| {
            serde_json::from_str(v).map_err(|e| SettingsError::Corrupt {
                workspace: workspace.to_owned(),
                name: name.to_owned(),
                reason: e.to_string(),
            })
        })
        .transpose()
}

/// Reads a workspace's settings (defaults for anything never set).
pub async fn read(
    store: &dyn AuditStore,
    workspace: &str,
) -> Result<WorkspaceSettings, SettingsError> {
    let values = store.settings(workspace).await?;
    Ok(WorkspaceSettings {
        retention: parse(workspace, RETENTION_KEY, values.get(RETENTION_KEY))?.unwrap_or_default(),
        legal_hold: parse(workspace, LEGAL_HOLD_KEY, values.get(LEGAL_HOLD_KEY))?,
        erasure_mode: parse(workspace, ERASURE_MODE_KEY, values.get(ERASURE_MODE_KEY))?
            .unwrap_or_default(),
    })
}

/// Audits a change, makes it, and audits a failure.
async fn change(
    log: &AuditLog,
    event: AuditEvent,
    name: &str,
    value: Option<String>,
) -> Result<AuditRef, SettingsError> {
    let workspace = event.workspace.clone();
    let failed = event.clone();
    let recorded = log.append(event).await?;
    if let Err(error) = log.store().set_setting(&workspace, name, value).await {
        let failure = failed.outcome(Outcome::Failed {
            reason: error.to_string(),
        });
        if let Err(audit) = log.append(failure).await {
            tracing::warn!(%audit, "could not audit a failed settings change");
        }
        return Err(error.into());
    }
    Ok(recorded)
}

/// Who changes a setting, from where.
#[derive(Debug, Clone)]
pub struct ChangedBy {
    /// The actor.
    pub actor: Actor,
    /// Where the request came from.
    pub source: Source,
}

impl ChangedBy {
    fn event(&self, action: Action, workspace: &str, at_ms: u64) -> AuditEvent {
        AuditEvent::new(action, self.actor.clone(), workspace, at_ms).source(self.source.clone())
    }
}

/// Sets a workspace's retention periods.
pub async fn set_retention(
    log: &AuditLog,
    workspace: &str,
    policy: RetentionPolicy,
    by: &ChangedBy,
) -> Result<AuditRef, SettingsError> {
    let event = by
        .event(Action::RetentionChange, workspace, log.clock().now_ms())
        .details(serde_json::json!({ "retention": policy }));
    let value = serde_json::to_string(&policy).expect("settings serialize");
    change(log, event, RETENTION_KEY, Some(value)).await
}

/// Sets a workspace's erasure mode.
pub async fn set_erasure_mode(
    log: &AuditLog,
    workspace: &str,
    mode: &ErasureMode,
    by: &ChangedBy,
) -> Result<AuditRef, SettingsError> {
    let event = by
        .event(Action::RetentionChange, workspace, log.clock().now_ms())
        .details(serde_json::json!({ "erasure_mode": mode }));
    let value = serde_json::to_string(mode).expect("settings serialize");
    change(log, event, ERASURE_MODE_KEY, Some(value)).await
}

/// Places a legal hold on a workspace (replacing one in force).
pub async fn set_legal_hold(
    log: &AuditLog,
    workspace: &str,
    reason: &str,
    by: &ChangedBy,
) -> Result<AuditRef, SettingsError> {
    let at_ms = log.clock().now_ms();
    let hold = LegalHold {
        reason: reason.to_owned(),
        set_by: by.actor.id().to_owned(),
        at_ms,
    };
    let event = by
        .event(Action::LegalHoldSet, workspace, at_ms)
        .details(serde_json::json!({ "reason": reason }));
    let value = serde_json::to_string(&hold).expect("settings serialize");
    change(log, event, LEGAL_HOLD_KEY, Some(value)).await
}

/// Lifts a workspace's legal hold.
pub async fn clear_legal_hold(
    log: &AuditLog,
    workspace: &str,
    by: &ChangedBy,
) -> Result<AuditRef, SettingsError> {
    let event = by.event(Action::LegalHoldClear, workspace, log.clock().now_ms());
    change(log, event, LEGAL_HOLD_KEY, None).await
}
