//! Governance for the sync server: a tamper-evident audit trail, policy
//! decisions, compliance reports, lineage, retention and legal hold.
//!
//! The server feeds it events and asks it for decisions; this crate does
//! no networking and owns no documents. Everything it stores lives in the
//! server's own store (sled or PostgreSQL).
//!
//! - [`audit`]: every operation as an entry in a per-workspace hash chain,
//!   group-committed, with signed checkpoints; verification names the
//!   first bad entry; search and JSON Lines / CSV export.
//! - [`policy`]: Cedar policies evaluated on every operation; a denial
//!   names the policy and its reason.
//! - [`gate`]: [`Governance`], the one call per operation: decide, record,
//!   then proceed.
//! - [`compliance`]: GDPR access and erasure, SOC 2 access review, as JSON,
//!   CSV and HTML.
//! - [`lineage`]: where content came from and went.
//! - [`settings`] and [`retention`]: retention periods, legal hold, erasure
//!   mode; the sweep that deletes expired entries without breaking the
//!   chain.
//! - [`cli`]: `audit verify`, `audit export`, `report …` as functions.
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//! use governance::audit::{Action, AuditConfig, AuditKeys, AuditLog, Source, VerifyScope};
//! use governance::clock::SystemClock;
//! use governance::policy::{PolicyConfig, PolicyEngine, Principal, Resource, Role};
//! use governance::store::{SledConfig, SledStore};
//! use governance::{Governance, Operation};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let dir = tempfile::tempdir().unwrap();
//! let db = sled::open(dir.path()).unwrap();
//! let store = SledStore::open(db, SledConfig::default()).unwrap();
//! let keys = AuditKeys::load_or_generate(&dir.path().join("audit.key")).unwrap();
//! let log = AuditLog::start(store.clone(), keys, Arc::new(SystemClock), AuditConfig::default());
//! let policies = PolicyEngine::load(&PolicyConfig::default()).unwrap();
//! let governance = Governance::new(log.clone(), policies, store);
//!
//! // An editor writes: allowed, and on record before the server applies it.
//! let write = Operation::new(
//!     Action::UpdateAccepted,
//!     Principal::user("alice", Some(Role::Editor)),
//!     Resource::workspace("acme", ["confidential"]).with_document("acme/plan"),
//!     Source::default(),
//! );
//! let admitted = governance.authorize(write).await.unwrap();
//! assert_eq!(admitted.audit.seq, 1);
//!
//! // Exporting a confidential workspace: refused, naming the policy.
//! let export = Operation::new(
//!     Action::DocumentExport,
//!     Principal::user("alice", Some(Role::Editor)),
//!     Resource::workspace("acme", ["confidential"]).with_document("acme/plan"),
//!     Source::default(),
//! );
//! let refusal = governance.authorize(export).await.unwrap_err();
//! assert_eq!(
//!     refusal.to_string(),
//!     "denied by policy \"governance.confidential-no-export\": \
//!      workspaces labelled confidential cannot be exported"
//! );
//!
//! // Both are in the chain, which verifies.
//! let report = log.verify(&VerifyScope::All, &mut |_, _| {}).await.unwrap();
//! assert!(report.ok());
//! assert_eq!(report.chains[0].entries, 2);
//! log.close().await.unwrap();
//! # }
//! ```

pub mod audit;
pub mod cli;
pub mod clock;
pub mod compliance;
pub mod gate;
pub mod lineage;
pub mod policy;
pub mod retention;
pub mod settings;
pub mod store;

pub use self::gate::{Admitted, Governance, Operation, Refusal};
