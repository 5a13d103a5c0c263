//! The runbook's metric triggers through the whole engine: after a production deploy on
//! the kubernetes target, a Prometheus (faked with wiremock, answering in the HTTP API's
//! real shape) that reports 7% errors for the whole window triggers one audited automatic
//! rollback; 0.5% does not, and the success criteria say so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use erlmcp_adapters::guard::success_criteria;
use erlmcp_adapters::kubernetes::{KubernetesOptions, KubernetesTarget};
use erlmcp_bot::app::BuildOptions;
use erlmcp_bot::config;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_kube::{self, FakeKubeServer};
use erlmcp_tests::harness::{Bot, test_options};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";
const ERROR_RATE: &str =
    r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#;
const P95: &str =
    "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))";

/// An instant-query answer (`GET /api/v1/query`) whose evaluation time moves a minute per
/// call, as it would when the guard asks once a minute: the breach's length is read from
/// these times, so the test needs no clock of its own.
struct Minutely {
    value: &'static str,
    calls: AtomicU64,
}

impl Minutely {
    fn new(value: &'static str) -> Minutely {
        Minutely {
            value,
            calls: AtomicU64::new(0),
        }
    }
}

impl Respond for Minutely {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let at = 1_793_000_000.0 + 60.0 * n as f64;
        ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [
                {"metric": {}, "value": [at, self.value]}
            ]}
        }))
    }
}

async fn prometheus(error_rate: &'static str, p95: &'static str) -> MockServer {
    let server = MockServer::start().await;
    for (query, value) in [(ERROR_RATE, error_rate), (P95, p95)] {
        Mock::given(method("GET"))
            .and(path("/api/v1/query"))
            .and(query_param("query", query))
            .respond_with(Minutely::new(value))
            .mount(&server)
            .await;
    }
    server
}

fn config(prometheus: &str) -> erlmcp_commands::config::Config {
    let toml = format!(
        r#"
[environments.production]
aliases = ["prod"]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"
rollout_timeout = "30s"
guard_window = "5m"
prometheus_url = "{prometheus}"
error_rate_query = '{ERROR_RATE}'
p95_query = "{P95}"

[roles]
devops-lead = ["local:alice"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]

[[rules]]
operation = "rollback"
roles = ["devops-lead"]
"#
    );
    config::from_toml(&toml).expect("valid config")
}

fn seed(fake: &FakeKubeServer) {
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &format!("{REPO}:v3.0.1"), 3);
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
    let d = fake.insert("deployments", d);
    for (rev, tag, hash) in [(1, "v3.0.0", "6c8f9b7d41"), (2, "v3.0.1", "5d9c7b6f83")] {
        fake.insert(
            "replicasets",
            fake_kube::replicaset(&d, &format!("{REPO}:{tag}"), rev, hash),
        );
    }
}

async fn deploy_and_watch(
    store: Arc<dyn Store>,
    error_rate: &'static str,
    p95: &'static str,
) -> FakeKubeServer {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let prom = prometheus(error_rate, p95).await;
    let opts = BuildOptions {
        kube_client: Some(fake.client()),
        ..test_options()
    };
    let bot = Bot::start_with(store, config(&prom.uri()), opts).await;
    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.app.engine.wait_background().await;
    bot.finish().await;
    fake
}

async fn assert_one_automatic_rollback(store: &dyn Store, fake: &FakeKubeServer, why: &[&str]) {
    let rows = store.audit_page(0, 1000).await.unwrap();
    let auto: Vec<_> = rows
        .iter()
        .filter(|r| r.entry.action == "automatic")
        .collect();
    assert_eq!(auto.len(), 1, "one automatic rollback");
    let reason = &auto[0].entry.reason;
    assert_eq!(auto[0].entry.decision, "auto_rollback");
    for expected in why {
        assert!(reason.contains(expected), "{expected:?} missing: {reason}");
    }
    let executed = rows
        .iter()
        .filter(|r| r.entry.action == "executed" && r.entry.operation == "rollback")
        .count();
    assert_eq!(executed, 1);
    assert!(
        fake.patches()
            .iter()
            .any(|p| p.content_type.as_deref() == Some("application/json-patch+json")),
        "kubectl's undo patch went out"
    );
    let history = store.deployments("production", 5).await.unwrap();
    assert_eq!(history[0].kind, "rollback", "{history:?}");
}

#[tokio::test]
async fn seven_percent_errors_for_the_window_roll_back_once() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let fake = deploy_and_watch(store.clone(), "0.07", "0.12").await;
    assert_one_automatic_rollback(store.as_ref(), &fake, &["error rate > 5.0% for 5m", "7.0%"])
        .await;
}

#[tokio::test]
async fn seven_percent_errors_roll_back_once_on_postgres() {
    let Some(store) =
        testdb::postgres_or_skip("seven_percent_errors_roll_back_once_on_postgres").await
    else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(store);
    let fake = deploy_and_watch(store.clone(), "0.07", "0.12").await;
    assert_one_automatic_rollback(store.as_ref(), &fake, &["error rate > 5.0% for 5m", "7.0%"])
        .await;
}

#[tokio::test]
async fn half_a_percent_errors_do_not_roll_back() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let fake = deploy_and_watch(store.clone(), "0.005", "0.12").await;
    let rows = store.audit_page(0, 1000).await.unwrap();
    assert!(rows.iter().all(|r| r.entry.action != "automatic"));
    assert!(
        fake.patches()
            .iter()
            .all(|p| p.content_type.as_deref() != Some("application/json-patch+json"))
    );
}

#[tokio::test]
async fn a_p95_above_ten_seconds_for_the_window_rolls_back() {
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let fake = deploy_and_watch(store.clone(), "0.005", "12.5").await;
    assert_one_automatic_rollback(
        store.as_ref(),
        &fake,
        &["P95 latency > 10.0 s for 5m", "12.5 s"],
    )
    .await;
}

#[tokio::test]
async fn the_success_criteria_name_what_was_checked() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let prom = prometheus("0.005", "0.12").await;
    let mut env = config(&prom.uri())
        .environment("production")
        .unwrap()
        .clone();
    env.health_url = Some(format!("{}/health", fake.url));
    let target = KubernetesTarget::from_client(fake.client(), KubernetesOptions::default());
    let criteria = success_criteria(
        &target,
        &env,
        &reqwest::Client::new(),
        Duration::from_secs(5),
    )
    .await;
    let text = erlmcp_commands::triggers::render_criteria("production", "R-1", &criteria);
    for expected in [
        "✓ all pods ready: 3/3 ready",
        "✓ health 200: HTTP 200",
        "✓ error rate < 1.0%: 0.5%",
        "✓ P95 latency < 500 ms: 120 ms",
        "✓ no crash loops: none",
        "– canary within thresholds: no canary",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}
