//! Fault injection rules (`POST /_sim/faults`), shared in shape with the PING simulator:
//! per-endpoint status codes, latency, dropped connections and malformed JSON.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with `status` (error envelope, `Retry-After` when `retry_after_secs`).
    Status,
    /// Add `ms` milliseconds before answering.
    Latency,
    /// Close the connection without a response.
    Drop,
    /// Answer 200 with a truncated JSON body.
    MalformedJson,
}

impl FaultKind {
    /// The serialised name (as in the rules and the request log).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status => "status",
            FaultKind::Latency => "latency",
            FaultKind::Drop => "drop",
            FaultKind::MalformedJson => "malformed_json",
        }
    }
}

/// One fault rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRule {
    /// Endpoint name (`cases_list`, `case_get`, ..., `tokens`) or `*`.
    pub endpoint: String,
    /// Kind.
    pub kind: FaultKind,
    /// Status for `status` rules (default 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` value for `status` rules.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Delay for `latency` rules.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Chance of applying (default 1.0).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Maximum number of applications (default unlimited).
    #[serde(default)]
    pub times: Option<u32>,
    /// Applications so far.
    #[serde(default)]
    pub applied: u32,
}

/// Body of `POST /_sim/faults`.
#[derive(Clone, Debug, Deserialize)]
pub struct FaultSet {
    /// Replacement rule set.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Invalidate every issued JWT and session.
    #[serde(default)]
    pub expire_tokens: bool,
}

/// The faults chosen for one request.
#[derive(Clone, Debug, Default)]
pub struct Chosen {
    /// Total added latency.
    pub latency_ms: u64,
    /// The terminal fault (status / drop / malformed), if any.
    pub terminal: Option<FaultRule>,
}

/// Picks the rules that apply to `endpoint`, consuming their `times`.
pub fn choose(rules: &mut [FaultRule], endpoint: &str) -> Chosen {
    let mut chosen = Chosen::default();
    let mut rng = rand::thread_rng();
    for r in rules.iter_mut() {
        if r.endpoint != "*" && r.endpoint != endpoint {
            continue;
        }
        if let Some(t) = r.times {
            if r.applied >= t {
                continue;
            }
        }
        if r.kind != FaultKind::Latency && chosen.terminal.is_some() {
            continue;
        }
        let p = r.probability.unwrap_or(1.0);
        if p < 1.0 && rng.gen::<f64>() >= p {
            continue;
        }
        r.applied += 1;
        match r.kind {
            FaultKind::Latency => chosen.latency_ms += r.ms.unwrap_or(0),
            _ => chosen.terminal = Some(r.clone()),
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_limits_applications_and_endpoints_filter() {
        let mut rules = vec![FaultRule {
            endpoint: "cases_list".into(),
            kind: FaultKind::Status,
            status: Some(503),
            retry_after_secs: None,
            ms: None,
            probability: None,
            times: Some(2),
            applied: 0,
        }];
        assert!(choose(&mut rules, "case_get").terminal.is_none());
        assert!(choose(&mut rules, "cases_list").terminal.is_some());
        assert!(choose(&mut rules, "cases_list").terminal.is_some());
        assert!(choose(&mut rules, "cases_list").terminal.is_none());
    }
}
