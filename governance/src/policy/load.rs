//! Loading policy files: parse, name every policy by its `@id`, validate
//! the whole set against the schema, and point every error at
//! `file:line:column`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

use super::{GOVERNANCE_POLICIES, PolicyConfig, ROLES_POLICIES, SCHEMA};

/// One problem in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    /// The file (`<builtin>/roles.cedar` for built-in ones).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong (Cedar's message, or ours).
    pub message: String,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why the policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The policy directory or a file in it could not be read.
    #[error("cannot read policies from {path}: {source}")]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Policies do not parse, lack an `@id`, repeat one, or fail
    /// validation against the schema. Every problem found is listed.
    #[error("{}", list(.0))]
    Invalid(Vec<PolicyDiagnostic>),
    /// The configured time zone is unknown.
    #[error("unknown time zone {name:?}: {reason}")]
    TimeZone {
        /// The name configured.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The built-in schema does not parse (a bug in this build).
    #[error("the built-in policy schema is invalid: {0}")]
    Schema(String),
}

fn list(diagnostics: &[PolicyDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A policy file's text.
struct Source {
    name: String,
    text: String,
}

impl Source {
    /// 1-based line and column of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn diagnostic(&self, offset: usize, message: String) -> PolicyDiagnostic {
        let (line, column) = self.position(offset);
        PolicyDiagnostic {
            file: self.name.clone(),
            line,
            column,
            message,
        }
    }
}

/// The offset of the first labelled span of a Cedar diagnostic.
fn offset_of(diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
}

/// The policy set and what the engine needs to explain decisions.
pub(super) struct Loaded {
    pub set: PolicySet,
    /// Load order of each policy: built-ins first, then files by name;
    /// the earliest determining policy is the one a decision names.
    pub order: HashMap<String, usize>,
    /// `@reason` of each policy that has one.
    pub reasons: HashMap<String, String>,
    /// Permit or forbid, by id.
    pub effects: HashMap<String, Effect>,
}

fn read_sources(config: &PolicyConfig) -> Result<Vec<Source>, PolicyLoadError> {
    let mut sources = vec![Source {
        name: "<builtin>/roles.cedar".into(),
        text: ROLES_POLICIES.into(),
    }];
    if config.builtin_governance {
        sources.push(Source {
            name: "<builtin>/governance.cedar".into(),
            text: GOVERNANCE_POLICIES.into(),
        });
    }
    if let Some(dir) = &config.dir {
        let read = |path: &Path, source| PolicyLoadError::Read {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
            let path = entry.map_err(|e| read(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
            sources.push(Source {
                name: path.display().to_string(),
                text,
            });
        }
    }
    Ok(sources)
}

/// Parses the built-in schema.
pub(super) fn schema() -> Result<Schema, PolicyLoadError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| PolicyLoadError::Schema(e.to_string()))
}

/// Reads, parses and validates every policy `config` names.
pub(super) fn load(config: &PolicyConfig, schema: &Schema) -> Result<Loaded, PolicyLoadError> {
    let sources = read_sources(config)?;
    let mut diagnostics = Vec::new();
    let mut set = PolicySet::new();
    let mut loaded = Loaded {
        set: PolicySet::new(),
        order: HashMap::new(),
        reasons: HashMap::new(),
        effects: HashMap::new(),
    };
    // Where each id was defined, for validation errors and duplicates.
    let mut defined: HashMap<String, (usize, usize)> = HashMap::new();
    for (file_index, source) in sources.iter().enumerate() {
        let parsed = match PolicySet::from_str(&source.text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in errors.iter() {
                    let offset = offset_of(error).unwrap_or(0);
                    diagnostics.push(source.diagnostic(offset, error.to_string()));
                }
                continue;
            }
        };
        for template in parsed.templates() {
            let offset = source.text.find(&template.to_cedar()).unwrap_or(0);
            diagnostics.push(source.diagnostic(
                offset,
                "policy templates (?principal, ?resource) are not supported".into(),
            ));
        }
        // Policies come back named policy0, policy1... in file order; find
        // each one's text in the file, in order, for its position.
        let mut policies: Vec<_> = parsed.policies().collect();
        policies.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut cursor = 0;
        for policy in policies {
            let offset = policy
                .to_cedar()
                .and_then(|text| {
                    let found = source.text[cursor..].find(&text)? + cursor;
                    cursor = found + text.len();
                    Some(found)
                })
                .unwrap_or(cursor);
            let Some(id) = policy.annotation("id").map(str::to_owned) else {
                diagnostics.push(source.diagnostic(
                    offset,
                    "this policy has no @id(\"...\") annotation; every policy needs one so denials can name it".into(),
                ));
                continue;
            };
            if let Some((first_file, first_offset)) = defined.get(&id) {
                let first = &sources[*first_file];
                let (line, _) = first.position(*first_offset);
                diagnostics.push(source.diagnostic(
                    offset,
                    format!("policy id {id:?} is already used at {}:{line}", first.name),
                ));
                continue;
            }
            defined.insert(id.clone(), (file_index, offset));
            if let Some(reason) = policy.annotation("reason") {
                loaded.reasons.insert(id.clone(), reason.to_owned());
            }
            loaded.effects.insert(id.clone(), policy.effect());
            loaded.order.insert(id.clone(), loaded.order.len());
            let renamed = policy.new_id(PolicyId::new(&id));
            if let Err(error) = set.add(renamed) {
                diagnostics.push(source.diagnostic(offset, error.to_string()));
            }
        }
    }
    if diagnostics.is_empty() {
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in validation.validation_errors() {
            let id = error.policy_id().to_string();
            let Some(&(file_index, policy_offset)) = defined.get(&id) else {
                continue;
            };
            let offset = offset_of(error).unwrap_or(policy_offset);
            let diagnostic = sources[file_index].diagnostic(
                offset,
                format!("policy {id:?} does not match the schema: {error}"),
            );
            // One mistake is often reported once per resource type it
            // could apply to: keep the first report of each position.
            if !diagnostics.iter().any(|d: &PolicyDiagnostic| {
                (&d.file, d.line, d.column)
                    == (&diagnostic.file, diagnostic.line, diagnostic.column)
            }) {
                diagnostics.push(diagnostic);
            }
        }
        for warning in validation.validation_warnings() {
            tracing::warn!(%warning, "policy validation warning");
        }
    }
    if !diagnostics.is_empty() {
        return Err(PolicyLoadError::Invalid(diagnostics));
    }
    loaded.set = set;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let source = Source {
            name: "x".into(),
            text: "ab\ncdé\nf".into(),
        };
        assert_eq!(source.position(0), (1, 1));
        assert_eq!(source.position(4), (2, 2));
        assert_eq!(source.position(8), (3, 1));
    }

    #[test]
    fn the_built_in_policies_load_and_validate() {
        let schema = schema().unwrap();
        let loaded = load(&PolicyConfig::default(), &schema).unwrap();
        assert!(loaded.order.contains_key("roles.members"));
        assert!(loaded.order.contains_key("governance.two-admin-deletion"));
        assert!(loaded.order["roles.members"] < loaded.order["governance.two-admin-deletion"]);
    }
}
