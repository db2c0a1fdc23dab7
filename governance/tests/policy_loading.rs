//! Guarantee: operator policies are validated at load, and every error
//! points to the file, line and column; valid operator policies take effect.

use std::path::Path;

use governance::policy::{
    PolicyAction, PolicyConfig, PolicyDiagnostic, PolicyEngine, PolicyLoadError, PolicyRequest,
    Principal, RequestContext, Resource, Role,
};

fn load_dir(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<PolicyEngine, PolicyLoadError>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let result = PolicyEngine::load(&PolicyConfig {
        dir: Some(dir.path().to_owned()),
        ..PolicyConfig::default()
    });
    (dir, result)
}

fn diagnostics(result: Result<PolicyEngine, PolicyLoadError>) -> Vec<PolicyDiagnostic> {
    match result {
        Err(PolicyLoadError::Invalid(d)) => d,
        Err(other) => panic!("expected diagnostics, got {other}"),
        Ok(_) => panic!("expected the policies to be refused"),
    }
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn a_syntax_error_points_to_its_line_and_column() {
    let (dir, result) = load_dir(&[(
        "site.cedar",
        "// site policies\n\n@id(\"site.broken\")\nforbid (principal, action, resource)\nwhen { resource.labels.contains(\"x\") && };\n",
    )]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].file, file(dir.path(), "site.cedar"));
    assert_eq!((d[0].line, d[0].column), (5, 41), "{}", d[0]);
    assert!(d[0].message.starts_with("unexpected token"), "{}", d[0]);
}

#[test]
fn a_policy_without_an_id_is_refused_at_its_line() {
    let (dir, result) = load_dir(&[(
        "site.cedar",
        "@id(\"site.ok\")\nforbid (principal, action == Action::\"export\", resource);\n\n// no id:\nforbid (principal, action == Action::\"import\", resource);\n",
    )]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].to_string(),
        format!(
            "{}:5:1: this policy has no @id(\"...\") annotation; every policy needs one so denials can name it",
            file(dir.path(), "site.cedar")
        )
    );
}

#[test]
fn a_duplicate_id_names_both_places() {
    let (dir, result) = load_dir(&[
        (
            "a.cedar",
            "@id(\"site.rule\")\nforbid (principal, action == Action::\"export\", resource);\n",
        ),
        (
            "b.cedar",
            "\n\n@id(\"site.rule\")\nforbid (principal, action == Action::\"import\", resource);\n",
        ),
        (
            "c.cedar",
            "@id(\"roles.write\")\nforbid (principal, action == Action::\"import\", resource);\n",
        ),
    ]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[0].to_string(),
        format!(
            "{}:3:1: policy id \"site.rule\" is already used at {}:1",
            file(dir.path(), "b.cedar"),
            file(dir.path(), "a.cedar")
        )
    );
    assert_eq!(
        d[1].to_string(),
        format!(
            "{}:1:1: policy id \"roles.write\" is already used at <builtin>/roles.cedar:26",
            file(dir.path(), "c.cedar")
        )
    );
}

#[test]
fn a_policy_that_does_not_match_the_schema_points_to_the_attribute() {
    let (dir, result) = load_dir(&[(
        "site.cedar",
        "@id(\"site.fine\")\nforbid (principal, action == Action::\"export\", resource)\nwhen { resource.labels.contains(\"secret\") };\n\n@id(\"site.typo\")\nforbid (principal, action == Action::\"export\", resource)\nwhen {\n  resource.lables.contains(\"secret\")\n};\n",
    )]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].file, file(dir.path(), "site.cedar"));
    assert_eq!((d[0].line, d[0].column), (8, 3), "{}", d[0]);
    assert!(
        d[0].message
            .starts_with("policy \"site.typo\" does not match the schema:"),
        "{}",
        d[0]
    );
    assert!(d[0].message.contains("lables"), "{}", d[0]);
}

#[test]
fn an_unknown_action_is_refused() {
    let (_dir, result) = load_dir(&[(
        "site.cedar",
        "@id(\"site.x\")\nforbid (principal, action == Action::\"teleport\", resource);\n",
    )]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (2, 30), "{}", d[0]);
    assert!(d[0].message.contains("teleport"), "{}", d[0]);
}

#[test]
fn templates_are_refused() {
    let (_dir, result) = load_dir(&[(
        "site.cedar",
        "\n@id(\"site.t\")\npermit (principal == ?principal, action, resource);\n",
    )]);
    let d = diagnostics(result);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].line, 2, "{}", d[0]);
    assert!(d[0].message.contains("templates"), "{}", d[0]);
}

#[test]
fn a_missing_directory_and_a_bad_time_zone_are_refused() {
    let missing = PolicyEngine::load(&PolicyConfig {
        dir: Some("/nonexistent/policies".into()),
        ..PolicyConfig::default()
    });
    assert!(
        matches!(missing, Err(PolicyLoadError::Read { .. })),
        "{missing:?}"
    );
    let zone = PolicyEngine::load(&PolicyConfig {
        time_zone: "Mars/Olympus_Mons".into(),
        ..PolicyConfig::default()
    })
    .unwrap_err();
    assert!(
        zone.to_string()
            .starts_with("unknown time zone \"Mars/Olympus_Mons\""),
        "{zone}"
    );
}

#[test]
fn operator_policies_take_effect() {
    let (_dir, result) = load_dir(&[(
        "network.cedar",
        "@id(\"site.office-network-only\")\n\
         @reason(\"exports are only allowed from the office network\")\n\
         forbid (principal, action == Action::\"export\", resource)\n\
         unless { context has source_ip && context.source_ip.isInRange(ip(\"10.0.0.0/8\")) };\n\
         \n\
         @id(\"site.legal-reads-everything\")\n\
         permit (principal in Group::\"legal\", action == Action::\"read\", resource);\n",
    )]);
    let engine = result.expect("valid policies load");
    assert!(
        engine
            .policy_ids()
            .contains(&"site.office-network-only".to_owned())
    );
    let export = |ip: &str| PolicyRequest {
        principal: Principal::user("alice", Some(Role::Editor)),
        action: PolicyAction::Export,
        resource: Resource::workspace("acme", Vec::<String>::new()),
        context: RequestContext {
            source_ip: Some(ip.parse().unwrap()),
            ..RequestContext::default()
        },
    };
    assert!(engine.decide(&export("10.1.2.3")).allowed);
    assert_eq!(
        engine.decide(&export("198.51.100.1")).message(),
        "denied by policy \"site.office-network-only\": exports are only allowed from the office network"
    );
    let mut lawyer = Principal::user("lea", None);
    lawyer.groups.insert("legal".into());
    let read = PolicyRequest {
        principal: lawyer,
        action: PolicyAction::Read,
        resource: Resource::workspace("acme", Vec::<String>::new()).with_document("acme/plan"),
        context: RequestContext::default(),
    };
    let decision = engine.decide(&read);
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(decision.policy_id, "site.legal-reads-everything");
    assert_eq!(decision.reason, "permitted");
}

#[test]
fn the_built_in_governance_policies_can_be_turned_off() {
    let engine = PolicyEngine::load(&PolicyConfig {
        builtin_governance: false,
        ..PolicyConfig::default()
    })
    .unwrap();
    let export = PolicyRequest {
        principal: Principal::user("alice", Some(Role::Editor)),
        action: PolicyAction::Export,
        resource: Resource::workspace("acme", ["confidential"]),
        context: RequestContext::default(),
    };
    assert!(engine.decide(&export).allowed);
    assert!(
        !engine
            .policy_ids()
            .iter()
            .any(|id| id.starts_with("governance."))
    );
}
