//! The identity store in PostgreSQL, in the documents' schema (tables
//! from `migrations/0003_identity.sql`, applied when the document store
//! opens).

use std::str::FromStr;
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::Role;
use super::store::{ApiKeyRecord, IdentityStore, IdentityStoreError, Member, UserRecord};

/// Users, memberships and keys in PostgreSQL.
pub struct PgIdentityStore {
    pool: PgPool,
}

fn pg(e: sqlx::Error) -> IdentityStoreError {
    IdentityStoreError(e.to_string())
}

fn role(text: &str) -> Result<Role, IdentityStoreError> {
    text.parse()
        .map_err(|e: connectors::roles::RoleError| IdentityStoreError(e.to_string()))
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

const KEY_COLUMNS: &str =
    "id, name, hash, workspaces, role, created_by, created_ms, revoked_ms, last_used_ms";

fn key_of(row: &PgRow) -> Result<ApiKeyRecord, IdentityStoreError> {
    let opt = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    Ok(ApiKeyRecord {
        id: row.try_get(0).map_err(pg)?,
        name: row.try_get(1).map_err(pg)?,
        hash: row.try_get(2).map_err(pg)?,
        workspaces: row.try_get(3).map_err(pg)?,
        role: role(&row.try_get::<String, _>(4).map_err(pg)?)?,
        created_by: row.try_get(5).map_err(pg)?,
        created_ms: row.try_get::<i64, _>(6).map_err(pg)?.max(0) as u64,
        revoked_ms: opt(row.try_get(7).map_err(pg)?),
        last_used_ms: opt(row.try_get(8).map_err(pg)?),
    })
}

impl PgIdentityStore {
    /// A small pool on `url`, in `schema`.
    pub fn open(url: &str, schema: &str) -> Result<Arc<Self>, IdentityStoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(pg)?
            .application_name("sync-server-identity")
            .options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Arc::new(Self { pool }))
    }
}

#[async_trait::async_trait]
impl IdentityStore for Arc<PgIdentityStore> {
    async fn provision(&self, user: &UserRecord) -> Result<bool, IdentityStoreError> {
        let done = sqlx::query(
            "INSERT INTO identity_users (id, name, first_seen_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(ms(user.first_seen_ms))
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(done.rows_affected() == 1)
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, IdentityStoreError> {
        let row: Option<(String, Option<String>, i64)> =
            sqlx::query_as("SELECT id, name, first_seen_ms FROM identity_users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(pg)?;
        Ok(row.map(|(id, name, first_seen_ms)| UserRecord {
            id,
            name,
            first_seen_ms: u64::try_from(first_seen_ms).unwrap_or(0),
        }))
    }

    async fn member_role(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM identity_members WHERE workspace = $1 AND user_id = $2",
        )
        .bind(workspace)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        row.map(|(r,)| role(&r)).transpose()
    }

    async fn set_member(
        &self,
        workspace: &str,
        user: &str,
        new: Role,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let mut tx = self.pool.begin().await.map_err(pg)?;
        let old: Option<(String,)> = sqlx::query_as(
            "SELECT role FROM identity_members WHERE workspace = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(workspace)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg)?;
        sqlx::query(
            "INSERT INTO identity_members (workspace, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (workspace, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(workspace)
        .bind(user)
        .bind(new.as_str())
        .execute(&mut *tx)
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        old.map(|(r,)| role(&r)).transpose()
    }

    async fn remove_member(
        &self,
        workspace: &str,
        user: &str,
    ) -> Result<Option<Role>, IdentityStoreError> {
        let old: Option<(String,)> = sqlx::query_as(
            "DELETE FROM identity_members WHERE workspace = $1 AND user_id = $2 RETURNING role",
        )
        .bind(workspace)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg)?;
        old.map(|(r,)| role(&r)).transpose()
    }

    async fn members(&self, workspace: &str) -> Result<Vec<Member>, IdentityStoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT user_id, role FROM identity_members WHERE workspace = $1 ORDER BY user_id",
        )
        .bind(workspace)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.into_iter()
            .map(|(user, r)| {
                Ok(Member {
                    user,
                    role: role(&r)?,
                })
            })
            .collect()
    }

    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>, IdentityStoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT workspace, role FROM identity_members WHERE user_id = $1 ORDER BY workspace",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(pg)?;
        rows.into_iter()
            .map(|(workspace, r)| Ok((workspace, role(&r)?)))
            .collect()
    }

    async fn delete_user(&self, id: &str) -> Result<bool, IdentityStoreError> {
        let done = sqlx::query("DELETE FROM identity_users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_key(&self, key: &ApiKeyRecord) -> Result<(), IdentityStoreError> {
        sqlx::query(
            "INSERT INTO identity_api_keys (id, name, hash, workspaces, role, created_by, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(&key.workspaces)
        .bind(key.role.as_str())
        .bind(&key.created_by)
        .bind(ms(key.created_ms))
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, IdentityStoreError> {
        let query = format!("SELECT {KEY_COLUMNS} FROM identity_api_keys WHERE hash = $1");
        sqlx::query(&query)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?
            .as_ref()
            .map(key_of)
            .transpose()
    }

    async fn keys(&self) -> Result<Vec<ApiKeyRecord>, IdentityStoreError> {
        let query = format!("SELECT {KEY_COLUMNS} FROM identity_api_keys ORDER BY created_ms");
        sqlx::query(&query)
            .fetch_all(&self.pool)
            .await
            .map_err(pg)?
            .iter()
            .map(key_of)
            .collect()
    }

    async fn revoke_key(
        &self,
        id: &str,
        at_ms: u64,
    ) -> Result<Option<ApiKeyRecord>, IdentityStoreError> {
        let query = format!("SELECT {KEY_COLUMNS} FROM identity_api_keys WHERE id = $1");
        let before = sqlx::query(&query)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg)?
            .as_ref()
            .map(key_of)
            .transpose()?;
        sqlx::query(
            "UPDATE identity_api_keys SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(ms(at_ms))
        .execute(&self.pool)
        .await
        .map_err(pg)?;
        Ok(before)
    }

    async fn touch_key(&self, id: &str, at_ms: u64) -> Result<(), IdentityStoreError> {
        sqlx::query("UPDATE identity_api_keys SET last_used_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(ms(at_ms))
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(())
    }
}
