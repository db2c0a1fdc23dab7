//! The GDPR access report (Art. 15): everything stored about one user.

use std::collections::BTreeMap;

use serde::Serialize;

use super::render::{Report, ReportView, Table};
use super::{
    AttributedPart, AuthoredDocument, ComplianceError, ComplianceSource, RoleChange, UserAccount,
};
use crate::audit::{AuditLog, AuditQuery};
use crate::clock::rfc3339;
use crate::policy::Role;
use crate::store::AuditEntry;

/// A document the user contributed to, with the parts attributed to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentContribution {
    /// Totals of what they wrote.
    #[serde(flatten)]
    pub authored: AuthoredDocument,
    /// The parts attributed to them (empty until the history feature).
    pub parts: Vec<AttributedPart>,
}

/// How often the user did one kind of thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivitySummary {
    /// The action.
    pub action: String,
    /// How many entries.
    pub count: u64,
    /// The first (ms since the epoch).
    pub first_at_ms: u64,
    /// The last.
    pub last_at_ms: u64,
}

/// Everything stored about one user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GdprAccessReport {
    /// The user.
    pub user: String,
    /// When the report was made.
    pub generated_at_ms: u64,
    /// Their account, if it still exists.
    pub account: Option<UserAccount>,
    /// Their roles now, by workspace.
    pub current_roles: BTreeMap<String, Role>,
    /// Every change to their roles.
    pub role_history: Vec<RoleChange>,
    /// Documents they wrote in.
    pub documents: Vec<DocumentContribution>,
    /// Their audit entries by action.
    pub activity: Vec<ActivitySummary>,
    /// Every audit entry with them as actor, oldest first.
    pub audit_entries: Vec<AuditEntry>,
}

/// Builds the access report for `user`: the account, roles and documents
/// from `source`, every audit entry with the user as actor from `log`.
pub async fn gdpr_access(
    user: &str,
    source: &dyn ComplianceSource,
    log: &AuditLog,
) -> Result<GdprAccessReport, ComplianceError> {
    let account = source.account(user).await?;
    let role_history = source.role_changes(None, Some(user)).await?;
    let current_roles = source.current_roles(user).await?;
    let mut documents = Vec::new();
    for authored in source.authored_documents(user).await? {
        let parts = source.attributed_parts(user, &authored.document).await?;
        documents.push(DocumentContribution { authored, parts });
    }
    let mut audit_entries = Vec::new();
    let mut query = AuditQuery {
        actor: Some(user.to_owned()),
        limit: crate::store::MAX_PAGE,
        ..AuditQuery::default()
    };
    loop {
        let page = log.search(&query).await?;
        audit_entries.extend(page.entries);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut activity: BTreeMap<&'static str, ActivitySummary> = BTreeMap::new();
    for entry in &audit_entries {
        let e = &entry.event;
        let summary = activity
            .entry(e.action.as_str())
            .or_insert_with(|| ActivitySummary {
                action: e.action.as_str().to_owned(),
                count: 0,
                first_at_ms: e.at_ms,
                last_at_ms: e.at_ms,
            });
        summary.count += 1;
        summary.first_at_ms = summary.first_at_ms.min(e.at_ms);
        summary.last_at_ms = summary.last_at_ms.max(e.at_ms);
    }
    Ok(GdprAccessReport {
        user: user.to_owned(),
        generated_at_ms: log.clock().now_ms(),
        account,
        current_roles,
        role_history,
        documents,
        activity: activity.into_values().collect(),
        audit_entries,
    })
}

/// Most audit rows the HTML page shows; JSON and CSV hold them all.
const HTML_AUDIT_ROWS: usize = 1000;

impl Report for GdprAccessReport {
    fn view(&self, for_html: bool) -> ReportView {
        let mut summary = vec![
            ("User".to_owned(), self.user.clone()),
            ("Generated".to_owned(), rfc3339(self.generated_at_ms)),
        ];
        match &self.account {
            Some(account) => {
                summary.push((
                    "Display name".into(),
                    account.display_name.clone().unwrap_or_default(),
                ));
                summary.push(("E-mail".into(), account.email.clone().unwrap_or_default()));
                summary.push((
                    "Account created".into(),
                    account.created_at_ms.map(rfc3339).unwrap_or_default(),
                ));
                summary.push(("Groups".into(), account.groups.join(", ")));
                for (k, v) in &account.attributes {
                    summary.push((format!("Attribute {k}"), v.clone()));
                }
            }
            None => summary.push(("Account".into(), "none stored".into())),
        }
        let roles = Table::new(
            "Current roles",
            &["workspace", "role"],
            self.current_roles
                .iter()
                .map(|(ws, role)| vec![ws.clone(), role.to_string()]),
        );
        let history = Table::new(
            "Role history",
            &["at", "workspace", "previous", "role", "changed_by"],
            self.role_history.iter().map(|c| {
                vec![
                    rfc3339(c.at_ms),
                    c.workspace.clone(),
                    c.previous.map(|r| r.to_string()).unwrap_or_default(),
                    c.role.map_or_else(|| "(revoked)".into(), |r| r.to_string()),
                    c.changed_by.clone(),
                ]
            }),
        );
        let documents = Table::new(
            "Documents written",
            &[
                "workspace",
                "document",
                "updates",
                "bytes",
                "first",
                "last",
                "attributed parts",
            ],
            self.documents.iter().map(|d| {
                let a = &d.authored;
                vec![
                    a.workspace.clone(),
                    a.document.clone(),
                    a.updates.to_string(),
                    a.bytes.to_string(),
                    rfc3339(a.first_at_ms),
                    rfc3339(a.last_at_ms),
                    d.parts
                        .iter()
                        .map(|p| p.location.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                ]
            }),
        );
        let activity = Table::new(
            "Activity",
            &["action", "count", "first", "last"],
            self.activity.iter().map(|a| {
                vec![
                    a.action.clone(),
                    a.count.to_string(),
                    rfc3339(a.first_at_ms),
                    rfc3339(a.last_at_ms),
                ]
            }),
        );
        let shown = if for_html {
            HTML_AUDIT_ROWS.min(self.audit_entries.len())
        } else {
            self.audit_entries.len()
        };
        let audit = Table::new(
            "Audit entries",
            &[
                "at",
                "workspace",
                "seq",
                "action",
                "document",
                "outcome",
                "source ip",
                "hash",
            ],
            self.audit_entries[..shown].iter().map(|entry| {
                let e = &entry.event;
                vec![
                    rfc3339(e.at_ms),
                    entry.workspace.clone(),
                    entry.seq.to_string(),
                    e.action.to_string(),
                    e.document.clone().unwrap_or_default(),
                    e.outcome.kind().to_owned(),
                    e.source.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    entry.hash.to_hex(),
                ]
            }),
        );
        let mut notes = vec![
            "Audit entries are kept under the controller's legal obligation to keep records \
             (GDPR Art. 6(1)(c), Art. 17(3)(b)) until the workspace's retention period ends."
                .to_owned(),
        ];
        if shown < self.audit_entries.len() {
            notes.push(format!(
                "This page shows the first {shown} of {} audit entries; the JSON and CSV \
                 versions of this report hold all of them.",
                self.audit_entries.len()
            ));
        }
        ReportView {
            title: format!("GDPR access report for {}", self.user),
            summary,
            tables: vec![roles, history, documents, activity, audit],
            notes,
        }
    }
}
