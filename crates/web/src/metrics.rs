//! Prometheus metrics of the daemon: runs and records by flow and outcome, API requests by
//! system and status (fed by [`pp_http::RequestObserver`]), retries, the time of each flow's
//! last successful run, and the records waiting per state (refreshed from the ledger at each
//! scrape).
//!
//! Label values are flow names, states, reason codes, system names and status codes only.
//! Every label value passes through [`label`], which replaces anything that does not look
//! like a code (so a mistaken caller cannot put record data into a metric).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The metrics of one process. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    runs_total: IntCounterVec,
    records_total: IntCounterVec,
    api_requests_total: IntCounterVec,
    api_request_duration: HistogramVec,
    api_retries_total: IntCounterVec,
    last_success: GaugeVec,
    records_waiting: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A label value that is safe to export: ASCII letters, digits and `_ - . :`, at most 64
/// characters; anything else becomes `other`.
pub fn label(value: &str) -> &str {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        value
    } else {
        "other"
    }
}

impl Metrics {
    /// A fresh registry with every metric of the daemon.
    pub fn new() -> Self {
        let registry = Registry::new();
        let runs_total = IntCounterVec::new(
            Opts::new("ping_primero_runs_total", "Finished flow runs by outcome."),
            &["flow", "outcome"],
        )
        .expect("valid metric");
        let records_total = IntCounterVec::new(
            Opts::new(
                "ping_primero_records_total",
                "Records handled by flow and outcome (a state or a reason code).",
            ),
            &["flow", "outcome"],
        )
        .expect("valid metric");
        let api_requests_total = IntCounterVec::new(
            Opts::new(
                "ping_primero_api_requests_total",
                "HTTP requests to PING and Primero by system and status code (`error` when no response).",
            ),
            &["system", "status"],
        )
        .expect("valid metric");
        let api_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ping_primero_api_request_duration_seconds",
                "Duration of HTTP requests to PING and Primero.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["system"],
        )
        .expect("valid metric");
        let api_retries_total = IntCounterVec::new(
            Opts::new(
                "ping_primero_api_retries_total",
                "Retries of transient API failures by system.",
            ),
            &["system"],
        )
        .expect("valid metric");
        let last_success = GaugeVec::new(
            Opts::new(
                "ping_primero_last_successful_run_timestamp_seconds",
                "Unix time at which the last completed run of each flow finished.",
            ),
            &["flow"],
        )
        .expect("valid metric");
        let records_waiting = IntGaugeVec::new(
            Opts::new(
                "ping_primero_records_waiting",
                "Records in the ledger by flow and state that are not confirmed yet.",
            ),
            &["flow", "state"],
        )
        .expect("valid metric");
        for c in [
            Box::new(runs_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(records_total.clone()),
            Box::new(api_requests_total.clone()),
            Box::new(api_request_duration.clone()),
            Box::new(api_retries_total.clone()),
            Box::new(last_success.clone()),
            Box::new(records_waiting.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                runs_total,
                records_total,
                api_requests_total,
                api_request_duration,
                api_retries_total,
                last_success,
                records_waiting,
            }),
        }
    }

    /// The registry, for callers that add metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A run of `flow` ended with `outcome` (`completed`, `failed`, `abandoned`): counts the
    /// run, adds each of the run's `counts` (fetched, delivered, rejected, ...) to
    /// `ping_primero_records_total{outcome=<count name>}`, and for a completed run sets the
    /// flow's last-success time to now. Callers that feed record outcomes one by one with
    /// [`Metrics::record_outcome`] pass an empty `counts`.
    pub fn run_finished(&self, flow: &str, outcome: &str, counts: &BTreeMap<String, i64>) {
        let flow = label(flow);
        self.inner
            .runs_total
            .with_label_values(&[flow, label(outcome)])
            .inc();
        for (name, n) in counts {
            if *n > 0 {
                self.inner
                    .records_total
                    .with_label_values(&[flow, label(name)])
                    .inc_by(*n as u64);
            }
        }
        if outcome == "completed" {
            self.set_last_success(flow, Utc::now());
        }
    }

    /// `n` records of `flow` reached `outcome` (a state or a reason code).
    pub fn record_outcome(&self, flow: &str, outcome: &str, n: u64) {
        self.inner
            .records_total
            .with_label_values(&[label(flow), label(outcome)])
            .inc_by(n);
    }

    /// Sets the time of the last successful run of `flow`.
    pub fn set_last_success(&self, flow: &str, at: DateTime<Utc>) {
        let secs = at.timestamp() as f64 + f64::from(at.timestamp_subsec_millis()) / 1000.0;
        self.inner
            .last_success
            .with_label_values(&[label(flow)])
            .set(secs);
    }

    /// Replaces the waiting-records gauge with `counts` ((flow, state) → n); confirmed
    /// records are not waiting and are left out.
    pub fn set_waiting(&self, counts: &[(String, String, i64)]) {
        self.inner.records_waiting.reset();
        for (flow, state, n) in counts {
            if state == "confirmed" {
                continue;
            }
            self.inner
                .records_waiting
                .with_label_values(&[label(flow), label(state)])
                .set(*n);
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut buf)
            .expect("encoding metrics into memory cannot fail");
        String::from_utf8(buf).expect("the text encoder writes UTF-8")
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl pp_http::RequestObserver for Metrics {
    fn on_request(
        &self,
        system: &'static str,
        _method: &str,
        _route: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    ) {
        let status = status.map(|s| s.to_string());
        let status = status.as_deref().unwrap_or("error");
        self.inner
            .api_requests_total
            .with_label_values(&[label(system), status])
            .inc();
        self.inner
            .api_request_duration
            .with_label_values(&[label(system)])
            .observe(elapsed.as_secs_f64());
    }

    fn on_retry(&self, system: &'static str) {
        self.inner
            .api_retries_total
            .with_label_values(&[label(system)])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pp_http::RequestObserver;

    #[test]
    fn label_values_that_are_not_codes_are_replaced() {
        assert_eq!(label("referrals-to-primero"), "referrals-to-primero");
        assert_eq!(label("unmapped_language"), "unmapped_language");
        assert_eq!(label("Jane Doe"), "other");
        assert_eq!(label(""), "other");
        assert_eq!(label(&"x".repeat(65)), "other");
        assert_eq!(label("a\"b"), "other");
    }

    #[test]
    fn observer_and_run_calls_show_in_the_text() {
        let m = Metrics::new();
        m.on_request(
            "ping",
            "POST",
            "/data",
            Some(200),
            Duration::from_millis(30),
        );
        m.on_request(
            "primero",
            "GET",
            "/api/v2/cases",
            None,
            Duration::from_millis(5),
        );
        m.on_retry("primero");
        let counts = BTreeMap::from([("delivered".to_string(), 3), ("rejected".to_string(), 1)]);
        m.run_finished("referrals-to-primero", "completed", &counts);
        m.record_outcome("decisions-to-primero", "unknown_status", 2);
        m.set_waiting(&[
            ("referrals-to-primero".into(), "failed".into(), 4),
            ("referrals-to-primero".into(), "confirmed".into(), 9),
        ]);
        let text = m.render();
        assert!(text.contains(r#"ping_primero_api_requests_total{status="200",system="ping"} 1"#));
        assert!(
            text.contains(r#"ping_primero_api_requests_total{status="error",system="primero"} 1"#)
        );
        assert!(text.contains(r#"ping_primero_api_retries_total{system="primero"} 1"#));
        assert!(text.contains(
            r#"ping_primero_api_request_duration_seconds_bucket{system="ping",le="0.05"} 1"#
        ));
        assert!(text.contains(
            r#"ping_primero_runs_total{flow="referrals-to-primero",outcome="completed"} 1"#
        ));
        assert!(text.contains(
            r#"ping_primero_records_total{flow="referrals-to-primero",outcome="delivered"} 3"#
        ));
        assert!(text.contains(
            r#"ping_primero_records_total{flow="decisions-to-primero",outcome="unknown_status"} 2"#
        ));
        assert!(text.contains(
            r#"ping_primero_last_successful_run_timestamp_seconds{flow="referrals-to-primero"}"#
        ));
        assert!(text.contains(
            r#"ping_primero_records_waiting{flow="referrals-to-primero",state="failed"} 4"#
        ));
        assert!(!text.contains(r#"state="confirmed""#));
    }
}
