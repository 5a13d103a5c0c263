//! Paging on-call through the PagerDuty Events API v2: one alert per incident, keyed by the
//! incident id so a repeated trigger is folded into the open alert and the resolve finds it.

use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::config::{PagerDutySection, Secret};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use crate::retry::{Failure, RetryPolicy, retry_after};

pub const DEFAULT_API_URL: &str = "https://events.pagerduty.com";

/// PagerDuty's own severity scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PageSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

impl PageSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            PageSeverity::Critical => "critical",
            PageSeverity::Error => "error",
            PageSeverity::Warning => "warning",
            PageSeverity::Info => "info",
        }
    }
}

/// What on-call sees on their phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// `INC-7`: the same key triggers and resolves the one alert.
    pub dedup_key: String,
    pub summary: String,
    pub source: String,
    pub severity: PageSeverity,
}

#[derive(Debug, thiserror::Error)]
pub enum PagerError {
    #[error("PagerDuty refused the event ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("PagerDuty unavailable after {attempts} attempt(s): {detail}")]
    Unavailable { attempts: u32, detail: String },
}

#[async_trait]
pub trait Pager: Send + Sync {
    async fn trigger(&self, page: &Page) -> Result<(), PagerError>;
    async fn resolve(&self, dedup_key: &str) -> Result<(), PagerError>;
}

pub struct PagerDuty {
    client: reqwest::Client,
    enqueue_url: String,
    routing_key: Secret,
    retry: RetryPolicy,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty")
            .field("enqueue_url", &self.enqueue_url)
            .field("routing_key", &self.routing_key)
            .finish()
    }
}

impl PagerDuty {
    /// `None` when no routing key is configured: paging is optional.
    pub fn from_config(cfg: &PagerDutySection) -> Option<PagerDuty> {
        if cfg.routing_key.is_empty() {
            return None;
        }
        let base = cfg.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        PagerDuty::new(base, cfg.routing_key.clone()).ok()
    }

    pub fn new(api_url: &str, routing_key: Secret) -> Result<PagerDuty, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(PagerDuty {
            client,
            enqueue_url: format!("{}/v2/enqueue", api_url.trim_end_matches('/')),
            routing_key,
            // An event is keyed by its dedup_key, so sending it again is safe.
            retry: RetryPolicy {
                attempts: 3,
                base: Duration::from_millis(500),
                max: Duration::from_secs(2),
                max_retry_after: Duration::from_secs(30),
                max_total: Duration::from_secs(60),
            },
        })
    }

    async fn send(&self, body: serde_json::Value, action: &str) -> Result<(), PagerError> {
        self.retry
            .run_observed(
                "pagerduty",
                || self.send_once(&body),
                |e: &Try| match e {
                    Try::Rejected { .. } => Failure::Permanent,
                    Try::RateLimited(after) => Failure::RateLimited(*after),
                    Try::Unavailable(_) => Failure::Transient,
                },
                |e, attempt, _| warn!(action, attempt, error = %e.detail(), "PagerDuty event not accepted yet"),
            )
            .await
            .map_err(|gave_up| match gave_up.error {
                Try::Rejected { status, detail } => PagerError::Rejected { status, detail },
                other => PagerError::Unavailable {
                    attempts: gave_up.attempts,
                    detail: other.detail(),
                },
            })
    }

    async fn send_once(&self, body: &serde_json::Value) -> Result<(), Try> {
        match self.client.post(&self.enqueue_url).json(body).send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let after = retry_after(resp.headers());
                let detail = resp.text().await.unwrap_or_default();
                // 400 means the event is malformed or the key is wrong: retrying the same
                // body cannot help. 429 and 5xx are PagerDuty asking to come back later.
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    Err(Try::RateLimited(after))
                } else if status.is_server_error() {
                    Err(Try::Unavailable(format!("HTTP {status}")))
                } else {
                    Err(Try::Rejected {
                        status: status.as_u16(),
                        detail: short(&detail),
                    })
                }
            }
            // reqwest's messages carry the URL, never the body, so the key stays out.
            Err(e) => Err(Try::Unavailable(
                if e.is_timeout() {
                    "timed out"
                } else {
                    "connection failed"
                }
                .into(),
            )),
        }
    }
}

/// How one try of an event ended.
enum Try {
    Rejected { status: u16, detail: String },
    RateLimited(Option<Duration>),
    Unavailable(String),
}

impl Try {
    fn detail(&self) -> String {
        match self {
            Try::Rejected { status, .. } => format!("HTTP {status}"),
            Try::RateLimited(_) => "HTTP 429 Too Many Requests".into(),
            Try::Unavailable(detail) => detail.clone(),
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

#[async_trait]
impl Pager for PagerDuty {
    async fn trigger(&self, page: &Page) -> Result<(), PagerError> {
        let body = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": page.dedup_key,
            "payload": {
                "summary": page.summary,
                "source": page.source,
                "severity": page.severity.as_str(),
            },
        });
        self.send(body, "trigger").await
    }

    async fn resolve(&self, dedup_key: &str) -> Result<(), PagerError> {
        let body = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
        self.send(body, "resolve").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_partial_json, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn trigger_and_resolve_speak_events_v2() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .and(body_partial_json(json!({
                "routing_key": "rk-1", "event_action": "trigger", "dedup_key": "INC-7",
                "payload": {"severity": "critical", "source": "erlmcp-bot"}
            })))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "success"})))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .and(body_partial_json(
                json!({"event_action": "resolve", "dedup_key": "INC-7"}),
            ))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        let pd = PagerDuty::new(&server.uri(), Secret::new("rk-1")).unwrap();
        pd.trigger(&Page {
            dedup_key: "INC-7".into(),
            summary: "INC-7 P0: outage".into(),
            source: "erlmcp-bot".into(),
            severity: PageSeverity::Critical,
        })
        .await
        .unwrap();
        pd.resolve("INC-7").await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_request_is_not_retried_and_the_key_is_not_shown() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_string("Invalid routing key"))
            .expect(1)
            .mount(&server)
            .await;
        let pd = PagerDuty::new(&server.uri(), Secret::new("secret-key")).unwrap();
        let err = pd.resolve("INC-1").await.unwrap_err();
        assert!(
            matches!(err, PagerError::Rejected { status: 400, .. }),
            "{err}"
        );
        assert!(!format!("{err} {pd:?}").contains("secret-key"));
    }

    fn page() -> Page {
        Page {
            dedup_key: "INC-9".into(),
            summary: "INC-9 P1: slow".into(),
            source: "erlmcp-bot".into(),
            severity: PageSeverity::Error,
        }
    }

    #[tokio::test]
    async fn a_server_error_is_retried_until_accepted() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&server)
            .await;
        let pd = PagerDuty::new(&server.uri(), Secret::new("rk")).unwrap();
        pd.trigger(&page()).await.unwrap();
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_budget_ends_the_call_at_once() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
            .expect(1)
            .mount(&server)
            .await;
        let mut pd = PagerDuty::new(&server.uri(), Secret::new("rk")).unwrap();
        pd.retry.max_total = Duration::from_secs(1);
        let err = pd.trigger(&page()).await.unwrap_err();
        assert!(
            matches!(&err, PagerError::Unavailable { attempts: 1, detail } if detail.contains("429")),
            "{err}"
        );
    }
}
