//! Flow leases: at most one live holder per flow, with a fencing token that increases on
//! every acquisition.
//!
//! Acquisition is one atomic upsert on both backends: insert the lease, or take over the
//! existing row only when it has expired (or already belongs to the same holder). On
//! PostgreSQL the database clock decides expiry, so instances on several hosts agree; on
//! SQLite (one host) the local clock does. A released lease is expired, not deleted, so the
//! token keeps increasing.

use std::time::Duration;

use chrono::TimeDelta;

use crate::bound::{check_ident, MAX_IDENT};
use crate::db::{args, now, Cols};
use crate::error::LedgerError;
use crate::model::{Backend, Lease};
use crate::Ledger;

fn lease_from_row(r: &dyn Cols) -> Result<Lease, LedgerError> {
    Ok(Lease {
        flow: r.text("flow")?,
        holder: r.text("holder")?,
        token: r.int("token")?,
        expires_at: r.ts("expires_at")?,
    })
}

fn ttl_millis(ttl: Duration) -> Result<i64, LedgerError> {
    let ms = ttl.as_millis();
    if ms == 0 || ms > 86_400_000 {
        return Err(LedgerError::Invalid {
            field: "ttl",
            reason: "must be between 1 ms and 24 h".into(),
        });
    }
    Ok(ms as i64)
}

impl Ledger {
    /// Takes the lease of `flow` for `holder` for `ttl`, unless another holder's lease is
    /// still live (then `None`). Every acquisition, including a holder re-acquiring its own
    /// lease, yields a new, larger fencing token.
    pub async fn try_acquire_lease(
        &self,
        flow: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, LedgerError> {
        check_ident("flow", flow, MAX_IDENT)?;
        check_ident("holder", holder, MAX_IDENT)?;
        let ms = ttl_millis(ttl)?;
        const UPSERT_TAIL: &str = " ON CONFLICT (flow) DO UPDATE SET holder = excluded.holder, \
             token = leases.token + 1, acquired_at = excluded.acquired_at, \
             expires_at = excluded.expires_at \
             WHERE leases.expires_at <= excluded.acquired_at OR leases.holder = excluded.holder \
             RETURNING flow, holder, token, expires_at";
        let lease = match self.backend() {
            Backend::Sqlite => {
                let at = now();
                let expires = at + TimeDelta::milliseconds(ms);
                self.pool
                    .fetch_optional(
                        &format!(
                            "INSERT INTO leases (flow, holder, token, acquired_at, expires_at) \
                             VALUES ($1, $2, 1, $3, $4){UPSERT_TAIL}"
                        ),
                        &args![flow, holder, at, expires],
                        lease_from_row,
                    )
                    .await?
            }
            Backend::Postgres => {
                self.pool
                    .fetch_optional(
                        &format!(
                            "INSERT INTO leases (flow, holder, token, acquired_at, expires_at) \
                             VALUES ($1, $2, 1, clock_timestamp(), \
                             clock_timestamp() + ($3::float8 * interval '1 millisecond'))\
                             {UPSERT_TAIL}"
                        ),
                        &args![flow, holder, ms],
                        lease_from_row,
                    )
                    .await?
            }
        };
        if let Some(l) = &lease {
            tracing::debug!(flow, holder, token = l.token, "lease acquired");
        }
        Ok(lease)
    }

    /// Extends a live lease by `ttl` from now. `false` when the lease was lost: it expired
    /// or another holder took it.
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, LedgerError> {
        let ms = ttl_millis(ttl)?;
        let n = match self.backend() {
            Backend::Sqlite => {
                let at = now();
                self.pool
                    .execute(
                        "UPDATE leases SET expires_at = $1 WHERE flow = $2 AND holder = $3 \
                         AND token = $4 AND expires_at > $5",
                        &args![
                            at + TimeDelta::milliseconds(ms),
                            lease.flow.as_str(),
                            lease.holder.as_str(),
                            lease.token,
                            at
                        ],
                    )
                    .await?
            }
            Backend::Postgres => {
                self.pool
                    .execute(
                        "UPDATE leases SET expires_at = clock_timestamp() + \
                         ($1::float8 * interval '1 millisecond') WHERE flow = $2 AND holder = $3 \
                         AND token = $4 AND expires_at > clock_timestamp()",
                        &args![ms, lease.flow.as_str(), lease.holder.as_str(), lease.token],
                    )
                    .await?
            }
        };
        Ok(n == 1)
    }

    /// Gives the lease up (expires it now) if it is still this lease; otherwise does nothing.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), LedgerError> {
        let (sql, a) = match self.backend() {
            Backend::Sqlite => {
                let at = now();
                (
                    "UPDATE leases SET expires_at = $1 WHERE flow = $2 AND holder = $3 \
                     AND token = $4 AND expires_at > $1",
                    args![at, lease.flow.as_str(), lease.holder.as_str(), lease.token].to_vec(),
                )
            }
            Backend::Postgres => (
                "UPDATE leases SET expires_at = clock_timestamp() WHERE flow = $1 \
                 AND holder = $2 AND token = $3 AND expires_at > clock_timestamp()",
                args![lease.flow.as_str(), lease.holder.as_str(), lease.token].to_vec(),
            ),
        };
        self.pool.execute(sql, &a).await?;
        Ok(())
    }

    /// The live lease of `flow`, if any (for the dashboard).
    pub async fn current_lease(&self, flow: &str) -> Result<Option<Lease>, LedgerError> {
        let (sql, a) = match self.backend() {
            Backend::Sqlite => (
                "SELECT flow, holder, token, expires_at FROM leases \
                 WHERE flow = $1 AND expires_at > $2",
                args![flow, now()].to_vec(),
            ),
            Backend::Postgres => (
                "SELECT flow, holder, token, expires_at FROM leases \
                 WHERE flow = $1 AND expires_at > clock_timestamp()",
                args![flow].to_vec(),
            ),
        };
        self.pool.fetch_optional(sql, &a, lease_from_row).await
    }
}
