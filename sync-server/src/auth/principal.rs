//! From credentials to a [`Principal`], and from a principal to the
//! [`Caller`] of one workspace.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use connectors::Identity;
use connectors::sso::ldap::{LdapAuthenticator, LdapError};
use connectors::sso::oidc::{OidcError, OidcProvider};
use tokio::sync::broadcast;

use super::config::IdentityConfig;
use super::credentials::{Credential, Credentials};
use super::store::{IdentityStore, UserRecord};
use super::tokens::{self, Claims, TokenKind, TokenSigner};
use super::{AuthMethod, Caller, Role};
use crate::docs::DocName;
use crate::error::AppError;

/// Why the identity setup could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    /// An OIDC provider's discovery failed.
    #[error("oidc provider {name:?}: {source}")]
    Oidc {
        /// The provider's configured name.
        name: String,
        /// What failed.
        #[source]
        source: OidcError,
    },
    /// The LDAP configuration is unusable.
    #[error("ldap: {0}")]
    Ldap(#[from] LdapError),
}

/// Why a request is not authenticated, or not for this target. Every
/// message is safe to show and names the problem.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Sign-in is configured and nothing was presented.
    #[error(
        "authentication required: send Authorization: Bearer <token>, ?token=<token> or the session cookie"
    )]
    Missing,
    /// An OIDC bearer token was refused.
    #[error("invalid bearer token: {0}")]
    Oidc(#[from] connectors::sso::oidc::TokenError),
    /// A bearer token from an issuer that is not configured.
    #[error("bearer token issuer {0:?} is not a configured identity provider")]
    UnknownIssuer(String),
    /// One of our tokens (document token or session) was refused.
    #[error("invalid {kind}: {source}")]
    Token {
        /// `document token` or `session`.
        kind: &'static str,
        /// Why.
        #[source]
        source: tokens::TokenError,
    },
    /// A document token used on another document.
    #[error("this token is for document {expected:?}, not {got:?}")]
    WrongDocument {
        /// The token's document.
        expected: String,
        /// Where it was used.
        got: String,
    },
    /// A workspace token or key used in another workspace.
    #[error("this {what} is for workspace {expected:?}, not {got:?}")]
    WrongWorkspace {
        /// `token` or `API key`.
        what: &'static str,
        /// Its workspace(s).
        expected: String,
        /// Where it was used.
        got: String,
    },
    /// An API key that does not exist.
    #[error("unknown API key")]
    UnknownKey,
    /// An API key that was revoked.
    #[error("API key {0} was revoked")]
    KeyRevoked(String),
    /// The provider or the identity store is down.
    #[error("identity service unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        match &error {
            AuthError::WrongDocument { .. } | AuthError::WrongWorkspace { .. } => {
                AppError::Forbidden(error.to_string())
            }
            AuthError::Oidc(e) if e.is_provider_failure() => {
                AppError::Unavailable(error.to_string())
            }
            AuthError::Unavailable(_) => AppError::Unavailable(error.to_string()),
            _ => AppError::Unauthorized(error.to_string()),
        }
    }
}

/// What a credential allows at most, before the workspace is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Owner of everything: anonymous mode, or the break-glass admin.
    Everything,
    /// Roles from group rules and memberships.
    Directory,
    /// A document token: one document or one workspace, up to a role.
    Scoped {
        /// The one document, if the token names one.
        document: Option<String>,
        /// The one workspace, if the token names one.
        workspace: Option<String>,
        /// The highest role it grants.
        ceiling: Role,
    },
    /// An API key: its workspaces, with its role.
    Key {
        /// The key's id.
        id: String,
        /// Workspaces it opens (`*` for all).
        workspaces: Vec<String>,
        /// The role it has there.
        role: Role,
    },
}

/// Who is calling, before a workspace is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable user id.
    pub user: String,
    /// A name to show.
    pub display_name: Option<String>,
    /// How they proved it.
    pub method: AuthMethod,
    /// Their groups.
    pub groups: Vec<String>,
    /// What the credential allows at most.
    pub grant: Grant,
}

impl Principal {
    /// The anonymous-mode principal.
    pub fn anonymous() -> Self {
        Self {
            user: "anonymous".into(),
            display_name: None,
            method: AuthMethod::Anonymous,
            groups: Vec::new(),
            grant: Grant::Everything,
        }
    }

    /// The principal of a person the identity provider or directory
    /// vouched for. The user id is `issuer|subject`: subjects are only
    /// unique per issuer.
    pub fn from_identity(identity: &Identity, method: AuthMethod) -> Self {
        Self {
            user: user_id(identity),
            display_name: identity.name.clone().or_else(|| identity.email.clone()),
            method,
            groups: identity.groups.clone(),
            grant: Grant::Directory,
        }
    }
}

/// The user id of an identity: `issuer|subject`, the pair that is unique
/// (an email address can be reused; a subject only per issuer).
pub fn user_id(identity: &Identity) -> String {
    format!("{}|{}", identity.issuer, identity.subject)
}

/// What a caller is resolved for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// One document (its workspace is the prefix).
    Document(&'a DocName),
    /// A whole workspace (`*` for server-wide operations).
    Workspace(&'a str),
}

impl Target<'_> {
    fn workspace(&self) -> &str {
        match self {
            Target::Document(doc) => doc.workspace(),
            Target::Workspace(ws) => ws,
        }
    }
}

/// A change of who may do what, for live connections to re-check: a
/// membership changed, or a key was revoked.
///
/// `*` in either field is a wildcard. A node announces
/// [`AccessChange::everyone`] when it may have missed changes made on
/// other nodes (its Redis subscription came back from an outage): every
/// connection then re-checks, which costs a store lookup each and is
/// never wrong. A member literally named `*` is over-approximated the
/// same way, which is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChange {
    /// The workspace (`*`: every workspace).
    pub workspace: String,
    /// The user id (`key:<id>` for an API key; `*`: every user).
    pub user: String,
}

impl AccessChange {
    /// The change that makes every live connection re-check.
    pub fn everyone() -> Self {
        Self {
            workspace: "*".into(),
            user: "*".into(),
        }
    }

    /// Whether a connection of `user` to `workspace` must re-check.
    pub fn concerns(&self, user: &str, workspace: &str) -> bool {
        (self.user == "*" || self.user == user)
            && (self.workspace == "*" || self.workspace == workspace)
    }
}

/// Identity for the whole server: providers, directory, our tokens, and
/// the store of users, memberships and keys.
pub struct Auth {
    config: IdentityConfig,
    oidc: Vec<(String, Arc<OidcProvider>)>,
    ldap: Option<LdapAuthenticator>,
    signer: Option<TokenSigner>,
    store: Arc<dyn IdentityStore>,
    /// Users provisioned (or found) since start, so a busy user costs no
    /// store write per request. A std mutex: held for a set lookup only.
    seen: Mutex<HashSet<String>>,
    changes: broadcast::Sender<AccessChange>,
    logins: super::session::PendingLogins,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("anonymous", &self.is_anonymous())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Discovers every OIDC provider and checks the directory settings.
    pub async fn start(
        config: &IdentityConfig,
        store: Arc<dyn IdentityStore>,
    ) -> Result<Arc<Self>, AuthStartError> {
        let mut oidc = Vec::new();
        for (name, provider) in &config.oidc {
            let discovered = OidcProvider::discover(provider.clone())
                .await
                .map_err(|source| AuthStartError::Oidc {
                    name: name.clone(),
                    source,
                })?;
            oidc.push((name.clone(), Arc::new(discovered)));
        }
        let ldap = config
            .ldap
            .clone()
            .map(LdapAuthenticator::new)
            .transpose()?;
        let signer = config
            .token_secret
            .as_ref()
            .map(|s| TokenSigner::new(s.expose().as_bytes()));
        Ok(Arc::new(Self {
            config: config.clone(),
            oidc,
            ldap,
            signer,
            store,
            seen: Mutex::new(HashSet::new()),
            changes: broadcast::channel(256).0,
            logins: super::session::PendingLogins::default(),
        }))
    }

    /// OIDC logins in progress on this node.
    pub fn logins(&self) -> &super::session::PendingLogins {
        &self.logins
    }

    /// The store of users, memberships and keys.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }

    /// Live access changes, for connections to re-check their caller.
    pub fn subscribe(&self) -> broadcast::Receiver<AccessChange> {
        self.changes.subscribe()
    }

    /// Announces a change to live connections on this node only; with
    /// several nodes, use [`crate::state::AppState::announce_access`], which also tells
    /// the others.
    pub fn announce(&self, change: AccessChange) {
        // No receiver means no live connection to tell.
        let _receivers = self.changes.send(change);
    }

    /// Where changes heard from other nodes are announced on this one.
    pub fn announcer(&self) -> broadcast::Sender<AccessChange> {
        self.changes.clone()
    }

    /// Records a user at first sight (just-in-time provisioning); true if
    /// the user is new.
    pub async fn provision(&self, principal: &Principal) -> Result<bool, AuthError> {
        if principal.grant != Grant::Directory {
            return Ok(false);
        }
        if self
            .seen
            .lock()
            .expect("seen users")
            .contains(&principal.user)
        {
            return Ok(false);
        }
        let record = UserRecord {
            id: principal.user.clone(),
            name: principal.display_name.clone(),
            first_seen_ms: tokens::now_secs() * 1000,
        };
        let created = self
            .store
            .provision(&record)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        self.seen
            .lock()
            .expect("seen users")
            .insert(principal.user.clone());
        Ok(created)
    }

    /// Anonymous mode: nothing configured, everyone is the owner. For
    /// local use only.
    pub fn is_anonymous(&self) -> bool {
        !self.config.is_configured()
    }

    /// The configuration.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// The OIDC provider named `name`, or the only one when `name` is
    /// `None`.
    pub fn oidc(&self, name: Option<&str>) -> Option<&Arc<OidcProvider>> {
        match name {
            Some(name) => self.oidc.iter().find(|(n, _)| n == name).map(|(_, p)| p),
            None if self.oidc.len() == 1 => self.oidc.first().map(|(_, p)| p),
            None => None,
        }
    }

    /// The directory, if configured.
    pub fn ldap(&self) -> Option<&LdapAuthenticator> {
        self.ldap.as_ref()
    }

    /// The signer of our tokens, if a secret is configured.
    pub fn signer(&self) -> Option<&TokenSigner> {
        self.signer.as_ref()
    }

    /// Who presented `credentials`. In anonymous mode everyone is the
    /// anonymous owner, whatever they send.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        if self.is_anonymous() {
            return Ok(Principal::anonymous());
        }
        match &credentials.credential {
            None => Err(AuthError::Missing),
            Some(Credential::Session(cookie)) => self.session(cookie),
            Some(Credential::Bearer(token)) => self.bearer(token).await,
            Some(Credential::ApiKey(key)) => self.api_key(key).await,
        }
    }

    async fn api_key(&self, key: &str) -> Result<Principal, AuthError> {
        let record = self
            .store
            .key_by_hash(&super::keys::hash(key))
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or(AuthError::UnknownKey)?;
        if record.revoked_ms.is_some() {
            return Err(AuthError::KeyRevoked(record.id));
        }
        let store = self.store.clone();
        let id = record.id.clone();
        // Last-used time is bookkeeping: the request does not wait for it.
        tokio::spawn(async move {
            if let Err(error) = store.touch_key(&id, tokens::now_secs() * 1000).await {
                tracing::warn!(%error, key = %id, "could not record an API key's last use");
            }
        });
        Ok(Principal {
            user: format!("key:{}", record.id),
            display_name: Some(record.name),
            method: AuthMethod::ApiKey,
            groups: Vec::new(),
            grant: Grant::Key {
                id: record.id,
                workspaces: record.workspaces,
                role: record.role,
            },
        })
    }

    fn ours(&self, token: &str, kind: TokenKind) -> Result<Claims, AuthError> {
        let what = match kind {
            TokenKind::Document => "document token",
            TokenKind::Session => "session",
        };
        let signer = self.signer.as_ref().ok_or(AuthError::Token {
            kind: what,
            source: tokens::TokenError::Malformed("this server issues no tokens".into()),
        })?;
        signer
            .verify(token, kind, tokens::now_secs())
            .map_err(|source| AuthError::Token { kind: what, source })
    }

    fn session(&self, cookie: &str) -> Result<Principal, AuthError> {
        let claims = self.ours(cookie, TokenKind::Session)?;
        // The break-glass administrator stays visible as such on every
        // audit entry its session leaves.
        let (grant, method) = match claims.method {
            AuthMethod::BreakGlass => (Grant::Everything, AuthMethod::BreakGlass),
            _ => (Grant::Directory, AuthMethod::Session),
        };
        Ok(Principal {
            user: claims.sub,
            display_name: claims.name,
            method,
            groups: claims.groups,
            grant,
        })
    }

    async fn bearer(&self, token: &str) -> Result<Principal, AuthError> {
        if TokenSigner::is_ours(token) {
            let claims = self.ours(token, TokenKind::Document)?;
            return Ok(Principal {
                user: claims.sub,
                display_name: claims.name,
                method: AuthMethod::DocumentToken,
                groups: claims.groups,
                grant: Grant::Scoped {
                    document: claims.doc,
                    workspace: claims.ws,
                    ceiling: claims.role.unwrap_or(Role::Viewer),
                },
            });
        }
        let provider = self.provider_for(token)?;
        let identity = provider.validate_bearer(token).await?;
        Ok(Principal::from_identity(&identity, AuthMethod::Bearer))
    }

    /// The provider whose issuer the token names; with one provider, that
    /// one (its validator then reports a wrong issuer precisely).
    fn provider_for(&self, token: &str) -> Result<&Arc<OidcProvider>, AuthError> {
        if let [(_, only)] = self.oidc.as_slice() {
            return Ok(only);
        }
        let issuer = unverified_issuer(token).unwrap_or_default();
        self.oidc
            .iter()
            .find(|(_, p)| p.config().issuer_url == issuer)
            .map(|(_, p)| p)
            .ok_or(AuthError::UnknownIssuer(issuer))
    }

    /// The role a directory user has in `workspace`: their explicit
    /// membership if an admin set one (it may lower what groups give),
    /// else the highest role their groups' rules grant.
    pub async fn directory_role(
        &self,
        user: &str,
        groups: &[String],
        workspace: &str,
    ) -> Result<Option<Role>, AuthError> {
        let explicit = self
            .store
            .member_role(workspace, user)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(explicit.or_else(|| self.config.roles.role_in(groups, workspace)))
    }

    /// `principal`, resolved for `target`: its role there, or an error if
    /// its credential does not open `target` at all.
    pub async fn caller(
        &self,
        principal: &Principal,
        target: Target<'_>,
        credentials: &Credentials,
    ) -> Result<Caller, AuthError> {
        let workspace = target.workspace();
        let role = match &principal.grant {
            Grant::Everything => Some(Role::Owner),
            Grant::Directory => {
                self.directory_role(&principal.user, &principal.groups, workspace)
                    .await?
            }
            Grant::Scoped {
                document,
                workspace: token_ws,
                ceiling,
            } => {
                check_scope(document.as_deref(), token_ws.as_deref(), target)?;
                self.directory_role(&principal.user, &principal.groups, workspace)
                    .await?
                    .map(|role| role.min(*ceiling))
            }
            Grant::Key {
                workspaces, role, ..
            } => {
                if !workspaces.iter().any(|w| w == "*" || w == workspace) {
                    return Err(AuthError::WrongWorkspace {
                        what: "API key",
                        expected: workspaces.join(", "),
                        got: workspace.to_owned(),
                    });
                }
                Some(*role)
            }
        };
        Ok(Caller {
            user: principal.user.clone(),
            display_name: principal.display_name.clone(),
            method: principal.method,
            groups: principal.groups.clone(),
            role,
            ip: credentials.ip,
            user_agent: credentials.user_agent.clone(),
        })
    }

    /// A document token for `principal`, for one document or workspace,
    /// with at most `ceiling`, living `ttl` (capped by the configured
    /// maximum). Returns the token and its expiry (unix seconds).
    pub fn issue_document_token(
        &self,
        principal: &Principal,
        document: Option<&DocName>,
        workspace: Option<&str>,
        ceiling: Role,
        ttl: std::time::Duration,
    ) -> Result<(String, u64), AppError> {
        let signer = self.signer.as_ref().ok_or_else(|| {
            AppError::BadRequest(
                "document tokens need a token secret (--token-secret); in anonymous mode none is needed"
                    .into(),
            )
        })?;
        let now = tokens::now_secs();
        let ttl = ttl.min(self.config.token_max_ttl).as_secs().max(1);
        let claims = Claims {
            iss: tokens::ISSUER.into(),
            sub: principal.user.clone(),
            name: principal.display_name.clone(),
            groups: principal.groups.clone(),
            method: principal.method,
            kind: TokenKind::Document,
            doc: document.map(|d| d.as_str().to_owned()),
            ws: workspace.map(str::to_owned),
            role: Some(ceiling),
            iat: now,
            exp: now + ttl,
        };
        Ok((signer.sign(&claims), claims.exp))
    }

    /// A session cookie value for `principal`, and its lifetime.
    pub fn issue_session(
        &self,
        principal: &Principal,
        method: AuthMethod,
    ) -> Option<(String, u64)> {
        let signer = self.signer.as_ref()?;
        let now = tokens::now_secs();
        let ttl = self.config.session_ttl.as_secs();
        let claims = Claims {
            iss: tokens::ISSUER.into(),
            sub: principal.user.clone(),
            name: principal.display_name.clone(),
            groups: principal.groups.clone(),
            method,
            kind: TokenKind::Session,
            doc: None,
            ws: None,
            role: None,
            iat: now,
            exp: now + ttl,
        };
        Some((signer.sign(&claims), ttl))
    }
}

fn check_scope(
    document: Option<&str>,
    workspace: Option<&str>,
    target: Target<'_>,
) -> Result<(), AuthError> {
    if let Some(expected) = document {
        let got = match target {
            Target::Document(doc) => doc.as_str(),
            Target::Workspace(ws) => ws,
        };
        if expected != got {
            return Err(AuthError::WrongDocument {
                expected: expected.to_owned(),
                got: got.to_owned(),
            });
        }
    }
    if let Some(expected) = workspace
        && expected != target.workspace()
    {
        return Err(AuthError::WrongWorkspace {
            what: "token",
            expected: expected.to_owned(),
            got: target.workspace().to_owned(),
        });
    }
    Ok(())
}

/// The `iss` a JWT claims, unverified: only to pick the validator.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let body = token.split('.').nth(1)?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&body).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::AccessChange;

    fn change(workspace: &str, user: &str) -> AccessChange {
        AccessChange {
            workspace: workspace.into(),
            user: user.into(),
        }
    }

    #[test]
    fn a_change_concerns_its_user_in_its_workspace() {
        let bob_in_acme = change("acme", "bob");
        assert!(bob_in_acme.concerns("bob", "acme"));
        assert!(!bob_in_acme.concerns("bob", "beta"));
        assert!(!bob_in_acme.concerns("ada", "acme"));
        let revoked_key = change("*", "key:0123");
        assert!(revoked_key.concerns("key:0123", "acme"));
        assert!(!revoked_key.concerns("bob", "acme"));
    }

    #[test]
    fn a_wildcard_user_concerns_everyone() {
        let everyone = AccessChange::everyone();
        for (user, workspace) in [("bob", "acme"), ("key:0123", "beta"), ("anonymous", "x")] {
            assert!(everyone.concerns(user, workspace), "{user} in {workspace}");
        }
        let everyone_in_acme = change("acme", "*");
        assert!(everyone_in_acme.concerns("bob", "acme"));
        assert!(!everyone_in_acme.concerns("bob", "beta"));
    }
}
