//! Reduction of PING's free-text messages (`ErrorMessage`, per-record failures) to field names,
//! codes and system identifiers.
//!
//! A server may echo a submitted value in its message ("invalid value 'Lindah' for
//! progres_givenname"). Such messages end up in errors, logs and the ledger, so everything
//! that looks like an echoed value is replaced by `***` before a message leaves this crate:
//! quoted text that is not an identifier, e-mail addresses, dates, phone-like numbers, long
//! digit runs, and the value half of `key=value` / `value X` phrases.

use std::sync::OnceLock;

use regex::Regex;

/// What replaces a masked value.
pub const MASK: &str = "***";

/// Longest message kept (in characters); the rest is cut.
const MAX_CHARS: usize = 300;

fn guid_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$",
        )
        .expect("static regex")
    })
}

fn field_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[A-Za-z][A-Za-z0-9]*([._][A-Za-z0-9]+)+$").expect("static regex")
    })
}

fn system_id_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // SHP-2747, PNR-1363, INT-1436, intervention numbers such as 803-23-PRTITV-1000642.
    RE.get_or_init(|| {
        Regex::new(r"^(SHP|PNR|INT)-[0-9]+$|^[0-9]{3}-[0-9]{2}-[A-Z]{2,10}-[0-9]{4,10}$")
            .expect("static regex")
    })
}

fn date_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2}[/.][0-9]{1,2}[/.][0-9]{2,4}")
            .expect("static regex")
    })
}

/// True for a GUID (optionally in braces).
pub fn is_guid(s: &str) -> bool {
    guid_re().is_match(s.trim())
}

/// True for strings that are safe to keep: GUIDs, option codes and short numbers, field
/// names such as `progres_pocsex` or `systemuser.title`, PING/proGres identifiers.
pub fn is_identifier(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() {
        return true;
    }
    if s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    guid_re().is_match(s) || system_id_re().is_match(s) || field_name_re().is_match(s)
}

/// True for a single unquoted word that looks like a personal value.
fn looks_like_value(word: &str) -> bool {
    if word.contains('@') || date_re().is_match(word) {
        return true;
    }
    if word.len() > 1 && word.starts_with('+') && word[1..].bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // A code range such as 125080000..125080003.
    if let Some((a, b)) = word.split_once("..") {
        if is_identifier(a) && is_identifier(b) && !a.is_empty() && !b.is_empty() {
            return false;
        }
    }
    let digits = word.bytes().filter(|b| b.is_ascii_digit()).count();
    if word.bytes().all(|b| b.is_ascii_digit()) {
        return digits > 9;
    }
    if guid_re().is_match(word) || system_id_re().is_match(word) {
        return false;
    }
    // Phone-like: digits with separators only (+254 712-345 678, (0)712.34.56).
    let phone_chars = word
        .chars()
        .all(|c| c.is_ascii_digit() || "+-().".contains(c));
    phone_chars && digits >= 6
}

/// Splits `word` into (leading punctuation, core, trailing punctuation).
fn split_punct(word: &str) -> (&str, &str, &str) {
    let is_p = |c: char| "([{<".contains(c);
    let is_t = |c: char| ".,;:)]}>!?".contains(c);
    let start = word.len() - word.trim_start_matches(is_p).len();
    let rest = &word[start..];
    let core = rest.trim_end_matches(is_t);
    (&word[..start], core, &rest[core.len()..])
}

/// Replaces quoted text that is not an identifier. Double quotes, backticks and curly quotes
/// always delimit; a single quote opens only after a non-alphanumeric character and closes only
/// before one, so that apostrophes ("doesn't") are left alone.
fn mask_quoted(msg: &str) -> String {
    let chars: Vec<char> = msg.chars().collect();
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let closer = match c {
            '"' => Some('"'),
            '`' => Some('`'),
            '\u{201C}' => Some('\u{201D}'),
            '\'' if i == 0 || !chars[i - 1].is_alphanumeric() => Some('\''),
            _ => None,
        };
        if let Some(close) = closer {
            let end = (i + 1..chars.len()).find(|&j| {
                chars[j] == close
                    && (close != '\'' || j + 1 == chars.len() || !chars[j + 1].is_alphanumeric())
            });
            if let Some(end) = end {
                let inner: String = chars[i + 1..end].iter().collect();
                out.push(c);
                if is_identifier(&inner) {
                    out.push_str(&inner);
                } else {
                    out.push_str(MASK);
                }
                out.push(close);
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Masks unquoted words that look like values, and the word after "value"/"values"/"is".
fn mask_words(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut mask_next = false;
    let mut rest = msg;
    while !rest.is_empty() {
        let ws_len = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws_len]);
        rest = &rest[ws_len..];
        if rest.is_empty() {
            break;
        }
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..word_len];
        rest = &rest[word_len..];

        let (pre, core, post) = split_punct(word);
        let already_masked = core.contains(MASK);
        let masked_core: String = if already_masked || core.is_empty() {
            core.to_string()
        } else if let Some((k, v)) = core.split_once(['=', ':']).filter(|(k, v)| {
            !k.is_empty() && !v.is_empty() && !v.starts_with("//") && is_identifier(k)
        }) {
            let sep = &core[k.len()..k.len() + 1];
            if is_identifier(v) {
                core.to_string()
            } else {
                format!("{k}{sep}{MASK}")
            }
        } else if (mask_next && !is_identifier(core)) || looks_like_value(core) {
            MASK.to_string()
        } else {
            core.to_string()
        };
        out.push_str(pre);
        out.push_str(&masked_core);
        out.push_str(post);
        let lower = core.to_ascii_lowercase();
        // "value X", "value: X", "values X": the next word is an echoed value.
        mask_next = matches!(lower.as_str(), "value" | "values" | "value:" | "values:")
            || (mask_next && core.is_empty());
        if post.contains(':') && matches!(lower.as_str(), "value" | "values") {
            mask_next = true;
        }
    }
    out
}

/// Reduces a server message to identifiers (see the module doc); cut to 300 characters.
pub fn mask_message(msg: &str) -> String {
    let cut: String = msg.chars().take(MAX_CHARS).collect();
    let cut = cut.replace(['\r', '\n', '\t'], " ");
    let masked = mask_words(&mask_quoted(&cut));
    if msg.chars().count() > MAX_CHARS {
        format!("{masked}…")
    } else {
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_survive() {
        let m = "Field 'progres_comments_displayfield' is not allowed for SHP-2748 (record 68b20e2a-4879-ee11-8179-000d3a43f6eb)";
        assert_eq!(mask_message(m), m);
        assert_eq!(
            mask_message(
                "field 'progres_pocsex' is not a valid option code (allowed 125080000..125080003)"
            ),
            "field 'progres_pocsex' is not a valid option code (allowed 125080000..125080003)"
        );
        assert_eq!(
            mask_message("Invalid option code 125080009 for progres_pocsex"),
            "Invalid option code 125080009 for progres_pocsex"
        );
    }

    #[test]
    fn quoted_values_are_masked() {
        assert_eq!(
            mask_message("invalid value 'Lindah' for progres_givenname"),
            "invalid value '***' for progres_givenname"
        );
        assert_eq!(
            mask_message(r#"Value "Unknown" is not valid for progres_pocsex"#),
            r#"Value "***" is not valid for progres_pocsex"#
        );
        assert_eq!(
            mask_message("record doesn't match 'Maria Alejandra'"),
            "record doesn't match '***'"
        );
    }

    #[test]
    fn unquoted_values_are_masked() {
        assert_eq!(
            mask_message("progres_pocsex=Unknown rejected"),
            "progres_pocsex=*** rejected"
        );
        assert_eq!(
            mask_message("bad value Lindah for progres_givenname"),
            "bad value *** for progres_givenname"
        );
        assert_eq!(
            mask_message("phone +254 712-345-678 and mail a.b@example.org, born 2012-03-04."),
            "phone *** *** and mail ***, born ***."
        );
        assert_eq!(mask_message("id 07123456789"), "id ***");
    }

    #[test]
    fn long_messages_are_cut() {
        let m = "x ".repeat(400);
        assert!(mask_message(&m).chars().count() <= MAX_CHARS + 1);
    }
}
