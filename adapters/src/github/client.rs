//! One GitHub REST client for every GitHub call the bot makes: reads that honour GitHub's
//! rate limits and retry, and writes that are sent exactly once.
//!
//! octocrab's own retry layer is turned off: it repeats any request on a 5xx or a dropped
//! connection, which for a workflow dispatch can start the workflow twice. Reads go through
//! [`RetryPolicy`] instead, with waits taken from GitHub's headers; a write whose answer is
//! lost is reported as [`GithubError::Lost`] so the caller can find out by reading what
//! happened.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use erlmcp_commands::config::{GithubSection, Secret};
use http::{HeaderMap, Method, StatusCode};
use octocrab::Octocrab;
use octocrab::service::middleware::retry::RetryConfig;
use serde::de::DeserializeOwned;

use crate::retry::{Failure, RetryPolicy};

pub const DEFAULT_API_URL: &str = "https://api.github.com/";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// GitHub: "if you receive a secondary rate limit error ... wait for at least one minute".
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Error texts end up in chat replies and the audit log.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GithubSetupError(pub(crate) String);

/// Where to look and how long to wait.
#[derive(Debug, Clone)]
pub struct GithubOptions {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub token: Secret,
    /// Bounds one HTTP exchange (connect, write, read).
    pub timeout: Duration,
    /// How reads are retried; its `max_retry_after` is the longest rate-limit wait taken
    /// before giving up with GitHub's reset time.
    pub reads: RetryPolicy,
    /// The first wait on a secondary rate limit (a 403/429 without limit headers).
    pub secondary_wait: Duration,
}

impl GithubOptions {
    /// `None` unless both `owner` and `repo` are configured.
    pub fn from_config(cfg: &GithubSection) -> Option<GithubOptions> {
        let owner = cfg.owner.as_deref().filter(|s| !s.is_empty())?;
        let repo = cfg.repo.as_deref().filter(|s| !s.is_empty())?;
        Some(GithubOptions::new(
            cfg.api_url
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_API_URL),
            owner,
            repo,
            cfg.token.clone(),
        ))
    }

    pub fn new(api_url: &str, owner: &str, repo: &str, token: Secret) -> GithubOptions {
        GithubOptions {
            api_url: api_url.to_string(),
            owner: owner.to_string(),
            repo: repo.to_string(),
            token,
            timeout: DEFAULT_TIMEOUT,
            reads: RetryPolicy {
                attempts: 4,
                base: Duration::from_secs(1),
                max: Duration::from_secs(8),
                max_retry_after: Duration::from_secs(300),
                max_total: Duration::from_secs(600),
            },
            secondary_wait: SECONDARY_LIMIT_WAIT,
        }
    }
}

/// Why a GitHub call did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    /// GitHub answered with an error status; `message` is GitHub's own (token removed).
    #[error("GitHub answered HTTP {status}: {message}")]
    Api { status: u16, message: String },
    /// Rate limited for longer than the bot waits.
    #[error("GitHub's rate limit is exhausted{until}")]
    RateLimited {
        /// ` until 10:32 UTC`, or empty when GitHub did not say.
        until: String,
    },
    /// No HTTP answer (connection refused, timeout) to a read, or to a write before it was
    /// sent.
    #[error("could not reach GitHub: {0}")]
    Unreachable(String),
    /// A write was sent but its answer never came: it may or may not have happened.
    #[error("GitHub's answer was lost: {0}")]
    Lost(String),
    #[error("unexpected answer from GitHub: {0}")]
    Decode(String),
}

impl GithubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An HTTP answer: status, headers and body text.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A failed read, with the wait GitHub asked for when it was a rate limit.
#[derive(Debug)]
struct ReadFailure {
    error: GithubError,
    kind: Failure,
}

pub struct GithubClient {
    octo: Octocrab,
    owner: String,
    repo: String,
    token: Secret,
    reads: RetryPolicy,
    secondary_wait: Duration,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &self.token)
            .finish()
    }
}

impl GithubClient {
    pub fn new(opts: GithubOptions) -> Result<GithubClient, GithubSetupError> {
        let mut builder = Octocrab::builder()
            .base_uri(opts.api_url.as_str())
            .map_err(|_| {
                GithubSetupError(format!(
                    "github.api_url {:?} is not a valid URL",
                    opts.api_url
                ))
            })?
            // octocrab already sends `X-GitHub-Api-Version: 2022-11-28` on every request;
            // adding it again would send the header twice.
            .add_header(
                http::header::ACCEPT,
                "application/vnd.github+json".to_string(),
            )
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(opts.timeout))
            .set_read_timeout(Some(opts.timeout))
            .set_write_timeout(Some(opts.timeout));
        if !opts.token.is_empty() {
            // octocrab unwraps the header it builds from the token; a token that cannot
            // be a header value would panic there instead of failing here.
            if !opts.token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(GithubSetupError(
                    "github.token contains characters that cannot be sent in a header".into(),
                ));
            }
            builder = builder.personal_token(opts.token.expose().to_string());
        }
        let octo = builder.build().map_err(|e| {
            GithubSetupError(scrub(
                &format!("could not build the GitHub client: {e}"),
                &opts.token,
            ))
        })?;
        Ok(GithubClient {
            octo,
            owner: opts.owner,
            repo: opts.repo,
            token: opts.token,
            reads: opts.reads,
            secondary_wait: opts.secondary_wait,
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// `/repos/{owner}/{repo}` followed by `rest` (which starts with `/`).
    pub fn repo_route(&self, rest: &str) -> String {
        format!(
            "/repos/{}/{}{rest}",
            path_segment(&self.owner),
            path_segment(&self.repo)
        )
    }

    /// A GET that is retried on rate limits, 5xx and dropped connections, and decoded.
    pub async fn get_json<T: DeserializeOwned>(&self, route: &str) -> Result<T, GithubError> {
        let answer = self.get(route).await?;
        serde_json::from_str(&answer.body).map_err(|e| GithubError::Decode(e.to_string()))
    }

    /// A GET answered with a success status, after the retries [`GithubOptions::reads`]
    /// allows.
    pub async fn get(&self, route: &str) -> Result<Answer, GithubError> {
        let secondary = &AtomicU32::new(0);
        self.reads
            .run(
                || async move {
                    let answer = self
                        .send(Method::GET, route, None)
                        .await
                        .map_err(|e| ReadFailure {
                            kind: Failure::Transient,
                            error: match e {
                                GithubError::Lost(m) => GithubError::Unreachable(m),
                                other => other,
                            },
                        })?;
                    if answer.status.is_success() {
                        return Ok(answer);
                    }
                    Err(self.read_failure(&answer, secondary))
                },
                |f: &ReadFailure| f.kind,
                |f, attempt, wait| {
                    tracing::warn!(error = %f.error, attempt, wait_ms = wait.as_millis() as u64, %route, "GitHub read retried");
                },
            )
            .await
            .map_err(|gave_up| gave_up.error.error)
    }

    fn read_failure(&self, answer: &Answer, secondary: &AtomicU32) -> ReadFailure {
        let error = self.api_error(answer);
        let kind = match limit_wait(answer, std::time::SystemTime::now()) {
            Some(LimitWait::Wait(d)) if d <= self.reads.max_retry_after => {
                Failure::RateLimited(Some(d))
            }
            Some(LimitWait::Wait(_)) => {
                return ReadFailure {
                    error: GithubError::RateLimited {
                        until: reset_time(&answer.headers)
                            .map(|t| format!(" until {t}"))
                            .unwrap_or_default(),
                    },
                    kind: Failure::Permanent,
                };
            }
            Some(LimitWait::Secondary) => {
                let n = secondary.fetch_add(1, Ordering::Relaxed).min(6);
                Failure::RateLimited(Some(self.secondary_wait * 2u32.pow(n)))
            }
            None if answer.status.is_server_error() => Failure::Transient,
            None => Failure::Permanent,
        };
        ReadFailure { error, kind }
    }

    /// Sends one request, never repeated. A transport error after the request may have
    /// left is [`GithubError::Lost`]; the status is returned as is.
    pub async fn send(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        let request = self
            .octo
            .build_request(
                http::Request::builder().method(method.clone()).uri(route),
                body,
            )
            .map_err(|e| GithubError::Unreachable(self.describe_transport(&e)))?;
        let response = match self.octo.execute(request).await {
            Ok(r) => r,
            Err(e) => {
                let text = self.describe_transport(&e);
                // A refused connection cannot have delivered anything.
                return Err(if method == Method::GET || is_connect_error(&e) {
                    GithubError::Unreachable(text)
                } else {
                    GithubError::Lost(text)
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = self
            .octo
            .body_to_string(response)
            .await
            .map_err(|e| GithubError::Lost(self.describe_transport(&e)))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// A write sent once; any status other than 2xx is an error with GitHub's message.
    pub async fn write(
        &self,
        method: Method,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GithubError> {
        let answer = self.send(method, route, body).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(self.api_error(&answer))
        }
    }

    /// GitHub's `message` (and the first validation error), token scrubbed.
    pub fn api_error(&self, answer: &Answer) -> GithubError {
        let parsed: Option<serde_json::Value> = serde_json::from_str(&answer.body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| {
                let m = v.get("message")?.as_str()?.to_string();
                let detail = v
                    .get("errors")
                    .and_then(|e| e.get(0))
                    .and_then(|e| e.get("message").or_else(|| e.get("code")))
                    .and_then(|m| m.as_str());
                Some(match detail {
                    Some(d) => format!("{m} ({d})"),
                    None => m,
                })
            })
            .unwrap_or_else(|| {
                answer
                    .status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            });
        GithubError::Api {
            status: answer.status.as_u16(),
            message: scrub(&short(&message), &self.token),
        }
    }

    fn describe_transport(&self, e: &octocrab::Error) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        scrub(&short(&text), &self.token)
    }

    /// Scrubs the token out of any text bound for chat.
    pub fn scrub(&self, s: &str) -> String {
        scrub(s, &self.token)
    }
}

fn is_connect_error(e: &octocrab::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// What GitHub's answer says about waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitWait {
    /// `retry-after`, or the time left until `x-ratelimit-reset` when none remain.
    Wait(Duration),
    /// A 403/429 without those headers: a secondary limit.
    Secondary,
}

/// GitHub's order: `retry-after` first; else `x-ratelimit-remaining: 0` waits until
/// `x-ratelimit-reset`; else a 429 (or a 403 that says so) is a secondary limit.
fn limit_wait(answer: &Answer, now: std::time::SystemTime) -> Option<LimitWait> {
    let status = answer.status.as_u16();
    if status != 403 && status != 429 {
        return None;
    }
    let h = &answer.headers;
    if let Some(after) = crate::retry::retry_after(h) {
        return Some(LimitWait::Wait(after));
    }
    if header_u64(h, "x-ratelimit-remaining") == Some(0) {
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let wait = header_u64(h, "x-ratelimit-reset")
            .map(|reset| reset.saturating_sub(now).max(1))
            .unwrap_or(60);
        return Some(LimitWait::Wait(Duration::from_secs(wait)));
    }
    // A plain 403 is usually a permission problem; GitHub words its secondary limits.
    if status == 429 || answer.body.to_ascii_lowercase().contains("rate limit") {
        return Some(LimitWait::Secondary);
    }
    None
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn reset_time(h: &HeaderMap) -> Option<String> {
    let reset = header_u64(h, "x-ratelimit-reset")?;
    let at = chrono::DateTime::from_timestamp(reset as i64, 0)?;
    Some(at.format("%H:%M UTC").to_string())
}

/// Keeps GitHub's unreserved characters; anything else (a `+build` suffix, say) is escaped
/// so it stays inside its path segment.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The first line, cut to a length a chat reply can carry.
pub(crate) fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > MAX_MESSAGE_CHARS {
        format!(
            "{}…",
            line.chars().take(MAX_MESSAGE_CHARS).collect::<String>()
        )
    } else {
        line.to_string()
    }
}

pub(crate) fn scrub(s: &str, token: &Secret) -> String {
    if token.is_empty() {
        s.to_string()
    } else {
        s.replace(token.expose(), "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, v.parse().unwrap());
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: body.into(),
        }
    }

    #[test]
    fn waits_follow_githubs_order() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let a = answer(
            429,
            &[("retry-after", "7"), ("x-ratelimit-remaining", "0")],
            "",
        );
        assert_eq!(
            limit_wait(&a, now),
            Some(LimitWait::Wait(Duration::from_secs(7)))
        );
        let a = answer(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1030"),
            ],
            "",
        );
        assert_eq!(
            limit_wait(&a, now),
            Some(LimitWait::Wait(Duration::from_secs(30)))
        );
        let a = answer(
            403,
            &[],
            r#"{"message":"You have exceeded a secondary rate limit"}"#,
        );
        assert_eq!(limit_wait(&a, now), Some(LimitWait::Secondary));
        let a = answer(429, &[], "");
        assert_eq!(limit_wait(&a, now), Some(LimitWait::Secondary));
        let a = answer(
            403,
            &[("x-ratelimit-remaining", "12")],
            r#"{"message":"Resource not accessible by integration"}"#,
        );
        assert_eq!(limit_wait(&a, now), None);
        assert_eq!(limit_wait(&answer(500, &[], ""), now), None);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("v1.2.3+build.7"), "v1.2.3%2Bbuild.7");
        assert_eq!(path_segment("deploy.yml"), "deploy.yml");
    }
}
