//! What an audit entry says: who did what, where, from where, when, and how
//! it ended.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The chain of events that belong to no workspace: sign-ins, policy
/// changes, server-wide administration and user erasure. `@` cannot occur
/// in a workspace name, so it never collides with one.
pub const SERVER_SCOPE: &str = "@server";

/// Longest workspace, document or actor id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Who performed an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in user.
    User {
        /// The user's stable id (not a display name, which may change).
        id: String,
    },
    /// A connection nobody signed in on, by the server's connection id.
    Connection {
        /// The connection id, e.g. `conn:42`.
        id: String,
    },
    /// The server itself: retention sweeps, scheduled jobs.
    System {
        /// Which component acted, e.g. `retention`.
        id: String,
    },
}

impl Actor {
    /// A signed-in user.
    pub fn user(id: impl Into<String>) -> Self {
        Actor::User { id: id.into() }
    }

    /// An anonymous connection.
    pub fn connection(id: impl Into<String>) -> Self {
        Actor::Connection { id: id.into() }
    }

    /// A server component.
    pub fn system(component: impl Into<String>) -> Self {
        Actor::System {
            id: component.into(),
        }
    }

    /// The id, whatever the kind. Searching by actor matches this.
    pub fn id(&self) -> &str {
        match self {
            Actor::User { id } | Actor::Connection { id } | Actor::System { id } => id,
        }
    }

    /// `user`, `connection` or `system`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Connection { .. } => "connection",
            Actor::System { .. } => "system",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// Where a request came from. Every field is optional: a scheduled job has
/// no client address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The client's address as the server saw it (after trusted proxies).
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The server node that handled the request: with several nodes on one
    /// database, it says whose log to read next.
    pub node: Option<String>,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// It was allowed (and, unless a later `Failed` entry says otherwise,
    /// performed).
    Allowed,
    /// A policy refused it.
    Denied {
        /// The id of the policy that decided.
        policy: String,
        /// The policy's reason, as shown to the user.
        reason: String,
    },
    /// It was allowed but failed, or the server refused it for a reason
    /// that is not a policy (a malformed update, a full queue).
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// `allowed`, `denied` or `failed`: the stable name used in search
    /// columns and exports.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied { .. } => "denied",
            Outcome::Failed { .. } => "failed",
        }
    }
}

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Every kind of operation the audit trail records. Each has a
        /// stable name ([`Action::as_str`]) used in storage, search, exports
        /// and reports: names are never reused or changed, only added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The stable name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }

        impl FromStr for Action {
            type Err = UnknownAction;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(Action::$variant),)*
                    other => Err(UnknownAction(other.to_owned())),
                }
            }
        }
    };
}

actions! {
    /// A WebSocket connection opened on a document.
    Connect => "connection.open",
    /// A connection closed; `details.reason` says why.
    Disconnect => "connection.close",
    /// A presence (awareness) state was shared. The server audits the first
    /// one per connection, not every cursor move.
    PresenceUpdate => "presence.update",
    /// A document update was accepted; `details` holds `bytes` and `sha256`.
    UpdateAccepted => "update.accepted",
    /// A document update was refused; the outcome says why.
    UpdateRefused => "update.refused",
    /// A document was read over the REST API.
    DocumentRead => "document.read",
    /// A document was created.
    DocumentCreate => "document.create",
    /// Content was imported into a document from outside (a file, a
    /// connector).
    DocumentImport => "document.import",
    /// A document was copied from another one.
    DocumentCopy => "document.copy",
    /// A document was exported.
    DocumentExport => "document.export",
    /// A document was deleted.
    DocumentDelete => "document.delete",
    /// An admin approved a pending deletion.
    DeletionApproval => "document.delete_approval",
    /// A user signed in.
    SignIn => "auth.sign_in",
    /// A sign-in failed.
    SignInFailed => "auth.sign_in_failed",
    /// A user signed out.
    SignOut => "auth.sign_out",
    /// A role was granted or changed on a workspace.
    RoleGrant => "role.grant",
    /// A role was revoked.
    RoleRevoke => "role.revoke",
    /// The policy set was changed or reloaded.
    PolicyChange => "policy.change",
    /// A workspace was created.
    WorkspaceCreate => "workspace.create",
    /// A workspace was deleted.
    WorkspaceDelete => "workspace.delete",
    /// A workspace's labels changed (e.g. `confidential`).
    WorkspaceLabels => "workspace.labels",
    /// A workspace's retention period or erasure mode changed.
    RetentionChange => "retention.change",
    /// A legal hold was placed on a workspace.
    LegalHoldSet => "legal_hold.set",
    /// A legal hold was lifted.
    LegalHoldClear => "legal_hold.clear",
    /// The retention sweep deleted expired entries.
    RetentionSweep => "retention.sweep",
    /// Someone searched the audit trail.
    AuditSearch => "audit.search",
    /// Someone exported the audit trail.
    AuditExport => "audit.export",
    /// Someone verified the audit trail.
    AuditVerify => "audit.verify",
    /// A compliance report was generated.
    ReportGenerate => "report.generate",
    /// A user's personal data was erased (GDPR Art. 17).
    UserErasure => "user.erasure",
    /// Any other administrative action; `details.operation` names it.
    AdminAction => "admin.action",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A name that is not an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAction(pub String);

/// One operation, as the server reports it.
///
/// Every field takes part in the entry's hash (see [`crate::audit::hash`]),
/// so nothing here can change unnoticed once appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What was done.
    pub action: Action,
    /// Who did it.
    pub actor: Actor,
    /// The workspace whose chain records it, or [`SERVER_SCOPE`].
    pub workspace: String,
    /// The document, when the operation concerned one (full name, e.g.
    /// `acme/roadmap`).
    pub document: Option<String>,
    /// Where the request came from.
    pub source: Source,
    /// How it ended.
    pub outcome: Outcome,
    /// Anything else worth keeping: sizes, hashes, the role granted, the
    /// export format. Free-form, but always a JSON object.
    pub details: serde_json::Value,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Why an event cannot be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The workspace id is empty, too long or holds a control character.
    #[error("invalid workspace id {0:?}")]
    Workspace(String),
    /// The document name is empty, too long or holds a control character.
    #[error("invalid document name {0:?}")]
    Document(String),
    /// The actor id is empty, too long or holds a control character.
    #[error("invalid actor id {0:?}")]
    Actor(String),
    /// `details` is not a JSON object.
    #[error("event details must be a JSON object")]
    Details,
}

impl AuditEvent {
    /// An allowed event with no document, source or details; fill those in
    /// with the builder methods.
    pub fn new(action: Action, actor: Actor, workspace: impl Into<String>, at_ms: u64) -> Self {
        Self {
            action,
            actor,
            workspace: workspace.into(),
            document: None,
            source: Source::default(),
            outcome: Outcome::Allowed,
            details: serde_json::Value::Object(serde_json::Map::new()),
            at_ms,
        }
    }

    /// Sets the document.
    pub fn document(mut self, name: impl Into<String>) -> Self {
        self.document = Some(name.into());
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the details (a JSON object).
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Checks what storage relies on: ids that fit an index and hold no
    /// control characters (the sled key layout separates parts with NUL),
    /// and details that are an object.
    pub fn validate(&self) -> Result<(), EventError> {
        if !is_plain_id(&self.workspace) {
            return Err(EventError::Workspace(self.workspace.clone()));
        }
        if let Some(doc) = &self.document
            && !is_plain_id(doc)
        {
            return Err(EventError::Document(doc.clone()));
        }
        if !is_plain_id(self.actor.id()) {
            return Err(EventError::Actor(self.actor.id().to_owned()));
        }
        if !self.details.is_object() {
            return Err(EventError::Details);
        }
        Ok(())
    }
}

/// 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub(crate) fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_stable_and_round_trip() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(*action));
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
        }
        // A handful pinned: these strings are in every stored entry.
        assert_eq!(Action::UpdateAccepted.as_str(), "update.accepted");
        assert_eq!(Action::SignInFailed.as_str(), "auth.sign_in_failed");
        assert!("nope".parse::<Action>().is_err());
    }

    #[test]
    fn ids_with_control_characters_are_refused() {
        let event = AuditEvent::new(Action::Connect, Actor::user("a\0b"), "acme", 1);
        assert_eq!(event.validate(), Err(EventError::Actor("a\0b".into())));
        let event = AuditEvent::new(Action::Connect, Actor::user("alice"), "", 1);
        assert!(matches!(event.validate(), Err(EventError::Workspace(_))));
        let event =
            AuditEvent::new(Action::Connect, Actor::user("alice"), "acme", 1).details(1.into());
        assert_eq!(event.validate(), Err(EventError::Details));
    }
}
