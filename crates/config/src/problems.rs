//! Configuration problems: each names the key path it concerns and says what is wrong,
//! never the value of a secret. [`ConfigErrors`] carries every problem found in one pass.

use std::fmt;

/// One thing wrong with the configuration, at a key path such as `ping.base_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`maps.language_to_primero."Swahili, Congo"`, `web.operators[0].name`).
    pub path: String,
    /// What is wrong, without secret values.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found while loading a configuration (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems, in the order the keys were read.
    pub problems: Vec<Problem>,
}

impl ConfigErrors {
    /// The problems concerning exactly `path`.
    pub fn at<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems.iter().filter(move |p| p.path == path)
    }

    /// Whether some problem concerns exactly `path`.
    pub fn has(&self, path: &str) -> bool {
        self.at(path).next().is_some()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Formats one key of a path: bare when TOML allows it, else quoted.
pub(crate) fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key_segment(key)
    } else {
        format!("{parent}.{}", key_segment(key))
    }
}
