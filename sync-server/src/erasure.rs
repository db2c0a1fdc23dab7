//! GDPR erasure, carried out (Art. 17).
//!
//! [`governance::compliance::plan_erasure`] decides, per workspace, whether
//! the user's content is removed, pseudonymised or retained (the modes and
//! what they mean are documented there). This module does it:
//!
//! 1. **Access ends first.** Their explicit memberships are removed, their
//!    API keys revoked and their account record deleted, each change
//!    announced to every node; their open connections to loaded documents
//!    close with 4403 "account erased".
//! 2. **Per document**, by the workspace's mode:
//!    - *remove*: the items they inserted (from attribution, stored and
//!      still in memory) that are visible are deleted by one CRDT delete
//!      from `system:erasure`, stored and sent like any change; the log is
//!      then compacted, so the stored state keeps only tombstones of their
//!      content and no log entry holds it; every stored version is
//!      rewritten without their content;
//!    - *pseudonymise*: the log is compacted (folding away the entries
//!      that carried their id as origin) and the content stays;
//!    - both then name the pseudonym instead of the user in attribution,
//!      version authors and the activity feed, and check that no stored
//!      attribution or log entry still names them;
//!    - *retain*: content and attribution stay, with the legal basis.
//! 3. **The erasure is recorded** in each workspace's audit chain and the
//!    server's, naming the subject by pseudonym only; a document that
//!    failed is recorded as failed, and running the erasure again finishes
//!    it (every step is idempotent).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crdt_core::{Document, Encoding};
use governance::audit::AuditRef;
use governance::compliance::{DocumentErasure, ErasureMode, ErasureOutcome, ErasurePlan};
use serde::Serialize;
use yrs::IdSet;

use crate::auth::AccessChange;
use crate::docs::{Command, DocError, DocName, EraseRequest, Erased};
use crate::history::workspace_of;
use crate::state::AppState;

/// What an erasure did.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureReport {
    /// What was planned.
    pub plan: ErasurePlan,
    /// Documents done and failed.
    pub outcome: ErasureOutcome,
    /// What was done to each document done.
    pub documents: BTreeMap<String, DocumentErased>,
    /// Workspaces the user was removed from.
    pub memberships_removed: Vec<String>,
    /// API keys of theirs revoked.
    pub keys_revoked: Vec<String>,
    /// Whether an account record was deleted.
    pub account_deleted: bool,
    /// Activity events renamed to the pseudonym.
    pub activity_renamed: usize,
    /// The audit entries recording the erasure.
    pub audit: Vec<AuditRef>,
}

/// What was done to one document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DocumentErased {
    /// What the document task did.
    #[serde(flatten)]
    pub task: Erased,
    /// Versions rewritten without the user's content.
    pub versions_rewritten: usize,
    /// Attribution rows and version authors renamed.
    pub history_renamed: usize,
}

/// Why an erasure could not run at all (a failure of one document is in
/// the report instead).
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// The plan could not be made.
    #[error("planning the erasure failed: {0}")]
    Plan(String),
    /// The user's access could not be ended.
    #[error("ending the user's access failed: {0}")]
    Identity(String),
    /// The erasure could not be recorded.
    #[error("recording the erasure failed: {0}")]
    Record(String),
}

/// Erases `plan.user` as planned. `actor` and `source` are who asked, for
/// the audit trail.
pub async fn carry_out(
    state: &AppState,
    mut plan: ErasurePlan,
    actor: governance::audit::Actor,
    source: governance::audit::Source,
) -> Result<ErasureReport, ErasureError> {
    let user = plan.user.clone();
    let user = user.as_str();
    let identity = state.auth.store();
    let failed = |e: &dyn std::fmt::Display| ErasureError::Identity(e.to_string());

    let mut memberships_removed = Vec::new();
    for (workspace, _) in identity.memberships(user).await.map_err(|e| failed(&e))? {
        identity
            .remove_member(&workspace, user)
            .await
            .map_err(|e| failed(&e))?;
        memberships_removed.push(workspace);
    }
    let mut keys_revoked = Vec::new();
    let now = crate::auth::tokens::now_secs() * 1000;
    for key in identity.keys().await.map_err(|e| failed(&e))? {
        if key.created_by == user && key.revoked_ms.is_none() {
            identity
                .revoke_key(&key.id, now)
                .await
                .map_err(|e| failed(&e))?;
            state.announce_access(AccessChange {
                workspace: "*".into(),
                user: format!("key:{}", key.id),
            });
            keys_revoked.push(key.id);
        }
    }
    let account_deleted = identity.delete_user(user).await.map_err(|e| failed(&e))?;
    state.announce_access(AccessChange {
        workspace: "*".into(),
        user: user.to_owned(),
    });

    // The documents the plan names (their stored attribution names the
    // user), then every other loaded one, by its workspace's mode: the
    // user may be connected there, or have edited it so recently that the
    // attribution is still in memory.
    let mut modes: BTreeMap<String, ErasureMode> = plan
        .documents
        .iter()
        .map(|d| (d.workspace.clone(), d.mode.clone()))
        .collect();
    let mut todo: Vec<(String, ErasureMode, bool)> = plan
        .documents
        .iter()
        .map(|d| (d.document.clone(), d.mode.clone(), true))
        .collect();
    for name in state.registry.loaded_names() {
        if plan.documents.iter().any(|d| d.document == name.as_str()) {
            continue;
        }
        let mode = match modes.get(name.workspace()) {
            Some(mode) => mode.clone(),
            None => {
                let mode = workspace_mode(state, name.workspace()).await;
                modes.insert(name.workspace().to_owned(), mode.clone());
                mode
            }
        };
        todo.push((name.as_str().to_owned(), mode, false));
    }
    let retained: BTreeSet<&str> = modes
        .iter()
        .filter(|(_, mode)| matches!(mode, ErasureMode::Retain { .. }))
        .map(|(ws, _)| ws.as_str())
        .collect();

    let mut outcome = ErasureOutcome::default();
    let mut documents = BTreeMap::new();
    let mut found = Vec::new();
    for (document, mode, planned) in &todo {
        let result = match DocName::parse(document) {
            Ok(name) => erase_document(state, &name, mode, &plan, *planned).await,
            Err(error) => Err(error.to_string()),
        };
        match result {
            // A loaded document the user had not written to: nothing done
            // but closing their connections, not worth a line.
            Ok(None) => {}
            Ok(Some(done)) => {
                if !planned {
                    found.push((document.clone(), mode.clone()));
                }
                outcome.completed.push(document.clone());
                documents.insert(document.clone(), done);
            }
            Err(why) => {
                tracing::error!(doc = %document, %why, "erasure of a document failed");
                outcome.failed.insert(document.clone(), why);
            }
        }
    }

    // Recorded with the rest: documents found with unstored edits only.
    for (document, mode) in found {
        plan.documents.push(DocumentErasure {
            workspace: workspace_of(&document).to_owned(),
            effect: mode.effect(&plan.pseudonym),
            document,
            mode,
            updates: 0,
            bytes: 0,
        });
    }

    let mut activity_renamed = 0;
    for workspace in activity_workspaces(state, &memberships_removed).await {
        if retained.contains(workspace.as_str()) {
            continue;
        }
        match state
            .store
            .rename_actor(&workspace, user, &plan.pseudonym)
            .await
        {
            Ok(n) => activity_renamed += n,
            Err(error) => {
                outcome
                    .failed
                    .insert(format!("{workspace}/*activity"), error.to_string());
            }
        }
    }

    let log = state.guard.governance().audit();
    let audit = governance::compliance::record_erasure(log, &plan, &outcome, actor, source)
        .await
        .map_err(|e| ErasureError::Record(e.to_string()))?;
    Ok(ErasureReport {
        plan,
        outcome,
        documents,
        memberships_removed,
        keys_revoked,
        account_deleted,
        activity_renamed,
        audit,
    })
}

/// Every workspace with stored documents, and those the user was a member
/// of: where activity naming them may be.
async fn activity_workspaces(state: &AppState, memberships: &[String]) -> BTreeSet<String> {
    let mut workspaces: BTreeSet<String> = memberships.iter().cloned().collect();
    match state.store.list().await {
        Ok(docs) => workspaces.extend(docs.iter().map(|d| workspace_of(d.as_str()).to_owned())),
        Err(error) => tracing::warn!(%error, "listing documents for an erasure failed"),
    }
    workspaces
}

async fn erase_in_task(
    state: &AppState,
    name: &DocName,
    request: EraseRequest,
) -> Result<Erased, DocError> {
    state
        .registry
        .request(name, |reply| Command::Erase {
            request: request.clone(),
            reply,
        })
        .await
}

/// The erasure mode of `workspace` now: its setting, or retain under a
/// legal hold. Settings that cannot be read count as retain (nothing is
/// deleted on a guess).
async fn workspace_mode(state: &AppState, workspace: &str) -> ErasureMode {
    let store = state.guard.governance().audit().store().clone();
    match governance::settings::read(store.as_ref(), workspace).await {
        Ok(settings) => match settings.legal_hold {
            Some(hold) => ErasureMode::Retain {
                legal_basis: format!("legal hold: {}", hold.reason),
            },
            None => settings.erasure_mode,
        },
        Err(error) => ErasureMode::Retain {
            legal_basis: format!("settings unreadable: {error}"),
        },
    }
}

/// Erases the user from one document. `planned`: the plan names it (the
/// user wrote to it); a loaded document it does not name is only worked
/// on if the user has unstored edits there, and is `None` otherwise.
async fn erase_document(
    state: &AppState,
    name: &DocName,
    mode: &ErasureMode,
    plan: &ErasurePlan,
    planned: bool,
) -> Result<Option<DocumentErased>, String> {
    let user = plan.user.as_str();
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let remove = matches!(mode, ErasureMode::Remove);
    let retain = matches!(mode, ErasureMode::Retain { .. });
    let items = if remove {
        Some(inserted_by(state, name, user).await?)
    } else {
        None
    };
    let request = EraseRequest {
        user: user.to_owned(),
        pseudonym: (!retain).then(|| plan.pseudonym.clone()),
        items: items.clone(),
    };
    let task = erase_in_task(state, name, request)
        .await
        .map_err(|e| text(&e))?;
    let wrote_here = planned || task.unstored_edits;
    let mut done = DocumentErased {
        task,
        ..DocumentErased::default()
    };
    if !wrote_here {
        return Ok(None);
    }
    if retain {
        return Ok(Some(done));
    }
    state
        .registry
        .request(name, |reply| Command::Compact { reply })
        .await
        .map_err(|e| format!("compaction: {e}"))?;
    if let Some(items) = done.task.items.clone() {
        done.versions_rewritten = rewrite_versions(state, name, &items).await?;
    }
    done.history_renamed = rename_history(state, name, user, &plan.pseudonym).await?;
    let stored = state.store.load(name).await.map_err(|e| text(&e))?;
    if let Some(entry) = stored.log.iter().find(|e| e.origin == user) {
        return Err(format!(
            "log entry {} by the user is still stored after compaction",
            entry.seq
        ));
    }
    Ok(Some(done))
}

/// The items `user` inserted into `name`, from stored attribution (the task
/// adds what it has not stored yet).
async fn inserted_by(state: &AppState, name: &DocName, user: &str) -> Result<IdSet, String> {
    let buckets = state
        .store
        .attribution(name)
        .await
        .map_err(|e| e.to_string())?;
    let mut items = IdSet::default();
    for bucket in buckets.into_iter().filter(|b| b.origin == user) {
        items.merge_with(bucket.inserted);
    }
    Ok(items)
}

/// Rewrites every stored version of `name` without `items`' content.
async fn rewrite_versions(
    state: &AppState,
    name: &DocName,
    items: &IdSet,
) -> Result<usize, String> {
    let limits = state.config.docs.limits.clone();
    let mut rewritten = 0;
    for meta in state
        .store
        .versions(name)
        .await
        .map_err(|e| e.to_string())?
    {
        let Some((_, stored)) = state
            .store
            .version(name, meta.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let (limits, items) = (limits.clone(), items.clone());
        let erased = tokio::task::spawn_blocking(move || {
            let mut doc = Document::load(limits, Some((Encoding::V2, stored.as_slice())), [])
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(
                doc.erase(&items)
                    .map_err(|e| e.to_string())?
                    .map(|_| doc.encode_state(Encoding::V2)),
            )
        })
        .await
        .map_err(|e| e.to_string())??;
        if let Some(state_without) = erased {
            state
                .store
                .replace_version_state(name, meta.id, state_without)
                .await
                .map_err(|e| e.to_string())?;
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// Names the pseudonym instead of `user` in stored attribution and version
/// authors, until none names them: a write the document task started
/// before the erasure may land just after the first rename.
async fn rename_history(
    state: &AppState,
    name: &DocName,
    user: &str,
    pseudonym: &str,
) -> Result<usize, String> {
    let mut renamed = 0;
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        renamed += state
            .store
            .rename_author(name, user, pseudonym)
            .await
            .map_err(|e| e.to_string())?;
        let buckets = state
            .store
            .attribution(name)
            .await
            .map_err(|e| e.to_string())?;
        if !buckets.iter().any(|b| b.origin == user) {
            return Ok(renamed);
        }
    }
    Err("attribution naming the user kept reappearing".into())
}
