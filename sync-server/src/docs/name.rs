//! Document names: what a URL may name, checked once at the edge.

use std::fmt;
use std::sync::Arc;

/// Longest document name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 255;

/// A validated document name: 1–255 characters from `[A-Za-z0-9._~-]` and
/// `/`. The part before the first `/` is the document's workspace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocName(Arc<str>);

/// Why a document name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("document name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("document name is {len} characters; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error(
        "document name contains {found:?} at position {position}; allowed are A-Z a-z 0-9 . _ ~ - and /"
    )]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its 0-based character position.
        position: usize,
    },
}

impl DocName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some((position, found)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-' | '/')))
        {
            return Err(NameError::BadCharacter { found, position });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: name.len() });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The workspace: the part before the first `/`, or the whole name.
    pub fn workspace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DocName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        let name = DocName::parse("acme/notes-2024_v1.0~draft").unwrap();
        assert_eq!(name.workspace(), "acme");
        assert_eq!(DocName::parse("solo").unwrap().workspace(), "solo");
        assert!(DocName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn refuses_with_a_reason() {
        assert_eq!(DocName::parse(""), Err(NameError::Empty));
        assert_eq!(
            DocName::parse(&"a".repeat(256)),
            Err(NameError::TooLong { len: 256 })
        );
        assert_eq!(
            DocName::parse("a b"),
            Err(NameError::BadCharacter {
                found: ' ',
                position: 1
            })
        );
        assert!(DocName::parse("é").is_err());
        assert!(DocName::parse("a%2Fb").is_err());
    }
}
