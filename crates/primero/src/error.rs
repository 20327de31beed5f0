//! Errors of the Primero client, classified for the retry loop ([`pp_http::Retryable`]) and for
//! the ledger (transient / permanent / auth).
//!
//! A server may echo submitted values in its messages (a name in a uniqueness error, a date in
//! a validation message). Everything taken from a response body is therefore reduced here to
//! words, field names, JSON pointers and codes: quoted spans, `=value` parts and tokens holding
//! digits or `@` are masked. `Display` never carries personal values, secrets or bodies.

use std::fmt;
use std::time::Duration;

use pp_http::{ErrorClass, Retryable};
use serde_json::Value;

/// The mask put in place of anything that could be a value.
pub(crate) const MASK: &str = "***";

/// A failed Primero call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimeroError {
    /// Credentials refused (401 after one re-login for token mode), or a login that yields no
    /// usable token. Ends the run.
    Auth {
        status: Option<u16>,
        message: String,
    },
    /// Timeout, connection failure, 5xx, 429: retried within the call, then left for the next
    /// run.
    Transient {
        status: Option<u16>,
        detail: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 4xx other than 401/404/429: the request is wrong; retrying will not help.
    Permanent {
        status: u16,
        /// The server's messages, reduced to words, codes and field names.
        message: String,
        /// JSON pointers / field names the server named (`/sex`, `consent`).
        details: Vec<String>,
    },
    /// The resource does not exist (404), named by its route template.
    NotFound { resource: &'static str },
    /// A success status with a body that is not the expected JSON. Treated as transient.
    Malformed { status: u16, detail: String },
    /// The call was refused before anything was sent (missing `module_id`, empty id, ...).
    InvalidRequest { reason: String },
}

impl PrimeroError {
    /// What the failure means for the record and the run.
    pub fn class(&self) -> ErrorClass {
        match self {
            PrimeroError::Auth { .. } => ErrorClass::Auth,
            PrimeroError::Transient { .. } | PrimeroError::Malformed { .. } => {
                ErrorClass::Transient
            }
            PrimeroError::Permanent { .. }
            | PrimeroError::NotFound { .. }
            | PrimeroError::InvalidRequest { .. } => ErrorClass::Permanent,
        }
    }

    /// The HTTP status the error came from, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PrimeroError::Auth { status, .. } | PrimeroError::Transient { status, .. } => *status,
            PrimeroError::Permanent { status, .. } | PrimeroError::Malformed { status, .. } => {
                Some(*status)
            }
            PrimeroError::NotFound { .. } => Some(404),
            PrimeroError::InvalidRequest { .. } => None,
        }
    }

    /// The JSON pointers / field names a 4xx named (empty for other errors).
    pub fn details(&self) -> &[String] {
        match self {
            PrimeroError::Permanent { details, .. } => details,
            _ => &[],
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        PrimeroError::InvalidRequest {
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(status: u16, detail: impl Into<String>) -> Self {
        PrimeroError::Malformed {
            status,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for PrimeroError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrimeroError::Auth { status, message } => {
                write!(f, "primero authentication failed")?;
                if let Some(s) = status {
                    write!(f, " ({s})")?;
                }
                write!(f, ": {message}")
            }
            PrimeroError::Transient { status, detail, .. } => {
                write!(f, "primero transient failure")?;
                if let Some(s) = status {
                    write!(f, " ({s})")?;
                }
                write!(f, ": {detail}")
            }
            PrimeroError::Permanent {
                status,
                message,
                details,
            } => {
                write!(f, "primero refused the request ({status}): {message}")?;
                if !details.is_empty() {
                    write!(f, " [{}]", details.join(", "))?;
                }
                Ok(())
            }
            PrimeroError::NotFound { resource } => write!(f, "primero: not found: {resource}"),
            PrimeroError::Malformed { status, detail } => {
                write!(
                    f,
                    "primero answered {status} with a malformed body: {detail}"
                )
            }
            PrimeroError::InvalidRequest { reason } => {
                write!(f, "invalid request to primero (not sent): {reason}")
            }
        }
    }
}

impl std::error::Error for PrimeroError {}

impl Retryable for PrimeroError {
    fn class(&self) -> ErrorClass {
        PrimeroError::class(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PrimeroError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Maps a transport error (no HTTP status) to an error, without reqwest's `Display` (which
/// includes the URL and its query string).
pub(crate) fn from_transport(err: &reqwest::Error) -> PrimeroError {
    let detail = pp_http::describe_transport(err).to_string();
    match pp_http::classify_transport(err) {
        ErrorClass::Transient => PrimeroError::Transient {
            status: None,
            detail,
            retry_after: None,
        },
        _ => PrimeroError::invalid(detail),
    }
}

/// Maps a non-2xx answer to an error. `route` names the resource for a 404.
pub(crate) fn from_response(
    route: &'static str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> PrimeroError {
    let (message, details) = parse_error_body(body);
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    if status == 404 {
        return PrimeroError::NotFound { resource: route };
    }
    match pp_http::classify_status(status) {
        ErrorClass::Auth => PrimeroError::Auth {
            status: Some(status),
            message,
        },
        ErrorClass::Transient => PrimeroError::Transient {
            status: Some(status),
            detail: message,
            retry_after: pp_http::parse_retry_after(headers),
        },
        ErrorClass::Permanent => PrimeroError::Permanent {
            status,
            message,
            details,
        },
    }
}

/// Reads Primero's error shapes: `{"errors":[{status,resource,message,detail}]}`, Devise's
/// `{"error":"..."}`, or plain text (rack-attack's `Retry later`). Returns the sanitised
/// message and the detail pointers.
pub(crate) fn parse_error_body(body: &[u8]) -> (String, Vec<String>) {
    let mut messages: Vec<String> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            if let Some(Value::Array(errors)) = map.get("errors") {
                for e in errors {
                    if let Some(m) = e.get("message") {
                        collect_strings(m, &mut messages, sanitize_message);
                    }
                    if let Some(d) = e.get("detail") {
                        collect_strings(d, &mut details, sanitize_detail);
                    }
                }
            }
            if let Some(e) = map.get("error") {
                collect_strings(e, &mut messages, sanitize_message);
            }
        }
        Ok(_) => {}
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let first = text.lines().map(str::trim).find(|l| !l.is_empty());
            if let Some(line) = first {
                if !line.starts_with('<') {
                    messages.push(sanitize_message(line));
                }
            }
        }
    }
    messages.retain(|m| !m.is_empty());
    messages.dedup();
    details.dedup();
    (messages.join("; "), details)
}

fn collect_strings(v: &Value, out: &mut Vec<String>, clean: fn(&str) -> String) {
    match v {
        Value::String(s) => out.push(clean(s)),
        Value::Array(items) => {
            for i in items {
                if let Value::String(s) = i {
                    out.push(clean(s));
                }
            }
        }
        _ => {}
    }
}

/// A detail is kept when it looks like a JSON pointer or a field name; anything else is
/// sanitised like a message.
pub(crate) fn sanitize_detail(s: &str) -> String {
    let s = s.trim();
    let pointer_like = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | '[' | ']'));
    if pointer_like {
        s.to_string()
    } else {
        sanitize_message(s)
    }
}

/// Reduces a server message to words and codes: quoted spans, `=value` parts and tokens holding
/// digits or `@` become `***`; the result is at most 200 characters.
pub(crate) fn sanitize_message(s: &str) -> String {
    let unquoted = mask_quoted(s);
    let mut words: Vec<String> = Vec::new();
    for token in unquoted.split_whitespace() {
        let token = match token.find('=') {
            Some(i) => format!("{}={MASK}", &token[..i]),
            None => token.to_string(),
        };
        let risky = token.chars().any(|c| c.is_ascii_digit() || c == '@');
        let word = if risky && token != MASK {
            MASK.to_string()
        } else {
            token
        };
        if word == MASK && words.last().map(String::as_str) == Some(MASK) {
            continue;
        }
        words.push(word);
    }
    let mut out = words.join(" ");
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "…";
    }
    out
}

/// Replaces `"…"`, `` `…` `` and `'…'` spans by the mask. A `'` opens a span only at the start
/// of a word (so "Couldn't" stays) and closes it only at the end of one.
fn mask_quoted(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens = match c {
            '"' | '`' | '“' | '«' => true,
            '\'' => i == 0 || !chars[i - 1].is_alphanumeric(),
            _ => false,
        };
        if !opens {
            out.push(c);
            i += 1;
            continue;
        }
        let close = match c {
            '“' => '”',
            '«' => '»',
            other => other,
        };
        let mut j = i + 1;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == close {
                let at_word_end =
                    close != '\'' || j + 1 == chars.len() || !chars[j + 1].is_alphanumeric();
                if at_word_end {
                    end = Some(j);
                    break;
                }
            }
            j += 1;
        }
        out.push_str(MASK);
        i = match end {
            Some(j) => j + 1,
            // An unclosed quote: everything after it may be a value.
            None => chars.len(),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_and_assignments_are_masked() {
        assert_eq!(
            sanitize_message("Couldn't find Child with 'id'=0f3c-11"),
            "Couldn't find Child with ***=***"
        );
        assert_eq!(
            sanitize_message("Name \"Aicha Bintou Diallo\" is taken"),
            "Name *** is taken"
        );
        assert_eq!(
            sanitize_message("Key (case_id)=(abc 123) already exists"),
            "Key (case_id)=*** *** already exists"
        );
        assert_eq!(
            sanitize_message("contact amina@example.org or +251911000000"),
            "contact *** or ***"
        );
        assert_eq!(
            sanitize_message("Invalid Record JSON"),
            "Invalid Record JSON"
        );
        assert_eq!(
            sanitize_message("transition.errors.to_user_can_receive"),
            "transition.errors.to_user_can_receive"
        );
        assert_eq!(sanitize_message("unclosed 'Aicha Diallo"), "unclosed ***");
    }

    #[test]
    fn pointers_survive_and_odd_details_are_sanitised() {
        assert_eq!(
            sanitize_detail("/services_section/0/unique_id"),
            "/services_section/0/unique_id"
        );
        assert_eq!(sanitize_detail("consent"), "consent");
        assert_eq!(sanitize_detail("bad 'Aicha'"), "bad ***");
    }

    #[test]
    fn error_envelopes_are_read() {
        let body = br#"{"errors":[{"status":422,"resource":"/api/v2/cases","detail":["/sex","/age"],"message":"Invalid Record JSON"}]}"#;
        let (m, d) = parse_error_body(body);
        assert_eq!(m, "Invalid Record JSON");
        assert_eq!(d, vec!["/sex".to_string(), "/age".to_string()]);

        let body = br#"{"errors":[{"status":422,"resource":"/x","detail":"transitioned_to","message":["transition.errors.to_user_can_receive"]}]}"#;
        let (m, d) = parse_error_body(body);
        assert_eq!(m, "transition.errors.to_user_can_receive");
        assert_eq!(d, vec!["transitioned_to".to_string()]);

        let (m, d) = parse_error_body(br#"{"error":"Invalid User name or password."}"#);
        assert_eq!(m, "Invalid User name or password.");
        assert!(d.is_empty());

        let (m, _) = parse_error_body(b"Retry later\n");
        assert_eq!(m, "Retry later");
        let (m, _) = parse_error_body(b"<html><body>Bad Gateway</body></html>");
        assert_eq!(m, "");
    }

    #[test]
    fn responses_are_classified() {
        let h = reqwest::header::HeaderMap::new();
        let e = from_response(
            "/api/v2/cases",
            422,
            &h,
            br#"{"errors":[{"status":422,"detail":["/sex"],"message":"Invalid Record JSON"}]}"#,
        );
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(e.details(), ["/sex".to_string()]);
        assert_eq!(
            e.to_string(),
            "primero refused the request (422): Invalid Record JSON [/sex]"
        );
        assert_eq!(
            from_response("/api/v2/cases/:id", 404, &h, b"").class(),
            ErrorClass::Permanent
        );
        assert_eq!(from_response("/r", 401, &h, b"").class(), ErrorClass::Auth);
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        let e = from_response("/r", 429, &h, b"Retry later");
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(Retryable::retry_after(&e), Some(Duration::from_secs(2)));
        assert_eq!(
            PrimeroError::malformed(200, "not JSON").class(),
            ErrorClass::Transient
        );
    }
}
