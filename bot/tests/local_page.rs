//! The local chat page, served by the real binary on its embedded default: driven in
//! headless Chromium end to end, and checked over HTTP for who may use it (loopback only
//! without a token; a foreign origin or host name is refused) and for catching up after a
//! reconnect.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
mod webdriver;
use common::{BIN, free_port};

/// A `serve` the test started, killed when the test ends however it ends.
struct Served {
    child: Child,
    /// What it printed on stdout and stderr, line by line.
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` and returns it.
    fn wait_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) if l.contains(needle) => {
                    self.seen.push(l.clone());
                    return l;
                }
                Ok(l) => self.seen.push(l),
                Err(e) => panic!(
                    "serve never said {needle:?} ({e}); it said:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_alice_asks_bob_approves_and_progress_and_outcome_appear_live() {
    const TEST: &str = "in_chromium_alice_asks_bob_approves_and_progress_and_outcome_appear_live";
    let Some((chromium, chromedriver)) = webdriver::browser(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The README's run command on the embedded default; one-second rollout steps so the
    // progress is seen moving.
    let mut served = Served::start(
        dir.path(),
        &[
            ("ERLMCP_BOT__LISTEN", &format!("127.0.0.1:{port}")),
            ("ERLMCP_BOT__SANDBOX_STEP", "1s"),
        ],
    );
    let line = served.wait_line("local chat: http://");
    let url = line.trim_start_matches("local chat: ").trim().to_string();
    assert_eq!(url, format!("http://127.0.0.1:{port}/"), "the printed URL");

    let driver = webdriver::Driver::start(&chromedriver, free_port()).await;
    let profile = tempfile::tempdir().unwrap();
    let s = driver.session(&chromium, profile.path()).await;
    s.goto(&url).await;
    s.find("body[data-ready='true']").await;
    s.wait_for(
        "the event stream",
        "return document.getElementById('status').textContent === 'live';",
    )
    .await;
    // Gone if the page were ever reloaded.
    s.run("window.sameLoad = 'yes'; return true;").await;
    let notice = s.text(&s.find("#notice").await).await;
    assert!(notice.contains("For local use"), "{notice}");

    s.click(&s.find("#person option[value='alice']").await)
        .await;
    let input = s.find("#composer-text").await;
    s.type_into(&input, "/erlmcp deploy prod v3.0.0 approved in CAB-12")
        .await;
    s.click(&s.find("#composer button[type='submit']").await)
        .await;

    // The card, with its buttons, as everyone in #deployments sees it.
    let card = s
        .wait_for(
            "the approval card",
            "const c = document.querySelector('article .card'); return c && document.querySelector('button.approve') ? c.innerText : null;",
        )
        .await;
    let card = card.as_str().unwrap_or_default().to_string();
    assert!(card.contains("R-1"), "{card}");
    assert!(card.contains("deploy prod v3.0.0"), "{card}");
    assert!(card.contains("production"), "{card}");
    assert!(card.contains("change-board"), "{card}");
    let typed = s
        .wait_for(
            "alice's message",
            "const m = document.querySelector('article.person'); return m && m.innerText;",
        )
        .await;
    assert!(typed.as_str().unwrap().contains("alice"), "{typed}");

    // Bob approves with the button.
    s.click(&s.find("#person option[value='bob']").await).await;
    let roles = s.text(&s.find("#roles").await).await;
    assert!(roles.contains("change-board"), "{roles}");
    s.click(&s.find("button.approve").await).await;

    let bar = s
        .wait_for(
            "the rollout's progress bar to fill",
            "const p = document.querySelector('article progress'); return p && p.value === p.max && p.max > 0 ? p.max : null;",
        )
        .await;
    assert_eq!(bar.as_u64(), Some(5), "production has five replicas");
    let outcome = s
        .wait_for(
            "the outcome",
            "const t = document.getElementById('log').innerText; return t.includes('production runs v3.0.0') ? t : null;",
        )
        .await;
    let outcome = outcome.as_str().unwrap_or_default().to_string();
    assert!(outcome.contains("5 of 5 new replicas updated"), "{outcome}");
    s.wait_for(
        "the card to show it succeeded",
        "const c = document.querySelector('article .card'); return c && c.innerText.includes('succeeded') && !document.querySelector('button.approve');",
    )
    .await;
    assert!(
        s.text_of_page().await.contains("bob"),
        "the card names the approver"
    );
    assert_eq!(
        s.run("return window.sameLoad;").await.as_str(),
        Some("yes"),
        "everything arrived without a reload"
    );

    let png = s.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("local-chat.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    if let Some(to) = std::env::var_os("ERLMCP_SCREENSHOT_TO") {
        std::fs::write(&to, &png).unwrap();
    }

    // At phone width the page still offers the channels and the message box.
    s.set_window(390, 844).await;
    let fits = s
        .run("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
        .await;
    assert_eq!(
        fits.as_bool(),
        Some(true),
        "no sideways scrolling at phone width"
    );
    s.find("#channel-list button").await;
    s.find("#composer-text").await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_non_loopback_address_without_a_token_the_page_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut served = Served::start(
        dir.path(),
        &[("ERLMCP_BOT__LISTEN", &format!("0.0.0.0:{port}"))],
    );
    // Said once the listener is bound.
    let why = served.wait_line("local chat page is off");
    assert!(why.contains("local.token"), "{why}");
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/", "/local/events", "/local/directory"] {
        let r = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = http()
        .post(format!("{base}/local/messages"))
        .json(&serde_json::json!({ "as": "alice", "channel": "deployments", "text": "whoami" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // The rest of the bot is there.
    let r = http().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_before_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut served = Served::start(
        dir.path(),
        &[
            ("ERLMCP_BOT__LISTEN", &format!("0.0.0.0:{port}")),
            ("ERLMCP_LOCAL__TOKEN", "correct horse"),
        ],
    );
    served.wait_line("local chat: http://");
    let base = format!("http://127.0.0.1:{port}");
    let page = http().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Access token"));
    let info: serde_json::Value = http()
        .get(format!("{base}/local/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["needs_token"], true);
    assert_eq!(info["admitted"], false);
    let r = http()
        .get(format!("{base}/local/directory"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    let wrong = http()
        .post(format!("{base}/local/session"))
        .json(&serde_json::json!({ "token": "wrong" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = http()
        .post(format!("{base}/local/session"))
        .json(&serde_json::json!({ "token": "correct horse" }))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 204);
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("correct horse"),
        "the cookie is not the token"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let dir_ok = http()
        .get(format!("{base}/local/directory"))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(dir_ok.status().as_u16(), 200);
    let body: serde_json::Value = dir_ok.json().await.unwrap();
    assert_eq!(body["people"][0]["name"], "alice");
    // The token itself never reaches the logs.
    let _ = served.child.kill();
    let logs: Vec<String> = served.lines.try_iter().collect();
    assert!(
        !logs
            .iter()
            .chain(&served.seen)
            .any(|l| l.contains("correct horse")),
        "the token was logged"
    );
}

/// The events after `after` (or all, from a snapshot), read until `until` appears.
async fn read_events(base: &str, after: Option<u64>, until: &str) -> String {
    let mut req = http()
        .get(format!("{base}/local/events"))
        .header("host", base.trim_start_matches("http://"));
    if let Some(a) = after {
        req = req.header("last-event-id", a.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !body.contains(until) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => body.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("the events ended before {until:?} ({other:?}):\n{body}"),
        }
    }
    body
}

fn last_id(events: &str) -> u64 {
    events
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .expect("events carry ids")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_page_catches_up_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut served = Served::start(
        dir.path(),
        &[("ERLMCP_BOT__LISTEN", &format!("127.0.0.1:{port}"))],
    );
    served.wait_line("local chat: http://");
    let base = format!("http://127.0.0.1:{port}");
    let say = |text: &str| {
        http()
            .post(format!("{base}/local/messages"))
            .json(&serde_json::json!({ "as": "carol", "channel": "deployments", "text": text }))
            .send()
    };
    let r = say("/erlmcp whoami").await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let first = read_events(&base, None, "local:carol").await;
    assert!(
        first.contains("\"type\":\"snapshot\""),
        "a new page starts from a snapshot"
    );
    let seen = last_id(&first);

    // While the page is away, more is said; it comes back with the last id it saw.
    say("status prod").await.unwrap();
    let missed = read_events(&base, Some(seen), "production [sandbox]").await;
    assert!(
        !missed.contains("\"type\":\"snapshot\""),
        "caught up, not restarted:\n{missed}"
    );
    assert!(missed.contains("status prod"), "{missed}");
    assert!(
        !missed.contains("local:carol"),
        "nothing seen is sent again:\n{missed}"
    );
    assert!(last_id(&missed) > seen);

    // A page on another site, or a name that only resolves here, is not the local chat.
    let foreign = http()
        .post(format!("{base}/local/messages"))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({ "as": "alice", "channel": "deployments", "text": "deploy prod v3.0.0" }))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    let rebound = http()
        .get(format!("{base}/local/directory"))
        .header("host", format!("evil.example:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
    // A form post (no preflight from a browser) is not taken either.
    let form = http()
        .post(format!("{base}/local/messages"))
        .header("content-type", "text/plain")
        .body(r#"{"as":"alice","channel":"deployments","text":"deploy prod v3.0.0"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 415);
    let nobody = say_as(&base, "mallory", "whoami").await;
    assert_eq!(nobody.0, 400);
    assert!(nobody.1.contains("unknown person"), "{}", nobody.1);
}

async fn say_as(base: &str, who: &str, text: &str) -> (u16, String) {
    let r = http()
        .post(format!("{base}/local/messages"))
        .json(&serde_json::json!({ "as": who, "channel": "deployments", "text": text }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}
