//! Guarantee: deciding is fast enough to run on every update. Prints the
//! measured rates (run with `--nocapture` to see them) and fails only far
//! below what the update path needs.

use std::time::Instant;

use governance::policy::{
    PolicyAction, PolicyConfig, PolicyEngine, PolicyRequest, Principal, RequestContext, Resource,
    Role,
};

/// 2024-05-06 10:00 UTC.
const NOW: u64 = 1_714_989_600_000;

fn write(user: usize, doc: usize, at_ms: u64) -> PolicyRequest {
    PolicyRequest {
        principal: Principal::user(format!("user-{user}"), Some(Role::Editor)),
        action: PolicyAction::Write,
        resource: Resource::workspace("acme", ["business-hours-only", "confidential"])
            .with_document(format!("acme/doc-{doc}")),
        context: RequestContext {
            at_ms,
            source_ip: Some("10.0.0.7".parse().unwrap()),
            ..RequestContext::default()
        },
    }
}

fn rate(n: usize, started: Instant) -> f64 {
    n as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn decisions_per_second() {
    let uncached = PolicyEngine::load(&PolicyConfig {
        cache_entries: 0,
        ..PolicyConfig::default()
    })
    .unwrap();
    let requests: Vec<_> = (0..4000)
        .map(|i| write(i % 200, i % 50, NOW + i as u64))
        .collect();
    // Warm up allocators and lazy statics.
    for r in requests.iter().take(200) {
        assert!(uncached.decide(r).allowed);
    }
    let started = Instant::now();
    for r in &requests {
        assert!(uncached.decide(r).allowed);
    }
    let evaluated = rate(requests.len(), started);

    let cached = PolicyEngine::load(&PolicyConfig::default()).unwrap();
    // An editing session: 20 people typing in 5 documents, for a minute.
    let session: Vec<_> = (0..100_000)
        .map(|i| write(i % 20, i % 5, NOW + (i as u64 % 60_000)))
        .collect();
    let started = Instant::now();
    for r in &session {
        assert!(cached.decide(r).allowed);
    }
    let hits = rate(session.len(), started);

    println!("policy decisions: {evaluated:.0}/s evaluated by Cedar, {hits:.0}/s from the cache");
    assert!(evaluated > 1_000.0, "{evaluated:.0} Cedar decisions/s");
    assert!(hits > 20_000.0, "{hits:.0} cached decisions/s");
}
