//! Request guards of the dashboard: the sign-in requirement (a page without a session
//! redirects to `/login`, an action without one is refused with 401), the CSRF check of
//! every POST made with a session, and the security headers of every response.

use std::net::{IpAddr, SocketAddr};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::{ct_eq, Authn};
use crate::html::{enc, error_page};
use crate::App;

/// Largest form body accepted (forms carry a token and a few identifiers).
const MAX_FORM: usize = 64 * 1024;

/// The client's address, when the server was started with connection info.
pub(crate) fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Lets a request through only with a live session or the API token; checks the CSRF token
/// of POSTs made with a session. The operator is put into the request's extensions.
pub(crate) async fn require_operator(State(app): State<App>, req: Request, next: Next) -> Response {
    let ip = client_ip(&req);
    let op = match app.auth.authenticate(req.headers(), ip) {
        Authn::Ok(op) => op,
        Authn::Limited => {
            return error_page(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "Too many failed attempts from this address; wait a minute.",
            )
        }
        Authn::Anonymous => {
            return if matches!(*req.method(), Method::GET | Method::HEAD) {
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let location = if target == "/" {
                    "/login".to_string()
                } else {
                    format!("/login?next={}", enc(target))
                };
                Redirect::to(&location).into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "sign-in required\n",
                )
                    .into_response()
            };
        }
    };
    let mut req = req;
    if req.method() == Method::POST {
        if let Some(expected) = &op.csrf {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
                return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
            };
            let sent = url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned());
            let ok = sent.is_some_and(|s| ct_eq(s.as_bytes(), expected.as_bytes()));
            if !ok {
                return error_page(
                    StatusCode::FORBIDDEN,
                    Some(&op),
                    "The form's security token is missing or out of date. Go back, reload the page and try again.",
                );
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    req.extensions_mut().insert(op);
    next.run(req).await
}

/// Adds the security headers to every response.
pub(crate) async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}
