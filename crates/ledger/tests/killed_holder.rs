//! A lease holder that is killed (a real child process, this test binary re-run in
//! "holder" mode) keeps its lease until it expires, and not a moment longer.
//!
//! The child acquires the lease with a short ttl, renews it every quarter ttl like the daemon
//! does, and prints `LEASE_ACQUIRED <token>`; the parent kills it with SIGKILL.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Ctx;
use pp_ledger::Ledger;

const FLOW: &str = "referrals-to-progres";
const TTL: Duration = Duration::from_millis(1500);
const CHILD_URL: &str = "PP_LEDGER_TEST_HOLDER_URL";

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Child mode: hold the lease, renewing it, until killed (or 60 s, as a safety net).
async fn hold_lease(url: &str) {
    let ledger = Ledger::connect(url).await.expect("child connects");
    let lease = ledger
        .try_acquire_lease(FLOW, "child-holder", TTL)
        .await
        .expect("child acquire")
        .expect("the lease is free for the child");
    println!("LEASE_ACQUIRED {}", lease.token);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        tokio::time::sleep(TTL / 4).await;
        assert!(ledger.renew_lease(&lease, TTL).await.expect("renew"));
    }
    panic!("child holder was never killed");
}

async fn killed_holder(ctx: Ctx, test_name: &str) {
    let l = ctx.ledger;
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, &ctx.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lease holder child");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let token = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read child output");
                // The test harness prints its own status on the same line first.
                if let Some((_, token)) = line.split_once("LEASE_ACQUIRED ") {
                    return token.trim().parse::<i64>().expect("token");
                }
            }
            panic!("child exited without acquiring the lease");
        }),
    )
    .await
    .expect("child acquires within 60 s")
    .unwrap();

    let long = Duration::from_secs(30);
    assert!(
        l.try_acquire_lease(FLOW, "parent", long)
            .await
            .unwrap()
            .is_none(),
        "a live holder keeps its lease"
    );
    // Longer than the ttl: the child's renewals keep the lease.
    tokio::time::sleep(TTL * 2).await;
    assert!(l
        .try_acquire_lease(FLOW, "parent", long)
        .await
        .unwrap()
        .is_none());

    child.0.kill().expect("kill child");
    child.0.wait().expect("reap child");
    let killed_at = Instant::now();
    assert!(
        l.try_acquire_lease(FLOW, "parent", long)
            .await
            .unwrap()
            .is_none(),
        "a killed holder's lease is not free before it expires"
    );
    let current = l.current_lease(FLOW).await.unwrap().expect("still held");
    assert_eq!(current.holder, "child-holder");
    assert_eq!(current.token, token);

    let lease = loop {
        if let Some(lease) = l.try_acquire_lease(FLOW, "parent", long).await.unwrap() {
            break lease;
        }
        assert!(
            killed_at.elapsed() < TTL + Duration::from_secs(3),
            "the lease must become free once it expires"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        killed_at.elapsed() >= TTL / 4,
        "acquired {:?} after the kill, before the lease could have expired",
        killed_at.elapsed()
    );
    assert_eq!(lease.holder, "parent");
    assert!(
        lease.token > token,
        "fencing token increases past the dead holder's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_sqlite() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        return hold_lease(&url).await;
    }
    common::run_sqlite(|ctx| killed_holder(ctx, "killed_holder_sqlite")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_holder_postgres() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        return hold_lease(&url).await;
    }
    common::run_postgres("killed_holder", |ctx| {
        killed_holder(ctx, "killed_holder_postgres")
    })
    .await
}
