//! Policy decisions: is this principal allowed to do this to this
//! resource, now? Evaluated on every operation, before it is performed and
//! audited.
//!
//! # Why Cedar
//!
//! Policies are written in [Cedar](https://www.cedarpolicy.com), evaluated
//! in-process by the `cedar-policy` crate:
//!
//! - **Against OPA/Rego over HTTP**: a network round trip per decision is
//!   out of the question on the update path (thousands per second, each
//!   already waiting for a durable commit), and a sidecar is one more thing
//!   that can be down. Rego is also a general logic language: policies can
//!   loop, recurse and fail at run time in ways a reviewer cannot see.
//! - **Against hand-written rules in Rust**: every new rule ("confidential
//!   workspaces cannot be exported") would be a code change and a release;
//!   operators could not add their own, and auditors could not read them.
//! - **What Cedar gives**: a small, non-Turing-complete language whose
//!   evaluation always terminates; validation of every policy against a
//!   schema at load (a typo in an attribute name is a load error with a
//!   line number, not a silent "deny" in production); forbid-overrides-
//!   permit semantics, so a governance rule cannot be undone by a broader
//!   permit; and a decision that names the policies that determined it,
//!   which is what a denial message and the audit entry need.
//!
//! # Model
//!
//! See `policies/schema.cedarschema` (built in, printed by
//! [`SCHEMA`]): users in per-workspace [`Role`] entities and groups;
//! workspaces and documents carrying labels and their workspace's roles;
//! a context with the local time (in the configured zone), the number of
//! distinct admins approving a deletion, the source address and, for role
//! changes, the rank of the role granted. The built-in policies are
//! [`ROLES_POLICIES`] and [`GOVERNANCE_POLICIES`]; operators add `.cedar`
//! files in a directory. Every policy needs an `@id("…")` annotation (the
//! name a denial shows) and may have `@reason("…")` (the text it shows).
//!
//! # Speed
//!
//! A decision builds a handful of entities and runs Cedar; the result is
//! cached under the complete request (principal, role, groups, action,
//! resource, labels, and the context values to the minute: Cedar sees time
//! only as weekday, hour and minute). Because the key holds every input,
//! the cache never needs invalidating on role or label changes: a changed
//! role is a different key. Reloading policies builds a new engine with an
//! empty cache. The `decisions_per_second` test measures both paths.

mod engine;
mod load;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use self::engine::PolicyEngine;
pub use self::load::{PolicyDiagnostic, PolicyLoadError};
use crate::audit::Action;

/// The Cedar schema policies are validated against.
pub const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
/// The built-in role rules.
pub const ROLES_POLICIES: &str = include_str!("../../policies/roles.cedar");
/// The built-in governance policies (confidential export, business hours,
/// two-admin deletion).
pub const GOVERNANCE_POLICIES: &str = include_str!("../../policies/governance.cedar");

/// A role on a workspace, from least to most powerful: the same type
/// sign-in maps groups to, so a role never needs translating.
pub use connectors::Role;

macro_rules! policy_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What a request asks to do, as Cedar's `Action::"…"`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum PolicyAction {
            $($(#[$doc])* $variant,)*
        }

        impl PolicyAction {
            /// Every action.
            pub const ALL: &'static [PolicyAction] = &[$(PolicyAction::$variant,)*];

            /// The Cedar action id.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(PolicyAction::$variant => $name,)*
                }
            }
        }
    };
}

policy_actions! {
    /// Open a connection to a document.
    Connect => "connect",
    /// Read a document.
    Read => "read",
    /// Share presence (cursor, selection, name).
    Presence => "presence",
    /// Change only a document's comment threads.
    Comment => "comment",
    /// Change a document.
    Write => "write",
    /// Create a document.
    Create => "create",
    /// Import content into a document.
    Import => "import",
    /// Copy a document into this one.
    Copy => "copy",
    /// Export a document.
    Export => "export",
    /// Delete a document or workspace.
    Delete => "delete",
    /// Approve someone's deletion.
    ApproveDeletion => "approve_deletion",
    /// Grant, change or revoke roles.
    ManageRoles => "manage_roles",
    /// Change labels, retention, legal hold or erasure mode.
    ManageWorkspace => "manage_workspace",
    /// Search, export or verify the audit trail.
    ReadAudit => "read_audit",
    /// Generate compliance reports.
    Report => "report",
    /// Erase a user's personal data.
    EraseUser => "erase_user",
    /// Change the policy set.
    ManagePolicies => "manage_policies",
    /// Any other administrative action.
    Admin => "admin",
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PolicyAction {
    /// The action an audited operation is authorized as; `None` for
    /// operations that are facts rather than requests (a disconnect, a
    /// failed sign-in, the retention sweep). An update that the server
    /// finds touches only comment threads is authorized as
    /// [`PolicyAction::Comment`] instead of the default `Write`.
    pub fn for_audit(action: Action) -> Option<PolicyAction> {
        use PolicyAction as P;
        Some(match action {
            Action::Connect => P::Connect,
            Action::PresenceUpdate => P::Presence,
            Action::UpdateAccepted | Action::UpdateRefused => P::Write,
            Action::DocumentRead => P::Read,
            Action::DocumentCreate | Action::WorkspaceCreate => P::Create,
            Action::DocumentImport => P::Import,
            Action::DocumentCopy => P::Copy,
            Action::DocumentExport => P::Export,
            Action::DocumentDelete | Action::WorkspaceDelete => P::Delete,
            Action::DeletionApproval => P::ApproveDeletion,
            Action::RoleGrant | Action::RoleRevoke => P::ManageRoles,
            Action::PolicyChange => P::ManagePolicies,
            Action::WorkspaceLabels
            | Action::RetentionChange
            | Action::LegalHoldSet
            | Action::LegalHoldClear => P::ManageWorkspace,
            Action::AuditSearch | Action::AuditExport | Action::AuditVerify => P::ReadAudit,
            Action::ReportGenerate => P::Report,
            Action::UserErasure => P::EraseUser,
            Action::AdminAction => P::Admin,
            Action::Disconnect
            | Action::SignIn
            | Action::SignInFailed
            | Action::SignOut
            | Action::RetentionSweep => return None,
        })
    }
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// A user id, or `conn:<n>` for an anonymous connection.
    pub id: String,
    /// Whether nobody signed in.
    pub anonymous: bool,
    /// The user's groups (from SSO).
    pub groups: BTreeSet<String>,
    /// The user's effective role on the resource's workspace (including
    /// roles granted through groups), if any.
    pub role: Option<Role>,
}

impl Principal {
    /// A signed-in user with a role (or none) on the workspace asked about.
    pub fn user(id: impl Into<String>, role: Option<Role>) -> Self {
        Self {
            id: id.into(),
            anonymous: false,
            groups: BTreeSet::new(),
            role,
        }
    }

    /// An anonymous connection.
    pub fn anonymous(connection: impl Into<String>) -> Self {
        Self {
            id: connection.into(),
            anonymous: true,
            groups: BTreeSet::new(),
            role: None,
        }
    }
}

/// What is asked about: a workspace, or a document in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The workspace (or `@server` for server-wide operations).
    pub workspace: String,
    /// The document's full name, when the request is about one.
    pub document: Option<String>,
    /// The workspace's labels (`confidential`, `business-hours-only`).
    pub labels: BTreeSet<String>,
}

impl Resource {
    /// A workspace with labels.
    pub fn workspace<L: Into<String>>(
        workspace: impl Into<String>,
        labels: impl IntoIterator<Item = L>,
    ) -> Self {
        Self {
            workspace: workspace.into(),
            document: None,
            labels: labels.into_iter().map(Into::into).collect(),
        }
    }

    /// A document in this workspace.
    pub fn with_document(mut self, document: impl Into<String>) -> Self {
        self.document = Some(document.into());
        self
    }
}

/// The circumstances of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestContext {
    /// When it is asked, in ms since the epoch (the server's clock, so
    /// tests can inject one).
    pub at_ms: u64,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Admins (or owners) of the workspace who approved this deletion,
    /// the requester included when they are one. Counted distinct.
    pub admin_approvers: BTreeSet<String>,
    /// For role changes: the role granted or revoked.
    pub granted_role: Option<Role>,
}

/// One question to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyRequest {
    /// Who asks.
    pub principal: Principal,
    /// To do what.
    pub action: PolicyAction,
    /// To what.
    pub resource: Resource,
    /// In which circumstances.
    pub context: RequestContext,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the operation may proceed.
    pub allowed: bool,
    /// The `@id` of the policy that determined it (for a denial by default,
    /// [`DEFAULT_DENY`]).
    pub policy_id: String,
    /// Why, for the user: the policy's `@reason`, or a default.
    pub reason: String,
}

/// The policy id of a denial no forbid caused: nothing permitted it.
pub const DEFAULT_DENY: &str = "default-deny";

impl Decision {
    /// The message shown to a refused user and written to the audit entry:
    /// `denied by policy "<id>": <reason>`.
    pub fn message(&self) -> String {
        if self.allowed {
            format!("allowed by policy {:?}: {}", self.policy_id, self.reason)
        } else {
            format!("denied by policy {:?}: {}", self.policy_id, self.reason)
        }
    }
}

/// Settings of the policy engine.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// A directory of operator `.cedar` files (read non-recursively, in
    /// name order), added to the built-in ones.
    pub dir: Option<PathBuf>,
    /// The IANA time zone business hours are in (`Europe/Berlin`).
    pub time_zone: String,
    /// Whether the built-in governance policies apply (the role rules
    /// always do).
    pub builtin_governance: bool,
    /// Decisions cached; 0 turns the cache off.
    pub cache_entries: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: None,
            time_zone: "UTC".into(),
            builtin_governance: true,
            cache_entries: 100_000,
        }
    }
}
