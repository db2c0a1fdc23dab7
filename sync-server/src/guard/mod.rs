//! The server's side of governance: every operation goes through here to
//! be decided by policy and put on the audit trail before it happens.
//!
//! | where | what |
//! |---|---|
//! | WebSocket upgrade | `connection.open` authorized and recorded before the upgrade is answered |
//! | connection end | `connection.close` recorded |
//! | a frame carrying an update | `write` decided by policy before the update touches the document; a denial is answered with a permission-denied message naming the policy and recorded as `update.refused` |
//! | each committed batch | one `update.accepted` entry per update (size, SHA-256) appended before the batch is stored; if the audit append fails the batch is not stored and the document reloads |
//! | REST reads, exports, writes, versions | authorized and recorded before the handler runs |
//!
//! Availability: audit appends are group-committed by one writer per node,
//! so the update path pays one extra commit per batch, not per update. If
//! the audit store is down, writes and audited reads are refused with 503
//! and a reason; connected clients keep their presence and reconnect when
//! it returns. We chose refusing over buffering unaudited work.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use governance::audit::{
    Action, Actor, AuditConfig, AuditEvent, AuditKeys, AuditLog, Outcome, Source,
};
use governance::clock::SystemClock;
use governance::lineage::{LineageEdge, LineageStore};
use governance::policy::{
    PolicyAction, PolicyEngine, PolicyRequest, Principal, RequestContext, Resource,
};
use governance::store::AuditStore;
use governance::{Admitted, Governance, Operation, Refusal};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::config::{Config, StoreKind};
use crate::docs::DocName;
use crate::error::AppError;

pub use source::ServerSource;

/// Why governance could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The audit store could not be opened.
    #[error("audit store: {0}")]
    Store(String),
    /// The signing key could not be read or created.
    #[error("audit key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The policies did not load.
    #[error("policies: {0}")]
    Policy(String),
}

/// A write refused by policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The policy that decided.
    pub policy: String,
    /// What the caller is told, naming the policy.
    pub message: String,
}

/// Governance for the whole server; cheap to share.
pub struct Guard {
    governance: Arc<Governance>,
    store: Arc<dyn AuditStore>,
    labels: BTreeMap<String, BTreeSet<String>>,
    node: String,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("node", &self.node).finish()
    }
}

impl Guard {
    /// Opens the audit store beside the document store (its own sled
    /// database under the data directory, or the same PostgreSQL schema),
    /// loads the signing key and the policies, and starts the audit writer.
    pub async fn open(config: &Config) -> Result<Arc<Self>, GuardError> {
        let (store, lineage): (Arc<dyn AuditStore>, Arc<dyn LineageStore>) = match config.store {
            StoreKind::Sled => {
                let path = config.data_dir.join("audit");
                let db = sled::Config::new()
                    .path(&path)
                    .cache_capacity(16 << 20)
                    .open()
                    .map_err(|e| GuardError::Store(format!("{}: {e}", path.display())))?;
                let store = governance::store::SledStore::open(
                    db,
                    governance::store::SledConfig {
                        fsync: config.fsync,
                    },
                )
                .map_err(|e| GuardError::Store(e.to_string()))?;
                (store.clone(), store)
            }
            StoreKind::Postgres => {
                let url = config
                    .database_url
                    .as_ref()
                    .ok_or_else(|| GuardError::Store("no database URL".into()))?;
                let store =
                    governance::store::PostgresStore::open(governance::store::PostgresConfig {
                        url: url.expose().to_owned(),
                        schema: config.database_schema.clone(),
                        max_connections: 4,
                    })
                    .await
                    .map_err(|e| GuardError::Store(e.to_string()))?;
                (store.clone(), store)
            }
        };
        let key = &config.governance.audit_key;
        if let Some(dir) = key.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GuardError::Key {
                path: key.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let keys = AuditKeys::load_or_generate(key).map_err(|e| GuardError::Key {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        let policy = PolicyEngine::load(&config.governance.policy)
            .map_err(|e| GuardError::Policy(e.to_string()))?;
        let log = AuditLog::start(
            store.clone(),
            keys,
            Arc::new(SystemClock),
            AuditConfig::default(),
        );
        Ok(Arc::new(Self {
            governance: Arc::new(Governance::new(log, policy, lineage)),
            store,
            labels: config.governance.labels.clone(),
            node: config.bind.to_string(),
        }))
    }

    /// The governance crate's handle.
    pub fn governance(&self) -> &Arc<Governance> {
        &self.governance
    }

    /// The audit store (settings, search).
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// The policy resource for a workspace, or a document in it.
    pub fn resource(&self, workspace: &str, document: Option<&DocName>) -> Resource {
        let labels = self.labels.get(workspace).cloned().unwrap_or_default();
        let resource = Resource::workspace(workspace, labels);
        match document {
            Some(doc) => resource.with_document(doc.as_str()),
            None => resource,
        }
    }

    /// The audit source of a caller.
    pub fn source(&self, caller: &Caller) -> Source {
        Source {
            ip: caller.ip,
            user_agent: caller.user_agent.clone(),
            node: Some(self.node.clone()),
        }
    }

    /// An operation by `caller` on a workspace or one of its documents.
    pub fn operation(
        &self,
        action: Action,
        caller: &Caller,
        workspace: &str,
        document: Option<&DocName>,
    ) -> Operation {
        Operation::new(
            action,
            principal(caller),
            self.resource(workspace, document),
            self.source(caller),
        )
    }

    /// Decides and records `op`; `Ok` means it is on record and may go
    /// ahead.
    pub async fn authorize(&self, op: Operation) -> Result<Admitted, AppError> {
        self.governance.authorize(op).await.map_err(refusal)
    }

    /// [`Guard::authorize`] for the common case: `caller` does `action` on
    /// `document`.
    pub async fn admit(
        &self,
        action: Action,
        caller: &Caller,
        document: &DocName,
        details: serde_json::Value,
    ) -> Result<Admitted, AppError> {
        let op = self
            .operation(action, caller, document.workspace(), Some(document))
            .details(details);
        self.authorize(op).await
    }

    /// Decides whether `caller` may write to `document` now, without
    /// recording anything (the update path records accepted updates at
    /// commit and refusals itself). `Err` carries the deciding policy's id
    /// and the refusal text.
    pub fn may_write(&self, caller: &Caller, document: &DocName) -> Result<(), Denial> {
        let request = PolicyRequest {
            principal: principal(caller),
            action: PolicyAction::Write,
            resource: self.resource(document.workspace(), Some(document)),
            context: RequestContext {
                at_ms: now_ms(),
                source_ip: caller.ip,
                admin_approvers: BTreeSet::new(),
                granted_role: None,
            },
        };
        let decision = self.governance.policy().decide(&request);
        if decision.allowed {
            Ok(())
        } else {
            Err(Denial {
                message: decision.message(),
                policy: decision.policy_id,
            })
        }
    }

    /// The audit entry of an update accepted from `caller`.
    pub fn update_event(
        &self,
        caller: &Caller,
        document: &DocName,
        update: &[u8],
        at_ms: u64,
    ) -> AuditEvent {
        let hash = hex(&Sha256::digest(update));
        let mut event = AuditEvent::new(
            Action::UpdateAccepted,
            actor(caller),
            document.workspace(),
            at_ms,
        )
        .source(self.source(caller))
        .details(serde_json::json!({ "bytes": update.len(), "sha256": hash }));
        event.document = Some(document.as_str().to_owned());
        event
    }

    /// A fact about `caller` and `document` (a disconnect, a refused
    /// update), recorded in the background: the operation it describes has
    /// already ended, so a failure is logged, not returned.
    pub fn record_fact(
        self: &Arc<Self>,
        action: Action,
        caller: &Caller,
        document: &DocName,
        outcome: Outcome,
        details: serde_json::Value,
    ) {
        let mut event = AuditEvent::new(action, actor(caller), document.workspace(), now_ms())
            .source(self.source(caller))
            .outcome(outcome)
            .details(details);
        event.document = Some(document.as_str().to_owned());
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.governance.record(vec![event]).await {
                tracing::error!(%error, ?action, "could not record an audit fact");
            }
        });
    }

    /// A fact about `caller` in `workspace` (`*`: the whole server), with
    /// no document: a sign-in, a failed sign-in, a break-glass use.
    /// Recorded in the background, like [`Guard::record_fact`].
    pub fn record_event(
        self: &Arc<Self>,
        action: Action,
        caller: &Caller,
        workspace: &str,
        outcome: Outcome,
        details: serde_json::Value,
    ) {
        let event = AuditEvent::new(action, actor(caller), workspace, now_ms())
            .source(self.source(caller))
            .outcome(outcome)
            .details(details);
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.governance.record(vec![event]).await {
                tracing::error!(%error, ?action, "could not record an audit event");
            }
        });
    }

    /// Appends the entries of one committed batch; returns once durable.
    pub async fn record_batch(&self, events: Vec<AuditEvent>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        self.governance
            .record(events)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Records where content came from or went.
    pub async fn lineage(&self, edge: LineageEdge) {
        if let Err(error) = self.governance.record_lineage(&edge).await {
            tracing::warn!(%error, "could not record lineage");
        }
    }

    /// Flushes and stops the audit writer.
    pub async fn close(&self) {
        if let Err(error) = self.governance.audit().close().await {
            tracing::warn!(%error, "closing the audit trail");
        }
    }
}

/// The audit actor of a caller.
pub fn actor(caller: &Caller) -> Actor {
    Actor::user(&caller.user)
}

/// The policy principal of a caller.
pub fn principal(caller: &Caller) -> Principal {
    // Anonymous mode (no identity provider, local use) makes everyone the
    // owner, so its callers are principals with that role; the policy
    // engine's anonymous principals are for connections with no role.
    let mut principal = Principal::user(&caller.user, caller.role);
    principal.groups = caller.groups.iter().cloned().collect();
    principal
}

/// A refusal as an API error: denials are 403 and name the policy; an
/// operation that could not be recorded is 503.
pub fn refusal(refusal: Refusal) -> AppError {
    match refusal {
        Refusal::Denied { .. } => AppError::Forbidden(refusal.to_string()),
        Refusal::Unrecorded(_) => AppError::Unavailable(refusal.to_string()),
        Refusal::NotAuthorizable(_) => AppError::Internal(refusal.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _infallible = write!(s, "{b:02x}");
        s
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
