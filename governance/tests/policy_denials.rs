//! Guarantee: the built-in policies allow and deny what they say, a denial
//! names the policy with its exact message, and a denied operation is
//! audited with that policy and reason.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Harness, MONDAY_10_UTC};
use governance::audit::{Action, AuditQuery, Outcome, Source};
use governance::policy::{
    Decision, PolicyAction, PolicyConfig, PolicyEngine, PolicyRequest, Principal, RequestContext,
    Resource, Role,
};
use governance::{Governance, Operation, Refusal};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn engine() -> PolicyEngine {
    PolicyEngine::load(&PolicyConfig {
        time_zone: "Europe/Berlin".into(),
        ..PolicyConfig::default()
    })
    .expect("built-in policies load")
}

fn request(role: Option<Role>, action: PolicyAction, labels: &[&str], at_ms: u64) -> PolicyRequest {
    PolicyRequest {
        principal: Principal::user("alice", role),
        action,
        resource: Resource::workspace("acme", labels.iter().copied()).with_document("acme/plan"),
        context: RequestContext {
            at_ms,
            ..RequestContext::default()
        },
    }
}

fn denied(decision: &Decision) -> String {
    assert!(!decision.allowed, "expected a denial, got {decision:?}");
    decision.message()
}

#[test]
fn a_confidential_workspace_cannot_be_exported() {
    let engine = engine();
    let export = request(
        Some(Role::Owner),
        PolicyAction::Export,
        &["confidential"],
        MONDAY_10_UTC,
    );
    assert_eq!(
        denied(&engine.decide(&export)),
        "denied by policy \"governance.confidential-no-export\": workspaces labelled confidential cannot be exported"
    );
    let elsewhere = request(Some(Role::Owner), PolicyAction::Export, &[], MONDAY_10_UTC);
    assert!(engine.decide(&elsewhere).allowed);
    // Reading it is fine.
    let read = request(
        Some(Role::Viewer),
        PolicyAction::Read,
        &["confidential"],
        MONDAY_10_UTC,
    );
    assert!(engine.decide(&read).allowed);
}

#[test]
fn business_hours_only_workspaces_are_read_only_outside_business_hours() {
    let engine = engine();
    let labels = ["business-hours-only"];
    let message = "denied by policy \"governance.business-hours-only\": documents in this workspace are read-only outside business hours (Monday to Friday, 09:00 to 18:00)";
    // Monday 10:00 UTC is 12:00 in Berlin (summer time): open.
    let noon = request(
        Some(Role::Editor),
        PolicyAction::Write,
        &labels,
        MONDAY_10_UTC,
    );
    assert_eq!(engine.decide(&noon).policy_id, "roles.members");
    // 16:00 UTC is 18:00 in Berlin: closed (the zone matters: in UTC it would be open).
    let six = request(
        Some(Role::Editor),
        PolicyAction::Write,
        &labels,
        MONDAY_10_UTC + 6 * HOUR,
    );
    assert_eq!(denied(&engine.decide(&six)), message);
    // 06:59 UTC is 08:59 in Berlin: closed; 07:00 UTC is 09:00: open.
    let early = MONDAY_10_UTC - 3 * HOUR - 60_000;
    assert_eq!(
        denied(&engine.decide(&request(
            Some(Role::Editor),
            PolicyAction::Write,
            &labels,
            early
        ))),
        message
    );
    assert!(
        engine
            .decide(&request(
                Some(Role::Editor),
                PolicyAction::Write,
                &labels,
                early + 60_000
            ))
            .allowed
    );
    // Saturday noon: closed; comments too; reading stays allowed.
    let saturday = MONDAY_10_UTC + 5 * DAY;
    assert_eq!(
        denied(&engine.decide(&request(
            Some(Role::Editor),
            PolicyAction::Write,
            &labels,
            saturday
        ))),
        message
    );
    assert_eq!(
        denied(&engine.decide(&request(
            Some(Role::Commenter),
            PolicyAction::Comment,
            &labels,
            saturday
        ))),
        message
    );
    assert!(
        engine
            .decide(&request(
                Some(Role::Viewer),
                PolicyAction::Read,
                &labels,
                saturday
            ))
            .allowed
    );
    // Workspaces without the label do not care.
    assert!(
        engine
            .decide(&request(
                Some(Role::Editor),
                PolicyAction::Write,
                &[],
                saturday
            ))
            .allowed
    );
}

#[test]
fn deletion_needs_two_distinct_admins() {
    let engine = engine();
    let delete = |approvers: &[&str]| {
        let mut r = request(Some(Role::Admin), PolicyAction::Delete, &[], MONDAY_10_UTC);
        r.context.admin_approvers = approvers.iter().map(|a| (*a).to_owned()).collect();
        engine.decide(&r)
    };
    let message = "denied by policy \"governance.two-admin-deletion\": deleting needs the approval of two distinct admins";
    assert_eq!(denied(&delete(&[])), message);
    assert_eq!(denied(&delete(&["alice"])), message);
    // The same admin twice is one approval.
    let twice: BTreeSet<String> = ["alice", "alice"].iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(twice.len(), 1);
    let approved = delete(&["alice", "bob"]);
    assert!(approved.allowed, "{approved:?}");
    assert_eq!(approved.policy_id, "roles.members");
    // An editor cannot delete, however many admins approve.
    let mut by_editor = request(Some(Role::Editor), PolicyAction::Delete, &[], MONDAY_10_UTC);
    by_editor.context.admin_approvers = ["x", "y"].iter().map(|a| (*a).to_owned()).collect();
    assert_eq!(
        denied(&engine.decide(&by_editor)),
        "denied by policy \"roles.delete\": deleting needs the admin role or higher"
    );
}

#[test]
fn a_viewer_cannot_write_but_shares_presence() {
    let engine = engine();
    let write = request(Some(Role::Viewer), PolicyAction::Write, &[], MONDAY_10_UTC);
    assert_eq!(
        denied(&engine.decide(&write)),
        "denied by policy \"roles.write\": changing documents needs the editor role or higher"
    );
    let presence = request(
        Some(Role::Viewer),
        PolicyAction::Presence,
        &[],
        MONDAY_10_UTC,
    );
    let decision = engine.decide(&presence);
    assert!(decision.allowed);
    assert_eq!(
        decision.message(),
        "allowed by policy \"roles.members\": members of the workspace may use it within their role"
    );
    for action in [PolicyAction::Connect, PolicyAction::Read] {
        assert!(
            engine
                .decide(&request(Some(Role::Viewer), action, &[], MONDAY_10_UTC))
                .allowed
        );
    }
    assert_eq!(
        denied(&engine.decide(&request(
            Some(Role::Viewer),
            PolicyAction::Comment,
            &[],
            MONDAY_10_UTC
        ))),
        "denied by policy \"roles.comment\": commenting needs the commenter role or higher"
    );
    assert_eq!(
        denied(&engine.decide(&request(
            Some(Role::Viewer),
            PolicyAction::Export,
            &[],
            MONDAY_10_UTC
        ))),
        "denied by policy \"roles.export\": exporting needs the editor role or higher"
    );
}

#[test]
fn the_role_ladder_holds_for_every_action() {
    let engine = engine();
    // The least role each action needs (no labels, two approvals).
    let least = |action: PolicyAction| match action {
        PolicyAction::Connect | PolicyAction::Read | PolicyAction::Presence => Role::Viewer,
        PolicyAction::Comment => Role::Commenter,
        PolicyAction::Write
        | PolicyAction::Create
        | PolicyAction::Import
        | PolicyAction::Copy
        | PolicyAction::Export => Role::Editor,
        PolicyAction::Delete
        | PolicyAction::ApproveDeletion
        | PolicyAction::ManageRoles
        | PolicyAction::ManageWorkspace
        | PolicyAction::ReadAudit
        | PolicyAction::Report
        | PolicyAction::Admin => Role::Admin,
        PolicyAction::EraseUser | PolicyAction::ManagePolicies => Role::Owner,
    };
    for &action in PolicyAction::ALL {
        for role in Role::ALL {
            let mut r = request(Some(role), action, &[], MONDAY_10_UTC);
            r.context.admin_approvers = ["a", "b"].iter().map(|a| (*a).to_owned()).collect();
            engine
                .check_against_schema(&r)
                .expect("entities match the schema");
            let decision = engine.decide(&r);
            assert_eq!(
                decision.allowed,
                role >= least(action),
                "{role} {action}: {decision:?}"
            );
        }
        let outsider = request(None, action, &[], MONDAY_10_UTC);
        assert!(!engine.decide(&outsider).allowed, "no role, {action}");
    }
}

#[test]
fn only_owners_grant_ownership() {
    let engine = engine();
    let grant = |by: Role, granted: Role| {
        let mut r = request(Some(by), PolicyAction::ManageRoles, &[], MONDAY_10_UTC);
        r.context.granted_role = Some(granted);
        engine.decide(&r)
    };
    assert!(grant(Role::Admin, Role::Editor).allowed);
    assert!(grant(Role::Admin, Role::Admin).allowed);
    assert_eq!(
        denied(&grant(Role::Admin, Role::Owner)),
        "denied by policy \"roles.ownership\": only owners grant or revoke the owner role"
    );
    assert!(grant(Role::Owner, Role::Owner).allowed);
    assert_eq!(
        denied(&grant(Role::Editor, Role::Viewer)),
        "denied by policy \"roles.administer\": administering a workspace needs the admin role or higher"
    );
}

#[test]
fn strangers_and_anonymous_connections_are_denied_by_default() {
    let engine = engine();
    let stranger = request(None, PolicyAction::Read, &[], MONDAY_10_UTC);
    assert_eq!(
        denied(&engine.decide(&stranger)),
        "denied by policy \"default-deny\": the user has no role on workspace \"acme\""
    );
    let mut anonymous = stranger.clone();
    anonymous.principal = Principal::anonymous("conn:7");
    // Even claiming a role, an anonymous connection is in none.
    anonymous.principal.role = Some(Role::Owner);
    assert_eq!(
        denied(&engine.decide(&anonymous)),
        "denied by policy \"default-deny\": an anonymous connection has no role on workspace \"acme\""
    );
}

#[test]
fn cached_decisions_follow_the_clock_and_roles() {
    let engine = engine();
    let labels = ["business-hours-only"];
    let open = request(
        Some(Role::Editor),
        PolicyAction::Write,
        &labels,
        MONDAY_10_UTC,
    );
    assert!(engine.decide(&open).allowed);
    assert!(engine.decide(&open).allowed, "from the cache");
    let closed = request(
        Some(Role::Editor),
        PolicyAction::Write,
        &labels,
        MONDAY_10_UTC + 8 * HOUR,
    );
    assert!(
        !engine.decide(&closed).allowed,
        "a later minute is another key"
    );
    let demoted = request(
        Some(Role::Viewer),
        PolicyAction::Write,
        &labels,
        MONDAY_10_UTC,
    );
    assert!(
        !engine.decide(&demoted).allowed,
        "another role is another key"
    );
}

async fn a_denied_operation_is_audited_with_its_policy(backend: Backend) {
    let h = Harness::open(backend).await;
    let governance = Governance::new(h.log.clone(), engine(), h.lineage.clone());
    let source = Source {
        ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("test".into()),
        node: Some("node-1".into()),
    };
    let export = Operation::new(
        Action::DocumentExport,
        Principal::user("alice", Some(Role::Editor)),
        Resource::workspace("acme", ["confidential"]).with_document("acme/plan"),
        source.clone(),
    )
    .details(serde_json::json!({ "format": "markdown" }));
    let refusal = governance.authorize(export).await.unwrap_err();
    let Refusal::Denied { decision, audit } = &refusal else {
        panic!("{refusal:?}")
    };
    assert_eq!(decision.policy_id, "governance.confidential-no-export");
    let audit = audit.as_ref().expect("the denial was recorded");
    let page = h
        .log
        .search(&AuditQuery {
            workspace: Some("acme".into()),
            actions: vec![Action::DocumentExport],
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    let entry = &page.entries[0];
    assert_eq!(entry.seq, audit.seq);
    assert_eq!(
        entry.event.outcome,
        Outcome::Denied {
            policy: "governance.confidential-no-export".into(),
            reason: "workspaces labelled confidential cannot be exported".into(),
        }
    );
    assert_eq!(entry.event.source, source);
    assert_eq!(entry.event.document.as_deref(), Some("acme/plan"));
    assert_eq!(entry.event.details["format"], "markdown");

    // A viewer's update in a batch of updates: refused and recorded; the
    // editor's beside it goes through.
    let update = |user: &str, role| {
        Operation::new(
            Action::UpdateAccepted,
            Principal::user(user, Some(role)),
            Resource::workspace("acme", ["confidential"]).with_document("acme/plan"),
            Source::default(),
        )
        .details(serde_json::json!({ "bytes": 12 }))
    };
    let results = governance
        .authorize_batch(vec![
            update("bob", Role::Editor),
            update("vera", Role::Viewer),
        ])
        .await;
    assert!(results[0].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().to_string(),
        "denied by policy \"roles.write\": changing documents needs the editor role or higher"
    );
    assert!(h.verify().await.ok());
}

both_stores!(a_denied_operation_is_audited_with_its_policy);
