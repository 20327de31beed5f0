//! A reusable harness that drives a real headless Chromium through chromedriver (WebDriver,
//! with `fantoccini`): starts `/usr/bin/chromedriver` on a free loopback port, opens a
//! session with a fresh profile and saves PNG screenshots under
//! `target/artefacts/screenshots/`.
//!
//! Without chromedriver, [`Browser::start`] fails with a message that says how to install
//! it, unless `PP_SKIP_BROWSER=1` is set, in which case it returns `None`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

/// Where chromedriver is expected (Debian's `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Chromium is expected (Debian's `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and one browser session.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

/// The screenshot folder: `$CARGO_TARGET_DIR/artefacts/screenshots`, or the workspace's
/// `target/artefacts/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("artefacts").join("screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height`.
    /// Returns `None` only when chromedriver is missing and `PP_SKIP_BROWSER=1`.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let skip = std::env::var("PP_SKIP_BROWSER").is_ok_and(|v| v == "1");
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            if skip {
                eprintln!(
                    "PP_SKIP_BROWSER=1 and chromedriver/chromium missing: browser test skipped"
                );
                return None;
            }
            panic!(
                "{CHROMEDRIVER} or {CHROMIUM} is missing: install Debian's packages with \
                 `apt-get install -y chromium chromium-driver`, or set PP_SKIP_BROWSER=1 to skip \
                 the browser test"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            // Plain HTTP to chromedriver on the loopback: no TLS needed.
            let mut builder = ClientBuilder::new(HttpConnector::new());
            match builder.capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
            }
        };
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("the screenshot folder");
        Some(Browser {
            client,
            driver,
            _profile: profile,
            shots,
        })
    }

    /// Clicks the element `locator` finds and waits until the browser has left the current
    /// page and loaded the next one (the old page's root element goes stale).
    pub async fn click_and_wait(&self, locator: fantoccini::Locator<'_>) {
        let old_root = self
            .client
            .find(fantoccini::Locator::Css("html"))
            .await
            .expect("a page is loaded");
        self.client
            .find(locator)
            .await
            .expect("the element to click")
            .click()
            .await
            .expect("the click");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match old_root.tag_name().await {
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    break
                }
                _ if Instant::now() > deadline => panic!("the click did not load a new page"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.client
            .wait()
            .for_element(fantoccini::Locator::Css("main h1"))
            .await
            .expect("the next page has a heading");
    }

    /// Saves a screenshot of the current page as `<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is written");
        path
    }

    /// Ends the session and chromedriver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}
