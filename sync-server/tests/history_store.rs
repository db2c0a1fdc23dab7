//! One conformance suite for the history half of every store (versions,
//! attribution, activity) and for retention sweeps over it; each case runs
//! on fresh, private storage of each backend.

mod pg;

use std::sync::Arc;

use bytes::Bytes;
use governance::retention::HistoryPruner;
use sync_server::docs::DocName;
use sync_server::history::{
    ActivityKind, Bucket, NewActivity, NewVersion, Retention, StorePruner, VersionKind,
    merge_buckets, sweep,
};
use sync_server::store::{DocStore, NewUpdate, SledConfig, SledStore};
use yrs::{ClientID, ID, IdSet};

trait Backend {
    async fn open(&self) -> Arc<dyn DocStore>;
}

fn name(s: &str) -> DocName {
    DocName::parse(s).unwrap()
}

const DAY_MS: u64 = 86_400_000;
const NOW_MS: u64 = 1_800_000_000_000;

fn version(kind: VersionKind, label: &str, created_ms: u64, state: &[u8]) -> NewVersion {
    NewVersion {
        kind,
        label: label.to_owned(),
        description: (kind == VersionKind::Named).then(|| format!("about {label}")),
        author: "alice".into(),
        created_ms,
        seq: 7,
        state: state.to_vec(),
    }
}

fn ids(client: u64, clocks: std::ops::Range<u32>) -> IdSet {
    let mut set = IdSet::default();
    for clock in clocks {
        set.insert(ID::new(ClientID::new(client), clock), 1);
    }
    set
}

fn bucket(origin: &str, minute: u64, client: u64, clocks: std::ops::Range<u32>) -> Bucket {
    Bucket {
        origin: origin.into(),
        minute,
        updates: 2,
        bytes: 40,
        inserted: ids(client, clocks.clone()),
        deleted: ids(client + 100, clocks),
    }
}

fn activity(document: &str, at_ms: u64, kind: ActivityKind) -> NewActivity {
    NewActivity {
        document: document.into(),
        actor: "bob".into(),
        at_ms,
        kind,
    }
}

async fn versions_round_trip_per_document(b: &impl Backend) {
    let store = b.open().await;
    let (doc, other) = (name("acme/plan"), name("acme/plan/b"));
    let first = store
        .add_version(
            &doc,
            version(VersionKind::Auto, "12 edits", NOW_MS, b"state-1"),
        )
        .await
        .unwrap();
    let second = store
        .add_version(
            &doc,
            version(VersionKind::Named, "draft", NOW_MS + 1, b"state-22"),
        )
        .await
        .unwrap();
    let elsewhere = store
        .add_version(&other, version(VersionKind::Restore, "r", NOW_MS, b"x"))
        .await
        .unwrap();
    assert!(first.id < second.id, "ids increase");
    assert_eq!(second.size, 8);
    assert_eq!(second.description.as_deref(), Some("about draft"));

    let listed = store.versions(&doc).await.unwrap();
    assert_eq!(
        listed,
        vec![first.clone(), second.clone()],
        "oldest first, this document only"
    );
    let (meta, state) = store.version(&doc, second.id).await.unwrap().unwrap();
    assert_eq!((meta, state), (second.clone(), b"state-22".to_vec()));
    assert!(
        store.version(&doc, elsewhere.id).await.unwrap().is_none(),
        "another document's version is not this one's"
    );

    assert_eq!(
        store
            .delete_versions(&doc, &[first.id, 999_999])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.versions(&doc).await.unwrap(), vec![second]);
    assert!(store.version(&doc, first.id).await.unwrap().is_none());
    assert_eq!(store.versions(&other).await.unwrap(), vec![elsewhere]);
}

async fn history_survives_reopening(b: &impl Backend) {
    let doc = name("w/reopened");
    let saved = {
        let store = b.open().await;
        let v = store
            .add_version(&doc, version(VersionKind::Named, "kept", NOW_MS, b"abc"))
            .await
            .unwrap();
        store
            .add_attribution(&doc, vec![bucket("alice", 5, 1, 0..4)])
            .await
            .unwrap();
        store
            .add_activity(vec![activity("w/reopened", NOW_MS, ActivityKind::Edit)])
            .await
            .unwrap();
        store.close().await.unwrap();
        v
    };
    let store = b.open().await;
    assert_eq!(store.versions(&doc).await.unwrap(), vec![saved]);
    assert_eq!(
        store.attribution(&doc).await.unwrap(),
        vec![bucket("alice", 5, 1, 0..4)]
    );
    assert_eq!(store.activity("w", None, 10).await.unwrap().len(), 1);
}

async fn attribution_merges_and_expires_by_minute(b: &impl Backend) {
    let store = b.open().await;
    let doc = name("attr");
    store
        .add_attribution(
            &doc,
            vec![bucket("alice", 10, 1, 0..3), bucket("bob", 11, 2, 0..2)],
        )
        .await
        .unwrap();
    // A second row for the same author and minute: readers merge them.
    store
        .add_attribution(&doc, vec![bucket("alice", 10, 1, 3..6)])
        .await
        .unwrap();
    store
        .add_attribution(&doc, vec![bucket("alice", 20, 1, 6..7)])
        .await
        .unwrap();
    store
        .add_attribution(&name("attr2"), vec![bucket("eve", 10, 9, 0..1)])
        .await
        .unwrap();

    let merged = merge_buckets(store.attribution(&doc).await.unwrap());
    assert_eq!(merged.len(), 3);
    assert_eq!(merged[0].origin, "alice");
    assert_eq!(merged[0].updates, 4);
    assert_eq!(merged[0].inserted, ids(1, 0..6), "both rows' items");
    assert_eq!(merged[1].origin, "bob");
    assert_eq!(merged[2].minute, 20);

    assert_eq!(store.delete_attribution_before(&doc, 15).await.unwrap(), 3);
    let left = store.attribution(&doc).await.unwrap();
    assert_eq!(left, vec![bucket("alice", 20, 1, 6..7)]);
    assert_eq!(
        store.attribution(&name("attr2")).await.unwrap().len(),
        1,
        "other documents untouched"
    );
}

async fn activity_pages_newest_first_per_workspace(b: &impl Backend) {
    let store = b.open().await;
    let events: Vec<NewActivity> = (0..5)
        .map(|i| {
            activity(
                if i % 2 == 0 { "w1/doc" } else { "w2/doc" },
                NOW_MS + i,
                ActivityKind::Join,
            )
        })
        .chain([activity(
            "w1",
            NOW_MS + 9,
            ActivityKind::Version {
                version: 3,
                kind: VersionKind::Named,
                label: "v".into(),
            },
        )])
        .collect();
    let stored = store.add_activity(events).await.unwrap();
    assert_eq!(stored.len(), 6);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert_eq!(
        stored[5].workspace, "w1",
        "a one-segment name is its own workspace"
    );

    let page = store.activity("w1", None, 2).await.unwrap();
    let at: Vec<u64> = page.iter().map(|e| e.event.at_ms).collect();
    assert_eq!(at, vec![NOW_MS + 9, NOW_MS + 4], "newest first");
    let rest = store.activity("w1", Some(page[1].id), 10).await.unwrap();
    let at: Vec<u64> = rest.iter().map(|e| e.event.at_ms).collect();
    assert_eq!(at, vec![NOW_MS + 2, NOW_MS]);
    assert_eq!(store.activity("w2", None, 10).await.unwrap().len(), 2);
    assert!(
        store.activity("w", None, 10).await.unwrap().is_empty(),
        "no prefix matches"
    );
    assert_eq!(
        page[0].event.kind,
        ActivityKind::Version {
            version: 3,
            kind: VersionKind::Named,
            label: "v".into()
        }
    );

    assert_eq!(
        store
            .delete_activity_before("w1", NOW_MS + 3)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.activity("w1", None, 10).await.unwrap().len(), 2);
    assert_eq!(store.activity("w2", None, 10).await.unwrap().len(), 2);
}

fn update() -> NewUpdate {
    use yrs::{Text, Transact};
    let doc = yrs::Doc::with_client_id(1);
    let text = doc.get_or_insert_text("t");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, 0, "x");
    NewUpdate {
        update: Bytes::from(txn.encode_update_v1()),
        origin: "alice".into(),
        at_ms: NOW_MS,
    }
}

async fn retention_deletes_only_what_the_policy_lets_go(b: &impl Backend) {
    let store = b.open().await;
    let (keep, month, named, held) = (
        name("legal/contract"),
        name("team/notes"),
        name("scratch/pad"),
        name("court/minutes"),
    );
    let old = NOW_MS - 40 * DAY_MS;
    let recent = NOW_MS - DAY_MS;
    for doc in [&keep, &month, &named, &held] {
        store.append(doc, vec![update()]).await.unwrap();
        store
            .add_version(doc, version(VersionKind::Auto, "old auto", old, b"a"))
            .await
            .unwrap();
        store
            .add_version(doc, version(VersionKind::Named, "old named", old, b"b"))
            .await
            .unwrap();
        store
            .add_version(
                doc,
                version(VersionKind::Restore, "recent restore", recent, b"c"),
            )
            .await
            .unwrap();
        store
            .add_attribution(
                doc,
                vec![
                    bucket("a", old / 60_000, 1, 0..1),
                    bucket("a", recent / 60_000, 1, 1..2),
                ],
            )
            .await
            .unwrap();
        store
            .add_activity(vec![
                activity(doc.as_str(), old, ActivityKind::Edit),
                activity(doc.as_str(), recent, ActivityKind::Edit),
            ])
            .await
            .unwrap();
    }
    let retention =
        Retention::parse(&["*=30d".into(), "legal=all".into(), "scratch=named".into()]).unwrap();
    let holds = std::collections::BTreeSet::from(["court".to_owned()]);
    let swept = sweep(&*store, &*store, &retention, &holds, NOW_MS)
        .await
        .unwrap();

    let labels = |versions: Vec<sync_server::history::VersionMeta>| -> Vec<String> {
        versions.into_iter().map(|v| v.label).collect()
    };
    assert_eq!(
        labels(store.versions(&keep).await.unwrap()),
        ["old auto", "old named", "recent restore"],
        "legal keeps everything"
    );
    assert_eq!(
        labels(store.versions(&month).await.unwrap()),
        ["old named", "recent restore"],
        "30 days: old automatic versions go, named ones stay"
    );
    assert_eq!(
        labels(store.versions(&named).await.unwrap()),
        ["old named"],
        "named only"
    );
    assert_eq!(store.attribution(&keep).await.unwrap().len(), 2);
    let cutoff_minute = (NOW_MS - 30 * DAY_MS) / 60_000;
    let left = store.attribution(&month).await.unwrap();
    assert!(
        left.iter().all(|b| b.minute >= cutoff_minute),
        "old timing goes: {left:?}"
    );
    assert_eq!(
        merge_buckets(left)
            .into_iter()
            .find(|b| b.minute == cutoff_minute)
            .map(|b| b.inserted),
        Some(ids(1, 0..1)),
        "authorship of the old items stays, at the cutoff"
    );
    assert_eq!(store.activity("legal", None, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.activity("team", None, 10).await.unwrap().len(),
        1,
        "old activity goes"
    );
    assert_eq!(swept.versions, 1 + 2);
    assert_eq!(swept.attribution, 1);
    assert_eq!(swept.activity, 1);

    let again = sweep(&*store, &*store, &retention, &holds, NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        (again.versions, again.attribution, again.activity),
        (0, 0, 0),
        "idempotent"
    );
    assert_eq!(
        labels(store.versions(&held).await.unwrap()),
        ["old auto", "old named", "recent restore"],
        "a legal hold keeps everything"
    );

    // A workspace's own period, from its governance settings: the same
    // pruning, for that workspace only.
    let pruner = StorePruner(store.clone());
    let pruned = pruner
        .prune_history("legal", NOW_MS - 30 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(pruned, 1 + 1 + 1, "a version, an attribution row, an event");
    assert_eq!(
        labels(store.versions(&keep).await.unwrap()),
        ["old named", "recent restore"]
    );
    assert_eq!(
        labels(store.versions(&held).await.unwrap()).len(),
        3,
        "other workspaces untouched"
    );
}

/// What a GDPR erasure asks of the store: a version's state replaced in
/// place, and a user renamed to a pseudonym in attribution, version
/// authors and activity, in one document or workspace only.
async fn erasure_rewrites_versions_and_renames_authors(b: &impl Backend) {
    let store = b.open().await;
    let (doc, other) = (name("gdpr/doc"), name("gdpr/other"));
    let mut named = version(VersionKind::Named, "v1", 1, b"with alice");
    named.author = "alice".into();
    let v1 = store.add_version(&doc, named).await.unwrap();
    store
        .add_attribution(
            &doc,
            vec![bucket("alice", 1, 1, 0..3), bucket("bob", 1, 2, 0..2)],
        )
        .await
        .unwrap();
    store
        .add_attribution(&other, vec![bucket("alice", 1, 3, 0..1)])
        .await
        .unwrap();
    let mut events = vec![
        activity("gdpr/doc", 1, ActivityKind::Edit),
        activity("gdpr/doc", 2, ActivityKind::Join),
        activity("gdpr/other", 3, ActivityKind::Join),
    ];
    events[0].actor = "alice".into();
    events[1].actor = "alice".into();
    store.add_activity(events).await.unwrap();

    assert!(
        store
            .replace_version_state(&doc, v1.id, b"without".to_vec())
            .await
            .unwrap()
    );
    let (meta, state) = store.version(&doc, v1.id).await.unwrap().unwrap();
    assert_eq!((state.as_slice(), meta.size), (&b"without"[..], 7));
    assert_eq!(meta.label, "v1", "metadata kept");
    assert!(
        !store
            .replace_version_state(&doc, 999_999, vec![])
            .await
            .unwrap()
    );

    // The bucket and the version author.
    assert_eq!(store.rename_author(&doc, "alice", "p-1").await.unwrap(), 2);
    let origins: Vec<String> = store
        .attribution(&doc)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.origin)
        .collect();
    assert!(origins.contains(&"p-1".into()) && origins.contains(&"bob".into()));
    assert!(!origins.contains(&"alice".into()));
    assert_eq!(store.versions(&doc).await.unwrap()[0].author, "p-1");
    assert_eq!(
        store.attribution(&other).await.unwrap()[0].origin,
        "alice",
        "other documents untouched"
    );
    assert_eq!(store.rename_author(&doc, "alice", "p-1").await.unwrap(), 0);

    assert_eq!(store.rename_actor("gdpr", "alice", "p-1").await.unwrap(), 2);
    let actors: Vec<String> = store
        .activity("gdpr", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.actor)
        .collect();
    assert_eq!(actors, vec!["bob", "p-1", "p-1"], "newest first");
}

macro_rules! conformance {
    ($backend:expr) => {
        #[tokio::test]
        async fn erasure_rewrites_versions_and_renames_authors() {
            super::erasure_rewrites_versions_and_renames_authors(&$backend).await;
        }
        #[tokio::test]
        async fn versions_round_trip_per_document() {
            super::versions_round_trip_per_document(&$backend).await;
        }
        #[tokio::test]
        async fn history_survives_reopening() {
            super::history_survives_reopening(&$backend).await;
        }
        #[tokio::test]
        async fn attribution_merges_and_expires_by_minute() {
            super::attribution_merges_and_expires_by_minute(&$backend).await;
        }
        #[tokio::test]
        async fn activity_pages_newest_first_per_workspace() {
            super::activity_pages_newest_first_per_workspace(&$backend).await;
        }
        #[tokio::test]
        async fn retention_deletes_only_what_the_policy_lets_go() {
            super::retention_deletes_only_what_the_policy_lets_go(&$backend).await;
        }
    };
}

mod sled {
    use super::*;

    pub struct Sled(tempfile::TempDir);

    impl Backend for Sled {
        async fn open(&self) -> Arc<dyn DocStore> {
            SledStore::open(SledConfig {
                path: self.0.path().to_owned(),
                cache_bytes: 8 << 20,
                fsync: true,
                commit_delay: std::time::Duration::ZERO,
            })
            .unwrap()
        }
    }

    conformance!(Sled(tempfile::tempdir().unwrap()));
}

mod postgres {
    use super::*;
    use crate::pg::TestSchema;

    pub struct Postgres(TestSchema);

    impl Backend for Postgres {
        async fn open(&self) -> Arc<dyn DocStore> {
            self.0.open().await
        }
    }

    conformance!(Postgres(TestSchema::new()));
}
