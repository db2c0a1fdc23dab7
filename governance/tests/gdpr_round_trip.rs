//! Guarantee: a GDPR access report holds everything stored about one user
//! and nothing about anyone else; an erasure is planned per workspace mode
//! (legal hold forcing retention), recorded without re-identifying the
//! user, and a second access report afterwards shows what remains.
//!
//! The audit trail is real (on both stores); accounts, roles and authorship
//! come from an in-memory source standing in for the server.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use common::{Backend, Harness};
use governance::audit::{Action, Actor, AuditQuery, Source};
use governance::clock::Clock;
use governance::compliance::{
    AuthoredDocument, ComplianceSource, ErasureMode, ErasureOutcome, ReportFormat, RoleChange,
    SourceError, UserAccount, gdpr_access, plan_erasure, pseudonym, record_erasure, render,
};
use governance::policy::{PolicyConfig, PolicyEngine, Principal, Resource, Role};
use governance::settings::{self, ChangedBy};
use governance::{Governance, Operation};

#[derive(Default)]
struct Directory {
    accounts: Mutex<BTreeMap<String, UserAccount>>,
    roles: Mutex<Vec<RoleChange>>,
    authored: Mutex<BTreeMap<String, Vec<AuthoredDocument>>>,
}

#[async_trait]
impl ComplianceSource for Directory {
    async fn account(&self, user: &str) -> Result<Option<UserAccount>, SourceError> {
        Ok(self.accounts.lock().unwrap().get(user).cloned())
    }

    async fn role_changes(
        &self,
        workspace: Option<&str>,
        user: Option<&str>,
    ) -> Result<Vec<RoleChange>, SourceError> {
        Ok(self
            .roles
            .lock()
            .unwrap()
            .iter()
            .filter(|c| workspace.is_none_or(|w| w == c.workspace))
            .filter(|c| user.is_none_or(|u| u == c.user))
            .cloned()
            .collect())
    }

    async fn authored_documents(&self, user: &str) -> Result<Vec<AuthoredDocument>, SourceError> {
        Ok(self
            .authored
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default())
    }
}

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const WORKSPACES: [&str; 3] = ["acme", "initech", "lawfirm"];

async fn setup(h: &Harness) -> (Governance, Directory) {
    let governance = Governance::new(
        h.log.clone(),
        PolicyEngine::load(&PolicyConfig::default()).unwrap(),
        h.lineage.clone(),
    );
    let dir = Directory::default();
    let dpo = ChangedBy {
        actor: Actor::user("dpo"),
        source: Source::default(),
    };
    settings::set_erasure_mode(&h.log, "acme", &ErasureMode::Pseudonymise, &dpo)
        .await
        .unwrap();
    settings::set_erasure_mode(&h.log, "initech", &ErasureMode::Remove, &dpo)
        .await
        .unwrap();
    settings::set_legal_hold(&h.log, "lawfirm", "Case 2024-17", &dpo)
        .await
        .unwrap();
    for (i, user) in USERS.iter().enumerate() {
        dir.accounts.lock().unwrap().insert(
            (*user).to_owned(),
            UserAccount {
                id: (*user).to_owned(),
                display_name: Some(format!("{user} <Admin> & Co")),
                email: Some(format!("{user}@example.com")),
                created_at_ms: Some(1_700_000_000_000),
                groups: vec!["staff".into()],
                attributes: BTreeMap::from([("locale".to_owned(), "de-DE".to_owned())]),
            },
        );
        for ws in WORKSPACES {
            let now = h.clock.now_ms();
            dir.roles.lock().unwrap().push(RoleChange {
                workspace: ws.into(),
                user: (*user).into(),
                role: Some(Role::Editor),
                previous: None,
                changed_by: "olivia".into(),
                at_ms: now,
            });
            // Every author writes (i + 1) updates and connects once per
            // workspace, through the server's door.
            let doc = format!("{ws}/shared");
            let mut ops = vec![Operation::new(
                Action::Connect,
                Principal::user(*user, Some(Role::Editor)),
                Resource::workspace(ws, Vec::<String>::new()).with_document(&doc),
                Source::default(),
            )];
            for n in 0..=i {
                ops.push(
                    Operation::new(
                        Action::UpdateAccepted,
                        Principal::user(*user, Some(Role::Editor)),
                        Resource::workspace(ws, Vec::<String>::new()).with_document(&doc),
                        Source::default(),
                    )
                    .details(serde_json::json!({ "bytes": 10 * (n + 1) })),
                );
            }
            for result in governance.authorize_batch(ops).await {
                result.unwrap();
            }
            dir.authored
                .lock()
                .unwrap()
                .entry((*user).to_owned())
                .or_default()
                .push(AuthoredDocument {
                    workspace: ws.into(),
                    document: doc,
                    updates: i as u64 + 1,
                    bytes: 10 * (i as u64 + 1),
                    first_at_ms: now,
                    last_at_ms: now,
                });
            h.clock.advance(60_000);
        }
    }
    (governance, dir)
}

async fn access_and_erasure_round_trip(backend: Backend) {
    let h = Harness::open(backend).await;
    let (_governance, dir) = setup(&h).await;

    // Access: alice's data, all of it, and only hers.
    let report = gdpr_access("alice", &dir, &h.log).await.unwrap();
    assert_eq!(
        report.account.as_ref().unwrap().email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(report.current_roles.len(), 3);
    assert!(report.role_history.iter().all(|c| c.user == "alice"));
    assert_eq!(report.documents.len(), 3);
    // One connect and one update in each of three workspaces.
    assert_eq!(report.audit_entries.len(), 6);
    assert!(
        report
            .audit_entries
            .iter()
            .all(|e| e.event.actor == Actor::user("alice"))
    );
    let bob = gdpr_access("bob", &dir, &h.log).await.unwrap();
    assert_eq!(bob.audit_entries.len(), 9);
    assert!(
        bob.audit_entries
            .iter()
            .all(|e| e.event.actor.id() == "bob")
    );

    let mut json = Vec::new();
    render(&report, ReportFormat::Json, &mut json);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["user"], "alice");
    assert_eq!(json["audit_entries"].as_array().unwrap().len(), 6);
    let mut html = Vec::new();
    render(&report, ReportFormat::Html, &mut html);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("alice &lt;Admin&gt; &amp; Co"));
    assert!(!html.contains("<Admin>"));
    let mut csv = Vec::new();
    render(&report, ReportFormat::Csv, &mut csv);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("# Audit entries\r\n"));
    assert_eq!(
        csv.matches("update.accepted").count(),
        3 + 1,
        "3 rows and the activity summary"
    );

    // Erasure plan: per-workspace modes, the hold forcing retention.
    let plan = plan_erasure("alice", "dpo", &dir, &h.log).await.unwrap();
    let alias = pseudonym(h.log.keys(), "alice");
    assert_eq!(plan.pseudonym, alias);
    let modes: BTreeMap<&str, &ErasureMode> = plan
        .documents
        .iter()
        .map(|d| (d.workspace.as_str(), &d.mode))
        .collect();
    assert_eq!(modes["acme"], &ErasureMode::Pseudonymise);
    assert_eq!(modes["initech"], &ErasureMode::Remove);
    assert_eq!(
        modes["lawfirm"],
        &ErasureMode::Retain {
            legal_basis: "legal hold: Case 2024-17".into()
        }
    );
    assert_eq!(plan.held_workspaces, ["lawfirm"]);
    assert_eq!(plan.revoke_roles.len(), 3);
    assert!(plan.delete_account);
    let acme = plan
        .documents
        .iter()
        .find(|d| d.workspace == "acme")
        .unwrap();
    assert!(acme.effect.contains(&alias), "{}", acme.effect);

    // The server carries it out: account gone, roles revoked, content
    // removed or re-attributed (the directory no longer lists alice as an
    // author; a retained document stays hers).
    dir.accounts.lock().unwrap().remove("alice");
    for ws in WORKSPACES {
        dir.roles.lock().unwrap().push(RoleChange {
            workspace: ws.into(),
            user: "alice".into(),
            role: None,
            previous: Some(Role::Editor),
            changed_by: "dpo".into(),
            at_ms: h.clock.now_ms(),
        });
    }
    dir.authored
        .lock()
        .unwrap()
        .get_mut("alice")
        .unwrap()
        .retain(|d| d.workspace == "lawfirm");
    let outcome = ErasureOutcome {
        completed: plan.documents.iter().map(|d| d.document.clone()).collect(),
        failed: BTreeMap::new(),
    };
    let refs = record_erasure(
        &h.log,
        &plan,
        &outcome,
        Actor::user("dpo"),
        Source::default(),
    )
    .await
    .unwrap();
    assert_eq!(refs.len(), 4, "one per workspace and one server-wide");

    // The erasure is on record, naming the subject by pseudonym only.
    let erasures = h
        .log
        .search(&AuditQuery {
            actions: vec![Action::UserErasure],
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(erasures.entries.len(), 4);
    for entry in &erasures.entries {
        assert_eq!(entry.event.actor, Actor::user("dpo"));
        assert_eq!(entry.event.details["subject"], alias.as_str());
        let text = serde_json::to_string(&entry.event).unwrap();
        assert!(!text.contains("alice"), "{text}");
    }
    let lawfirm = erasures
        .entries
        .iter()
        .find(|e| e.workspace == "lawfirm")
        .unwrap();
    assert_eq!(lawfirm.event.details["mode"], "retain");
    assert_eq!(
        lawfirm.event.details["legal_basis"],
        "legal hold: Case 2024-17"
    );

    // Access again: what remains is the retained document and the audit
    // entries (kept by legal basis, unchanged).
    let after = gdpr_access("alice", &dir, &h.log).await.unwrap();
    assert_eq!(after.account, None);
    assert!(after.current_roles.is_empty());
    assert_eq!(after.documents.len(), 1);
    assert_eq!(after.documents[0].authored.workspace, "lawfirm");
    assert_eq!(after.audit_entries, report.audit_entries);
    // Nobody else lost anything.
    assert_eq!(
        gdpr_access("bob", &dir, &h.log)
            .await
            .unwrap()
            .documents
            .len(),
        3
    );

    let verified = h.verify().await;
    assert!(verified.ok(), "{:?}", verified.first_bad());
}

both_stores!(access_and_erasure_round_trip);
