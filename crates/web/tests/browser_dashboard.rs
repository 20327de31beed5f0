//! The dashboard in a real headless Chromium: sign in through the form, see the four flows,
//! open a run, search a record by its intervention number, retry a rejected record and see
//! it pending; a screenshot of each page is saved under `target/artefacts/screenshots/`.

mod browser;
mod common;

use browser::Browser;
use common::*;
use fantoccini::Locator;
use pp_ledger::RecordState;

#[tokio::test]
async fn browser_dashboard() {
    let s = start().await;
    let seeded = seed(&s.ledger).await;
    let Some(b) = Browser::start(1280, 1500).await else {
        return;
    };
    let c = &b.client;

    // Anonymous visitors land on the sign-in form.
    c.goto(&format!("{}/", s.base)).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    b.screenshot("01-login").await;

    // A wrong password is refused with a message.
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(USER)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("nope")
        .await
        .unwrap();
    b.click_and_wait(Locator::Css("form.login button[type=submit]"))
        .await;
    let alert = c.find(Locator::Css("[role=alert]")).await.unwrap();
    assert_eq!(alert.text().await.unwrap(), "Wrong user name or password.");

    // The right one opens the overview with four flows.
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(USER)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    b.click_and_wait(Locator::Css("form.login button[type=submit]"))
        .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    let headings = c
        .find_all(Locator::Css("main section.card h2"))
        .await
        .unwrap();
    let mut names = Vec::new();
    for h in &headings {
        names.push(h.text().await.unwrap());
    }
    assert_eq!(names, FLOWS.to_vec());
    assert_eq!(
        c.find_all(Locator::Css("svg.chart")).await.unwrap().len(),
        4
    );
    b.screenshot("02-overview").await;

    // Open the run from the overview's "last run" link.
    b.click_and_wait(Locator::Css(&format!("a[href='/runs/{}']", seeded.run_id)))
        .await;
    let h1 = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, "Run of referrals-to-primero");
    let source = c.source().await.unwrap();
    assert!(source.contains(PING_TX));
    assert!(source.contains(REJECTED_KEY));
    b.screenshot("03-run").await;

    b.click_and_wait(Locator::LinkText("Runs")).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/runs");
    b.screenshot("04-runs").await;

    // Search a record by its intervention number.
    b.click_and_wait(Locator::LinkText("Records")).await;
    c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys(REJECTED_INTERVENTION)
        .await
        .unwrap();
    b.click_and_wait(Locator::Css("form.search button")).await;
    let h2 = c
        .find(Locator::Css("main h2"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(h2.starts_with("1 record found"), "{h2}");
    b.screenshot("05-records-search").await;
    b.click_and_wait(Locator::LinkText(REJECTED_KEY)).await;
    let state = c
        .find(Locator::XPath(
            "//dt[text()='State']/following-sibling::dd[1]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "rejected");
    b.screenshot("06-record").await;

    // Retry it and see it pending.
    b.click_and_wait(Locator::XPath("//button[text()='Retry this record']"))
        .await;
    let state = c
        .find(Locator::XPath(
            "//dt[text()='State']/following-sibling::dd[1]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(state, "pending");
    let flash = c
        .find(Locator::Css("p.flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        flash.starts_with("1 record was sent back to pending"),
        "{flash}"
    );
    let r = s.ledger.get(FLOWS[0], REJECTED_KEY).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Pending);
    b.screenshot("07-record-retried").await;

    b.click_and_wait(Locator::LinkText("Needs attention")).await;
    let h1 = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, "Needs attention");
    b.screenshot("08-attention").await;

    // The overview on a phone-sized window.
    c.set_window_size(390, 1400).await.unwrap();
    b.click_and_wait(Locator::LinkText("Overview")).await;
    b.screenshot("09-overview-phone").await;
    c.goto(&format!("{}/runs", s.base)).await.unwrap();
    b.screenshot("10-runs-phone").await;

    b.stop().await;
}
