//! GDPR erasure (Art. 17): what happens to a user's data, decided per
//! workspace, planned here, carried out by the server, recorded here.
//!
//! # What each mode does to content in shared CRDT documents
//!
//! A Yjs document is a set of items, each created by one client id; the
//! server knows which client ids a user wrote with (the origin of every
//! update it stored).
//!
//! - [`ErasureMode::Remove`]: the server deletes every item the user
//!   inserted that is still visible, as one ordinary CRDT update (a delete
//!   set over those items, no inserts) from `system:erasure`, so every
//!   replica converges on the document without it. Their content (text,
//!   embeds, values, formatting marks) always goes; a shared type they
//!   created (a paragraph, a nested map) goes only once nothing visible is
//!   left in it, so text others typed into their paragraph stays. The
//!   server then compacts the document, so the stored snapshot keeps only
//!   tombstones (ids and lengths, no content) and no log entry holds the
//!   content, and rewrites every stored version without it.
//!   Other authors' content stays; edits anchored next to deleted text stay
//!   valid (tombstones keep positions). A map key whose current value the
//!   user wrote disappears (Yjs does not fall back to an older value).
//!   Replicas offline during the erasure get the delete when they sync;
//!   copies already exported are outside the server (see lineage). Their
//!   identity is then pseudonymised as below.
//! - [`ErasureMode::Pseudonymise`]: content stays. The server replaces the
//!   user id with the plan's pseudonym wherever it attributes content: the
//!   origin of stored updates (the log is compacted, which folds those
//!   entries into a snapshot that names no one), history attribution (the
//!   client-id-to-user mapping), version authors and the activity feed.
//!   The pseudonym is stable (the same user always gets the same one, from
//!   a keyed hash), so "pseudonym X wrote these paragraphs" stays
//!   consistent, and it cannot be reversed without the server's key.
//! - [`ErasureMode::Retain`]: content and attribution are kept because a
//!   legal basis requires it (records retention, a contract); the basis is
//!   recorded in the plan and the audit entry. A legal hold on the
//!   workspace forces this mode, with the hold as basis.
//!
//! In every mode the account record is deleted, the user's explicit role
//! bindings and API keys are revoked, and their open connections close
//! (4403, "account erased"). Audit entries are never rewritten (the chain
//! forbids it): they are kept under the legal obligation to keep records
//! and leave with retention. The erasure itself is recorded in each workspace touched and
//! in the `@server` chain, naming the subject by pseudonym only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::render::{Report, ReportView, Table};
use super::{ComplianceError, ComplianceSource};
use crate::audit::{
    Action, Actor, AuditEvent, AuditKeys, AuditLog, AuditRef, Outcome, SERVER_SCOPE, Source,
};
use crate::clock::rfc3339;
use crate::settings;

/// What erasing a user does to content they wrote in a workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ErasureMode {
    /// Delete their content from shared documents (the default).
    #[default]
    Remove,
    /// Keep their content; replace their identity with a pseudonym.
    Pseudonymise,
    /// Keep content and attribution, for this documented legal basis.
    Retain {
        /// E.g. "HGB §257: commercial records, 10 years".
        legal_basis: String,
    },
}

impl ErasureMode {
    /// What the server does to a document in this mode, in words.
    pub fn effect(&self, pseudonym: &str) -> String {
        match self {
            ErasureMode::Remove => format!(
                "delete the user's visible content with a CRDT delete, compact the log, \
                 rewrite versions without it, and name {pseudonym} in history"
            ),
            ErasureMode::Pseudonymise => format!(
                "keep the content; replace the user id with {pseudonym} in update origins, \
                 history attribution, version authors and activity"
            ),
            ErasureMode::Retain { legal_basis } => {
                format!("keep content and attribution (legal basis: {legal_basis})")
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ErasureMode::Remove => "remove",
            ErasureMode::Pseudonymise => "pseudonymise",
            ErasureMode::Retain { .. } => "retain",
        }
    }
}

/// What to do with one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentErasure {
    /// The workspace.
    pub workspace: String,
    /// The document.
    pub document: String,
    /// The mode that applies.
    pub mode: ErasureMode,
    /// What the server must do, in words.
    pub effect: String,
    /// Updates the user wrote in it.
    pub updates: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Everything erasing one user involves. The server carries it out, then
/// calls [`record_erasure`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasurePlan {
    /// The user.
    pub user: String,
    /// Their stable pseudonym.
    pub pseudonym: String,
    /// Who asked for the erasure.
    pub requested_by: String,
    /// When the plan was made.
    pub planned_at_ms: u64,
    /// Whether an account exists to delete.
    pub delete_account: bool,
    /// Role bindings to revoke: workspace and role.
    pub revoke_roles: BTreeMap<String, crate::policy::Role>,
    /// What to do with each document.
    pub documents: Vec<DocumentErasure>,
    /// Workspaces whose legal hold forced [`ErasureMode::Retain`].
    pub held_workspaces: Vec<String>,
    /// What happens to the user's audit entries.
    pub audit_entries: String,
}

/// What the server reports back after carrying out a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureOutcome {
    /// Documents done as planned.
    pub completed: Vec<String>,
    /// Documents that failed, with why. The erasure is recorded as failed
    /// for their workspaces, so it can be retried and proven incomplete.
    pub failed: BTreeMap<String, String>,
}

/// HMAC-SHA256 (RFC 2104), enough for one fixed-size key.
fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The user's stable pseudonym: `pseudonym-` and 16 hex digits of a keyed
/// hash of the id (the key is derived from the audit signing key).
pub fn pseudonym(keys: &AuditKeys, user: &str) -> String {
    let mac = hmac_sha256(&keys.derive_secret("pseudonym"), user.as_bytes());
    format!("pseudonym-{}", hex::encode(&mac[..8]))
}

/// Plans erasing `user`: which mode applies to each document they wrote in
/// (the workspace's setting, or `Retain` under a legal hold), which roles to
/// revoke, and the pseudonym.
pub async fn plan_erasure(
    user: &str,
    requested_by: &str,
    source: &dyn ComplianceSource,
    log: &AuditLog,
) -> Result<ErasurePlan, ComplianceError> {
    let pseudonym = pseudonym(log.keys(), user);
    let account = source.account(user).await?;
    let revoke_roles = source.current_roles(user).await?;
    let mut documents = Vec::new();
    let mut held = BTreeSet::new();
    let mut modes: BTreeMap<String, ErasureMode> = BTreeMap::new();
    for authored in source.authored_documents(user).await? {
        if !modes.contains_key(&authored.workspace) {
            let settings = settings::read(log.store().as_ref(), &authored.workspace).await?;
            let mode = match settings.legal_hold {
                Some(hold) => {
                    held.insert(authored.workspace.clone());
                    ErasureMode::Retain {
                        legal_basis: format!("legal hold: {}", hold.reason),
                    }
                }
                None => settings.erasure_mode,
            };
            modes.insert(authored.workspace.clone(), mode);
        }
        let mode = modes[&authored.workspace].clone();
        documents.push(DocumentErasure {
            effect: mode.effect(&pseudonym),
            mode,
            workspace: authored.workspace,
            document: authored.document,
            updates: authored.updates,
            bytes: authored.bytes,
        });
    }
    Ok(ErasurePlan {
        user: user.to_owned(),
        pseudonym,
        requested_by: requested_by.to_owned(),
        planned_at_ms: log.clock().now_ms(),
        delete_account: account.is_some(),
        revoke_roles,
        documents,
        held_workspaces: held.into_iter().collect(),
        audit_entries: "kept unchanged (hash-chained; legal obligation to keep records, \
                        GDPR Art. 17(3)(b)) until the workspace's retention period ends"
            .into(),
    })
}

/// Records a carried-out erasure: one `user.erasure` entry in each
/// workspace the plan touched (failed where a document of it failed) and
/// one in the `@server` chain, all naming the subject by pseudonym only.
pub async fn record_erasure(
    log: &AuditLog,
    plan: &ErasurePlan,
    outcome: &ErasureOutcome,
    actor: Actor,
    source: Source,
) -> Result<Vec<AuditRef>, ComplianceError> {
    let at_ms = log.clock().now_ms();
    let mut by_workspace: BTreeMap<&str, Vec<&DocumentErasure>> = BTreeMap::new();
    for doc in &plan.documents {
        by_workspace.entry(&doc.workspace).or_default().push(doc);
    }
    for ws in plan.revoke_roles.keys() {
        by_workspace.entry(ws).or_default();
    }
    let mut events = Vec::new();
    for (ws, docs) in &by_workspace {
        let failures: BTreeMap<&str, &str> = docs
            .iter()
            .filter_map(|d| {
                outcome
                    .failed
                    .get_key_value(&d.document)
                    .map(|(k, v)| (k.as_str(), v.as_str()))
            })
            .collect();
        let mode = docs.first().map(|d| d.mode.clone());
        let event = AuditEvent::new(Action::UserErasure, actor.clone(), *ws, at_ms)
            .source(source.clone())
            .details(serde_json::json!({
                "subject": plan.pseudonym,
                "mode": mode.as_ref().map(ErasureMode::name),
                "legal_basis": match &mode { Some(ErasureMode::Retain { legal_basis }) => Some(legal_basis), _ => None },
                "documents": docs.iter().map(|d| &d.document).collect::<Vec<_>>(),
                "role_revoked": plan.revoke_roles.contains_key(*ws),
                "failed": failures,
            }))
            .outcome(if failures.is_empty() {
                Outcome::Allowed
            } else {
                Outcome::Failed {
                    reason: format!("{} of {} documents failed", failures.len(), docs.len()),
                }
            });
        events.push(event);
    }
    events.push(
        AuditEvent::new(Action::UserErasure, actor, SERVER_SCOPE, at_ms)
            .source(source)
            .details(serde_json::json!({
                "subject": plan.pseudonym,
                "requested_by": plan.requested_by,
                "account_deleted": plan.delete_account,
                "workspaces": by_workspace.keys().collect::<Vec<_>>(),
                "documents": plan.documents.len(),
                "documents_failed": outcome.failed.len(),
            }))
            .outcome(if outcome.failed.is_empty() {
                Outcome::Allowed
            } else {
                Outcome::Failed {
                    reason: format!("{} documents failed", outcome.failed.len()),
                }
            }),
    );
    Ok(log.append_batch(events).await?)
}

impl Report for ErasurePlan {
    fn view(&self, _for_html: bool) -> ReportView {
        ReportView {
            title: format!("GDPR erasure plan for {}", self.user),
            summary: vec![
                ("User".into(), self.user.clone()),
                ("Pseudonym".into(), self.pseudonym.clone()),
                ("Requested by".into(), self.requested_by.clone()),
                ("Planned".into(), rfc3339(self.planned_at_ms)),
                (
                    "Account".into(),
                    if self.delete_account {
                        "delete"
                    } else {
                        "none stored"
                    }
                    .into(),
                ),
                ("Audit entries".into(), self.audit_entries.clone()),
            ],
            tables: vec![
                Table::new(
                    "Roles to revoke",
                    &["workspace", "role"],
                    self.revoke_roles
                        .iter()
                        .map(|(ws, r)| vec![ws.clone(), r.to_string()]),
                ),
                Table::new(
                    "Documents",
                    &[
                        "workspace",
                        "document",
                        "mode",
                        "updates",
                        "bytes",
                        "effect",
                    ],
                    self.documents.iter().map(|d| {
                        vec![
                            d.workspace.clone(),
                            d.document.clone(),
                            d.mode.name().into(),
                            d.updates.to_string(),
                            d.bytes.to_string(),
                            d.effect.clone(),
                        ]
                    }),
                ),
            ],
            notes: self
                .held_workspaces
                .iter()
                .map(|ws| format!("Workspace {ws} is under legal hold: its content is retained."))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1: a 20-byte key, which HMAC zero-pads exactly as our
        // 32-byte key with 12 trailing zeros.
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        let mac = hmac_sha256(&key, b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn pseudonyms_are_stable_and_distinct() {
        let keys = AuditKeys::from_seed([1; 32]);
        assert_eq!(pseudonym(&keys, "alice"), pseudonym(&keys, "alice"));
        assert_ne!(pseudonym(&keys, "alice"), pseudonym(&keys, "bob"));
        let other = AuditKeys::from_seed([2; 32]);
        assert_ne!(pseudonym(&keys, "alice"), pseudonym(&other, "alice"));
        assert!(pseudonym(&keys, "alice").starts_with("pseudonym-"));
    }
}
