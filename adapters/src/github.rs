//! The `ci_green` precondition answered from GitHub: the check runs on the version's tag
//! (`GET /repos/{owner}/{repo}/commits/{ref}/check-runs`).

use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::Version;
use erlmcp_commands::config::{GithubSection, Secret};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use crate::ci::{CiStatus, CiStatusSource};

pub const DEFAULT_API_URL: &str = "https://api.github.com/";
const PER_PAGE: u32 = 100;
/// GitHub only lists check runs from the 1,000 most recent check suites; past ten full
/// pages something is off, and guessing green from a partial list would not be safe.
const MAX_PAGES: u32 = 10;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Conclusions that do not hold a deploy back.
const PASSING: [&str; 3] = ["success", "neutral", "skipped"];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GithubSetupError(String);

/// Where to look and how long to wait.
#[derive(Debug, Clone)]
pub struct GithubOptions {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub token: Secret,
    /// Bounds the whole lookup, retries and every page included.
    pub timeout: Duration,
}

impl GithubOptions {
    /// `None` unless both `owner` and `repo` are configured.
    pub fn from_config(cfg: &GithubSection) -> Option<GithubOptions> {
        let owner = cfg.owner.as_deref().filter(|s| !s.is_empty())?;
        let repo = cfg.repo.as_deref().filter(|s| !s.is_empty())?;
        Some(GithubOptions {
            api_url: cfg
                .api_url
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            owner: owner.to_string(),
            repo: repo.to_string(),
            token: cfg.token.clone(),
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

pub struct GithubCi {
    client: Octocrab,
    owner: String,
    repo: String,
    token: Secret,
    timeout: Duration,
}

impl std::fmt::Debug for GithubCi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubCi")
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &self.token)
            .finish()
    }
}

/// The fields the decision needs. octocrab's typed `list_check_runs_for_git_ref` is not
/// used: its `CheckRun` model has no `status` (so a queued run cannot be told from one
/// that completed without a conclusion) and requires full pull request objects, which
/// this endpoint returns in an abbreviated form.
#[derive(Debug, Deserialize)]
struct CheckRunsPage {
    total_count: u64,
    check_runs: Vec<CheckRun>,
}

#[derive(Debug, Deserialize)]
struct CheckRun {
    name: String,
    status: String,
    conclusion: Option<String>,
}

#[derive(Serialize)]
struct PageParams {
    per_page: u32,
    page: u32,
}

impl GithubCi {
    pub fn new(opts: GithubOptions) -> Result<GithubCi, GithubSetupError> {
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
                http_header("accept"),
                "application/vnd.github+json".to_string(),
            )
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
        let client = builder.build().map_err(|e| {
            GithubSetupError(scrub(
                &format!("could not build the GitHub client: {e}"),
                &opts.token,
            ))
        })?;
        Ok(GithubCi {
            client,
            owner: opts.owner,
            repo: opts.repo,
            token: opts.token,
            timeout: opts.timeout,
        })
    }

    async fn list(&self, git_ref: &str) -> Result<Vec<CheckRun>, String> {
        let route = format!(
            "/repos/{}/{}/commits/{}/check-runs",
            path_segment(&self.owner),
            path_segment(&self.repo),
            path_segment(git_ref),
        );
        let mut runs = Vec::new();
        for page in 1..=MAX_PAGES {
            let params = PageParams {
                per_page: PER_PAGE,
                page,
            };
            let body: CheckRunsPage = self
                .client
                .get(&route, Some(&params))
                .await
                .map_err(|e| self.describe(git_ref, e))?;
            let got = body.check_runs.len();
            runs.extend(body.check_runs);
            if got == 0 || runs.len() as u64 >= body.total_count {
                return Ok(runs);
            }
        }
        Err(format!(
            "more than {} check runs for {git_ref}; refusing to judge a partial list",
            MAX_PAGES * PER_PAGE
        ))
    }

    fn describe(&self, git_ref: &str, e: octocrab::Error) -> String {
        let text = match e {
            octocrab::Error::GitHub { source, .. } => {
                let status = source.status_code.as_u16();
                if status == 404 {
                    format!(
                        "GitHub has no commit or tag {git_ref} in {}/{} (HTTP 404)",
                        self.owner, self.repo
                    )
                } else {
                    format!("GitHub answered HTTP {status}: {}", short(&source.message))
                }
            }
            octocrab::Error::Json { source, .. } => {
                format!(
                    "unexpected check runs response from GitHub: {}",
                    source.inner()
                )
            }
            other => format!("could not reach GitHub: {}", short(&other.to_string())),
        };
        scrub(&text, &self.token)
    }
}

#[async_trait]
impl CiStatusSource for GithubCi {
    async fn ci_status(&self, version: &Version) -> CiStatus {
        let git_ref = version.to_string();
        match tokio::time::timeout(self.timeout, self.list(&git_ref)).await {
            Err(_) => CiStatus::Unknown(format!(
                "GitHub did not answer within {}s",
                self.timeout.as_secs()
            )),
            Ok(Err(reason)) => CiStatus::Unknown(reason),
            Ok(Ok(runs)) => judge(&git_ref, &runs),
        }
    }
}

fn judge(git_ref: &str, runs: &[CheckRun]) -> CiStatus {
    if runs.is_empty() {
        return CiStatus::NotGreen(format!("no check runs for {git_ref}"));
    }
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.status == "completed")
        .filter(|r| !PASSING.contains(&r.conclusion.as_deref().unwrap_or("")))
        .map(|r| {
            format!(
                "{}: {}",
                r.name,
                r.conclusion.as_deref().unwrap_or("no conclusion")
            )
        })
        .collect();
    let pending: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "completed")
        .map(|r| format!("{} is {}", r.name, r.status))
        .collect();
    // A failure is reported ahead of runs still going: waiting for them will not help.
    let detail = [failed.join(", "), pending.join(", ")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if detail.is_empty() {
        CiStatus::Green
    } else {
        CiStatus::NotGreen(detail)
    }
}

fn http_header(name: &'static str) -> reqwest::header::HeaderName {
    reqwest::header::HeaderName::from_static(name)
}

/// Keeps GitHub's unreserved characters; anything else (a `+build` suffix, say) is escaped
/// so it stays inside its path segment.
fn path_segment(s: &str) -> String {
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

/// Error texts end up in chat replies and the audit log.
fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line.to_string()
    }
}

fn scrub(s: &str, token: &Secret) -> String {
    if token.is_empty() {
        s.to_string()
    } else {
        s.replace(token.expose(), "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    const VECTOR: &str = include_str!("../../tests/fixtures/github/check_runs_for_ref.json");
    const ROUTE: &str = "/repos/banyan-platform/erlmcp/commits/v3.0.1/check-runs";

    fn vector() -> Value {
        serde_json::from_str(VECTOR).unwrap()
    }

    /// GitHub's documented check run, renamed and set to the given state.
    fn run(name: &str, status: &str, conclusion: Option<&str>) -> Value {
        let mut r = vector()["check_runs"][0].clone();
        r["name"] = json!(name);
        r["status"] = json!(status);
        r["conclusion"] = json!(conclusion);
        r
    }

    fn page(runs: Vec<Value>) -> Value {
        json!({"total_count": runs.len(), "check_runs": runs})
    }

    fn options(server: &MockServer, token: &str) -> GithubOptions {
        GithubOptions {
            api_url: server.uri(),
            owner: "banyan-platform".into(),
            repo: "erlmcp".into(),
            token: Secret::new(token),
            timeout: Duration::from_secs(5),
        }
    }

    async fn status_for(server: &MockServer, token: &str) -> CiStatus {
        let ci = GithubCi::new(options(server, token)).unwrap();
        ci.ci_status(&Version::parse("v3.0.1").unwrap()).await
    }

    async fn serve(server: &MockServer, body: Value) {
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn the_documented_response_is_green() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .and(query_param("per_page", "100"))
            .and(header("accept", "application/vnd.github+json"))
            .and(header("x-github-api-version", "2022-11-28"))
            .respond_with(ResponseTemplate::new(200).set_body_string(VECTOR))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(status_for(&server, "").await, CiStatus::Green);
        let reqs = server.received_requests().await.unwrap();
        assert!(reqs[0].headers.get("authorization").is_none());
    }

    #[tokio::test]
    async fn success_neutral_and_skipped_are_green() {
        let server = MockServer::start().await;
        serve(
            &server,
            page(vec![
                run("build", "completed", Some("success")),
                run("docs", "completed", Some("skipped")),
                run("readme", "completed", Some("neutral")),
            ]),
        )
        .await;
        assert_eq!(status_for(&server, "").await, CiStatus::Green);
    }

    #[tokio::test]
    async fn failed_runs_are_named() {
        let server = MockServer::start().await;
        serve(
            &server,
            page(vec![
                run("build", "completed", Some("success")),
                run("test", "completed", Some("failure")),
                run("lint", "completed", Some("timed_out")),
            ]),
        )
        .await;
        assert_eq!(
            status_for(&server, "").await,
            CiStatus::NotGreen("test: failure, lint: timed_out".into())
        );
    }

    #[tokio::test]
    async fn a_run_in_progress_is_not_green() {
        let server = MockServer::start().await;
        serve(
            &server,
            page(vec![
                run("build", "in_progress", None),
                run("lint", "completed", Some("success")),
            ]),
        )
        .await;
        assert_eq!(
            status_for(&server, "").await,
            CiStatus::NotGreen("build is in_progress".into())
        );
    }

    #[tokio::test]
    async fn no_check_runs_is_not_green() {
        let server = MockServer::start().await;
        serve(&server, page(vec![])).await;
        assert_eq!(
            status_for(&server, "").await,
            CiStatus::NotGreen("no check runs for v3.0.1".into())
        );
    }

    #[tokio::test]
    async fn pages_through_every_run() {
        let server = MockServer::start().await;
        let first: Vec<Value> = (0..100)
            .map(|i| run(&format!("shard-{i}"), "completed", Some("success")))
            .collect();
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .and(query_param("page", "1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"total_count": 101, "check_runs": first})),
            )
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .and(query_param("page", "2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "total_count": 101,
                "check_runs": [run("e2e", "completed", Some("cancelled"))],
            })))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(
            status_for(&server, "").await,
            CiStatus::NotGreen("e2e: cancelled".into())
        );
    }

    #[tokio::test]
    async fn not_found_and_server_errors_are_unknown() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .respond_with(ResponseTemplate::new(404).set_body_json(json!({
                "message": "No commit found for SHA: v3.0.1",
                "documentation_url": "https://docs.github.com/rest",
            })))
            .mount(&server)
            .await;
        match status_for(&server, "").await {
            CiStatus::Unknown(d) => assert!(d.contains("HTTP 404"), "{d}"),
            other => panic!("{other:?}"),
        }

        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        match status_for(&server, "").await {
            CiStatus::Unknown(d) => assert!(d.contains("HTTP 500"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_or_slow_api_is_unknown() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(VECTOR)
                    .set_delay(Duration::from_secs(3)),
            )
            .mount(&server)
            .await;
        let ci = GithubCi::new(GithubOptions {
            timeout: Duration::from_millis(300),
            ..options(&server, "")
        })
        .unwrap();
        match ci.ci_status(&Version::parse("v3.0.1").unwrap()).await {
            CiStatus::Unknown(d) => assert!(d.contains("did not answer"), "{d}"),
            other => panic!("{other:?}"),
        }

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let ci = GithubCi::new(GithubOptions {
            api_url: format!("http://127.0.0.1:{port}"),
            ..options(&server, "")
        })
        .unwrap();
        match ci.ci_status(&Version::parse("v3.0.1").unwrap()).await {
            CiStatus::Unknown(d) => assert!(d.contains("GitHub"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_token_is_sent_as_bearer_and_never_reported() {
        const TOKEN: &str = "ghp_s3cr3tT0ken";
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(ROUTE))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(|req: &Request| {
                // A server that echoes what it was sent, the worst case for leaks.
                let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
                ResponseTemplate::new(401)
                    .set_body_json(json!({"message": format!("Bad credentials: {auth}")}))
            })
            .expect(1)
            .mount(&server)
            .await;
        match status_for(&server, TOKEN).await {
            CiStatus::Unknown(d) => {
                assert!(d.contains("HTTP 401"), "{d}");
                assert!(!d.contains(TOKEN), "{d}");
            }
            other => panic!("{other:?}"),
        }
        let ci = GithubCi::new(options(&server, TOKEN)).unwrap();
        assert!(!format!("{ci:?}").contains(TOKEN));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_setup_error() {
        let err = GithubCi::new(GithubOptions {
            api_url: DEFAULT_API_URL.into(),
            owner: "o".into(),
            repo: "r".into(),
            token: Secret::new("abc\ndef"),
            timeout: DEFAULT_TIMEOUT,
        })
        .unwrap_err();
        assert!(!err.to_string().contains("abc"), "{err}");
    }

    #[test]
    fn configured_only_with_owner_and_repo() {
        let mut cfg = GithubSection::default();
        assert!(GithubOptions::from_config(&cfg).is_none());
        cfg.owner = Some("banyan-platform".into());
        assert!(GithubOptions::from_config(&cfg).is_none());
        cfg.repo = Some("erlmcp".into());
        let opts = GithubOptions::from_config(&cfg).unwrap();
        assert_eq!(opts.api_url, DEFAULT_API_URL);
        assert_eq!(path_segment("v1.2.3+build.7"), "v1.2.3%2Bbuild.7");
    }
}
