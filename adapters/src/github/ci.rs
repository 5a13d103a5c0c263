//! The `ci_green` precondition answered from GitHub: every check run on the version's tag
//! (`GET /repos/{owner}/{repo}/commits/{ref}/check-runs`) and the commit statuses behind
//! its combined status (`GET .../commits/{ref}/status`), completed and successful.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::Version;
use serde::Deserialize;

use super::client::{GithubClient, GithubError, GithubOptions, GithubSetupError, path_segment};
use crate::ci::{CiStatus, CiStatusSource};

const PER_PAGE: u32 = 100;
/// GitHub only lists check runs from the 1,000 most recent check suites; past ten full
/// pages something is off, and guessing green from a partial list would not be safe.
const MAX_PAGES: u32 = 10;

/// Conclusions that do not hold a deploy back.
const PASSING: [&str; 3] = ["success", "neutral", "skipped"];

pub struct GithubCi {
    client: Arc<GithubClient>,
    /// Bounds the whole lookup, retries and every page included.
    timeout: Duration,
}

impl std::fmt::Debug for GithubCi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubCi")
            .field("client", &self.client)
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

#[derive(Debug, Deserialize)]
struct CombinedStatus {
    #[serde(default)]
    statuses: Vec<CommitStatus>,
}

#[derive(Debug, Deserialize)]
struct CommitStatus {
    context: String,
    /// error, failure, pending or success.
    state: String,
}

impl GithubCi {
    pub fn new(opts: GithubOptions) -> Result<GithubCi, GithubSetupError> {
        let timeout = opts.timeout;
        Ok(GithubCi::with_client(
            Arc::new(GithubClient::new(opts)?),
            timeout,
        ))
    }

    pub fn with_client(client: Arc<GithubClient>, timeout: Duration) -> GithubCi {
        GithubCi { client, timeout }
    }

    async fn list(&self, git_ref: &str) -> Result<Vec<CheckRun>, String> {
        let mut runs = Vec::new();
        for page in 1..=MAX_PAGES {
            let route = self.client.repo_route(&format!(
                "/commits/{}/check-runs?per_page={PER_PAGE}&page={page}",
                path_segment(git_ref)
            ));
            let body: CheckRunsPage = self
                .client
                .get_json(&route)
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

    async fn statuses(&self, git_ref: &str) -> Result<Vec<CommitStatus>, String> {
        let route = self.client.repo_route(&format!(
            "/commits/{}/status?per_page={PER_PAGE}",
            path_segment(git_ref)
        ));
        let body: CombinedStatus = self
            .client
            .get_json(&route)
            .await
            .map_err(|e| self.describe(git_ref, e))?;
        Ok(body.statuses)
    }

    async fn lookup(&self, git_ref: &str) -> Result<CiStatus, String> {
        let runs = self.list(git_ref).await?;
        let statuses = self.statuses(git_ref).await?;
        Ok(judge(git_ref, &runs, &statuses))
    }

    fn describe(&self, git_ref: &str, e: GithubError) -> String {
        match e {
            GithubError::Api { status: 404, .. } => format!(
                "GitHub has no commit or tag {git_ref} in {}/{} (HTTP 404)",
                self.client.owner(),
                self.client.repo()
            ),
            GithubError::Decode(m) => format!("unexpected check runs response from GitHub: {m}"),
            other => other.to_string(),
        }
    }
}

#[async_trait]
impl CiStatusSource for GithubCi {
    async fn ci_status(&self, version: &Version) -> CiStatus {
        let git_ref = version.to_string();
        match tokio::time::timeout(self.timeout, self.lookup(&git_ref)).await {
            Err(_) => CiStatus::Unknown(format!(
                "GitHub did not answer within {}s",
                self.timeout.as_secs()
            )),
            Ok(Err(reason)) => CiStatus::Unknown(reason),
            Ok(Ok(status)) => status,
        }
    }
}

fn judge(git_ref: &str, runs: &[CheckRun], statuses: &[CommitStatus]) -> CiStatus {
    if runs.is_empty() && statuses.is_empty() {
        return CiStatus::NotGreen(format!("no check runs or statuses for {git_ref}"));
    }
    let mut failed: Vec<String> = runs
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
    failed.extend(
        statuses
            .iter()
            .filter(|s| s.state == "failure" || s.state == "error")
            .map(|s| format!("{}: {}", s.context, s.state)),
    );
    let mut pending: Vec<String> = runs
        .iter()
        .filter(|r| r.status != "completed")
        .map(|r| format!("{} is {}", r.name, r.status))
        .collect();
    pending.extend(
        statuses
            .iter()
            .filter(|s| s.state != "success" && s.state != "failure" && s.state != "error")
            .map(|s| format!("{} is {}", s.context, s.state)),
    );
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

#[cfg(test)]
mod tests {
    use super::super::client::{DEFAULT_API_URL, DEFAULT_TIMEOUT};
    use super::*;
    use crate::retry::RetryPolicy;
    use erlmcp_commands::config::{GithubSection, Secret};
    use serde_json::{Value, json};
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    const VECTOR: &str = include_str!("../../../tests/fixtures/github/check_runs_for_ref.json");
    const ROUTE: &str = "/repos/banyan-platform/erlmcp/commits/v3.0.1/check-runs";
    const STATUS_ROUTE: &str = "/repos/banyan-platform/erlmcp/commits/v3.0.1/status";

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
            timeout: Duration::from_secs(5),
            reads: RetryPolicy {
                attempts: 2,
                base: Duration::from_millis(10),
                max: Duration::from_millis(10),
                max_retry_after: Duration::from_secs(1),
                max_total: Duration::from_secs(2),
            },
            ..GithubOptions::new(
                &server.uri(),
                "banyan-platform",
                "erlmcp",
                Secret::new(token),
            )
        }
    }

    /// A commit with no statuses: GitHub's combined status then lists none.
    async fn no_statuses(server: &MockServer) {
        Mock::given(method("GET"))
            .and(path(STATUS_ROUTE))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"state": "pending", "statuses": [], "total_count": 0})),
            )
            .mount(server)
            .await;
    }

    async fn status_for(server: &MockServer, token: &str) -> CiStatus {
        no_statuses(server).await;
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
            CiStatus::NotGreen("no check runs or statuses for v3.0.1".into())
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
        let err = GithubCi::new(GithubOptions::new(
            DEFAULT_API_URL,
            "o",
            "r",
            Secret::new("abc\ndef"),
        ))
        .unwrap_err();
        assert_eq!(
            GithubOptions::new("x", "o", "r", Secret::new("")).timeout,
            DEFAULT_TIMEOUT
        );
        assert!(!err.to_string().contains("abc"), "{err}");
    }

    #[tokio::test]
    async fn failing_and_pending_statuses_are_named_beside_check_runs() {
        let server = MockServer::start().await;
        serve(
            &server,
            page(vec![run("build", "completed", Some("failure"))]),
        )
        .await;
        Mock::given(method("GET"))
            .and(path(STATUS_ROUTE))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "state": "failure",
                "total_count": 3,
                "statuses": [
                    {"context": "ci/jenkins", "state": "error", "description": "boom"},
                    {"context": "security/snyk", "state": "pending"},
                    {"context": "coverage", "state": "success"},
                ],
            })))
            .mount(&server)
            .await;
        let ci = GithubCi::new(options(&server, "")).unwrap();
        assert_eq!(
            ci.ci_status(&Version::parse("v3.0.1").unwrap()).await,
            CiStatus::NotGreen(
                "build: failure, ci/jenkins: error; security/snyk is pending".into()
            )
        );
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
    }
}
