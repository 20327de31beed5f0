//! The dashboard over HTTP against a real SQLite ledger: sign-in, refusal of anonymous
//! requests, CSRF, rate limits, the pages' content, the retry and "Run now" actions.

mod common;

use common::*;
use pp_ledger::RecordState;

const PAGES: &[&str] = &[
    "/",
    "/runs",
    "/runs/some-run",
    "/records",
    "/records?q=INT-2024-000123",
    "/records/referrals-to-primero/some-key",
    "/attention",
    "/no-such-page",
];

const ACTIONS: &[&str] = &[
    "/flows/referrals-to-primero/run",
    "/records/referrals-to-primero/some-key/retry",
    "/attention/retry",
    "/logout",
];

#[tokio::test]
async fn every_page_and_action_is_refused_without_sign_in() {
    let s = start().await;
    seed(&s.ledger).await;
    let c = client();
    for p in PAGES {
        let res = c.get(format!("{}{p}", s.base)).send().await.unwrap();
        assert_eq!(res.status(), 303, "GET {p}");
        let loc = res.headers()["location"].to_str().unwrap();
        assert!(loc.starts_with("/login"), "GET {p} redirects to {loc}");
        assert!(!res.text().await.unwrap().contains("referrals-to-primero"));
    }
    for a in ACTIONS {
        let res = c
            .post(format!("{}{a}", s.base))
            .form(&[("csrf", "x"), ("flow", "referrals-to-primero")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "POST {a}");
    }
    // A wrong token is no better.
    let res = c
        .get(format!("{}/runs", s.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    // Nothing was queued or retried.
    assert!(s.queued.lock().unwrap().is_empty());
    let r = s.ledger.get(FLOWS[0], REJECTED_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Rejected);
}

#[tokio::test]
async fn probes_and_metrics_stay_open() {
    let s = start().await;
    let c = client();
    let res = c.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(
        c.get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sign_in_with_right_and_wrong_password() {
    let s = start().await;
    let c = client();
    let res = sign_in(&c, &s.base, USER, "wrong password").await;
    assert_eq!(res.status(), 401);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password"));
    let res = sign_in(&c, &s.base, "mallory", PASSWORD).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        c.get(format!("{}/", s.base)).send().await.unwrap().status(),
        303
    );

    let res = sign_in(&c, &s.base, USER, PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("pp_session="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    let page = c.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Signed in as amina"));
    // The sign-in form sends a signed-in operator to the overview.
    let res = c.get(format!("{}/login", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");

    // Signing out ends the session.
    let csrf = csrf_of(
        &c.get(format!("{}/runs", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let res = c
        .post(format!("{}/logout", s.base))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        c.get(format!("{}/", s.base)).send().await.unwrap().status(),
        303
    );
}

#[tokio::test]
async fn sign_in_form_without_its_token_is_forbidden() {
    let s = start().await;
    let c = client();
    let res = c
        .post(format!("{}/login", s.base))
        .form(&[("username", USER), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        c.get(format!("{}/", s.base)).send().await.unwrap().status(),
        303
    );
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_forbidden() {
    let s = start().await;
    seed(&s.ledger).await;
    let c = client();
    let csrf = signed_in(&c, &s.base).await;
    let retry = format!("{}/records/{}/{}/retry", s.base, FLOWS[0], REJECTED_KEY);
    let res = c.post(&retry).form(&[("x", "1")]).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = c
        .post(&retry)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = c
        .post(format!("{}/flows/{}/run", s.base, FLOWS[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let r = s.ledger.get(FLOWS[0], REJECTED_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Rejected);
    assert!(s.queued.lock().unwrap().is_empty());
    // The right token works.
    let res = c
        .post(&retry)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn repeated_wrong_passwords_are_rate_limited() {
    let s = start().await;
    let c = client();
    for i in 0..5 {
        let res = sign_in(&c, &s.base, USER, &format!("guess {i}")).await;
        assert_eq!(res.status(), 401);
    }
    let res = sign_in(&c, &s.base, USER, PASSWORD).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "60");
    assert_eq!(
        c.get(format!("{}/", s.base)).send().await.unwrap().status(),
        303
    );
}

#[tokio::test]
async fn pages_show_the_seeded_ledger() {
    let s = start().await;
    let seeded = seed(&s.ledger).await;
    let c = client();
    signed_in(&c, &s.base).await;
    let get = |p: String| {
        let c = c.clone();
        async move {
            let res = c.get(p.clone()).send().await.unwrap();
            assert_eq!(res.status(), 200, "GET {p}");
            let html = res.text().await.unwrap();
            assert_eq!(html.matches("<h1>").count(), 1, "{p} has one h1");
            assert!(!html.contains("<script>"), "{p} contains unescaped markup");
            html
        }
    };

    let overview = get(format!("{}/", s.base)).await;
    for f in FLOWS {
        assert!(
            overview.contains(&format!(">{f}</h2>")),
            "overview lacks {f}"
        );
    }
    assert!(overview.contains("<svg class=\"chart\""));
    assert!(overview.contains(
        "3 outcomes in the last 30 days (each change of state or reason of a record counts once): \
         1 confirmed, 1 conflict, 1 rejected."
    ));
    assert!(overview.contains("3 records in the ledger, by current state:"));
    assert!(overview.contains(&format!("/runs/{}", seeded.run_id)));
    assert!(overview.contains("fetched 3"));
    // Enabled flows have a "Run now" button, the disabled one does not.
    assert!(overview.contains("Run referrals-to-primero now"));
    assert!(!overview.contains("Run referrals-to-progres now"));

    let runs = get(format!("{}/runs", s.base)).await;
    assert!(runs.contains(&seeded.run_id));
    assert!(runs.contains(&seeded.failed_run_id));
    assert!(runs.contains("ping: 503 after retries"));
    let failed = get(format!("{}/runs?outcome=failed", s.base)).await;
    assert!(failed.contains(&seeded.failed_run_id));
    assert!(!failed.contains(&seeded.run_id));

    let run = get(format!("{}/runs/{}", s.base, seeded.run_id)).await;
    for k in [
        REJECTED_KEY,
        CONFIRMED_KEY,
        CONFLICT_KEY,
        PING_TX,
        "unmapped_language",
    ] {
        assert!(run.contains(k), "run page lacks {k}");
    }

    let found = get(format!("{}/records?q={REJECTED_INTERVENTION}", s.base)).await;
    assert!(found.contains("1 record found"));
    assert!(found.contains(REJECTED_KEY));
    let found = get(format!("{}/records?q={CONFIRMED_CASE_ID}", s.base)).await;
    assert!(found.contains(CONFIRMED_KEY));
    let none = get(format!("{}/records?q=nothing-like-this", s.base)).await;
    assert!(none.contains("0 records found"));
    let list = get(format!("{}/records?state=conflict", s.base)).await;
    assert!(list.contains(CONFLICT_KEY));
    assert!(!list.contains(CONFIRMED_KEY));

    let record = get(format!("{}/records/{}/{}", s.base, FLOWS[0], REJECTED_KEY)).await;
    assert!(record.contains("Fix in the value maps of the configuration"));
    assert!(record.contains(REJECTED_INTERVENTION));
    assert!(record.contains("Retry this record"));
    assert!(record.contains("History"));
    let confirmed = get(format!("{}/records/{}/{}", s.base, FLOWS[0], CONFIRMED_KEY)).await;
    assert!(confirmed.contains(PING_TX));
    assert!(!confirmed.contains("Retry this record"));

    // Values that look like markup are escaped, and keys with slashes are reachable.
    let nasty = get(format!(
        "{}/records/{}/{}",
        s.base,
        FLOWS[3],
        pp_web::html::enc(NASTY_KEY)
    ))
    .await;
    assert!(nasty.contains("svc-&lt;b&gt;bold&lt;&#x2F;b&gt;"));
    assert!(nasty.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; refused"));

    let attention = get(format!("{}/attention", s.base)).await;
    assert!(attention.contains("Language has no entry in the language map"));
    assert!(attention.contains("Several Primero cases match (conflict)"));
    assert!(attention.contains("The destination refused the record"));
    assert!(attention.contains(REJECTED_KEY));
    // Failed records are not in "needs attention": they are retried by themselves.
    assert!(!attention.contains("ref-guid-9"));

    let missing = c
        .get(format!("{}/runs/no-such-run", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn retry_sends_records_back_to_pending() {
    let s = start().await;
    seed(&s.ledger).await;
    let c = client();
    let csrf = signed_in(&c, &s.base).await;

    let res = c
        .post(format!(
            "{}/records/{}/{}/retry",
            s.base, FLOWS[0], REJECTED_KEY
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let r = s.ledger.get(FLOWS[0], REJECTED_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Pending);
    let audit = s.ledger.audit(FLOWS[0], REJECTED_KEY).await.unwrap();
    assert_eq!(audit.last().unwrap().cause, "operator:amina");
    let page = c
        .get(format!(
            "{}{}",
            s.base,
            res.headers()["location"].to_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("1 record was sent back to pending"));

    // A whole group from "Needs attention".
    let res = c
        .post(format!("{}/attention/retry", s.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("flow", FLOWS[0]),
            ("reason", "duplicate_cases"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/attention?msg=retried&n=1");
    let r = s.ledger.get(FLOWS[0], CONFLICT_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Pending);
    // Other flows' records are untouched.
    let r = s.ledger.get(FLOWS[3], NASTY_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Rejected);
}

#[tokio::test]
async fn run_now_calls_the_daemon_for_enabled_flows_only() {
    let s = start().await;
    let c = client();
    let csrf = signed_in(&c, &s.base).await;
    let res = c
        .post(format!("{}/flows/{}/run", s.base, FLOWS[1]))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/?msg=run_queued&flow=decisions-to-progres"
    );
    // Disabled and unknown flows are refused without calling the daemon.
    for flow in [FLOWS[2], "no-such-flow"] {
        let res = c
            .post(format!("{}/flows/{flow}/run", s.base))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert!(res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/?msg=run_refused"));
    }
    assert_eq!(*s.queued.lock().unwrap(), vec![FLOWS[1].to_string()]);
}

#[tokio::test]
async fn the_api_token_works_for_scripts_without_csrf() {
    let s = start().await;
    seed(&s.ledger).await;
    let c = client();
    let res = c
        .get(format!("{}/attention", s.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = c
        .post(format!(
            "{}/records/{}/{}/retry",
            s.base, FLOWS[0], REJECTED_KEY
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let r = s.ledger.get(FLOWS[0], REJECTED_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Pending);
    assert_eq!(
        s.ledger
            .audit(FLOWS[0], REJECTED_KEY)
            .await
            .unwrap()
            .last()
            .unwrap()
            .cause,
        "operator:token"
    );
}

#[tokio::test]
async fn bench_pages_renders_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let ledger = pp_ledger::Ledger::connect(&url).await.unwrap();
    pp_web::seed_for_bench(&ledger, 1500).await.unwrap();
    let pages = pp_web::bench_pages(ledger).await.unwrap();
    let names: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    assert!(names.contains(&"/"));
    assert!(names.contains(&"/attention"));
    assert!(names.iter().any(|p| p.starts_with("/runs/")));
    assert!(names.iter().any(|p| p.starts_with("/records?q=")));
    assert!(names.iter().any(|p| p.starts_with("/records/")));
}

#[tokio::test]
async fn the_overview_counts_each_record_once_and_calls_state_changes_outcomes() {
    let s = start().await;
    // Flow 1.1 as a run leaves it: two referrals delivered, then confirmed by the next step,
    // a third rejected. Five outcomes, three records.
    let flow = FLOWS[0];
    let run = s.ledger.start_run(flow, "test-instance").await.unwrap();
    let cause = pp_ledger::Cause::Run(run);
    let change = |key: &str, state| pp_ledger::RecordChange::new(flow, key, state);
    s.ledger
        .apply(
            &[
                change("lp-a", RecordState::Delivered),
                change("lp-b", RecordState::Delivered),
                change("lp-c", RecordState::Rejected).with_reason("unmapped_sex", "sex: x"),
            ],
            None,
            &cause,
        )
        .await
        .unwrap();
    s.ledger
        .apply(
            &[
                change("lp-a", RecordState::Confirmed),
                change("lp-b", RecordState::Confirmed),
            ],
            None,
            &cause,
        )
        .await
        .unwrap();

    let c = client();
    signed_in(&c, &s.base).await;
    let html = c
        .get(format!("{}/", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let card = html
        .split("<section class=\"card\"")
        .find(|c| c.contains(&format!(">{flow}</h2>")))
        .expect("the flow's card");
    assert!(
        card.contains("3 records in the ledger, by current state:"),
        "{card}"
    );
    assert!(card.contains("<strong>2</strong> confirmed"), "{card}");
    assert!(card.contains("<strong>1</strong> rejected"), "{card}");
    assert!(
        card.contains("5 outcomes in the last 30 days (each change of state or reason of a record counts once): 2 confirmed, 2 delivered, 1 rejected."),
        "{card}"
    );
    assert!(!card.contains("5 records"), "{card}");
}
