//! Guarantee: every kind of operation leaves an entry that can be found by
//! its action, exported, and verified. Each operation goes through the
//! server's door (`Governance::authorize`, or `record` for facts), as the
//! server will call it.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Harness};
use governance::audit::{
    Action, Actor, AuditEvent, AuditQuery, ExportFormat, Outcome, SERVER_SCOPE, Source, export,
};
use governance::clock::Clock;
use governance::policy::{PolicyAction, PolicyConfig, PolicyEngine, Principal, Resource, Role};
use governance::{Governance, Operation};

/// Which chain and document an action is recorded under.
fn scope(action: Action) -> (&'static str, Option<&'static str>) {
    match action {
        Action::SignIn
        | Action::SignInFailed
        | Action::SignOut
        | Action::PolicyChange
        | Action::WorkspaceCreate
        | Action::UserErasure
        | Action::AdminAction => (SERVER_SCOPE, None),
        Action::RoleGrant
        | Action::RoleRevoke
        | Action::WorkspaceDelete
        | Action::WorkspaceLabels
        | Action::RetentionChange
        | Action::LegalHoldSet
        | Action::LegalHoldClear
        | Action::RetentionSweep
        | Action::AuditSearch
        | Action::AuditExport
        | Action::AuditVerify
        | Action::ReportGenerate => ("acme", None),
        _ => ("acme", Some("acme/plan")),
    }
}

fn details(action: Action) -> serde_json::Value {
    match action {
        Action::UpdateAccepted => serde_json::json!({ "bytes": 18, "sha256": "ab".repeat(32) }),
        Action::UpdateRefused => serde_json::json!({ "bytes": 9 }),
        Action::RoleGrant | Action::RoleRevoke => {
            serde_json::json!({ "user": "bob", "role": "editor" })
        }
        Action::DocumentExport => serde_json::json!({ "format": "markdown" }),
        _ => serde_json::json!({ "action": action.as_str() }),
    }
}

async fn every_action_is_recorded_searchable_exported_and_verified(backend: Backend) {
    let h = Harness::open(backend).await;
    let governance = Governance::new(
        h.log.clone(),
        PolicyEngine::load(&PolicyConfig::default()).unwrap(),
        h.lineage.clone(),
    );
    let source = Source {
        ip: Some("192.0.2.10".parse().unwrap()),
        user_agent: Some("Mozilla/5.0".into()),
        node: Some("node-a".into()),
    };
    for &action in Action::ALL {
        let (ws, doc) = scope(action);
        if PolicyAction::for_audit(action).is_some() {
            let mut resource = Resource::workspace(ws, Vec::<String>::new());
            if let Some(doc) = doc {
                resource = resource.with_document(doc);
            }
            let mut op = Operation::new(
                action,
                Principal::user("olivia", Some(Role::Owner)),
                resource,
                source.clone(),
            )
            .details(details(action));
            op.admin_approvers = BTreeSet::from(["olivia".to_owned(), "adam".to_owned()]);
            let admitted = governance
                .authorize(op)
                .await
                .unwrap_or_else(|e| panic!("{action}: {e}"));
            assert_eq!(admitted.audit.workspace, ws);
        } else {
            let actor = match action {
                Action::SignInFailed => Actor::user("unknown@example.com"),
                Action::RetentionSweep => Actor::system("retention"),
                _ => Actor::user("olivia"),
            };
            let mut event = AuditEvent::new(action, actor, ws, h.clock.now_ms())
                .source(source.clone())
                .details(details(action));
            if action == Action::UpdateRefused || action == Action::SignInFailed {
                event = event.outcome(Outcome::Failed {
                    reason: "malformed".into(),
                });
            }
            event.document = doc.map(str::to_owned);
            governance.record(vec![event]).await.unwrap();
        }
        h.clock.advance(1000);
    }

    for &action in Action::ALL {
        let (ws, doc) = scope(action);
        let page = h
            .log
            .search(&AuditQuery {
                actions: vec![action],
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1, "{action}");
        let e = &page.entries[0].event;
        assert_eq!(e.action, action);
        assert_eq!(page.entries[0].workspace, ws);
        assert_eq!(e.document.as_deref(), doc);
        assert_eq!(e.source, source);
        assert_eq!(e.details, details(action), "{action}");
    }

    let mut jsonl = Vec::new();
    let n = export(
        &h.log,
        AuditQuery::default(),
        ExportFormat::JsonLines,
        &mut jsonl,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(n as usize, Action::ALL.len());
    let exported: BTreeSet<String> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["event"]["action"].as_str().unwrap().to_owned()
        })
        .collect();
    let all: BTreeSet<String> = Action::ALL.iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(exported, all);

    let mut csv = Vec::new();
    export(
        &h.log,
        AuditQuery::default(),
        ExportFormat::Csv,
        &mut csv,
        &mut |_| {},
    )
    .await
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count(), Action::ALL.len() + 1);
    for action in Action::ALL {
        assert!(csv.contains(&format!(",{},", action.as_str())), "{action}");
    }

    let report = h.verify().await;
    assert!(report.ok(), "{:?}", report.first_bad());
    let entries: u64 = report.chains.iter().map(|c| c.entries).sum();
    assert_eq!(entries as usize, Action::ALL.len());
}

async fn an_operation_that_cannot_be_recorded_is_refused(backend: Backend) {
    let h = Harness::open(backend).await;
    let governance = Governance::new(
        h.log.clone(),
        PolicyEngine::load(&PolicyConfig::default()).unwrap(),
        h.lineage.clone(),
    );
    let write = || {
        Operation::new(
            Action::UpdateAccepted,
            Principal::user("alice", Some(Role::Editor)),
            Resource::workspace("acme", Vec::<String>::new()).with_document("acme/plan"),
            Source::default(),
        )
    };
    assert!(governance.authorize(write()).await.is_ok());
    // The audit trail goes away (here: closed, as at shutdown).
    h.log.close().await.unwrap();
    let refusal = governance.authorize(write()).await.unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "the operation could not be recorded in the audit trail, so it was not performed: the audit trail is closed"
    );
}

both_stores!(
    every_action_is_recorded_searchable_exported_and_verified,
    an_operation_that_cannot_be_recorded_is_refused,
);
