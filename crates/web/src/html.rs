//! HTML building blocks of the dashboard: escaping, URL encoding, the page layout (skip link,
//! navigation landmark, one `h1`), the embedded style sheet, and small helpers for times,
//! tables and forms. Every value that comes from the ledger or the request goes through
//! [`esc`] (text and attributes) or [`enc`] (URL parts).

use std::fmt::Write;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::auth::Operator;

/// Escapes text for HTML text and quoted attribute values.
pub fn esc(s: &str) -> String {
    html_escape::encode_safe(s).into_owned()
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC` in a `<time>` element.
pub fn time(at: &DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// An optional time, or a dash.
pub fn time_opt(at: Option<&DateTime<Utc>>) -> String {
    at.map(time).unwrap_or_else(|| "—".into())
}

/// A state or outcome as a coloured badge (the word is always shown, colour is extra).
pub fn badge(word: &str) -> String {
    let class = match word {
        "confirmed" | "completed" | "delivered" => "ok",
        "rejected" | "failed" => "bad",
        "conflict" | "abandoned" => "warn",
        _ => "neutral",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(word))
}

/// The hidden CSRF field of a form (empty for bearer-token requests, which need none).
pub fn csrf_field(op: &Operator) -> String {
    match &op.csrf {
        Some(t) => format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(t)),
        None => String::new(),
    }
}

/// A one-button POST form.
pub fn post_button(
    op: &Operator,
    action: &str,
    label: &str,
    extra_fields: &[(&str, &str)],
) -> String {
    let mut s = format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\">{}",
        esc(action),
        csrf_field(op)
    );
    for (name, value) in extra_fields {
        let _ = write!(
            s,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(s, "<button type=\"submit\">{}</button></form>", esc(label));
    s
}

/// A one-button POST form whose button has a longer accessible name than its visible label
/// (for rows of identical "Retry" buttons).
pub fn post_button_named(
    op: &Operator,
    action: &str,
    label: &str,
    accessible_name: &str,
    extra_fields: &[(&str, &str)],
) -> String {
    post_button(op, action, label, extra_fields).replacen(
        "<button type=\"submit\">",
        &format!(
            "<button type=\"submit\" aria-label=\"{}\">",
            esc(accessible_name)
        ),
        1,
    )
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Runs,
    Records,
    Attention,
    None,
}

/// A full page: `title` becomes the `<title>` and the only `<h1>`.
pub fn page(
    title: &str,
    nav: Nav,
    op: Option<&Operator>,
    flash: Option<&str>,
    body: &str,
) -> String {
    let mut s = String::with_capacity(body.len() + 4096);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · ping-primero</title><style>{CSS}</style></head><body>\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><span class=\"brand\">ping-primero</span>",
        esc(title)
    );
    if let Some(op) = op {
        s.push_str("<nav aria-label=\"Main\"><ul>");
        for (entry, href, label) in [
            (Nav::Overview, "/", "Overview"),
            (Nav::Runs, "/runs", "Runs"),
            (Nav::Records, "/records", "Records"),
            (Nav::Attention, "/attention", "Needs attention"),
        ] {
            let current = if entry == nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(s, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        s.push_str("</ul></nav>");
        let _ = write!(
            s,
            "<div class=\"who\"><span>Signed in as {}</span>{}</div>",
            esc(&op.name),
            if op.csrf.is_some() {
                post_button(op, "/logout", "Sign out", &[])
            } else {
                String::new()
            }
        );
    }
    let _ = write!(
        s,
        "</header><main id=\"main\" tabindex=\"-1\"><h1>{}</h1>",
        esc(title)
    );
    if let Some(f) = flash {
        let _ = write!(s, "<p class=\"flash\" role=\"status\">{}</p>", esc(f));
    }
    s.push_str(body);
    s.push_str("</main></body></html>");
    s
}

/// An HTML response with a status code, not cached.
pub fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// An error page (for ledger failures and unknown ids); `detail` must hold no secrets.
pub fn error_page(status: StatusCode, op: Option<&Operator>, detail: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        _ => "Something went wrong",
    };
    let body = format!(
        "<p>{}</p><p><a href=\"/\">Back to the overview</a></p>",
        esc(detail)
    );
    respond(status, page(title, Nav::None, op, None, &body))
}

/// Previous/next links for a list of `per_page` items at `page` (from 1); `query` is the
/// already-encoded query without `page`.
pub fn pager(base: &str, query: &str, page: i64, has_next: bool) -> String {
    if page <= 1 && !has_next {
        return String::new();
    }
    let sep = if query.is_empty() { "" } else { "&" };
    let mut s = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    if page > 1 {
        let _ = write!(
            s,
            "<a href=\"{base}?{}{sep}page={}\" rel=\"prev\">← Newer</a> ",
            esc(query),
            page - 1
        );
    }
    let _ = write!(s, "<span>Page {page}</span>");
    if has_next {
        let _ = write!(
            s,
            " <a href=\"{base}?{}{sep}page={}\" rel=\"next\">Older →</a>",
            esc(query),
            page + 1
        );
    }
    s.push_str("</nav>");
    s
}

/// The embedded style sheet: system fonts, WCAG AA contrast, visible focus, tables that
/// turn into stacked cards on narrow screens (cells carry `data-label`).
pub const CSS: &str = r#"
:root{--fg:#1b1f24;--muted:#4a5560;--bg:#ffffff;--panel:#f4f6f8;--line:#c9d1d9;--link:#0b57a4;
--ok:#1a6b37;--okbg:#e3f4e8;--bad:#a3141c;--badbg:#fbe5e6;--warn:#7a4d00;--warnbg:#fff1d6;--focus:#ffbf47}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link)}
a:focus,button:focus,input:focus,select:focus,main:focus-visible{outline:3px solid var(--focus);outline-offset:2px;box-shadow:0 0 0 5px var(--fg)}
main:focus{outline:none;box-shadow:none}
.skip{position:absolute;left:-999px;top:0;background:var(--fg);color:#fff;padding:.5rem 1rem;z-index:2}
.skip:focus{left:0}
.top{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:center;padding:.6rem 1rem;background:#12324f;color:#fff}
.top a{color:#fff}
.brand{font-weight:700;letter-spacing:.02em}
.top nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;margin:0;padding:0}
.top nav a{text-decoration:none;padding:.25rem .1rem;border-bottom:3px solid transparent}
.top nav a[aria-current=page]{border-bottom-color:#fff;font-weight:600}
.who{margin-left:auto;display:flex;gap:.75rem;align-items:center;font-size:.9rem}
.who button{background:transparent;color:#fff;border-color:#fff}
main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;margin:.5rem 0 1rem}
h2{font-size:1.25rem;margin:1.5rem 0 .5rem}
h3{font-size:1.05rem;margin:1rem 0 .25rem}
.muted{color:var(--muted)}
.flash{background:var(--okbg);border-left:4px solid var(--ok);padding:.5rem .75rem}
.error{background:var(--badbg);border-left:4px solid var(--bad);padding:.5rem .75rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1rem}
.card{border:1px solid var(--line);border-radius:.4rem;padding:.75rem 1rem;background:var(--panel)}
.card h2{margin-top:0}
section.card+section.card{margin-top:1rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .75rem;margin:.5rem 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
thead th{background:var(--panel)}
td.num,th.num{text-align:right}
.badge{display:inline-block;white-space:nowrap;justify-self:start;padding:0 .45rem;border-radius:.8rem;font-size:.85rem;font-weight:600;border:1px solid currentColor}
.badge.ok{color:var(--ok);background:var(--okbg)}.badge.bad{color:var(--bad);background:var(--badbg)}
.badge.warn{color:var(--warn);background:var(--warnbg)}.badge.neutral{color:var(--muted);background:#fff}
button{font:inherit;padding:.35rem .8rem;border:2px solid var(--link);border-radius:.3rem;background:var(--link);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--link)}
form.inline{display:inline}
form.search,form.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:flex-end;margin:.5rem 0 1rem}
label{display:block;font-weight:600;font-size:.9rem}
input,select{font:inherit;padding:.35rem .5rem;border:1px solid #6b7785;border-radius:.3rem;min-width:12rem;max-width:100%}
.login{max-width:24rem}
.login input{width:100%}
.login p{margin:.75rem 0}
.pager{display:flex;gap:1rem;margin:1rem 0}
svg.chart{width:100%;height:auto;max-width:40rem;display:block}
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1rem;list-style:none;padding:0;margin:.25rem 0;font-size:.85rem}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle;border:1px solid var(--fg)}
.where{font-weight:600}
ul.stats{display:flex;flex-wrap:wrap;gap:.4rem;list-style:none;padding:0;margin:.25rem 0 .75rem}
ul.stats a{display:block;padding:.2rem .5rem;border:1px solid var(--line);border-radius:.3rem;background:#fff;text-decoration:none;font-size:.9rem}
ul.stats strong{font-size:1.05rem}
code{font-size:.9em;background:var(--panel);padding:0 .2rem;border-radius:.2rem;overflow-wrap:anywhere}
@media (max-width:40rem){
 .who{margin-left:0}
 table.responsive thead{position:absolute;left:-9999px}
 table.responsive tr{display:block;border:1px solid var(--line);border-radius:.3rem;margin:0 0 .75rem;padding:.25rem .5rem}
 table.responsive td,table.responsive th[scope=row]{display:grid;grid-template-columns:9rem 1fr;gap:.5rem;border:none;padding:.2rem 0}
 table.responsive td::before,table.responsive th[scope=row]::before{content:attr(data-label);font-weight:600;color:var(--muted)}
 input,select{min-width:0;width:100%}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(esc("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#x27;");
        assert!(badge("<x>").contains("&lt;x&gt;"));
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(enc("a b/c,d"), "a%20b%2Fc%2Cd");
        assert_eq!(enc("3f2a-11.x_~"), "3f2a-11.x_~");
    }

    #[test]
    fn a_page_has_one_h1_and_a_nav_landmark_when_signed_in() {
        let op = Operator {
            name: "amina".into(),
            csrf: Some("tok".into()),
        };
        let html = page("Runs", Nav::Runs, Some(&op), None, "<p>x</p>");
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(html.contains("<nav aria-label=\"Main\">"));
        assert!(html.contains("<a href=\"/runs\" aria-current=\"page\">Runs</a>"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
    }
}
