//! The post-deploy guard through the whole engine: a production deploy on the kubernetes
//! target whose health check keeps failing is rolled back automatically, and audited so.

use std::sync::Arc;

use erlmcp_bot::app::BuildOptions;
use erlmcp_bot::config;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_kube::{self, FakeKubeServer};
use erlmcp_tests::harness::{Bot, test_options};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";

fn config(health_url: &str) -> erlmcp_commands::config::Config {
    config::from_toml(&format!(
        r#"
[environments.production]
aliases = ["prod"]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"
health_url = "{health_url}"
rollout_timeout = "30s"

[roles]
devops-lead = ["local:alice"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]

[[rules]]
operation = "rollback"
roles = ["devops-lead"]
"#
    ))
    .expect("valid config")
}

async fn bot_on(fake: &FakeKubeServer, store: Arc<dyn Store>) -> Bot {
    let opts = BuildOptions {
        kube_client: Some(fake.client()),
        ..test_options()
    };
    Bot::start_with(store, config(&format!("{}/health", fake.url)), opts).await
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

#[tokio::test]
async fn failing_health_after_a_production_deploy_rolls_back_automatically() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = bot_on(&fake, store.clone()).await;

    fake.set_health(503);
    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        bot.progress.take().iter().any(|l| l.contains("3 of 3")),
        "rollout followed"
    );
    bot.app.engine.wait_background().await;

    // kubectl's undo patch went out after the deploy's image patch.
    let undo = fake
        .patches()
        .into_iter()
        .find(|p| p.content_type.as_deref() == Some("application/json-patch+json"))
        .expect("the automatic rollback sends kubectl's undo patch");
    assert!(undo.path.ends_with("/deployments/erlmcp"), "{}", undo.path);

    let rows = store.audit_page(0, 1000).await.unwrap();
    let auto = rows
        .iter()
        .find(|r| r.entry.action == "automatic")
        .expect("the automatic rollback is audited");
    assert_eq!(auto.entry.decision, "auto_rollback");
    assert_eq!(auto.entry.who.platform, "system");
    assert!(
        auto.entry
            .reason
            .contains("3 consecutive health check failures"),
        "{}",
        auto.entry.reason
    );
    assert!(
        auto.entry.reason.contains("HTTP 503"),
        "{}",
        auto.entry.reason
    );
    let executed = rows
        .iter()
        .filter(|r| r.entry.action == "executed" && r.entry.operation == "rollback")
        .count();
    assert_eq!(executed, 1);
    let history = store.deployments("production", 5).await.unwrap();
    assert_eq!(history[0].kind, "rollback", "{history:?}");
}

#[tokio::test]
async fn healthy_after_deploy_means_no_rollback() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = bot_on(&fake, store.clone()).await;

    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.app.engine.wait_background().await;
    let rows = store.audit_page(0, 1000).await.unwrap();
    assert!(rows.iter().all(|r| r.entry.action != "automatic"));
    let r = bot.say("alice", "status production").await;
    assert!(r.text().contains("v3.0.2"), "{}", r.text());
}

/// When GitHub cannot be asked, `ci_green` fails closed.
#[tokio::test]
async fn ci_green_fails_closed_when_github_cannot_be_asked() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let github = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (bot, _dir) = ci_gated_bot(&fake, &github).await;
    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(
        r.text().contains("CI for v3.0.2 is not green"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("CI status unknown"), "{}", r.text());
    assert!(fake.patches().is_empty(), "nothing was changed");
}

/// A production deploy behind `ci_green`, with GitHub's API at `github`.
async fn ci_gated_bot(fake: &FakeKubeServer, github: &str) -> (Bot, testdb::TempDb) {
    let (store, dir) = testdb::fresh_sqlite().await;
    let text = format!(
        r#"
[github]
owner = "banyan-platform"
repo = "erlmcp"
token = "ghp_test_token"
api_url = "{github}"

[environments.production]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"

[roles]
devops-lead = ["local:alice"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]
preconditions = {{ ci_green = true }}
"#
    );
    let cfg = config::from_toml(&text).expect("valid config");
    let opts = BuildOptions {
        kube_client: Some(fake.client()),
        ..test_options()
    };
    (Bot::start_with(Arc::new(store), cfg, opts).await, dir)
}

/// GitHub's documented check-runs response (tests/fixtures/github), with its single run
/// replaced by runs of the given names and conclusions.
fn check_runs(runs: &[(&str, &str)]) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/github/check_runs_for_ref.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let mut body: Value = serde_json::from_str(&text).unwrap();
    let template = body["check_runs"][0].clone();
    let runs: Vec<Value> = runs
        .iter()
        .map(|(name, conclusion)| {
            let mut r = template.clone();
            r["name"] = json!(name);
            r["status"] = json!("completed");
            r["conclusion"] = json!(conclusion);
            r
        })
        .collect();
    body["total_count"] = json!(runs.len());
    body["check_runs"] = json!(runs);
    body
}

async fn serve_checks(github: &MockServer, body: Value) {
    Mock::given(method("GET"))
        .and(path(
            "/repos/banyan-platform/erlmcp/commits/v3.0.2/check-runs",
        ))
        .and(header("authorization", "Bearer ghp_test_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(github)
        .await;
}

#[tokio::test]
async fn green_github_checks_let_a_production_deploy_through() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let github = MockServer::start().await;
    serve_checks(
        &github,
        check_runs(&[
            ("build", "success"),
            ("test", "success"),
            ("docs", "skipped"),
        ]),
    )
    .await;
    let (bot, _dir) = ci_gated_bot(&fake, &github.uri()).await;

    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let patches = fake.patches();
    let image_patch = patches
        .iter()
        .find(|p| p.path.ends_with("/deployments/erlmcp"))
        .expect("the deploy patched the deployment");
    assert_eq!(
        image_patch.body.as_ref().unwrap()["spec"]["template"]["spec"]["containers"],
        json!([{"name": "erlmcp", "image": format!("{REPO}:v3.0.2")}])
    );
}

#[tokio::test]
async fn a_failed_github_check_refuses_a_production_deploy() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let github = MockServer::start().await;
    serve_checks(
        &github,
        check_runs(&[("build", "success"), ("test", "failure")]),
    )
    .await;
    let (bot, _dir) = ci_gated_bot(&fake, &github.uri()).await;

    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(
        r.text().contains("CI for v3.0.2 is not green"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("test: failure"), "{}", r.text());
    assert!(!r.text().contains("ghp_test_token"), "{}", r.text());
    assert!(fake.patches().is_empty(), "nothing was changed");
}
