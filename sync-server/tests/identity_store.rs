//! The identity store's guarantees, the same on sled and on the real
//! PostgreSQL: users are provisioned once and read back, explicit roles are set,
//! listed and removed, and API keys are found by hash only, revoked for
//! good, and remember their last use.

mod pg;

use std::sync::Arc;

use pg::TestSchema;
use sync_server::auth::Role;
use sync_server::auth::store::{
    ApiKeyRecord, IdentityStore, Member, SledIdentityStore, UserRecord,
};
use sync_server::auth::store_pg::PgIdentityStore;

async fn conformance(store: &dyn IdentityStore) {
    let alice = UserRecord {
        id: "https://idp|alice".into(),
        name: Some("Alice".into()),
        first_seen_ms: 1,
    };
    assert!(store.provision(&alice).await.unwrap());
    assert!(!store.provision(&alice).await.unwrap(), "provisioned twice");
    assert_eq!(store.user(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user("nobody").await.unwrap(), None);

    assert_eq!(store.member_role("acme", &alice.id).await.unwrap(), None);
    assert_eq!(
        store
            .set_member("acme", &alice.id, Role::Editor)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .set_member("acme", &alice.id, Role::Viewer)
            .await
            .unwrap(),
        Some(Role::Editor)
    );
    store.set_member("acme", "bob", Role::Admin).await.unwrap();
    store
        .set_member("acme-other", "carol", Role::Owner)
        .await
        .unwrap();
    let mut members = store.members("acme").await.unwrap();
    members.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(
        members,
        vec![
            Member {
                user: "bob".into(),
                role: Role::Admin
            },
            Member {
                user: alice.id.clone(),
                role: Role::Viewer
            },
        ]
    );
    assert_eq!(
        store.remove_member("acme", "bob").await.unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(store.remove_member("acme", "bob").await.unwrap(), None);
    store
        .set_member("beta", &alice.id, Role::Owner)
        .await
        .unwrap();
    let mut theirs = store.memberships(&alice.id).await.unwrap();
    theirs.sort();
    assert_eq!(
        theirs,
        vec![("acme".into(), Role::Viewer), ("beta".into(), Role::Owner)]
    );
    assert_eq!(store.memberships("nobody").await.unwrap(), vec![]);

    let key = ApiKeyRecord {
        id: "0123abcd".into(),
        name: "importer".into(),
        hash: "ab".repeat(32),
        workspaces: vec!["acme".into(), "beta".into()],
        role: Role::Editor,
        created_by: alice.id.clone(),
        created_ms: 10,
        revoked_ms: None,
        last_used_ms: None,
    };
    store.create_key(&key).await.unwrap();
    assert_eq!(
        store.key_by_hash(&key.hash).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.key_by_hash(&"cd".repeat(32)).await.unwrap(), None);
    store.touch_key(&key.id, 20).await.unwrap();
    let before = store.revoke_key(&key.id, 30).await.unwrap().unwrap();
    assert_eq!(before.revoked_ms, None);
    store.revoke_key(&key.id, 40).await.unwrap();
    let after = store.key_by_hash(&key.hash).await.unwrap().unwrap();
    assert_eq!(after.revoked_ms, Some(30), "the first revocation stands");
    assert_eq!(after.last_used_ms, Some(20));
    assert_eq!(store.keys().await.unwrap().len(), 1);
    assert_eq!(store.revoke_key("nope", 50).await.unwrap(), None);

    assert!(store.delete_user(&alice.id).await.unwrap());
    assert_eq!(store.user(&alice.id).await.unwrap(), None);
    assert!(
        !store.delete_user(&alice.id).await.unwrap(),
        "deleted twice"
    );
}

#[tokio::test]
async fn sled_keeps_the_guarantees() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledIdentityStore::open(&dir.path().join("identity")).unwrap();
    conformance(&store).await;
}

#[tokio::test]
async fn postgres_keeps_the_guarantees() {
    let schema = TestSchema::new();
    // Opening the document store runs the migrations, identity's included.
    let _documents = schema.open().await;
    let config = schema.config();
    let store: Arc<PgIdentityStore> = PgIdentityStore::open(&config.url, &schema.name).unwrap();
    conformance(&store).await;
}
