//! Length bounds and input checks applied before anything is written, so that no field of
//! the ledger can grow without limit and identifiers stay identifiers.

use crate::error::LedgerError;

/// Longest stored message (characters).
pub const MAX_MESSAGE: usize = 1000;
/// Longest reason code.
pub const MAX_REASON: usize = 100;
/// Longest run error.
pub const MAX_ERROR: usize = 1000;
/// Longest key, flow name, identifier or fact key.
pub const MAX_IDENT: usize = 512;
/// Longest name (dest id name, fact kind, operator, holder, count name).
pub const MAX_NAME: usize = 64;
/// Most PING transaction ids kept per record (oldest dropped first).
pub const MAX_PING_IDS: usize = 100;
/// Largest serialized fact value (bytes).
pub const MAX_FACT_BYTES: usize = 8192;

/// `s` cut to at most `max` characters (on a character boundary), control characters
/// replaced by spaces, with `…` marking a cut.
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    for (i, c) in s.chars().enumerate() {
        if i + 1 == max && s.chars().nth(max).is_some() {
            out.push('…');
            return out;
        }
        if i >= max {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// Optional variant of [`bounded`].
pub fn bounded_opt(s: Option<&str>, max: usize) -> Option<String> {
    s.map(|s| bounded(s, max))
}

/// Checks an identifier-like value: non-empty, at most `max` characters, no control characters.
pub fn check_ident(field: &'static str, value: &str, max: usize) -> Result<(), LedgerError> {
    if value.is_empty() {
        return Err(LedgerError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if value.chars().count() > max {
        return Err(LedgerError::Invalid {
            field,
            reason: format!("longer than {max} characters"),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(LedgerError::Invalid {
            field,
            reason: "contains control characters".into(),
        });
    }
    Ok(())
}

/// Checks a name: 1..=64 characters of `[A-Za-z0-9_.:-]`.
pub fn check_name(field: &'static str, value: &str) -> Result<(), LedgerError> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(LedgerError::Invalid {
            field,
            reason: format!("must have 1 to {MAX_NAME} characters"),
        });
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@'))
    {
        return Err(LedgerError::Invalid {
            field,
            reason: "allowed characters are A-Z a-z 0-9 _ - . : @".into(),
        });
    }
    Ok(())
}

/// Checks a payload hash: 16..=128 hexadecimal digits.
pub fn check_hash(value: &str) -> Result<(), LedgerError> {
    if !(16..=128).contains(&value.len()) || !value.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(LedgerError::Invalid {
            field: "payload_hash",
            reason: "must be 16 to 128 hexadecimal digits".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_char_boundary_and_marks_the_cut() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcde", 5), "abcde");
        assert_eq!(bounded("abcdef", 5), "abcd…");
        assert_eq!(bounded("ééééééé", 3), "éé…");
        assert_eq!(bounded("a\nb", 5), "a b");
        assert_eq!(bounded("abcdef", 5).chars().count(), 5);
    }

    #[test]
    fn names_and_hashes_are_checked() {
        assert!(check_name("n", "case_uuid").is_ok());
        assert!(check_name("n", "").is_err());
        assert!(check_name("n", "has space").is_err());
        assert!(check_hash("0123456789abcdef0123").is_ok());
        assert!(check_hash("xyz0123456789abcdef").is_err());
        assert!(check_ident("key", "k\u{0}", 10).is_err());
        assert!(check_ident("key", &"a".repeat(11), 10).is_err());
    }
}
