//! PostgreSQL for tests: the real server on 127.0.0.1:5432 (or the URL in
//! `SYNC_TEST_DATABASE_URL`), with a fresh schema of a random name per test,
//! dropped when the test ends. Tests never skip: an unreachable server fails
//! them with a message saying how to start it.

#![allow(dead_code, missing_docs)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sync_server::store::{PostgresConfig, PostgresOpenError, PostgresStore};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn database_url() -> String {
    std::env::var("SYNC_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

fn unreachable(url: &str, error: &dyn std::fmt::Display) -> String {
    format!(
        "PostgreSQL is not reachable at {url}: {error}\n\
         The PostgreSQL tests need a real server on 127.0.0.1:5432 with trust auth and a \
         database `test`. Start one with ./scripts/deps.sh, or with\n    \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
         (set SYNC_TEST_DATABASE_URL to use another server)."
    )
}

/// A schema of its own; the first store opened on it creates it.
pub struct TestSchema {
    pub name: String,
    url: String,
}

impl TestSchema {
    pub fn new() -> Self {
        let mut random = RandomState::new().build_hasher();
        random.write_u32(std::process::id());
        TestSchema {
            name: format!("test_{:016x}", random.finish()),
            url: database_url(),
        }
    }

    /// Store settings for this schema: synchronous commits, no commit delay.
    pub fn config(&self) -> PostgresConfig {
        PostgresConfig {
            url: self.url.clone(),
            schema: self.name.clone(),
            synchronous_commit: true,
            commit_delay: Duration::ZERO,
            pool_size: 8,
        }
    }

    /// Server settings that store in this schema; `data_dir` holds what
    /// stays on disk. Other settings are the defaults.
    pub fn settings(&self, data_dir: &std::path::Path) -> sync_server::config::Settings {
        sync_server::config::Settings {
            store: Some(sync_server::config::StoreKind::Postgres),
            database_url: Some(self.url.clone()),
            database_schema: Some(self.name.clone()),
            data_dir: Some(data_dir.to_owned()),
            bind: Some("127.0.0.1:0".parse().expect("an address")),
            ..Default::default()
        }
    }

    /// Opens a store (one node) on this schema.
    pub async fn open(&self) -> Arc<PostgresStore> {
        self.open_with(self.config()).await
    }

    pub async fn open_with(&self, config: PostgresConfig) -> Arc<PostgresStore> {
        match PostgresStore::open(config).await {
            Ok(store) => store,
            Err(PostgresOpenError::Connect(e)) => panic!("{}", unreachable(&self.url, &e)),
            Err(e) => panic!("opening the PostgreSQL store on {}: {e}", self.name),
        }
    }

    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("valid test database URL")
            .options([("search_path", self.name.as_str())])
    }

    /// A connection whose search path is this schema.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.options())
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable(&self.url, &e)))
    }

    /// Runs SQL (several statements allowed) in this schema, as an
    /// operator or a newer build's migration would.
    pub async fn execute(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.expect("close");
    }
}

impl Drop for TestSchema {
    /// Drops the schema from a thread of its own: a test's runtime may be
    /// single-threaded, or already unwinding from a failure.
    fn drop(&mut self) {
        let options = self.options();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&options).await?;
                // A failed test can leave a commit hanging in a transaction
                // on this schema's tables, which would block the drop: end
                // the sessions holding locks here (only here).
                sqlx::query(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks AS l
                       JOIN pg_class AS c ON c.oid = l.relation
                       JOIN pg_namespace AS n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&mut conn)
                .await?;
                sqlx::raw_sql("SET lock_timeout = '5s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("dropping test schema {} panicked", self.name),
        }
    }
}
