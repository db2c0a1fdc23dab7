//! Workspace roles, and the configuration that grants them to groups.
//!
//! Groups come from the identity provider (an ID token's groups claim, a
//! bearer token's, or LDAP group membership); the server's configuration
//! says which group gets which role in which workspace:
//!
//! ```toml
//! [[rules]]
//! group = "eng-admins"
//! workspace = "acme"
//! role = "admin"
//!
//! [[rules]]
//! group = "staff"
//! workspace = "*"        # every workspace
//! role = "viewer"
//! ```
//!
//! A person in several matching groups gets the highest of their roles in
//! each workspace. No rule ever lowers a role, so rules can be read (and
//! audited) one at a time.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The workspace name that stands for every workspace in a [`RoleRule`].
pub const ANY_WORKSPACE: &str = "*";

/// What someone may do in a workspace, from least to most privileged.
///
/// The derived order is the privilege order (`Viewer < Commenter < Editor <
/// Admin < Owner`), so "the highest role" is plain `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads documents.
    Viewer,
    /// Reads documents and comments on them.
    Commenter,
    /// Reads and edits documents.
    Editor,
    /// Manages the workspace's members and settings, besides editing.
    Admin,
    /// Everything an admin does, and may delete or hand over the workspace.
    Owner,
}

impl Role {
    /// Every role, from least to most privileged.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Commenter,
        Role::Editor,
        Role::Admin,
        Role::Owner,
    ];

    /// The role's name as configuration spells it (`"editor"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Commenter => "commenter",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// 1 (viewer) to 5 (owner), as policies see it in `granted_role_rank`.
    pub fn rank(self) -> i64 {
        self as i64 + 1
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| RoleError::UnknownRole(s.to_owned()))
    }
}

/// Errors from reading roles and role rules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    /// A role name that is not one of owner, admin, editor, commenter, viewer.
    #[error("unknown role {0:?}: expected one of owner, admin, editor, commenter, viewer")]
    UnknownRole(String),
    /// A rule whose group name is empty, which could never match anything.
    #[error("a role rule has an empty group name")]
    EmptyGroup,
    /// A rule whose workspace name is empty (use \"*\" for every workspace).
    #[error(
        "the role rule for group {group:?} has an empty workspace name (use \"*\" for every workspace)"
    )]
    EmptyWorkspace {
        /// The rule's group.
        group: String,
    },
}

/// One line of a [`GroupMapping`]: members of `group` get `role` in
/// `workspace`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    /// Group name exactly as the provider sends it (case matters: providers
    /// differ on whether `Eng` and `eng` are the same group, so the safe
    /// reading is that they are not). For Azure AD this is the group's
    /// object ID unless the app registration emits names.
    pub group: String,
    /// Workspace the role applies in, or [`ANY_WORKSPACE`] (`"*"`) for all.
    pub workspace: String,
    /// The role granted.
    pub role: Role,
}

/// Configuration mapping groups to workspace roles.
///
/// Deserialize it from the server's configuration file (see the
/// [module docs](self) for the TOML form); rules are checked while parsing,
/// so a typo in a role name stops the server at startup, not at sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupMapping {
    /// The rules, in any order: the result does not depend on it.
    pub rules: Vec<RoleRule>,
}

impl GroupMapping {
    /// A mapping from rules, checking each one.
    pub fn new(rules: Vec<RoleRule>) -> Result<Self, RoleError> {
        for rule in &rules {
            if rule.group.is_empty() {
                return Err(RoleError::EmptyGroup);
            }
            if rule.workspace.is_empty() {
                return Err(RoleError::EmptyWorkspace {
                    group: rule.group.clone(),
                });
            }
        }
        Ok(Self { rules })
    }

    /// The role in each workspace for someone in `groups`: the highest role
    /// any of their groups grants there.
    ///
    /// A wildcard rule's role is reported under the key `"*"` (the role in
    /// workspaces not named in the map) and is already folded into every
    /// named workspace's entry, so `map[workspace]` is the effective role and
    /// [`role_in`](Self::role_in) needs no second lookup.
    pub fn roles_for<S: AsRef<str>>(&self, groups: &[S]) -> BTreeMap<String, Role> {
        let mut roles: BTreeMap<String, Role> = BTreeMap::new();
        let matching = self
            .rules
            .iter()
            .filter(|rule| groups.iter().any(|g| g.as_ref() == rule.group));
        for rule in matching {
            let entry = roles.entry(rule.workspace.clone()).or_insert(rule.role);
            *entry = (*entry).max(rule.role);
        }
        if let Some(&everywhere) = roles.get(ANY_WORKSPACE) {
            for role in roles.values_mut() {
                *role = (*role).max(everywhere);
            }
        }
        roles
    }

    /// The role someone in `groups` has in `workspace`, if any.
    pub fn role_in<S: AsRef<str>>(&self, groups: &[S], workspace: &str) -> Option<Role> {
        self.rules
            .iter()
            .filter(|rule| rule.workspace == workspace || rule.workspace == ANY_WORKSPACE)
            .filter(|rule| groups.iter().any(|g| g.as_ref() == rule.group))
            .map(|rule| rule.role)
            .max()
    }
}

impl<'de> Deserialize<'de> for GroupMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            rules: Vec<RoleRule>,
        }
        let raw = Raw::deserialize(deserializer)?;
        GroupMapping::new(raw.rules).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(toml_text: &str) -> GroupMapping {
        toml::from_str(toml_text).expect("valid mapping")
    }

    const EXAMPLE: &str = r#"
        [[rules]]
        group = "eng-admins"
        workspace = "acme"
        role = "admin"

        [[rules]]
        group = "eng"
        workspace = "acme"
        role = "editor"

        [[rules]]
        group = "staff"
        workspace = "*"
        role = "viewer"

        [[rules]]
        group = "reviewers"
        workspace = "docs"
        role = "commenter"

        [[rules]]
        group = "founders"
        workspace = "*"
        role = "owner"
    "#;

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(Role::Viewer < Role::Commenter);
        assert!(Role::Commenter < Role::Editor);
        assert!(Role::Editor < Role::Admin);
        assert!(Role::Admin < Role::Owner);
        assert_eq!(Role::ALL.iter().max(), Some(&Role::Owner));
    }

    #[test]
    fn role_names_round_trip_through_display_and_from_str() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert_eq!(
            "superuser".parse::<Role>(),
            Err(RoleError::UnknownRole("superuser".into()))
        );
        // Names are exact: configuration is not guessed at.
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn highest_role_per_workspace_wins() {
        let m = mapping(EXAMPLE);
        let roles = m.roles_for(&["eng", "eng-admins"]);
        assert_eq!(roles, BTreeMap::from([("acme".to_owned(), Role::Admin)]));
    }

    #[test]
    fn wildcard_applies_everywhere_and_folds_into_named_workspaces() {
        let m = mapping(EXAMPLE);
        let roles = m.roles_for(&["staff", "reviewers", "eng"]);
        assert_eq!(
            roles,
            BTreeMap::from([
                ("*".to_owned(), Role::Viewer),
                ("acme".to_owned(), Role::Editor),
                ("docs".to_owned(), Role::Commenter),
            ])
        );
        // A wildcard above a named rule lifts the named one.
        let roles = m.roles_for(&["founders", "eng"]);
        assert_eq!(roles["acme"], Role::Owner);
        assert_eq!(roles["*"], Role::Owner);
        assert_eq!(m.role_in(&["founders"], "anything"), Some(Role::Owner));
    }

    #[test]
    fn role_in_combines_named_and_wildcard_rules() {
        let m = mapping(EXAMPLE);
        assert_eq!(m.role_in(&["staff"], "acme"), Some(Role::Viewer));
        assert_eq!(m.role_in(&["staff", "eng"], "acme"), Some(Role::Editor));
        assert_eq!(m.role_in(&["eng"], "other"), None);
        assert_eq!(m.role_in::<&str>(&[], "acme"), None);
    }

    #[test]
    fn unknown_groups_get_nothing_and_names_are_case_sensitive() {
        let m = mapping(EXAMPLE);
        assert!(m.roles_for(&["ENG-ADMINS", "contractors"]).is_empty());
        assert!(m.roles_for::<String>(&[]).is_empty());
    }

    #[test]
    fn bad_configuration_is_rejected_with_its_reason() {
        let err = toml::from_str::<GroupMapping>(
            "[[rules]]\ngroup = \"g\"\nworkspace = \"w\"\nrole = \"god\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown variant `god`"), "{err}");

        let err = toml::from_str::<GroupMapping>(
            "[[rules]]\ngroup = \"g\"\nworkspace = \"\"\nrole = \"viewer\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "the role rule for group \"g\" has an empty workspace name (use \"*\" for every workspace)"
            ),
            "{err}"
        );

        let err = toml::from_str::<GroupMapping>(
            "[[rules]]\ngroup = \"\"\nworkspace = \"w\"\nrole = \"viewer\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("a role rule has an empty group name"),
            "{err}"
        );

        let err = toml::from_str::<GroupMapping>(
            "[[rules]]\ngroup = \"g\"\nworkspace = \"w\"\nrole = \"viewer\"\nscope = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `scope`"), "{err}");
    }

    #[test]
    fn an_empty_mapping_is_valid() {
        assert_eq!(mapping(""), GroupMapping::default());
    }
}
