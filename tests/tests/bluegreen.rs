//! Blue-green through the whole engine on the kubernetes target: the idle colour's
//! Deployment gets the version, is followed until available, its health is probed, then
//! the Service's selector is switched; `bluegreen ENV switch` switches back at once.

use std::sync::Arc;

use erlmcp_bot::app::BuildOptions;
use erlmcp_bot::config;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_kube::{self, FakeKubeServer};
use erlmcp_tests::harness::{Bot, request_id, test_options};
use serde_json::json;

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";

fn config(fake: &FakeKubeServer) -> erlmcp_commands::config::Config {
    config::from_toml(&format!(
        r#"
[environments.production]
aliases = ["prod"]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"
service = "erlmcp"
green_health_url = "{url}/health?colour={{colour}}"
rollout_timeout = "30s"
auto_rollback = false

[roles]
devops-lead = ["local:alice"]
change-board = ["local:bob"]
oncall = ["local:carol"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]

[[rules]]
operation = "bluegreen"
roles = ["oncall", "devops-lead"]

[[rules]]
operation = "rollback"
roles = ["oncall"]

[[rules]]
operation = "bluegreen.retire"
roles = ["devops-lead"]
approvals = {{ count = 1, from = ["change-board"] }}
"#,
        url = fake.url
    ))
    .expect("valid config")
}

/// Blue live on v3.0.1, green idle on v3.0.0, the Service selecting blue.
async fn setup() -> (FakeKubeServer, Bot, Arc<dyn Store>, testdb::TempDb) {
    let fake = FakeKubeServer::start().await;
    for (colour, tag) in [("blue", "v3.0.1"), ("green", "v3.0.0")] {
        fake.insert(
            "deployments",
            fake_kube::deployment(
                NS,
                &format!("erlmcp-{colour}"),
                "erlmcp",
                &format!("{REPO}:{tag}"),
                3,
            ),
        );
    }
    fake.insert("services", fake_kube::service(NS, "erlmcp", "blue"));
    let (store, dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let opts = BuildOptions {
        kube_client: Some(fake.client()),
        ..test_options()
    };
    let bot = Bot::start_with(store.clone(), config(&fake), opts).await;
    (fake, bot, store, dir)
}

fn live(fake: &FakeKubeServer) -> String {
    fake.get("services", NS, "erlmcp").unwrap()["spec"]["selector"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_blue_green_deploy_patches_the_idle_colour_waits_and_switches_the_service() {
    let (fake, bot, _store, _dir) = setup().await;

    let r = bot
        .say("alice", "deploy production v3.0.2 --strategy blue-green")
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("switched from blue (v3.0.1) to green"),
        "{}",
        r.text()
    );
    assert_eq!(live(&fake), "green");

    let requests = fake.requests();
    let at = |pred: &dyn Fn(&erlmcp_tests::fake_kube::RecordedRequest) -> bool| {
        requests.iter().position(pred).expect("request sent")
    };
    let patch_green = at(&|r| r.method == "PATCH" && r.path.ends_with("/deployments/erlmcp-green"));
    let watch_green = at(&|r| {
        r.method == "GET"
            && r.path.ends_with("/deployments")
            && r.query.contains("watch=true")
            && r.query.contains("erlmcp-green")
    });
    let health = at(&|r| r.path == "/health" && r.query == "colour=green");
    let switch = at(&|r| r.method == "PATCH" && r.path.ends_with("/services/erlmcp"));
    assert!(patch_green < watch_green && watch_green < health && health < switch);

    let p = &requests[patch_green];
    let body = p.body.as_ref().unwrap();
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "erlmcp", "image": format!("{REPO}:v3.0.2")}])
    );
    assert_eq!(body["spec"]["replicas"], json!(3));
    let s = &requests[switch];
    assert_eq!(
        s.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        s.body.as_ref().unwrap(),
        &json!({"spec": {"selector": {"version": "green"}}})
    );
    // Blue was left alone: it is the way back.
    assert!(
        requests
            .iter()
            .all(|r| !(r.method == "PATCH" && r.path.contains("erlmcp-blue")))
    );
    assert!(
        bot.progress
            .take()
            .iter()
            .any(|l| l.contains("successfully rolled out")),
        "the idle colour's rollout was followed"
    );

    let r = bot.say("carol", "bluegreen prod status").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("sends traffic to green (live)"),
        "{}",
        r.text()
    );
    assert!(
        r.text()
            .contains("green (live, deployment/erlmcp-green): runs v3.0.2"),
        "{}",
        r.text()
    );

    // `status` reads what serves traffic: the live colour.
    let r = bot.say("carol", "status prod").await;
    assert!(r.text().contains("v3.0.2"), "{}", r.text());

    // Switch back at once: no approval, the selector patch alone.
    let r = bot.say("carol", "bluegreen prod switch blue").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert_eq!(live(&fake), "blue");
    assert!(r.text().contains("runs v3.0.1"), "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn an_unhealthy_idle_colour_keeps_traffic_where_it_is() {
    let (fake, bot, _store, _dir) = setup().await;
    fake.set_health(503);
    let r = bot
        .say("alice", "deploy production v3.0.2 --strategy blue-green")
        .await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert!(r.text().contains("traffic stays on blue"), "{}", r.text());
    assert!(r.text().contains("HTTP 503"), "{}", r.text());
    assert_eq!(live(&fake), "blue");
    assert!(
        fake.patches()
            .iter()
            .all(|p| !p.path.ends_with("/services/erlmcp"))
    );
    bot.finish().await;
}

#[tokio::test]
async fn retiring_the_idle_colour_is_approved_and_scales_it_to_zero() {
    let (fake, bot, store, _dir) = setup().await;

    let r = bot.say("carol", "bluegreen prod retire").await;
    assert_eq!(
        r.kind,
        ReplyKind::Refused,
        "oncall may not retire: {}",
        r.text()
    );

    let r = bot.say("alice", "bluegreen prod retire --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("replicas: 3 → 0"), "{}", r.text());

    let r = bot.say("alice", "bluegreen prod retire").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let id = request_id(&r);
    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("idle colour green (v3.0.0) retired"),
        "{}",
        r.text()
    );
    let scale = fake
        .patches()
        .into_iter()
        .rfind(|p| p.path.ends_with("/deployments/erlmcp-green/scale"))
        .expect("the idle colour was scaled");
    assert!(!scale.query.contains("dryRun"));
    assert_eq!(scale.body.unwrap(), json!({"spec": {"replicas": 0}}));
    assert_eq!(live(&fake), "blue");

    // A retired colour cannot take traffic.
    let r = bot.say("carol", "bluegreen prod switch green").await;
    assert_eq!(r.kind, ReplyKind::Failed, "{}", r.text());
    assert_eq!(live(&fake), "blue");

    let rows = store.audit_page(0, 100).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.entry.operation == "bluegreen.retire" && r.entry.action == "executed")
    );
    bot.finish().await;
}

#[tokio::test]
async fn a_rollback_of_a_blue_green_environment_switches_back() {
    let (fake, bot, _store, _dir) = setup().await;
    let r = bot
        .say("alice", "deploy production v3.0.2 --strategy blue-green")
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert_eq!(live(&fake), "green");

    let r = bot.say("carol", "rollback prod --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(
        r.text().contains("selector version: green → blue"),
        "{}",
        r.text()
    );
    assert_eq!(live(&fake), "green", "a plan changes nothing");

    let r = bot.say("carol", "rollback prod").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert_eq!(live(&fake), "blue");
    // No rollout undo: the previous colour still runs the previous version.
    assert!(
        fake.patches()
            .iter()
            .all(|p| p.content_type.as_deref() != Some("application/json-patch+json"))
    );
    bot.finish().await;
}
