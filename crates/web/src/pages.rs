//! The dashboard's pages and actions: sign-in, overview, runs, records, needs attention,
//! "Run now" and the retry actions. Each page makes a bounded number of ledger queries,
//! lists are paginated at [`PER_PAGE`], and every value is escaped on output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::Utc;
use pp_ledger::{
    LedgerError, Record, RecordFilter, RecordState, RetryTarget, Run, RunFilter, RunOutcome,
};

use crate::auth::{cookie, random_token, Operator, SignIn, LOGIN_COOKIE, SESSION_COOKIE};
use crate::chart::daily_chart;
use crate::html::{
    badge, enc, error_page, esc, page, pager, post_button, post_button_named, respond, time,
    time_opt, Nav,
};
use crate::reasons::explain;
use crate::security::client_ip;
use crate::App;

/// Rows per list page.
pub const PER_PAGE: i64 = 50;
/// Days of the overview's chart.
const CHART_DAYS: u32 = 30;
/// Most flows shown on the overview.
const MAX_FLOWS: usize = 20;

type Params = Query<HashMap<String, String>>;

/// A non-empty, trimmed query or form value, cut to 512 characters.
fn param(q: &HashMap<String, String>, name: &str) -> Option<String> {
    q.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(512).collect())
}

fn page_number(q: &HashMap<String, String>) -> i64 {
    param(q, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(1)
        .clamp(1, 10_000)
}

fn ledger_error(op: &Operator, e: &LedgerError) -> Response {
    tracing::error!(error = %e, "dashboard: ledger query failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(op),
        "The ledger could not be read. Check the service's logs and /readyz.",
    )
}

/// A name the ledger accepts as an operator (`[A-Za-z0-9_.:@-]`, at most 64).
fn operator_name(op: &Operator) -> String {
    let name: String = op
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "operator".into()
    } else {
        name
    }
}

/// The fixed text of a message code passed in a redirect (never reflected free text).
fn flash(q: &HashMap<String, String>) -> Option<String> {
    let flow = param(q, "flow").unwrap_or_default();
    match param(q, "msg").as_deref() {
        Some("run_queued") => Some(format!("A run of {flow} was queued.")),
        Some("run_refused") => Some(format!(
            "A run of {flow} could not be queued: the flow is unknown or disabled."
        )),
        Some("retried") => {
            let n: u64 = param(q, "n").and_then(|n| n.parse().ok()).unwrap_or(0);
            Some(if n == 1 {
                "1 record was sent back to pending; the next run of its flow will process it."
                    .to_string()
            } else {
                format!(
                    "{n} records were sent back to pending; the next run of their flow will process them."
                )
            })
        }
        _ => None,
    }
}

fn counts_text(counts: &BTreeMap<String, i64>) -> String {
    if counts.is_empty() {
        return "—".into();
    }
    counts
        .iter()
        .map(|(k, v)| format!("{} {v}", esc(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_duration(run: &Run) -> String {
    let Some(end) = run.finished_at else {
        return "—".into();
    };
    let ms = (end - run.started_at).num_milliseconds().max(0);
    if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m {}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

fn record_href(flow: &str, key: &str) -> String {
    format!("/records/{}/{}", enc(flow), enc(key))
}

fn select(name: &str, label: &str, options: &[String], current: Option<&str>) -> String {
    let mut s = format!(
        "<div><label for=\"f-{name}\">{label}</label><select id=\"f-{name}\" name=\"{name}\"><option value=\"\">All</option>"
    );
    for o in options {
        let sel = if Some(o.as_str()) == current {
            " selected"
        } else {
            ""
        };
        let _ = write!(s, "<option value=\"{}\"{sel}>{}</option>", esc(o), esc(o));
    }
    s.push_str("</select></div>");
    s
}

// ---------------------------------------------------------------------------------------
// Sign-in

fn safe_next(next: Option<String>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control()) =>
        {
            n
        }
        _ => "/".into(),
    }
}

fn login_page(status: StatusCode, token: &str, next: &str, problem: Option<&str>) -> Response {
    let mut body = String::new();
    if let Some(p) = problem {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(p));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <p><label for=\"username\">User name</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus></p>\
         <p><label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
         <p><button type=\"submit\">Sign in</button></p></form>\
         <p class=\"muted\">Scripts may send the API token as <code>Authorization: Bearer</code> instead.</p>",
        esc(token),
        esc(next)
    );
    respond(status, page("Sign in", Nav::None, None, None, &body))
}

pub(crate) async fn login_form(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    if app.auth.has_session(&headers) {
        return Redirect::to("/").into_response();
    }
    let token = cookie(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(random_token);
    let next = safe_next(param(&q, "next"));
    let mut res = login_page(StatusCode::OK, &token, &next, None);
    if let Ok(v) = app.auth.login_cookie(&token).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn login(State(app): State<App>, req: Request) -> Response {
    let ip = client_ip(&req);
    let headers = req.headers().clone();
    let form: HashMap<String, String> =
        match <Form<HashMap<String, String>> as axum::extract::FromRequest<()>>::from_request(
            req,
            &(),
        )
        .await
        {
            Ok(Form(f)) => f,
            Err(_) => return (StatusCode::BAD_REQUEST, "malformed form\n").into_response(),
        };
    let next = safe_next(param(&form, "next"));
    let expected = cookie(&headers, LOGIN_COOKIE);
    let sent = form.get("csrf").cloned().unwrap_or_default();
    let csrf_ok = expected
        .as_deref()
        .is_some_and(|e| !e.is_empty() && crate::auth::ct_eq(e.as_bytes(), sent.as_bytes()));
    if !csrf_ok {
        let token = random_token();
        let mut res = login_page(
            StatusCode::FORBIDDEN,
            &token,
            &next,
            Some("The sign-in form expired. Please sign in again."),
        );
        if let Ok(v) = app.auth.login_cookie(&token).parse() {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        return res;
    }
    let user = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    match app.auth.sign_in(user.trim(), &password, ip).await {
        SignIn::Ok { session_id } => {
            let mut res = Redirect::to(&next).into_response();
            for c in [
                app.auth.session_cookie(&session_id),
                app.auth.clear_login_cookie(),
            ] {
                if let Ok(v) = c.parse() {
                    res.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            res
        }
        SignIn::Refused => login_page(
            StatusCode::UNAUTHORIZED,
            &sent,
            &next,
            Some("Wrong user name or password."),
        ),
        SignIn::Limited => {
            let mut res = login_page(
                StatusCode::TOO_MANY_REQUESTS,
                &sent,
                &next,
                Some("Too many failed sign-in attempts. Wait a minute and try again."),
            );
            res.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
            res
        }
    }
}

pub(crate) async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    app.auth.sign_out(&headers);
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = app.auth.clear_cookie(SESSION_COOKIE).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn not_found(Extension(op): Extension<Operator>) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        Some(&op),
        "There is no page at this address.",
    )
}

// ---------------------------------------------------------------------------------------
// Overview

pub(crate) async fn overview(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Query(q): Params,
) -> Response {
    let ledger = &app.web.ledger;
    let configured = app.web.flows();
    let today = Utc::now().date_naive();
    // The configured flows' charts are read at the same time as the runs and counts (the
    // pool has several connections); flows only the ledger knows are read afterwards.
    let mut configured_names: Vec<String> = configured.iter().map(|f| f.name.clone()).collect();
    configured_names.truncate(MAX_FLOWS);
    let charts = futures::future::try_join_all(
        configured_names
            .iter()
            .map(|name| ledger.daily_outcomes(name, i64::from(CHART_DAYS), today)),
    );
    let (last_runs, counts, mut daily) =
        match tokio::try_join!(ledger.last_runs(), ledger.counts_by_state(), charts) {
            Ok(v) => v,
            Err(e) => return ledger_error(&op, &e),
        };
    let mut names = configured_names;
    let seen: BTreeSet<&str> = last_runs
        .iter()
        .map(|r| r.flow.as_str())
        .chain(counts.keys().map(|(f, _)| f.as_str()))
        .collect();
    for f in seen {
        if names.len() < MAX_FLOWS && !names.iter().any(|n| n == f) {
            names.push(f.to_string());
            match ledger.daily_outcomes(f, i64::from(CHART_DAYS), today).await {
                Ok(d) => daily.push(d),
                Err(e) => return ledger_error(&op, &e),
            }
        }
    }

    let mut body = String::from("<div class=\"grid\">");
    for (i, (name, daily)) in names.iter().zip(&daily).enumerate() {
        let info = configured.iter().find(|f| &f.name == name);
        let last = last_runs.iter().find(|r| &r.flow == name);
        let n = |state: RecordState| {
            counts
                .get(&(name.clone(), state.as_str().to_string()))
                .copied()
                .unwrap_or(0)
        };
        let heading_id = format!("flow-{i}");
        let _ = write!(
            body,
            "<section class=\"card\" aria-labelledby=\"{heading_id}\"><h2 id=\"{heading_id}\">{}</h2><dl class=\"facts\">",
            esc(name)
        );
        match info {
            Some(f) => {
                let _ = write!(
                    body,
                    "<dt>Schedule</dt><dd><code>{}</code>{}</dd><dt>Next run</dt><dd>{}</dd>",
                    esc(&f.schedule),
                    if f.enabled {
                        ""
                    } else {
                        " <span class=\"badge warn\">disabled</span>"
                    },
                    if f.enabled {
                        time_opt(f.next_run.as_ref())
                    } else {
                        "—".into()
                    }
                );
            }
            None => body.push_str("<dt>Schedule</dt><dd>not configured in this instance</dd>"),
        }
        match last {
            Some(r) => {
                let _ = write!(
                    body,
                    "<dt>Last run</dt><dd><a href=\"/runs/{}\">{}</a> {}</dd><dt>Last run counts</dt><dd>{}</dd>",
                    enc(&r.id),
                    time(&r.started_at),
                    badge(r.outcome.as_str()),
                    counts_text(&r.counts)
                );
            }
            None => body.push_str("<dt>Last run</dt><dd>none yet</dd>"),
        }
        // Each record once, by the state it is in now (the chart below counts outcomes).
        let total: i64 = counts
            .iter()
            .filter(|((flow, _), _)| flow == name)
            .map(|(_, n)| n)
            .sum();
        let _ = write!(
            body,
            "</dl><h3>Records now</h3><p>{total} {} in the ledger, by current state:</p><ul class=\"stats\">",
            if total == 1 { "record" } else { "records" }
        );
        for (state, label) in [
            (RecordState::Pending, "waiting"),
            (RecordState::Delivered, "awaiting confirmation"),
            (RecordState::Confirmed, "confirmed"),
            (RecordState::Failed, "failed, will retry"),
            (RecordState::Rejected, "rejected"),
            (RecordState::Conflict, "in conflict"),
        ] {
            let _ = write!(
                body,
                "<li><a href=\"/records?flow={}&amp;state={}\"><strong>{}</strong> {label}</a></li>",
                enc(name),
                state.as_str(),
                n(state)
            );
        }
        body.push_str("</ul>");
        let _ = write!(body, "<h3>Outcomes, last {CHART_DAYS} days</h3>");
        body.push_str(&daily_chart(&i.to_string(), name, today, CHART_DAYS, daily));
        if info.is_some_and(|f| f.enabled) {
            body.push_str(&post_button(
                &op,
                &format!("/flows/{}/run", enc(name)),
                &format!("Run {name} now"),
                &[],
            ));
        }
        body.push_str("</section>");
    }
    if names.is_empty() {
        body.push_str("<p>No flows are configured and the ledger holds no runs yet.</p>");
    }
    body.push_str("</div>");
    respond(
        StatusCode::OK,
        page(
            "Overview",
            Nav::Overview,
            Some(&op),
            flash(&q).as_deref(),
            &body,
        ),
    )
}

pub(crate) async fn run_now(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Path(flow): Path<String>,
) -> Response {
    let known = app.web.flows().iter().any(|f| f.name == flow && f.enabled);
    let queued = known && (app.web.run_now)(flow.clone());
    tracing::info!(operator = %operator_name(&op), flow = %crate::metrics::label(&flow), queued, "run now requested");
    let msg = if queued { "run_queued" } else { "run_refused" };
    Redirect::to(&format!("/?msg={msg}&flow={}", enc(&flow))).into_response()
}

// ---------------------------------------------------------------------------------------
// Runs

pub(crate) async fn runs(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Query(q): Params,
) -> Response {
    let flow = param(&q, "flow");
    let outcome_text = param(&q, "outcome");
    let outcome = outcome_text
        .as_deref()
        .and_then(|o| o.parse::<RunOutcome>().ok());
    let page_no = page_number(&q);
    let filter = RunFilter {
        flow: flow.clone(),
        outcome,
        limit: PER_PAGE + 1,
        offset: (page_no - 1) * PER_PAGE,
    };
    let mut list = match app.web.ledger.list_runs(&filter).await {
        Ok(l) => l,
        Err(e) => return ledger_error(&op, &e),
    };
    let has_next = list.len() as i64 > PER_PAGE;
    list.truncate(PER_PAGE as usize);

    let flow_names: Vec<String> = app.web.flows().into_iter().map(|f| f.name).collect();
    let outcomes: Vec<String> = RunOutcome::ALL.iter().map(|o| o.to_string()).collect();
    let mut body = String::from("<form method=\"get\" action=\"/runs\" class=\"filters\">");
    body.push_str(&select("flow", "Flow", &flow_names, flow.as_deref()));
    body.push_str(&select(
        "outcome",
        "Outcome",
        &outcomes,
        outcome.map(|o| o.as_str()),
    ));
    body.push_str("<div><button type=\"submit\">Filter</button></div></form>");
    if list.is_empty() {
        body.push_str("<p>No runs match.</p>");
    } else {
        body.push_str(
            "<table class=\"responsive\"><caption class=\"muted\">Newest first</caption><thead><tr>\
             <th scope=\"col\">Started</th><th scope=\"col\">Flow</th><th scope=\"col\">Outcome</th>\
             <th scope=\"col\">Duration</th><th scope=\"col\">Counts</th><th scope=\"col\">Error</th>\
             </tr></thead><tbody>",
        );
        for r in &list {
            let _ = write!(
                body,
                "<tr><th scope=\"row\" data-label=\"Started\"><a href=\"/runs/{}\">{}</a></th>\
                 <td data-label=\"Flow\">{}</td><td data-label=\"Outcome\">{}</td>\
                 <td data-label=\"Duration\">{}</td><td data-label=\"Counts\">{}</td>\
                 <td data-label=\"Error\">{}</td></tr>",
                enc(&r.id),
                time(&r.started_at),
                esc(&r.flow),
                badge(r.outcome.as_str()),
                run_duration(r),
                counts_text(&r.counts),
                esc(r.error.as_deref().unwrap_or("—"))
            );
        }
        body.push_str("</tbody></table>");
    }
    let mut query = Vec::new();
    if let Some(f) = &flow {
        query.push(format!("flow={}", enc(f)));
    }
    if let Some(o) = outcome {
        query.push(format!("outcome={}", o.as_str()));
    }
    body.push_str(&pager("/runs", &query.join("&"), page_no, has_next));
    respond(
        StatusCode::OK,
        page("Runs", Nav::Runs, Some(&op), None, &body),
    )
}

pub(crate) async fn run(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let ledger = &app.web.ledger;
    let run = match ledger.get_run(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, Some(&op), "No run has this id."),
        Err(e) => return ledger_error(&op, &e),
    };
    let page_no = page_number(&q);
    let filter = RecordFilter {
        run_id: Some(run.id.clone()),
        limit: PER_PAGE + 1,
        offset: (page_no - 1) * PER_PAGE,
        ..RecordFilter::default()
    };
    let mut records = match ledger.list_records(&filter).await {
        Ok(r) => r,
        Err(e) => return ledger_error(&op, &e),
    };
    let has_next = records.len() as i64 > PER_PAGE;
    records.truncate(PER_PAGE as usize);

    let mut body = format!(
        "<dl class=\"facts\"><dt>Run id</dt><dd><code>{}</code></dd><dt>Flow</dt><dd>{}</dd>\
         <dt>Outcome</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>\
         <dt>Duration</dt><dd>{}</dd><dt>Instance</dt><dd>{}</dd><dt>Error</dt><dd>{}</dd></dl>",
        esc(&run.id),
        esc(&run.flow),
        badge(run.outcome.as_str()),
        time(&run.started_at),
        time_opt(run.finished_at.as_ref()),
        run_duration(&run),
        esc(&run.holder),
        esc(run.error.as_deref().unwrap_or("—"))
    );
    body.push_str("<h2>Counts</h2>");
    if run.counts.is_empty() {
        body.push_str("<p>No counts recorded.</p>");
    } else {
        body.push_str(
            "<table><thead><tr><th scope=\"col\">Outcome</th><th scope=\"col\" class=\"num\">Records</th></tr></thead><tbody>",
        );
        for (k, v) in &run.counts {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">{}</th><td class=\"num\">{v}</td></tr>",
                esc(k)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Records this run touched</h2><p class=\"muted\">Each record's current state, most recently changed first.</p>");
    body.push_str(&records_table(&records, true));
    body.push_str(&pager(
        &format!("/runs/{}", enc(&run.id)),
        "",
        page_no,
        has_next,
    ));
    respond(
        StatusCode::OK,
        page(
            &format!("Run of {}", run.flow),
            Nav::Runs,
            Some(&op),
            None,
            &body,
        ),
    )
}

fn records_table(records: &[Record], detail: bool) -> String {
    if records.is_empty() {
        return "<p>No records.</p>".into();
    }
    let mut s = String::from(
        "<table class=\"responsive\"><thead><tr><th scope=\"col\">Record key</th><th scope=\"col\">Flow</th>\
         <th scope=\"col\">State</th><th scope=\"col\">Reason</th>",
    );
    if detail {
        s.push_str("<th scope=\"col\">Message</th><th scope=\"col\">PING transaction ids</th>");
    } else {
        s.push_str("<th scope=\"col\" class=\"num\">Attempts</th><th scope=\"col\">Updated</th>");
    }
    s.push_str("</tr></thead><tbody>");
    for r in records {
        let _ = write!(
            s,
            "<tr><th scope=\"row\" data-label=\"Record key\"><a href=\"{}\">{}</a></th>\
             <td data-label=\"Flow\">{}</td><td data-label=\"State\">{}</td><td data-label=\"Reason\">{}</td>",
            record_href(&r.flow, &r.key),
            esc(&r.key),
            esc(&r.flow),
            badge(r.state.as_str()),
            r.reason_code
                .as_deref()
                .map(|c| format!("<code>{}</code>", esc(c)))
                .unwrap_or_else(|| "—".into())
        );
        if detail {
            let ids = if r.ping_transaction_ids.is_empty() {
                "—".to_string()
            } else {
                r.ping_transaction_ids
                    .iter()
                    .map(|t| format!("<code>{}</code>", esc(t)))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let _ = write!(
                s,
                "<td data-label=\"Message\">{}</td><td data-label=\"PING transaction ids\">{ids}</td></tr>",
                esc(r.message.as_deref().unwrap_or("—"))
            );
        } else {
            let _ = write!(
                s,
                "<td data-label=\"Attempts\" class=\"num\">{}</td><td data-label=\"Updated\">{}</td></tr>",
                r.attempts,
                time(&r.updated_at)
            );
        }
    }
    s.push_str("</tbody></table>");
    s
}

// ---------------------------------------------------------------------------------------
// Records

pub(crate) async fn records(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Query(q): Params,
) -> Response {
    let ledger = &app.web.ledger;
    let search = param(&q, "q");
    let flow = param(&q, "flow");
    let state = param(&q, "state").and_then(|s| s.parse::<RecordState>().ok());
    let page_no = page_number(&q);
    let offset = ((page_no - 1) * PER_PAGE) as usize;

    let mut body = format!(
        "<form method=\"get\" action=\"/records\" class=\"search\" role=\"search\">\
         <div><label for=\"q\">Identifier</label>\
         <input id=\"q\" name=\"q\" value=\"{}\" aria-describedby=\"q-help\"></div>\
         <div><button type=\"submit\">Search</button></div></form>\
         <p id=\"q-help\" class=\"muted\">Intervention number, LP intervention GUID, case <code>case_id</code> or \
         <code>id</code>, service <code>unique_id</code>, or interoperability referral GUID (exact match).</p>",
        esc(search.as_deref().unwrap_or(""))
    );
    let (records, has_next, heading) = if let Some(s) = &search {
        let mut found = match ledger.find(s).await {
            Ok(f) => f,
            Err(e) => return ledger_error(&op, &e),
        };
        let total = found.len();
        let has_next = total > offset + PER_PAGE as usize;
        let list: Vec<Record> = found
            .drain(..)
            .skip(offset)
            .take(PER_PAGE as usize)
            .collect();
        (
            list,
            has_next,
            format!(
                "{total} record{} found for “{}”",
                if total == 1 { "" } else { "s" },
                esc(s)
            ),
        )
    } else {
        let filter = RecordFilter {
            flow: flow.clone(),
            states: state.into_iter().collect(),
            limit: PER_PAGE + 1,
            offset: offset as i64,
            ..RecordFilter::default()
        };
        let mut list = match ledger.list_records(&filter).await {
            Ok(l) => l,
            Err(e) => return ledger_error(&op, &e),
        };
        let has_next = list.len() as i64 > PER_PAGE;
        list.truncate(PER_PAGE as usize);
        let flow_names: Vec<String> = app.web.flows().into_iter().map(|f| f.name).collect();
        let states: Vec<String> = RecordState::ALL.iter().map(|s| s.to_string()).collect();
        body.push_str("<form method=\"get\" action=\"/records\" class=\"filters\">");
        body.push_str(&select("flow", "Flow", &flow_names, flow.as_deref()));
        body.push_str(&select(
            "state",
            "State",
            &states,
            state.map(|s| s.as_str()),
        ));
        body.push_str(
            "<div><button type=\"submit\" class=\"secondary\">Filter</button></div></form>",
        );
        (list, has_next, "Most recently changed".to_string())
    };
    let _ = write!(body, "<h2>{heading}</h2>");
    body.push_str(&records_table(&records, false));
    let mut query = Vec::new();
    if let Some(s) = &search {
        query.push(format!("q={}", enc(s)));
    } else {
        if let Some(f) = &flow {
            query.push(format!("flow={}", enc(f)));
        }
        if let Some(s) = state {
            query.push(format!("state={}", s.as_str()));
        }
    }
    body.push_str(&pager("/records", &query.join("&"), page_no, has_next));
    respond(
        StatusCode::OK,
        page("Records", Nav::Records, Some(&op), None, &body),
    )
}

pub(crate) async fn record(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Path((flow, key)): Path<(String, String)>,
    Query(q): Params,
) -> Response {
    let ledger = &app.web.ledger;
    let r = match ledger.get(&flow, &key).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                Some(&op),
                "No record of this flow has this key.",
            )
        }
        Err(e) => return ledger_error(&op, &e),
    };
    let events = match ledger.audit(&flow, &key).await {
        Ok(ev) => ev,
        Err(e) => return ledger_error(&op, &e),
    };
    let mut body = format!(
        "<dl class=\"facts\"><dt>Flow</dt><dd>{}</dd><dt>Record key</dt><dd><code>{}</code></dd>\
         <dt>State</dt><dd>{}</dd><dt>Attempts</dt><dd>{}</dd><dt>Next retry</dt><dd>{}</dd>\
         <dt>Error class</dt><dd>{}</dd><dt>Reason code</dt><dd>{}</dd><dt>Message</dt><dd>{}</dd>",
        esc(&r.flow),
        esc(&r.key),
        badge(r.state.as_str()),
        r.attempts,
        time_opt(r.next_retry_at.as_ref()),
        esc(r.error_class.map(|c| c.as_str()).unwrap_or("—")),
        r.reason_code
            .as_deref()
            .map(|c| format!("<code>{}</code>", esc(c)))
            .unwrap_or_else(|| "—".into()),
        esc(r.message.as_deref().unwrap_or("—")),
    );
    if let Some(d) = &r.decision {
        let _ = write!(body, "<dt>Decision</dt><dd>{}</dd>", esc(d));
    }
    let mut flags = Vec::new();
    if r.fallback_used {
        flags.push("a configured map fallback was used");
    }
    if r.contact_substituted {
        flags.push("the focal point's contact replaced the caseworker's");
    }
    if r.operator_retry {
        flags.push("re-queued by an operator, not processed since");
    }
    if !flags.is_empty() {
        let _ = write!(body, "<dt>Flags</dt><dd>{}</dd>", flags.join("; "));
    }
    let _ = write!(
        body,
        "<dt>First seen</dt><dd>{}</dd><dt>Last changed</dt><dd>{}</dd><dt>Last run</dt><dd>{}</dd></dl>",
        time(&r.created_at),
        time(&r.updated_at),
        r.last_run_id
            .as_deref()
            .map(|id| format!("<a href=\"/runs/{}\"><code>{}</code></a>", enc(id), esc(id)))
            .unwrap_or_else(|| "—".into())
    );
    if RecordState::RETRYABLE.contains(&r.state) {
        let ex = explain(r.reason_code.as_deref());
        let _ = write!(
            body,
            "<section aria-labelledby=\"fix\"><h2 id=\"fix\">What to do</h2><p><span class=\"where\">{}.</span> {}</p>{}</section>",
            ex.fix_in.label(),
            esc(ex.advice),
            post_button(
                &op,
                &format!("{}/retry", record_href(&r.flow, &r.key)),
                "Retry this record",
                &[]
            )
        );
    }
    body.push_str("<h2>Destination ids</h2>");
    if r.dest_ids.is_empty() {
        body.push_str("<p>None yet.</p>");
    } else {
        body.push_str("<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Id</th></tr></thead><tbody>");
        for (k, v) in &r.dest_ids {
            let _ = write!(
                body,
                "<tr><th scope=\"row\">{}</th><td><a href=\"/records?q={}\"><code>{}</code></a></td></tr>",
                esc(k),
                enc(v),
                esc(v)
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>PING transaction ids</h2>");
    if r.ping_transaction_ids.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<ul>");
        for t in &r.ping_transaction_ids {
            let _ = write!(body, "<li><code>{}</code></li>", esc(t));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>History</h2>");
    const MAX_EVENTS: usize = 200;
    let skipped = events.len().saturating_sub(MAX_EVENTS);
    if skipped > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">The {skipped} oldest events are not shown.</p>"
        );
    }
    body.push_str(
        "<table class=\"responsive\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">From</th>\
         <th scope=\"col\">To</th><th scope=\"col\">Reason</th><th scope=\"col\">Message</th>\
         <th scope=\"col\">Cause</th></tr></thead><tbody>",
    );
    for e in events.iter().skip(skipped) {
        let cause = match &e.run_id {
            Some(id) => format!("<a href=\"/runs/{}\">run</a>", enc(id)),
            None => esc(&e.cause),
        };
        let _ = write!(
            body,
            "<tr><th scope=\"row\" data-label=\"When\">{}</th><td data-label=\"From\">{}</td>\
             <td data-label=\"To\">{}</td><td data-label=\"Reason\">{}</td>\
             <td data-label=\"Message\">{}</td><td data-label=\"Cause\">{cause}</td></tr>",
            time(&e.at),
            e.from_state
                .map(|s| badge(s.as_str()))
                .unwrap_or_else(|| "new".into()),
            badge(e.to_state.as_str()),
            e.reason_code
                .as_deref()
                .map(|c| format!("<code>{}</code>", esc(c)))
                .unwrap_or_else(|| "—".into()),
            esc(e.message.as_deref().unwrap_or("—")),
        );
    }
    body.push_str("</tbody></table>");
    respond(
        StatusCode::OK,
        page(
            &format!("Record {}", r.key),
            Nav::Records,
            Some(&op),
            flash(&q).as_deref(),
            &body,
        ),
    )
}

pub(crate) async fn retry_record(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Path((flow, key)): Path<(String, String)>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let target = RetryTarget::Key {
        flow: Some(flow.clone()),
        key: key.clone(),
    };
    let n = match app.web.ledger.retry(target, &operator_name(&op)).await {
        Ok(n) => n,
        Err(e) => return ledger_error(&op, &e),
    };
    let back = if param(&form, "back").as_deref() == Some("attention") {
        "/attention".to_string()
    } else {
        record_href(&flow, &key)
    };
    Redirect::to(&format!("{back}?msg=retried&n={n}")).into_response()
}

// ---------------------------------------------------------------------------------------
// Needs attention

pub(crate) async fn attention(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    Query(q): Params,
) -> Response {
    let groups = match app.web.ledger.attention().await {
        Ok(g) => g,
        Err(e) => return ledger_error(&op, &e),
    };
    let mut body = String::from(
        "<p>Records that were rejected or are in conflict wait for a person. Fix the cause where \
         the explanation says, then retry: the record goes back to pending and its flow's next \
         run processes it again.</p>",
    );
    if groups.is_empty() {
        body.push_str("<p>Nothing needs attention.</p>");
    }
    for (i, g) in groups.iter().enumerate() {
        let ex = explain(g.reason_code.as_deref());
        let id = format!("group-{i}");
        let _ = write!(
            body,
            "<section class=\"card\" aria-labelledby=\"{id}\"><h2 id=\"{id}\">{} <span class=\"muted\">in {}</span></h2>\
             <p><code>{}</code> · {} rejected · {} in conflict</p>\
             <p><span class=\"where\">{}.</span> {}</p>",
            esc(ex.title),
            esc(&g.flow),
            esc(g.reason_code.as_deref().unwrap_or("no reason code")),
            g.rejected,
            g.conflict,
            ex.fix_in.label(),
            esc(ex.advice)
        );
        let total = g.rejected + g.conflict;
        let mut fields: Vec<(&str, &str)> = vec![("flow", g.flow.as_str())];
        if let Some(r) = &g.reason_code {
            fields.push(("reason", r.as_str()));
        }
        body.push_str(&post_button(
            &op,
            "/attention/retry",
            &if total == 1 {
                "Retry the record of this group".to_string()
            } else {
                format!("Retry all {total} records of this group")
            },
            &fields,
        ));
        let _ = write!(
            body,
            "<table><caption class=\"muted\">{}</caption><thead><tr><th scope=\"col\">Record key</th><th scope=\"col\">Action</th></tr></thead><tbody>",
            if (g.keys.len() as i64) < total {
                format!("The {} most recently changed records", g.keys.len())
            } else {
                "Records".to_string()
            }
        );
        for key in &g.keys {
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><a href=\"{}\">{}</a></th><td>{}</td></tr>",
                record_href(&g.flow, key),
                esc(key),
                post_button_named(
                    &op,
                    &format!("{}/retry", record_href(&g.flow, key)),
                    "Retry",
                    &format!("Retry {key}"),
                    &[("back", "attention")]
                )
            );
        }
        body.push_str("</tbody></table></section>");
    }
    respond(
        StatusCode::OK,
        page(
            "Needs attention",
            Nav::Attention,
            Some(&op),
            flash(&q).as_deref(),
            &body,
        ),
    )
}

pub(crate) async fn retry_group(
    State(app): State<App>,
    Extension(op): Extension<Operator>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    let Some(flow) = param(&form, "flow") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            Some(&op),
            "The form names no flow.",
        );
    };
    let reason = param(&form, "reason");
    let ledger = &app.web.ledger;
    let who = operator_name(&op);
    let mut n = 0u64;
    match reason {
        Some(reason) => {
            for state in [RecordState::Rejected, RecordState::Conflict] {
                let target = RetryTarget::Filter {
                    flow: Some(flow.clone()),
                    state: Some(state),
                    reason: Some(reason.clone()),
                };
                match ledger.retry(target, &who).await {
                    Ok(k) => n += k,
                    Err(e) => return ledger_error(&op, &e),
                }
            }
        }
        None => {
            // Records without a reason code: retry the ones the page listed.
            let groups = match ledger.attention().await {
                Ok(g) => g,
                Err(e) => return ledger_error(&op, &e),
            };
            let keys = groups
                .into_iter()
                .find(|g| g.flow == flow && g.reason_code.is_none())
                .map(|g| g.keys)
                .unwrap_or_default();
            for key in keys {
                let target = RetryTarget::Key {
                    flow: Some(flow.clone()),
                    key,
                };
                match ledger.retry(target, &who).await {
                    Ok(k) => n += k,
                    Err(e) => return ledger_error(&op, &e),
                }
            }
        }
    }
    Redirect::to(&format!("/attention?msg=retried&n={n}")).into_response()
}
