//! The public status page (Atlassian Statuspage REST API): an incident opened when one is
//! declared, an incident update per human update, resolved with it.

use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::config::{Secret, StatusPageSection};
use serde_json::json;

pub const DEFAULT_API_URL: &str = "https://api.statuspage.io";

/// Statuspage's incident states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl PageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PageStatus::Investigating => "investigating",
            PageStatus::Identified => "identified",
            PageStatus::Monitoring => "monitoring",
            PageStatus::Resolved => "resolved",
        }
    }
}

/// How bad it looks from outside: `minor`, `major`, `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impact {
    Minor,
    Major,
    Critical,
}

impl Impact {
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusPageError {
    #[error("Statuspage refused {what} ({status}): {detail}")]
    Rejected {
        what: &'static str,
        status: u16,
        detail: String,
    },
    #[error("Statuspage unavailable for {what}: {detail}")]
    Unavailable { what: &'static str, detail: String },
}

#[async_trait]
pub trait StatusPage: Send + Sync {
    /// Opens an incident; returns Statuspage's id for it, kept with ours.
    async fn open(&self, name: &str, body: &str, impact: Impact)
    -> Result<String, StatusPageError>;
    /// Posts an incident update; `impact` changes the impact when given.
    async fn update(
        &self,
        id: &str,
        status: PageStatus,
        body: &str,
        impact: Option<Impact>,
    ) -> Result<(), StatusPageError>;
}

pub struct Statuspage {
    client: reqwest::Client,
    incidents_url: String,
    api_key: Secret,
}

impl std::fmt::Debug for Statuspage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statuspage")
            .field("incidents_url", &self.incidents_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl Statuspage {
    /// `None` unless both an API key and a page id are configured.
    pub fn from_config(cfg: &StatusPageSection) -> Option<Statuspage> {
        let page_id = cfg.page_id.as_deref().filter(|p| !p.is_empty())?;
        if cfg.api_key.is_empty() {
            return None;
        }
        let base = cfg.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        Statuspage::new(base, page_id, cfg.api_key.clone()).ok()
    }

    pub fn new(
        api_url: &str,
        page_id: &str,
        api_key: Secret,
    ) -> Result<Statuspage, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Statuspage {
            client,
            incidents_url: format!(
                "{}/v1/pages/{page_id}/incidents",
                api_url.trim_end_matches('/')
            ),
            api_key,
        })
    }

    async fn call(
        &self,
        what: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, StatusPageError> {
        let resp = req
            .header("Authorization", format!("OAuth {}", self.api_key.expose()))
            .send()
            .await
            .map_err(|e| StatusPageError::Unavailable {
                what,
                detail: if e.is_timeout() {
                    "timed out".into()
                } else {
                    "connection failed".into()
                },
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let detail: String = text.chars().take(300).collect();
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                StatusPageError::Unavailable {
                    what,
                    detail: format!("HTTP {status}: {detail}"),
                }
            } else {
                StatusPageError::Rejected {
                    what,
                    status: status.as_u16(),
                    detail,
                }
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }
}

#[async_trait]
impl StatusPage for Statuspage {
    async fn open(
        &self,
        name: &str,
        body: &str,
        impact: Impact,
    ) -> Result<String, StatusPageError> {
        let payload = json!({
            "incident": {
                "name": name,
                "status": PageStatus::Investigating.as_str(),
                "impact_override": impact.as_str(),
                "body": body,
                "deliver_notifications": true,
            }
        });
        let v = self
            .call(
                "opening an incident",
                self.client.post(&self.incidents_url).json(&payload),
            )
            .await?;
        v.get("id")
            .and_then(|id| id.as_str())
            .map(str::to_string)
            .ok_or_else(|| StatusPageError::Rejected {
                what: "opening an incident",
                status: 200,
                detail: "the answer carries no incident id".into(),
            })
    }

    async fn update(
        &self,
        id: &str,
        status: PageStatus,
        body: &str,
        impact: Option<Impact>,
    ) -> Result<(), StatusPageError> {
        let mut incident = json!({ "status": status.as_str(), "body": body });
        if let Some(i) = impact {
            incident["impact_override"] = json!(i.as_str());
        }
        let url = format!("{}/{id}", self.incidents_url);
        self.call(
            "updating an incident",
            self.client
                .patch(url)
                .json(&json!({ "incident": incident })),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn open_then_resolve() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/pages/pg1/incidents"))
            .and(header("authorization", "OAuth k-1"))
            .and(body_partial_json(
                json!({"incident": {"status": "investigating", "impact_override": "critical"}}),
            ))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"id": "sp-9", "status": "investigating"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/v1/pages/pg1/incidents/sp-9"))
            .and(body_partial_json(
                json!({"incident": {"status": "resolved"}}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sp-9"})))
            .expect(1)
            .mount(&server)
            .await;
        let sp = Statuspage::new(&server.uri(), "pg1", Secret::new("k-1")).unwrap();
        let id = sp
            .open("Outage", "We are investigating.", Impact::Critical)
            .await
            .unwrap();
        assert_eq!(id, "sp-9");
        sp.update(&id, PageStatus::Resolved, "Resolved.", None)
            .await
            .unwrap();
        assert!(!format!("{sp:?}").contains("k-1"));
    }
}
