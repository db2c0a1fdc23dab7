//! Guarantee: retention deletes expired audit entries and nothing else,
//! never under a legal hold, never entries that do not verify, and the
//! remaining chain still verifies (and still detects tampering).

mod common;

use std::sync::Mutex;

use async_trait::async_trait;
use common::{Backend, Harness, MONDAY_10_UTC};
use governance::audit::{Action, Actor, AuditQuery, ProblemKind, Source};
use governance::retention::{HistoryPruner, NoHistory, SweepOutcome, sweep};
use governance::settings::{self, ChangedBy, RetentionPolicy};
use governance::store::PruneOutcome;

const MINUTE: u64 = 60_000;

fn admin() -> ChangedBy {
    ChangedBy {
        actor: Actor::user("olivia"),
        source: Source::default(),
    }
}

/// `acme`: 30 entries a minute apart from 10:00 (checkpoints at 10, 20,
/// 30), then the retention setting (entry 31); audit entries kept 15
/// minutes. Returns at 10:35, when entries 1-20 (before 10:20) expired.
async fn fixture(backend: Backend) -> Harness {
    let h = Harness::open(backend).await;
    h.fill("acme", 30).await;
    let policy = RetentionPolicy {
        audit_ms: Some(15 * MINUTE),
        history_ms: Some(60 * MINUTE),
    };
    settings::set_retention(&h.log, "acme", policy, &admin())
        .await
        .unwrap();
    h.clock.set(MONDAY_10_UTC + 35 * MINUTE);
    h
}

#[derive(Default)]
struct History(Mutex<Vec<(String, u64)>>);

#[async_trait]
impl HistoryPruner for History {
    async fn prune_history(&self, workspace: &str, before_ms: u64) -> Result<u64, String> {
        self.0
            .lock()
            .unwrap()
            .push((workspace.to_owned(), before_ms));
        Ok(3)
    }
}

async fn expired_entries_are_deleted_and_the_rest_verifies(backend: Backend) {
    let h = fixture(backend).await;
    let history = History::default();
    let report = sweep(&h.log, MONDAY_10_UTC + 35 * MINUTE, &history)
        .await
        .unwrap();
    assert_eq!(report.workspaces.len(), 1);
    let acme = &report.workspaces[0];
    assert_eq!(
        acme.audit,
        SweepOutcome::Pruned {
            entries: 20,
            through_seq: 20
        }
    );
    assert_eq!(acme.history, Some(Ok(3)));
    assert_eq!(
        *history.0.lock().unwrap(),
        [("acme".to_owned(), MONDAY_10_UTC - 25 * MINUTE)]
    );

    let remaining = h
        .log
        .search(&AuditQuery {
            workspace: Some("acme".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let seqs: Vec<u64> = remaining.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (21..=32).collect::<Vec<_>>());
    let sweep_entry = remaining.entries.last().unwrap();
    assert_eq!(sweep_entry.event.action, Action::RetentionSweep);
    assert_eq!(sweep_entry.event.details["pruned_through"], 20);
    let checkpoints: Vec<u64> = h
        .store
        .checkpoints("acme")
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(checkpoints, [30]);

    let verified = h.verify().await;
    assert!(verified.ok(), "{:?}", verified.first_bad());
    let chain = &verified.chains[0];
    assert_eq!(
        (chain.pruned_through, chain.entries, chain.last_seq),
        (20, 12, 32)
    );

    // A second sweep finds nothing new.
    let again = sweep(&h.log, MONDAY_10_UTC + 35 * MINUTE, &NoHistory)
        .await
        .unwrap();
    assert_eq!(again.workspaces[0].audit, SweepOutcome::NothingExpired);

    // Deleting the next entries by hand (no key, no anchor) is detected.
    h.remove_entry("acme", 21).await;
    let tampered = h.verify().await;
    assert_eq!(
        tampered.first_bad().unwrap().to_string(),
        "workspace \"acme\", entry 21: removed: the chain goes from entry 20 to entry 22"
    );
}

async fn a_legal_hold_suspends_deletion(backend: Backend) {
    let h = fixture(backend).await;
    settings::set_legal_hold(&h.log, "acme", "Case 2024-17", &admin())
        .await
        .unwrap();
    let history = History::default();
    let report = sweep(&h.log, MONDAY_10_UTC + 35 * MINUTE, &history)
        .await
        .unwrap();
    assert_eq!(
        report.workspaces[0].audit,
        SweepOutcome::Held {
            reason: "Case 2024-17".into()
        }
    );
    assert_eq!(report.workspaces[0].history, None);
    assert!(history.0.lock().unwrap().is_empty(), "history is held too");
    assert_eq!(h.verify().await.chains[0].pruned_through, 0);
    assert_eq!(h.verify().await.chains[0].entries, 32);

    // The store itself refuses, whoever asks: the hold is checked in the
    // deleting transaction.
    let head = h.store.head("acme").await.unwrap().unwrap();
    let anchor = h.keys.anchor("acme", 5, head.hash, 0);
    assert_eq!(h.store.prune(anchor).await.unwrap(), PruneOutcome::Held);
    assert!(h.raw_entry("acme", 1).await.is_some());

    // Lifted: the sweep deletes again.
    settings::clear_legal_hold(&h.log, "acme", &admin())
        .await
        .unwrap();
    let report = sweep(&h.log, MONDAY_10_UTC + 35 * MINUTE, &history)
        .await
        .unwrap();
    assert!(
        matches!(
            report.workspaces[0].audit,
            SweepOutcome::Pruned {
                through_seq: 20,
                ..
            }
        ),
        "{report:?}"
    );
    // Setting and lifting the hold are on record.
    let holds = h
        .log
        .search(&AuditQuery {
            actions: vec![Action::LegalHoldSet, Action::LegalHoldClear],
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<Action> = holds.entries.iter().map(|e| e.event.action).collect();
    assert_eq!(actions, [Action::LegalHoldSet, Action::LegalHoldClear]);
    assert_eq!(holds.entries[0].event.details["reason"], "Case 2024-17");
    assert!(h.verify().await.ok());
}

async fn entries_that_do_not_verify_are_kept_as_evidence(backend: Backend) {
    let h = fixture(backend).await;
    h.change_event("acme", 5, |e| e["details"]["bytes"] = 0.into())
        .await;
    let report = sweep(&h.log, MONDAY_10_UTC + 35 * MINUTE, &NoHistory)
        .await
        .unwrap();
    assert_eq!(
        report.workspaces[0].audit,
        SweepOutcome::Refused {
            problem: "workspace \"acme\", entry 5: changed: its content does not match its hash"
                .into()
        }
    );
    assert!(h.raw_entry("acme", 1).await.is_some());
    let verified = h.verify().await;
    assert_eq!(verified.first_bad().unwrap().kind, ProblemKind::Changed);
}

async fn workspaces_without_retention_keep_everything(backend: Backend) {
    let h = fixture(backend).await;
    h.fill("globex", 5).await;
    let report = sweep(&h.log, MONDAY_10_UTC + 1000 * MINUTE, &NoHistory)
        .await
        .unwrap();
    assert!(report.workspaces.iter().all(|w| w.workspace != "globex"));
    let globex = h.verify().await;
    let globex = globex
        .chains
        .iter()
        .find(|c| c.workspace == "globex")
        .unwrap();
    assert_eq!((globex.pruned_through, globex.entries), (0, 5));
}

both_stores!(
    expired_entries_are_deleted_and_the_rest_verifies,
    a_legal_hold_suspends_deletion,
    entries_that_do_not_verify_are_kept_as_evidence,
    workspaces_without_retention_keep_everything,
);
