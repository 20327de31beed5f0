//! Fault injection: rules per endpoint (`status`, `latency`, `drop`, `malformed_json`, and
//! `apply_then_status` / `apply_then_drop`, which let the request be handled and then lose
//! its answer) with a probability and an optional number of applications. Same document
//! shape as the Primero simulator: `{"rules":[…], "expire_tokens": false}`.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Endpoint names a rule may target.
pub const ENDPOINTS: &[&str] = &["retrieve", "data", "asyncdata", "checkstatus", "token", "*"];

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with `status` (429 with `Retry-After` when `retry_after_secs` is set).
    Status,
    /// Wait `ms` before handling (the request is then handled normally).
    Latency,
    /// Close the connection without any response.
    Drop,
    /// Answer 200 with a truncated JSON body.
    MalformedJson,
    /// Handle the request normally (ingestions are applied or queued), then answer `status`
    /// instead of the real answer, which is lost.
    ApplyThenStatus,
    /// Handle the request normally, then close the connection without any response.
    ApplyThenDrop,
}

/// One fault rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `retrieve`, `data`, `asyncdata`, `checkstatus`, `token` or `*`.
    pub endpoint: String,
    /// What to do.
    pub kind: FaultKind,
    /// HTTP status for `status` and `apply_then_status` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` seconds for `status` and `apply_then_status` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Delay for `latency` rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Chance of applying, 0.0..=1.0 (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Remaining applications (None = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// The `POST /_sim/faults` document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsDoc {
    /// Replaces the rule set.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Invalidate every issued token now.
    #[serde(default)]
    pub expire_tokens: bool,
}

impl FaultsDoc {
    /// Checks every rule; returns the first problem.
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            if !ENDPOINTS.contains(&r.endpoint.as_str()) {
                return Err(format!(
                    "rules[{i}].endpoint must be one of {}",
                    ENDPOINTS.join(", ")
                ));
            }
            if let Some(p) = r.probability {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("rules[{i}].probability must be within 0..1"));
                }
            }
            match r.kind {
                FaultKind::Status | FaultKind::ApplyThenStatus => match r.status {
                    Some(s) if (100..=599).contains(&s) => {}
                    _ => {
                        return Err(format!(
                            "rules[{i}].status (100..599) is required for kind {}",
                            if r.kind == FaultKind::Status {
                                "status"
                            } else {
                                "apply_then_status"
                            }
                        ))
                    }
                },
                FaultKind::Latency if r.ms.is_none() => {
                    return Err(format!("rules[{i}].ms is required for kind latency"))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A terminal fault chosen for a request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Terminal {
    Status {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    Drop,
    Malformed,
    /// Handle the request, discard its answer, then answer like `Status`.
    ApplyThenStatus {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Handle the request, discard its answer, then drop the connection.
    ApplyThenDrop,
}

/// Faults chosen for one request.
#[derive(Default)]
pub(crate) struct Decision {
    pub latency_ms: u64,
    pub terminal: Option<Terminal>,
    pub label: Option<String>,
}

/// The active rule set.
#[derive(Default)]
pub(crate) struct FaultSet {
    pub rules: Vec<FaultRule>,
}

impl FaultSet {
    /// Picks the faults for a request to `endpoint`, consuming `times`.
    pub fn decide(&mut self, endpoint: &str) -> Decision {
        let mut d = Decision::default();
        let mut rng = rand::thread_rng();
        let mut labels = Vec::new();
        for r in self.rules.iter_mut() {
            if r.endpoint != "*" && r.endpoint != endpoint {
                continue;
            }
            if r.times == Some(0) {
                continue;
            }
            let p = r.probability.unwrap_or(1.0);
            if p < 1.0 && rng.gen::<f64>() >= p {
                continue;
            }
            if let Some(t) = r.times.as_mut() {
                *t -= 1;
            }
            match r.kind {
                FaultKind::Latency => {
                    d.latency_ms += r.ms.unwrap_or(0);
                    labels.push(format!("latency:{}", r.ms.unwrap_or(0)));
                }
                FaultKind::Status => {
                    d.terminal = Some(Terminal::Status {
                        status: r.status.unwrap_or(503),
                        retry_after_secs: r.retry_after_secs,
                    });
                    labels.push(format!("status:{}", r.status.unwrap_or(503)));
                    break;
                }
                FaultKind::Drop => {
                    d.terminal = Some(Terminal::Drop);
                    labels.push("drop".into());
                    break;
                }
                FaultKind::MalformedJson => {
                    d.terminal = Some(Terminal::Malformed);
                    labels.push("malformed_json".into());
                    break;
                }
                FaultKind::ApplyThenStatus => {
                    d.terminal = Some(Terminal::ApplyThenStatus {
                        status: r.status.unwrap_or(503),
                        retry_after_secs: r.retry_after_secs,
                    });
                    labels.push(format!("apply_then_status:{}", r.status.unwrap_or(503)));
                    break;
                }
                FaultKind::ApplyThenDrop => {
                    d.terminal = Some(Terminal::ApplyThenDrop);
                    labels.push("apply_then_drop".into());
                    break;
                }
            }
        }
        if !labels.is_empty() {
            d.label = Some(labels.join(","));
        }
        d
    }
}
