//! LDAP sign-in for on-premises directories (OpenLDAP, Active Directory,
//! 389-DS): a simple bind with the person's password, then their groups.
//!
//! Two ways to find the person's entry ([`UserLookup`]):
//! - **DN template**: the DN is built from the username
//!   (`uid={username},ou=people,dc=example,dc=com`) and bound to directly;
//!   no service account, but every user must live under one DN pattern.
//! - **Search, then bind**: a service account searches for the username
//!   (any filter: `uid`, `sAMAccountName`, `mail`), then the entry found is
//!   bound with the password. This is what Active Directory setups need.
//!
//! And two ways to read groups ([`GroupLookup`]): the user entry's
//! `memberOf` attribute (Active Directory; OpenLDAP with the memberof
//! overlay), or a search for group entries naming the user as `member`.
//!
//! Safety rules kept here rather than left to configuration:
//! - an empty password is refused before anything is sent: an LDAP simple
//!   bind with a DN and no password is an "unauthenticated bind", which
//!   many servers answer with *success* (RFC 4513 §5.1.2);
//! - every value from the user goes through LDAP filter escaping (RFC 4515)
//!   or DN escaping (RFC 4514), so `*` or `)(` in a username cannot widen a
//!   search (LDAP injection);
//! - an unknown user and a wrong password give the same error, so sign-in
//!   does not reveal which usernames exist.
//!
//! Each sign-in opens its own connection: a bind changes who the connection
//! is, so sharing connections between users would need rebinding with care,
//! and sign-ins are rare next to document traffic.

use crate::duration_secs;
use crate::identity::Identity;
use crate::secret::Secret;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// LDAP result code for a failed bind (RFC 4511 appendix A).
const INVALID_CREDENTIALS: u32 = 49;

/// Longest username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 256;

/// Errors of LDAP sign-in.
///
/// The first four are the caller's (answer 401 with the message); the rest
/// are the directory's or the configuration's (answer 503 or 500, log the
/// source).
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// The password was empty. Refused before contacting the directory,
    /// because an empty-password bind is an unauthenticated bind that many
    /// directories accept.
    #[error("password must not be empty")]
    EmptyPassword,
    /// The username was empty, longer than [`MAX_USERNAME_LEN`], or had
    /// control characters.
    #[error("username is empty, too long, or contains control characters")]
    InvalidUsername,
    /// No such user, or the wrong password: deliberately the same error.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The user search matched several entries, so the filter does not
    /// identify people uniquely (a configuration problem).
    #[error("the username matches {count} directory entries")]
    AmbiguousUser {
        /// How many entries matched.
        count: usize,
    },
    /// The configuration is unusable (bad URL, template without
    /// `{username}`, unreadable CA file...).
    #[error("invalid LDAP configuration: {0}")]
    Config(String),
    /// The service account's bind failed.
    #[error("the LDAP service account could not bind (result code {rc})")]
    ServiceBind {
        /// The LDAP result code.
        rc: u32,
    },
    /// The directory could not be reached (connection, TLS, StartTLS).
    #[error("could not connect to the directory at {url}")]
    Connect {
        /// The configured URL.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ldap3::LdapError>,
    },
    /// A directory operation failed or timed out.
    #[error("LDAP {operation} failed")]
    Directory {
        /// Which operation: "bind", "user search", "group search".
        operation: &'static str,
        /// What went wrong.
        #[source]
        source: Box<ldap3::LdapError>,
    },
}

impl LdapError {
    /// Whether the person signing in got something wrong (answer 401 with
    /// the message), as opposed to the directory or the configuration
    /// (answer 503 or 500, and log).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            LdapError::EmptyPassword | LdapError::InvalidUsername | LdapError::InvalidCredentials
        )
    }
}

/// How the connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LdapTls {
    /// As the URL says: TLS from the start for `ldaps://`, none for
    /// `ldap://` (acceptable only on loopback or a trusted network: the
    /// password crosses it).
    #[default]
    FromUrl,
    /// `ldap://` upgraded with StartTLS before anything else is sent.
    StartTls,
}

/// How the person's directory entry is found.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum UserLookup {
    /// The entry's DN is `dn_template` with `{username}` replaced by the
    /// (DN-escaped) username, and is bound to directly; the entry and the
    /// groups are then read as the person, who must be allowed to.
    DnTemplate {
        /// E.g. `uid={username},ou=people,dc=example,dc=com`.
        dn_template: String,
    },
    /// A service account searches `base_dn` (whole subtree) with `filter`,
    /// in which `{username}` is replaced by the (filter-escaped) username;
    /// exactly one entry must match. Groups are read as the service account
    /// too; the person's own bind comes last.
    Search {
        /// The service account's DN.
        bind_dn: String,
        /// The service account's password.
        bind_password: Secret,
        /// Where people live, e.g. `ou=people,dc=example,dc=com`.
        base_dn: String,
        /// E.g. `(&(objectClass=inetOrgPerson)(uid={username}))`, or for
        /// Active Directory `(&(objectClass=user)(sAMAccountName={username}))`.
        filter: String,
    },
}

/// How the person's groups are found.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupLookup {
    /// No groups.
    None,
    /// The user entry's attribute (usually `memberOf`) lists group DNs; a
    /// group's name is the value of the DN's first component
    /// (`cn=eng-admins,ou=groups,...` gives `eng-admins`).
    MemberOf {
        /// The attribute, e.g. `memberOf`.
        attribute: String,
    },
    /// Groups are the entries under `base_dn` matching `filter`, in which
    /// `{user_dn}` and `{username}` are replaced (filter-escaped); a group's
    /// name is its `name_attribute`.
    Search {
        /// Where groups live, e.g. `ou=groups,dc=example,dc=com`.
        base_dn: String,
        /// E.g. `(&(objectClass=groupOfNames)(member={user_dn}))`.
        filter: String,
        /// E.g. `cn`.
        name_attribute: String,
    },
}

/// Where the directory is and how people and groups are found in it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// StartTLS, or whatever the URL's scheme says.
    #[serde(default)]
    pub tls: LdapTls,
    /// PEM file with the CA certificate(s) to trust for TLS, for a
    /// directory with an internal CA; without it the system's roots are
    /// used. Certificates are always verified.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How the person's entry is found.
    pub user: UserLookup,
    /// How the person's groups are found.
    pub groups: GroupLookup,
    /// Attribute with the display name.
    #[serde(default = "default_name_attribute")]
    pub name_attribute: String,
    /// Attribute with the email address.
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    /// Time limit for connecting (TCP and TLS).
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub connect_timeout: Duration,
    /// Time limit for each operation (bind, search).
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration_secs::deserialize"
    )]
    pub operation_timeout: Duration,
}

fn default_name_attribute() -> String {
    "cn".into()
}

fn default_email_attribute() -> String {
    "mail".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Signs people in against one directory.
pub struct LdapAuthenticator {
    config: LdapConfig,
    /// Built once at startup (reading the CA file is blocking I/O, which
    /// has no place in `authenticate`).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl LdapAuthenticator {
    /// Checks the configuration and reads the CA file, if any.
    pub fn new(config: LdapConfig) -> Result<Self, LdapError> {
        let url = url::Url::parse(&config.url)
            .map_err(|_| LdapError::Config(format!("{:?} is not a URL", config.url)))?;
        match (url.scheme(), config.tls) {
            ("ldap", _) | ("ldaps", LdapTls::FromUrl) => {}
            ("ldaps", LdapTls::StartTls) => {
                return Err(LdapError::Config(
                    "StartTLS needs an ldap:// URL, not ldaps://".into(),
                ));
            }
            (scheme, _) => {
                return Err(LdapError::Config(format!(
                    "unsupported URL scheme {scheme:?}"
                )));
            }
        }
        match &config.user {
            UserLookup::DnTemplate { dn_template } if !dn_template.contains("{username}") => {
                return Err(LdapError::Config("dn_template lacks {username}".into()));
            }
            UserLookup::Search { filter, .. } if !filter.contains("{username}") => {
                return Err(LdapError::Config("the user filter lacks {username}".into()));
            }
            _ => {}
        }
        let tls = config
            .ca_file
            .as_ref()
            .map(|path| tls_config(path))
            .transpose()?;
        Ok(Self { config, tls })
    }

    /// Checks `username` and `password` against the directory and returns
    /// the person, with their groups.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Identity, LdapError> {
        if password.is_empty() {
            return Err(LdapError::EmptyPassword);
        }
        if username.is_empty()
            || username.len() > MAX_USERNAME_LEN
            || username.chars().any(char::is_control)
        {
            return Err(LdapError::InvalidUsername);
        }
        let mut session = self.connect().await?;
        let result = self.sign_in(&mut session.ldap, username, password).await;
        session.close().await;
        result
    }

    async fn sign_in(
        &self,
        ldap: &mut Ldap,
        username: &str,
        password: &str,
    ) -> Result<Identity, LdapError> {
        let timeout = self.config.operation_timeout;
        let (entry, groups) = match &self.config.user {
            UserLookup::DnTemplate { dn_template } => {
                let dn = dn_template.replace("{username}", &dn_escape(username));
                self.bind_user(ldap, &dn, password).await?;
                // Read our own entry, as ourselves.
                let entries = self
                    .search(ldap, &dn, Scope::Base, "(objectClass=*)", "user search")
                    .await?;
                let entry = entries
                    .into_iter()
                    .next()
                    .ok_or(LdapError::InvalidCredentials)?;
                let groups = self.groups(ldap, &entry, username).await?;
                (entry, groups)
            }
            UserLookup::Search {
                bind_dn,
                bind_password,
                base_dn,
                filter,
            } => {
                let bound = ldap
                    .with_timeout(timeout)
                    .simple_bind(bind_dn, bind_password.expose())
                    .await
                    .map_err(|source| LdapError::Directory {
                        operation: "service bind",
                        source: Box::new(source),
                    })?;
                if bound.rc != 0 {
                    return Err(LdapError::ServiceBind { rc: bound.rc });
                }
                let filter = filter.replace("{username}", &ldap_escape(username));
                let mut entries = self
                    .search(ldap, base_dn, Scope::Subtree, &filter, "user search")
                    .await?;
                match entries.len() {
                    0 => {
                        tracing::debug!(username, "LDAP sign-in: no such user");
                        return Err(LdapError::InvalidCredentials);
                    }
                    1 => {}
                    count => return Err(LdapError::AmbiguousUser { count }),
                }
                let entry = entries.remove(0);
                // Groups are read as the service account, which may see
                // groups the person cannot; the person's bind comes last and
                // decides: nothing is returned unless it succeeds.
                let groups = self.groups(ldap, &entry, username).await?;
                self.bind_user(ldap, &entry.dn, password).await?;
                (entry, groups)
            }
        };
        Ok(Identity {
            subject: entry.dn.clone(),
            issuer: self.config.url.clone(),
            email: first_value(&entry, &self.config.email_attribute),
            name: first_value(&entry, &self.config.name_attribute),
            groups,
            expires_at: None,
        })
    }

    async fn bind_user(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<(), LdapError> {
        let result = ldap
            .with_timeout(self.config.operation_timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|source| LdapError::Directory {
                operation: "bind",
                source: Box::new(source),
            })?;
        match result.rc {
            0 => Ok(()),
            INVALID_CREDENTIALS => {
                tracing::debug!(dn, "LDAP sign-in: bind refused");
                Err(LdapError::InvalidCredentials)
            }
            _ => Err(LdapError::Directory {
                operation: "bind",
                source: Box::new(ldap3::LdapError::LdapResult { result }),
            }),
        }
    }

    async fn groups(
        &self,
        ldap: &mut Ldap,
        user: &SearchEntry,
        username: &str,
    ) -> Result<Vec<String>, LdapError> {
        let mut groups = match &self.config.groups {
            GroupLookup::None => Vec::new(),
            GroupLookup::MemberOf { attribute } => attribute_values(user, attribute)
                .iter()
                .filter_map(|dn| first_rdn_value(dn))
                .collect(),
            GroupLookup::Search {
                base_dn,
                filter,
                name_attribute,
            } => {
                let filter = filter
                    .replace("{user_dn}", &ldap_escape(user.dn.as_str()))
                    .replace("{username}", &ldap_escape(username));
                self.search(ldap, base_dn, Scope::Subtree, &filter, "group search")
                    .await?
                    .iter()
                    .filter_map(|group| first_value(group, name_attribute))
                    .collect()
            }
        };
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        operation: &'static str,
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let (entries, _) = ldap
            .with_timeout(self.config.operation_timeout)
            .search(
                base,
                scope,
                filter,
                vec!["*"]
                    .into_iter()
                    .chain(self.member_of_attr())
                    .collect::<Vec<_>>(),
            )
            .await
            .and_then(|result| result.success())
            .map_err(|source| LdapError::Directory {
                operation,
                source: Box::new(source),
            })?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// `memberOf` is operational in OpenLDAP: it is only returned when
    /// asked for by name.
    fn member_of_attr(&self) -> Option<&str> {
        match &self.config.groups {
            GroupLookup::MemberOf { attribute } => Some(attribute.as_str()),
            _ => None,
        }
    }

    async fn connect(&self) -> Result<Session, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.connect_timeout)
            .set_starttls(self.config.tls == LdapTls::StartTls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|source| LdapError::Connect {
                url: self.config.url.clone(),
                source: Box::new(source),
            })?;
        let driver = tokio::spawn(async move {
            if let Err(err) = conn.drive().await {
                tracing::debug!(error = %err, "LDAP connection ended with an error");
            }
        });
        Ok(Session {
            ldap,
            driver: Some(driver),
        })
    }
}

/// An open connection and the task that drives it. Dropping it (say, when
/// the caller's future is cancelled) aborts the task, so no connection
/// outlives its sign-in.
struct Session {
    ldap: Ldap,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    async fn close(mut self) {
        // Best effort: the directory drops the connection either way.
        if let Err(err) = self.ldap.unbind().await {
            tracing::debug!(error = %err, "LDAP unbind failed");
        }
        if let Some(driver) = self.driver.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), driver).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|err| {
        LdapError::Config(format!("cannot read CA file {}: {err}", path.display()))
    })?;
    for cert in certs {
        let cert = cert.map_err(|err| {
            LdapError::Config(format!("bad certificate in {}: {err}", path.display()))
        })?;
        roots.add(cert).map_err(|err| {
            LdapError::Config(format!(
                "unusable CA certificate in {}: {err}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(LdapError::Config(format!(
            "no certificate in CA file {}",
            path.display()
        )));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| LdapError::Config(format!("TLS setup: {err}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Values of `attribute` (matched case-insensitively, as LDAP does).
fn attribute_values<'a>(entry: &'a SearchEntry, attribute: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map(|(_, values)| values.as_slice())
        .unwrap_or_default()
}

fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    attribute_values(entry, attribute).first().cloned()
}

/// `eng-admins` from `cn=eng-admins,ou=groups,dc=example,dc=com`, undoing
/// DN escapes (`cn=R\2cD` gives `R,D`).
fn first_rdn_value(dn: &str) -> Option<String> {
    let mut value = String::new();
    let mut chars = dn.split_once('=')?.1.chars().peekable();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            ',' | '+' => break,
            '\\' => {
                let hi = chars.next()?;
                if hi.is_ascii_hexdigit() && chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    let lo = chars.next()?;
                    bytes.push(u8::from_str_radix(&format!("{hi}{lo}"), 16).ok()?);
                    continue;
                }
                flush(&mut bytes, &mut value)?;
                value.push(hi);
            }
            c => {
                flush(&mut bytes, &mut value)?;
                value.push(c);
            }
        }
    }
    flush(&mut bytes, &mut value)?;
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

fn flush(bytes: &mut Vec<u8>, value: &mut String) -> Option<()> {
    if !bytes.is_empty() {
        value.push_str(std::str::from_utf8(bytes).ok()?);
        bytes.clear();
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(
            first_rdn_value("cn=eng-admins,ou=groups,dc=example,dc=test").as_deref(),
            Some("eng-admins")
        );
        assert_eq!(
            first_rdn_value("CN=R\\2cD,OU=Groups,DC=corp").as_deref(),
            Some("R,D")
        );
        assert_eq!(
            first_rdn_value("cn=a\\+b+uid=x,dc=t").as_deref(),
            Some("a+b")
        );
        assert_eq!(
            first_rdn_value("cn=caf\\c3\\a9,dc=t").as_deref(),
            Some("café")
        );
        assert_eq!(first_rdn_value("no-equals"), None);
    }

    fn config(user: UserLookup) -> LdapConfig {
        LdapConfig {
            url: "ldap://127.0.0.1:389".into(),
            tls: LdapTls::FromUrl,
            ca_file: None,
            user,
            groups: GroupLookup::None,
            name_attribute: default_name_attribute(),
            email_attribute: default_email_attribute(),
            connect_timeout: default_timeout(),
            operation_timeout: default_timeout(),
        }
    }

    #[test]
    fn configuration_mistakes_are_caught_at_startup() {
        let no_placeholder = config(UserLookup::DnTemplate {
            dn_template: "uid=alice,dc=t".into(),
        });
        assert_eq!(
            LdapAuthenticator::new(no_placeholder)
                .err()
                .unwrap()
                .to_string(),
            "invalid LDAP configuration: dn_template lacks {username}"
        );
        let mut starttls_on_ldaps = config(UserLookup::DnTemplate {
            dn_template: "uid={username},dc=t".into(),
        });
        starttls_on_ldaps.url = "ldaps://dir.example.com".into();
        starttls_on_ldaps.tls = LdapTls::StartTls;
        assert_eq!(
            LdapAuthenticator::new(starttls_on_ldaps)
                .err()
                .unwrap()
                .to_string(),
            "invalid LDAP configuration: StartTLS needs an ldap:// URL, not ldaps://"
        );
    }

    #[test]
    fn config_reads_from_toml() {
        let config: LdapConfig = toml::from_str(
            r#"
            url = "ldap://dc1.corp.example.com"
            tls = "start_tls"
            [user]
            mode = "search"
            bind_dn = "cn=svc-collab,ou=service,dc=corp,dc=example,dc=com"
            bind_password = "pw"
            base_dn = "ou=people,dc=corp,dc=example,dc=com"
            filter = "(&(objectClass=user)(sAMAccountName={username}))"
            [groups]
            mode = "member_of"
            attribute = "memberOf"
            "#,
        )
        .unwrap();
        assert_eq!(config.tls, LdapTls::StartTls);
        assert_eq!(config.operation_timeout, Duration::from_secs(5));
        assert!(!format!("{config:?}").contains("\"pw\""));
        LdapAuthenticator::new(config).unwrap();
    }

    #[tokio::test]
    async fn empty_passwords_and_odd_usernames_never_reach_the_directory() {
        // Port 9 on loopback: nothing listens, so reaching it would fail
        // differently.
        let mut cfg = config(UserLookup::DnTemplate {
            dn_template: "uid={username},dc=t".into(),
        });
        cfg.url = "ldap://127.0.0.1:9".into();
        let auth = LdapAuthenticator::new(cfg).unwrap();
        assert!(matches!(
            auth.authenticate("alice", "").await,
            Err(LdapError::EmptyPassword)
        ));
        assert!(matches!(
            auth.authenticate("", "pw").await,
            Err(LdapError::InvalidUsername)
        ));
        assert!(matches!(
            auth.authenticate("al\0ice", "pw").await,
            Err(LdapError::InvalidUsername)
        ));
        assert!(matches!(
            auth.authenticate("alice", "pw").await,
            Err(LdapError::Connect { .. })
        ));
    }
}
