//! The SOC 2 access review (CC6.2, CC6.3): who had which role on which
//! workspace over a period, what changed, who changed it, and whether each
//! change left an audit entry.
//!
//! The server records role changes as `role.grant` / `role.revoke` entries
//! whose `details.user` names the user whose role changed; a change in the
//! role history without such an entry (same workspace, user and time) is
//! flagged, because a reviewer must be able to trace every change.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::render::{Report, ReportView, Table};
use super::{ComplianceError, ComplianceSource, RoleChange};
use crate::audit::{Action, AuditLog, AuditQuery};
use crate::clock::rfc3339;
use crate::policy::Role;

/// One user on one workspace over the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReviewRow {
    /// The workspace.
    pub workspace: String,
    /// The user.
    pub user: String,
    /// Their role when the period began.
    pub role_at_start: Option<Role>,
    /// Their role when it ended.
    pub role_at_end: Option<Role>,
    /// Changes during the period.
    pub changes: usize,
    /// Who made the last change (in or before the period).
    pub last_changed_by: Option<String>,
    /// When (ms since the epoch).
    pub last_changed_at_ms: Option<u64>,
}

/// A change during the period, with its audit evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewedChange {
    /// The change.
    #[serde(flatten)]
    pub change: RoleChange,
    /// The audit entry recording it (`workspace#seq`), if one was found.
    pub audit_entry: Option<String>,
}

/// The access review over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReview {
    /// Start of the period (ms since the epoch).
    pub from_ms: u64,
    /// End of the period (exclusive).
    pub to_ms: u64,
    /// Only this workspace, if given.
    pub workspace: Option<String>,
    /// When the report was made.
    pub generated_at_ms: u64,
    /// Everyone who held a role at any time in the period.
    pub rows: Vec<AccessReviewRow>,
    /// Every change in the period, oldest first.
    pub changes: Vec<ReviewedChange>,
    /// Changes without an audit entry.
    pub unaudited_changes: usize,
}

fn role_at(history: &[&RoleChange], at_ms: u64) -> Option<Role> {
    history
        .iter()
        .take_while(|c| c.at_ms < at_ms)
        .last()
        .and_then(|c| c.role)
}

/// Builds the access review of `workspace` (or all) over
/// `[from_ms, to_ms)`.
pub async fn access_review(
    source: &dyn ComplianceSource,
    log: &AuditLog,
    workspace: Option<&str>,
    from_ms: u64,
    to_ms: u64,
) -> Result<AccessReview, ComplianceError> {
    if to_ms <= from_ms {
        return Err(ComplianceError::Range { from_ms, to_ms });
    }
    let mut all = source.role_changes(workspace, None).await?;
    all.sort_by_key(|c| c.at_ms);
    let mut by_binding: BTreeMap<(String, String), Vec<&RoleChange>> = BTreeMap::new();
    for change in &all {
        by_binding
            .entry((change.workspace.clone(), change.user.clone()))
            .or_default()
            .push(change);
    }
    // Audit entries of role changes in the period, keyed by what they are
    // about.
    let mut audited: BTreeMap<(String, String, u64), String> = BTreeMap::new();
    let mut query = AuditQuery {
        workspace: workspace.map(str::to_owned),
        actions: vec![Action::RoleGrant, Action::RoleRevoke],
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        limit: crate::store::MAX_PAGE,
        ..AuditQuery::default()
    };
    loop {
        let page = log.search(&query).await?;
        for entry in &page.entries {
            if let Some(user) = entry.event.details.get("user").and_then(|u| u.as_str()) {
                audited.insert(
                    (entry.workspace.clone(), user.to_owned(), entry.event.at_ms),
                    format!("{}#{}", entry.workspace, entry.seq),
                );
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut rows = Vec::new();
    for ((ws, user), history) in &by_binding {
        let at_start = role_at(history, from_ms);
        let in_period: Vec<_> = history
            .iter()
            .filter(|c| c.at_ms >= from_ms && c.at_ms < to_ms)
            .collect();
        let at_end = role_at(history, to_ms);
        if at_start.is_none() && in_period.is_empty() {
            continue;
        }
        let last = history.iter().take_while(|c| c.at_ms < to_ms).last();
        rows.push(AccessReviewRow {
            workspace: ws.clone(),
            user: user.clone(),
            role_at_start: at_start,
            role_at_end: at_end,
            changes: in_period.len(),
            last_changed_by: last.map(|c| c.changed_by.clone()),
            last_changed_at_ms: last.map(|c| c.at_ms),
        });
    }
    let changes: Vec<ReviewedChange> = all
        .iter()
        .filter(|c| c.at_ms >= from_ms && c.at_ms < to_ms)
        .map(|c| ReviewedChange {
            audit_entry: audited
                .get(&(c.workspace.clone(), c.user.clone(), c.at_ms))
                .cloned(),
            change: c.clone(),
        })
        .collect();
    let unaudited_changes = changes.iter().filter(|c| c.audit_entry.is_none()).count();
    Ok(AccessReview {
        from_ms,
        to_ms,
        workspace: workspace.map(str::to_owned),
        generated_at_ms: log.clock().now_ms(),
        rows,
        changes,
        unaudited_changes,
    })
}

impl Report for AccessReview {
    fn view(&self, _for_html: bool) -> ReportView {
        let role = |r: Option<Role>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
        let workspaces: BTreeSet<&str> = self.rows.iter().map(|r| r.workspace.as_str()).collect();
        ReportView {
            title: "SOC 2 access review".into(),
            summary: vec![
                ("Period start".into(), rfc3339(self.from_ms)),
                ("Period end".into(), rfc3339(self.to_ms)),
                (
                    "Workspace".into(),
                    self.workspace.clone().unwrap_or_else(|| "all".into()),
                ),
                ("Workspaces reviewed".into(), workspaces.len().to_string()),
                ("Role holders".into(), self.rows.len().to_string()),
                ("Changes".into(), self.changes.len().to_string()),
                (
                    "Changes without audit entry".into(),
                    self.unaudited_changes.to_string(),
                ),
                ("Generated".into(), rfc3339(self.generated_at_ms)),
            ],
            tables: vec![
                Table::new(
                    "Role holders",
                    &[
                        "workspace",
                        "user",
                        "role at start",
                        "role at end",
                        "changes",
                        "last changed by",
                        "last changed at",
                    ],
                    self.rows.iter().map(|r| {
                        vec![
                            r.workspace.clone(),
                            r.user.clone(),
                            role(r.role_at_start),
                            role(r.role_at_end),
                            r.changes.to_string(),
                            r.last_changed_by.clone().unwrap_or_default(),
                            r.last_changed_at_ms.map(rfc3339).unwrap_or_default(),
                        ]
                    }),
                ),
                Table::new(
                    "Changes",
                    &[
                        "at",
                        "workspace",
                        "user",
                        "from",
                        "to",
                        "changed by",
                        "audit entry",
                    ],
                    self.changes.iter().map(|c| {
                        vec![
                            rfc3339(c.change.at_ms),
                            c.change.workspace.clone(),
                            c.change.user.clone(),
                            role(c.change.previous),
                            role(c.change.role),
                            c.change.changed_by.clone(),
                            c.audit_entry.clone().unwrap_or_else(|| "MISSING".into()),
                        ]
                    }),
                ),
            ],
            notes: Vec::new(),
        }
    }
}
