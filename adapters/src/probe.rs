//! HTTP health probes shared by `status` and the post-deploy guard.

use std::time::{Duration, Instant};

use crate::target::HealthProbe;

/// GETs `url` once. Never fails: a transport error becomes `code: None` plus a short
/// description, because a probe result is evidence shown in chat, not a reason to abort.
pub async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> HealthProbe {
    let shown = display_url(url);
    let started = Instant::now();
    let result = client.get(url).timeout(timeout).send().await;
    let latency_ms = started.elapsed().as_millis().min(u64::MAX as u128) as u64;
    match result {
        Ok(resp) => HealthProbe {
            url: shown,
            code: Some(resp.status().as_u16()),
            latency_ms,
            error: None,
        },
        Err(e) => HealthProbe {
            url: shown,
            code: None,
            latency_ms,
            error: Some(describe(&e, timeout)),
        },
    }
}

/// reqwest's own messages embed the full URL, which may carry credentials in the userinfo
/// or a token in the query; chat only ever sees the error's kind.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {}s", timeout.as_secs_f64())
    } else if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_redirect() {
        "too many redirects".to_string()
    } else if e.is_builder() {
        "invalid URL".to_string()
    } else if e.is_request() {
        "request failed".to_string()
    } else {
        "unexpected error".to_string()
    }
}

/// The URL without userinfo and query, safe to echo into a channel.
pub fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<invalid url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_url_hides_credentials_and_query() {
        assert_eq!(
            display_url("https://user:pw@erlmcp.io/health?token=abc"),
            "https://erlmcp.io/health"
        );
        assert_eq!(display_url("not a url"), "<invalid url>");
    }

    #[tokio::test]
    async fn connection_failure_is_a_result_not_a_panic() {
        let client = reqwest::Client::new();
        // Port 9 (discard) on localhost is closed on any sane test machine.
        let p = probe(
            &client,
            "http://u:secret@127.0.0.1:9/health?key=k",
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(p.code, None);
        assert!(!p.is_healthy());
        let err = p.error.unwrap();
        assert!(!err.contains("secret") && !err.contains("key=k"), "{err}");
        assert!(!p.url.contains("secret"));
    }
}
