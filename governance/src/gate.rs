//! The one door the server goes through: [`Governance`] decides an
//! operation, records the decision in the audit trail, and only then lets
//! the server proceed.
//!
//! Where the server calls it:
//!
//! | request path | call | action |
//! |---|---|---|
//! | WebSocket upgrade, before accepting | [`Governance::authorize`] | `connection.open` |
//! | first awareness message of a connection | `authorize` | `presence.update` |
//! | each coalesced batch of updates, before the document store append | [`Governance::authorize_batch`] | `update.accepted` (the server passes `PolicyAction::Comment` for comment-only updates) |
//! | REST read / export / delete / import / copy | `authorize`, then [`Admitted::failed`] if the operation fails | `document.*` |
//! | role, label, retention, policy changes, admin endpoints | `authorize` | `role.*`, `workspace.labels`, … |
//! | disconnect, sign-in (ok or failed), sign-out, a refused malformed update | [`Governance::record`] (facts, not requests) | `connection.close`, `auth.*`, `update.refused` |
//! | after an import, copy, export or connector run | [`Governance::record_lineage`] | — |

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::audit::{Action, Actor, AuditError, AuditEvent, AuditLog, AuditRef, Outcome, Source};
use crate::lineage::{self, LineageEdge, LineageError, LineageGraph, LineageStore};
use crate::policy::{
    Decision, PolicyAction, PolicyEngine, PolicyRequest, Principal, RequestContext, Resource, Role,
};

/// One operation the server is about to perform.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What it is, as audited.
    pub action: Action,
    /// What it is authorized as; `None` uses
    /// [`PolicyAction::for_audit`] of `action`.
    pub policy_action: Option<PolicyAction>,
    /// Who asks.
    pub principal: Principal,
    /// On what.
    pub resource: Resource,
    /// From where.
    pub source: Source,
    /// Details for the audit entry (sizes, hashes, the role granted…).
    pub details: serde_json::Value,
    /// For deletions: admins who approved.
    pub admin_approvers: BTreeSet<String>,
    /// For role changes: the role granted or revoked.
    pub granted_role: Option<Role>,
}

impl Operation {
    /// An operation with no details, approvals or granted role.
    pub fn new(action: Action, principal: Principal, resource: Resource, source: Source) -> Self {
        Self {
            action,
            policy_action: None,
            principal,
            resource,
            source,
            details: serde_json::json!({}),
            admin_approvers: BTreeSet::new(),
            granted_role: None,
        }
    }

    /// Sets the audit details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    fn actor(&self) -> Actor {
        if self.principal.anonymous {
            Actor::connection(&self.principal.id)
        } else {
            Actor::user(&self.principal.id)
        }
    }

    fn event(&self, at_ms: u64, outcome: Outcome) -> AuditEvent {
        let mut event = AuditEvent::new(self.action, self.actor(), &self.resource.workspace, at_ms)
            .source(self.source.clone())
            .details(self.details.clone())
            .outcome(outcome);
        event.document.clone_from(&self.resource.document);
        event
    }
}

/// Why an operation must not be performed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A policy denied it (HTTP 403). The denial was audited when `audit`
    /// is set; if recording it failed, it is refused all the same.
    #[error("{}", .decision.message())]
    Denied {
        /// The decision, naming the policy.
        decision: Decision,
        /// The audit entry of the denial.
        audit: Option<AuditRef>,
    },
    /// It was allowed but could not be recorded (HTTP 503).
    #[error("the operation could not be recorded in the audit trail, so it was not performed: {0}")]
    Unrecorded(AuditError),
    /// The action is a fact, not a request: use [`Governance::record`].
    #[error("{0} is not decided by policy; record it with Governance::record")]
    NotAuthorizable(Action),
}

/// Permission to go ahead: the decision and the audit entry that records it.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The decision.
    pub decision: Decision,
    /// The entry recording the allowed operation.
    pub audit: AuditRef,
    event: AuditEvent,
}

impl Admitted {
    /// Records that the admitted operation then failed (best effort: the
    /// operation did not happen, so nothing is left unrecorded if this
    /// append fails too; it is logged).
    pub async fn failed(self, governance: &Governance, reason: impl Into<String>) {
        let mut event = self.event.outcome(Outcome::Failed {
            reason: reason.into(),
        });
        event.at_ms = governance.audit.clock().now_ms();
        if let Err(error) = governance.audit.append(event).await {
            tracing::warn!(%error, "could not record that an operation failed");
        }
    }
}

/// Policy decisions, the audit trail and lineage, for the whole server.
pub struct Governance {
    audit: Arc<AuditLog>,
    /// Swapped whole on reload; a std lock held only to clone the `Arc`.
    policy: RwLock<Arc<PolicyEngine>>,
    lineage: Arc<dyn LineageStore>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance")
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Governance {
    /// Puts the parts together.
    pub fn new(audit: Arc<AuditLog>, policy: PolicyEngine, lineage: Arc<dyn LineageStore>) -> Self {
        Self {
            audit,
            policy: RwLock::new(Arc::new(policy)),
            lineage,
        }
    }

    /// The audit trail.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The policy engine in force.
    pub fn policy(&self) -> Arc<PolicyEngine> {
        self.policy.read().expect("policy lock poisoned").clone()
    }

    /// Replaces the policies (after a reload validated the new ones). The
    /// caller authorizes and audits the change as `policy.change`.
    pub fn replace_policies(&self, engine: PolicyEngine) {
        *self.policy.write().expect("policy lock poisoned") = Arc::new(engine);
    }

    fn request(&self, op: &Operation, at_ms: u64) -> Result<PolicyRequest, Refusal> {
        let action = op
            .policy_action
            .or_else(|| PolicyAction::for_audit(op.action))
            .ok_or(Refusal::NotAuthorizable(op.action))?;
        Ok(PolicyRequest {
            principal: op.principal.clone(),
            action,
            resource: op.resource.clone(),
            context: RequestContext {
                at_ms,
                source_ip: op.source.ip,
                admin_approvers: op.admin_approvers.clone(),
                granted_role: op.granted_role,
            },
        })
    }

    /// Decides `op` and records the decision; `Ok` means: go ahead, it is
    /// on record.
    pub async fn authorize(&self, op: Operation) -> Result<Admitted, Refusal> {
        self.authorize_batch(vec![op])
            .await
            .pop()
            .expect("one result per operation")
    }

    /// Decides every operation and records all decisions in one group
    /// commit (the update path: one call per coalesced batch). Results are
    /// in order. If the commit fails, every operation is refused.
    pub async fn authorize_batch(&self, ops: Vec<Operation>) -> Vec<Result<Admitted, Refusal>> {
        let engine = self.policy();
        let at_ms = self.audit.clock().now_ms();
        let mut results: Vec<Option<Result<Admitted, Refusal>>> = Vec::with_capacity(ops.len());
        let mut pending = Vec::new();
        let mut events = Vec::new();
        for op in &ops {
            match self.request(op, at_ms) {
                Err(refusal) => results.push(Some(Err(refusal))),
                Ok(request) => {
                    let decision = engine.decide(&request);
                    let outcome = if decision.allowed {
                        Outcome::Allowed
                    } else {
                        Outcome::Denied {
                            policy: decision.policy_id.clone(),
                            reason: decision.reason.clone(),
                        }
                    };
                    let event = op.event(at_ms, outcome);
                    pending.push((results.len(), decision, event.clone()));
                    events.push(event);
                    results.push(None);
                }
            }
        }
        match self.audit.append_batch(events).await {
            Ok(refs) => {
                for ((index, decision, event), audit) in pending.into_iter().zip(refs) {
                    results[index] = Some(if decision.allowed {
                        Ok(Admitted {
                            decision,
                            audit,
                            event,
                        })
                    } else {
                        Err(Refusal::Denied {
                            decision,
                            audit: Some(audit),
                        })
                    });
                }
            }
            Err(error) => {
                for (index, decision, _) in pending {
                    results[index] = Some(Err(if decision.allowed {
                        Refusal::Unrecorded(error.clone())
                    } else {
                        Refusal::Denied {
                            decision,
                            audit: None,
                        }
                    }));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every operation answered"))
            .collect()
    }

    /// Records facts that are not requests (a disconnect, a failed
    /// sign-in, an update refused as malformed).
    pub async fn record(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditRef>, AuditError> {
        self.audit.append_batch(events).await
    }

    /// Records where content came from or went.
    pub async fn record_lineage(&self, edge: &LineageEdge) -> Result<(), LineageError> {
        lineage::record(self.lineage.as_ref(), edge).await
    }

    /// The lineage graph around `document`, up to `max_depth` edges away.
    pub async fn lineage_graph(
        &self,
        document: &str,
        max_depth: u32,
    ) -> Result<LineageGraph, LineageError> {
        lineage::graph(self.lineage.as_ref(), document, max_depth).await
    }
}
