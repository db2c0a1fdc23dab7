//! LDAP sign-in against a real OpenLDAP server (slapd), seeded with people
//! and groups, in both lookup modes.

mod support;

use connectors::Secret;
use connectors::sso::ldap::{
    GroupLookup, LdapAuthenticator, LdapConfig, LdapError, LdapTls, UserLookup,
};
use std::time::Duration;
use support::slapd::{SERVICE_DN, SERVICE_PASSWORD, Slapd};

fn config(slapd: &Slapd, user: UserLookup, groups: GroupLookup) -> LdapConfig {
    LdapConfig {
        url: slapd.url.clone(),
        tls: LdapTls::FromUrl,
        ca_file: None,
        user,
        groups,
        name_attribute: "cn".into(),
        email_attribute: "mail".into(),
        connect_timeout: Duration::from_secs(5),
        operation_timeout: Duration::from_secs(5),
    }
}

fn search_then_bind() -> UserLookup {
    UserLookup::Search {
        bind_dn: SERVICE_DN.into(),
        bind_password: Secret::new(SERVICE_PASSWORD),
        base_dn: "ou=people,dc=example,dc=test".into(),
        filter: "(&(objectClass=inetOrgPerson)(uid={username}))".into(),
    }
}

fn group_search() -> GroupLookup {
    GroupLookup::Search {
        base_dn: "ou=groups,dc=example,dc=test".into(),
        filter: "(&(objectClass=groupOfNames)(member={user_dn}))".into(),
        name_attribute: "cn".into(),
    }
}

fn dn_template() -> UserLookup {
    UserLookup::DnTemplate {
        dn_template: "uid={username},ou=people,dc=example,dc=test".into(),
    }
}

fn member_of() -> GroupLookup {
    GroupLookup::MemberOf {
        attribute: "memberOf".into(),
    }
}

async fn start() -> Slapd {
    tokio::task::spawn_blocking(Slapd::start)
        .await
        .expect("slapd start")
}

#[tokio::test]
async fn search_then_bind_reads_groups_by_search() {
    let slapd = start().await;
    let auth = LdapAuthenticator::new(config(&slapd, search_then_bind(), group_search())).unwrap();

    let alice = auth
        .authenticate("alice", "alice-password")
        .await
        .expect("good bind");
    assert_eq!(alice.subject, "uid=alice,ou=people,dc=example,dc=test");
    assert_eq!(alice.issuer, slapd.url);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(alice.name.as_deref(), Some("Alice Admin"));
    assert_eq!(alice.groups, ["eng-admins", "staff"]);
    assert_eq!(alice.expires_at, None);

    let carol = auth
        .authenticate("carol", "carol-password")
        .await
        .expect("good bind");
    assert!(carol.groups.is_empty());
    assert_eq!(carol.email, None);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_give_the_same_exact_error() {
    let slapd = start().await;
    for user in [search_then_bind(), dn_template()] {
        let auth = LdapAuthenticator::new(config(&slapd, user, group_search())).unwrap();
        let err = auth
            .authenticate("alice", "not-her-password")
            .await
            .unwrap_err();
        assert!(matches!(err, LdapError::InvalidCredentials), "{err:?}");
        assert_eq!(err.to_string(), "invalid username or password");

        let err = auth.authenticate("mallory", "whatever").await.unwrap_err();
        assert!(matches!(err, LdapError::InvalidCredentials), "{err:?}");
        assert_eq!(err.to_string(), "invalid username or password");
    }
}

#[tokio::test]
async fn an_empty_password_is_refused_before_any_bind() {
    let slapd = start().await;
    for user in [search_then_bind(), dn_template()] {
        let auth = LdapAuthenticator::new(config(&slapd, user, group_search())).unwrap();
        let err = auth.authenticate("alice", "").await.unwrap_err();
        assert!(matches!(err, LdapError::EmptyPassword), "{err:?}");
        assert_eq!(err.to_string(), "password must not be empty");
    }
}

#[tokio::test]
async fn filter_and_dn_injection_in_the_username_find_nobody() {
    let slapd = start().await;
    let search =
        LdapAuthenticator::new(config(&slapd, search_then_bind(), group_search())).unwrap();
    // Unescaped, `a*` would match exactly alice, and her password would
    // then sign in someone who typed "a*"; the other two widen the filter.
    for username in ["a*", "*", "alice)(uid=*", "*)(|(uid=*", "alice\\2a"] {
        let err = search
            .authenticate(username, "alice-password")
            .await
            .unwrap_err();
        assert!(
            matches!(err, LdapError::InvalidCredentials),
            "{username}: {err:?}"
        );
    }
    // DN template: a username that tries to add DN components stays one
    // (escaped) value, naming no entry.
    let template = LdapAuthenticator::new(config(&slapd, dn_template(), member_of())).unwrap();
    for username in ["alice,ou=people", "alice+cn=x", "*"] {
        let err = template
            .authenticate(username, "alice-password")
            .await
            .unwrap_err();
        assert!(
            matches!(err, LdapError::InvalidCredentials),
            "{username}: {err:?}"
        );
    }
    // And the real name still works.
    search
        .authenticate("alice", "alice-password")
        .await
        .unwrap();
}

#[tokio::test]
async fn dn_template_reads_groups_from_member_of() {
    let slapd = start().await;
    let auth = LdapAuthenticator::new(config(&slapd, dn_template(), member_of())).unwrap();
    let bob = auth
        .authenticate("bob", "bob-password")
        .await
        .expect("good bind");
    assert_eq!(bob.subject, "uid=bob,ou=people,dc=example,dc=test");
    assert_eq!(bob.groups, ["staff"]);
    let alice = auth
        .authenticate("alice", "alice-password")
        .await
        .expect("good bind");
    assert_eq!(alice.groups, ["eng-admins", "staff"]);
}

#[tokio::test]
async fn a_wrong_service_password_is_a_configuration_error() {
    let slapd = start().await;
    let user = UserLookup::Search {
        bind_dn: SERVICE_DN.into(),
        bind_password: Secret::new("stale-password"),
        base_dn: "ou=people,dc=example,dc=test".into(),
        filter: "(uid={username})".into(),
    };
    let auth = LdapAuthenticator::new(config(&slapd, user, group_search())).unwrap();
    let err = auth
        .authenticate("alice", "alice-password")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapError::ServiceBind { rc: 49 }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the LDAP service account could not bind (result code 49)"
    );
}

#[tokio::test]
async fn a_stopped_directory_is_a_connection_error() {
    let slapd = start().await;
    let config = config(&slapd, dn_template(), member_of());
    drop(slapd);
    let auth = LdapAuthenticator::new(config.clone()).unwrap();
    let err = auth
        .authenticate("alice", "alice-password")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapError::Connect { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("could not connect to the directory at {}", config.url)
    );
}

#[tokio::test]
async fn starttls_and_ldaps_verify_the_directory_certificate() {
    let slapd = tokio::task::spawn_blocking(Slapd::start_with_tls)
        .await
        .expect("slapd start");
    let ca_file = slapd.ca_file.clone().unwrap();

    let mut starttls = config(&slapd, search_then_bind(), group_search());
    starttls.tls = LdapTls::StartTls;
    starttls.ca_file = Some(ca_file.clone());
    let alice = LdapAuthenticator::new(starttls.clone())
        .unwrap()
        .authenticate("alice", "alice-password")
        .await;
    assert_eq!(
        alice.expect("StartTLS sign-in").groups,
        ["eng-admins", "staff"]
    );

    let mut ldaps = config(&slapd, dn_template(), member_of());
    ldaps.url = slapd.ldaps_url.clone().unwrap();
    ldaps.ca_file = Some(ca_file);
    let alice = LdapAuthenticator::new(ldaps.clone())
        .unwrap()
        .authenticate("alice", "alice-password")
        .await;
    assert_eq!(
        alice.expect("LDAPS sign-in").groups,
        ["eng-admins", "staff"]
    );

    // Without our CA the system roots apply, and the test CA is not among
    // them: the password is never sent to a server we cannot verify.
    for mut untrusted in [starttls, ldaps] {
        untrusted.ca_file = None;
        let err = LdapAuthenticator::new(untrusted)
            .unwrap()
            .authenticate("alice", "alice-password")
            .await
            .unwrap_err();
        assert!(matches!(err, LdapError::Connect { .. }), "{err:?}");
        let cause = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(
            cause.contains("UnknownIssuer"),
            "not a certificate error: {cause}"
        );
    }
}
