//! Primero v2 REST client for ping-primero: Basic or legacy JWT authentication, cases
//! (list with paging / get / create / PATCH), referrals (list, status change with
//! verification), users (paged, indexed by `user_name`).
//!
//! Every request goes through the shared policy of [`pp_http`]: one pooled client, a
//! concurrency limit, retries with backoff and `Retry-After` for transient failures, and one
//! observation per request (method, route template, status, duration; never bodies or query
//! strings). Only this crate knows Primero's wire JSON.

mod auth;
mod client;
mod error;
mod model;
mod project;
mod query;

pub use auth::AuthMode;
pub use client::{routes, CasePages, ListStats, PrimeroClient, PrimeroSettings, PAGE_SIZE, SYSTEM};
pub use error::PrimeroError;
pub use model::{
    Case, Referral, ReferralStatus, ServiceRow, ServiceRowRef, TransitionOutcome, User, Users,
};
pub use query::{format_cursor, CaseQuery, OrderBy, SortDirection};
