//! Compliance reports from real data: GDPR access (Art. 15), GDPR erasure
//! (Art. 17) and the SOC 2 access review.
//!
//! The audit trail is this crate's own; everything else (accounts, role
//! bindings and their history, who wrote what) the server supplies through
//! [`ComplianceSource`]. Every builder returns a typed report, which
//! [`render`] writes as JSON, CSV or a self-contained HTML page.

mod erasure;
mod gdpr;
mod render;
mod soc2;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::erasure::{
    DocumentErasure, ErasureMode, ErasureOutcome, ErasurePlan, plan_erasure, pseudonym,
    record_erasure,
};
pub use self::gdpr::{ActivitySummary, DocumentContribution, GdprAccessReport, gdpr_access};
pub use self::render::{Report, ReportFormat, ReportView, Table, UnknownReportFormat, render};
pub use self::soc2::{AccessReview, AccessReviewRow, ReviewedChange, access_review};
use crate::audit::AuditError;
use crate::policy::Role;
use crate::settings::SettingsError;

/// A user's account, as the identity system holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    /// The stable id.
    pub id: String,
    /// The name shown to others.
    pub display_name: Option<String>,
    /// The e-mail address.
    pub email: Option<String>,
    /// When the account was created (ms since the epoch).
    pub created_at_ms: Option<u64>,
    /// Groups the user is in.
    pub groups: Vec<String>,
    /// Anything else the identity system stores (SSO subject, locale…).
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// One change of one user's role on one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The workspace.
    pub workspace: String,
    /// Whose role changed.
    pub user: String,
    /// The role after the change; `None` when revoked.
    pub role: Option<Role>,
    /// The role before; `None` when newly granted.
    pub previous: Option<Role>,
    /// Who made the change.
    pub changed_by: String,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// A document a user contributed to, by the updates the server stored
/// with them as origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthoredDocument {
    /// The workspace.
    pub workspace: String,
    /// The document's full name.
    pub document: String,
    /// Updates the user sent.
    pub updates: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The first (ms since the epoch).
    pub first_at_ms: u64,
    /// The last.
    pub last_at_ms: u64,
}

/// A part of a document attributed to a user (from the history feature:
/// text ranges, map keys, comments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributedPart {
    /// Where in the document (`text:body[120..180]`, `map:title`).
    pub location: String,
    /// The content, if the history feature provides it.
    pub content: Option<String>,
    /// When it was written (ms since the epoch).
    pub at_ms: u64,
}

/// Why the server's data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compliance data source failed: {0}")]
pub struct SourceError(pub String);

/// What the server knows about users, for reports. Methods added later
/// get a default implementation, so implementations keep compiling.
#[async_trait]
pub trait ComplianceSource: Send + Sync {
    /// The user's account, if it exists.
    async fn account(&self, user: &str) -> Result<Option<UserAccount>, SourceError>;

    /// The complete history of role changes, oldest first, optionally only
    /// for one workspace and/or one user.
    async fn role_changes(
        &self,
        workspace: Option<&str>,
        user: Option<&str>,
    ) -> Result<Vec<RoleChange>, SourceError>;

    /// The user's roles now, by workspace. By default the result of their
    /// role changes; a source that stores memberships reads them.
    async fn current_roles(
        &self,
        user: &str,
    ) -> Result<std::collections::BTreeMap<String, crate::policy::Role>, SourceError> {
        let mut roles = std::collections::BTreeMap::new();
        for change in self.role_changes(None, Some(user)).await? {
            match change.role {
                Some(role) => roles.insert(change.workspace, role),
                None => roles.remove(&change.workspace),
            };
        }
        Ok(roles)
    }

    /// Every document the user contributed to.
    async fn authored_documents(&self, user: &str) -> Result<Vec<AuthoredDocument>, SourceError>;

    /// The parts of `document` attributed to `user`. Until the history
    /// feature lands the server has none to give.
    async fn attributed_parts(
        &self,
        _user: &str,
        _document: &str,
    ) -> Result<Vec<AttributedPart>, SourceError> {
        Ok(Vec::new())
    }
}

/// Why a report could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComplianceError {
    /// The server's data source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Reading or writing the audit trail failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Workspace settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The time range is empty or reversed.
    #[error("the time range must end after it starts (from {from_ms} to {to_ms})")]
    Range {
        /// Its start.
        from_ms: u64,
        /// Its end.
        to_ms: u64,
    },
}
