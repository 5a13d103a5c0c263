//! Plans before approval, through the whole engine on the kubernetes target: `--dry-run`
//! sends the very patch a change would send, with `?dryRun=All`, changes nothing, and is
//! audited as a dry run; an approval card carries the same plan.

use std::sync::Arc;

use erlmcp_bot::app::BuildOptions;
use erlmcp_bot::config;
use erlmcp_bot::store::{Store, testdb};
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::fake_kube::{self, FakeKubeServer};
use erlmcp_tests::harness::{Bot, test_options};
use serde_json::json;

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";

fn config() -> erlmcp_commands::config::Config {
    config::from_toml(&format!(
        r#"
[environments.production]
aliases = ["prod"]
target = "kubernetes"
namespace = "{NS}"
workload = "deployment/erlmcp"
container = "erlmcp"
image = "{REPO}"
rollout_timeout = "30s"
auto_rollback = false

[roles]
devops-lead = ["local:alice"]
change-board = ["local:bob"]

[[rules]]
operation = "deploy"
roles = ["devops-lead"]
approvals = {{ count = 1, from = ["change-board"] }}

[[rules]]
operation = "scale"
roles = ["devops-lead"]

[[rules]]
operation = "rollback"
roles = ["devops-lead"]

[[rules]]
operation = "restart"
roles = ["devops-lead"]

[[rules]]
operation = "maintenance"
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
    Bot::start_with(store, config(), opts).await
}

fn seed(fake: &FakeKubeServer) {
    fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &format!("{REPO}:v3.0.1"), 3),
    );
}

#[tokio::test]
async fn a_deploy_dry_run_names_the_image_change_and_sends_dry_run_all() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let store: Arc<dyn Store> = Arc::new(store);
    let bot = bot_on(&fake, store.clone()).await;

    let r = bot
        .say("alice", "deploy production v3.0.2 --dry-run for CAB-12")
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.approval().is_none(), "a dry run makes no request");
    for expected in [
        "nothing was changed",
        "server-side dry run (dryRun=All)",
        "deployment/erlmcp in erlmcp-prod:",
        &format!("image (container erlmcp): {REPO}:v3.0.1 → {REPO}:v3.0.2"),
        "annotation kubernetes.io/change-cause: (none) → erlmcp-bot by local:alice: deploy v3.0.2 (for CAB-12)",
        "rules[0] applies; needs 1 approval from change-board",
    ] {
        assert!(
            r.text().contains(expected),
            "{expected:?} missing:\n{}",
            r.text()
        );
    }

    // The very patch a deploy sends, with ?dryRun=All, and the deployment is unchanged.
    let patches = fake.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let p = &patches[0];
    assert!(
        p.path
            .ends_with("/namespaces/erlmcp-prod/deployments/erlmcp")
    );
    assert!(p.query.contains("dryRun=All"), "{}", p.query);
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        p.body.as_ref().unwrap()["spec"]["template"]["spec"]["containers"],
        json!([{"name": "erlmcp", "image": format!("{REPO}:v3.0.2")}])
    );
    let d = fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!("{REPO}:v3.0.1"))
    );

    let rows = store.audit_page(0, 100).await.unwrap();
    assert!(
        rows.iter().all(|r| r.entry.action != "requested"),
        "no request"
    );
    let dry: Vec<_> = rows
        .iter()
        .filter(|r| r.entry.action == "dry_run")
        .collect();
    assert_eq!(dry.len(), 1, "one dry-run row");
    let row = &dry[0].entry;
    assert_eq!(row.action, "dry_run");
    assert_eq!(row.operation, "deploy");
    assert_eq!(row.decision, "needs_approval");
    assert!(row.outcome.contains("v3.0.2"), "{}", row.outcome);
    bot.finish().await;
}

#[tokio::test]
async fn the_approval_card_shows_the_plan() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = bot_on(&fake, Arc::new(store)).await;

    let r = bot.say("alice", "deploy production v3.0.2").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let card = r.approval().expect("an approval card");
    let plan = card.plan.join("\n");
    assert!(
        plan.contains(&format!("{REPO}:v3.0.1 → {REPO}:v3.0.2")),
        "{plan}"
    );
    assert!(card.text().contains("dryRun=All"), "{}", card.text());
    assert!(
        fake.patches()
            .iter()
            .all(|p| p.query.contains("dryRun=All")),
        "asking for approval changes nothing"
    );
    bot.finish().await;
}

#[tokio::test]
async fn a_scale_dry_run_shows_replicas_and_someone_without_a_rule_gets_no_plan() {
    let fake = FakeKubeServer::start().await;
    seed(&fake);
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = bot_on(&fake, Arc::new(store)).await;

    let r = bot.say("alice", "scale prod 7 --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("replicas: 3 → 7"), "{}", r.text());
    assert!(r.text().contains("it would run at once"), "{}", r.text());
    let p = fake.patches();
    assert_eq!(p.len(), 1);
    assert!(
        p[0].path.ends_with("/deployments/erlmcp/scale"),
        "{}",
        p[0].path
    );
    assert!(p[0].query.contains("dryRun=All"));
    assert_eq!(
        fake.get("deployments", NS, "erlmcp").unwrap()["spec"]["replicas"],
        json!(3)
    );

    let r = bot.say("erin", "deploy production v3.0.2 --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert_eq!(fake.patches().len(), 1, "no plan for erin");

    let r = bot.say("alice", "canary prod status --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Usage, "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn rollback_restart_and_maintenance_plans_come_from_their_own_patches() {
    let fake = FakeKubeServer::start().await;
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &format!("{REPO}:v3.0.1"), 3);
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
    let d = fake.insert("deployments", d);
    for (rev, tag, hash) in [(1, "v3.0.0", "6c8f9b7d41"), (2, "v3.0.1", "5d9c7b6f83")] {
        fake.insert(
            "replicasets",
            fake_kube::replicaset(&d, &format!("{REPO}:{tag}"), rev, hash),
        );
    }
    fake.insert("ingresses", fake_kube::ingress(NS, "erlmcp"));
    let (store, _dir) = testdb::fresh_sqlite().await;
    let bot = bot_on(&fake, Arc::new(store)).await;

    let r = bot.say("alice", "rollback prod --dry-run").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("(back to revision 1)"), "{}", r.text());
    assert!(
        r.text().contains(&format!("{REPO}:v3.0.1 → {REPO}:v3.0.0")),
        "{}",
        r.text()
    );
    let r = bot.say("alice", "restart prod --dry-run").await;
    assert!(
        r.text()
            .contains("pod annotation kubectl.kubernetes.io/restartedAt: (none) → 20"),
        "{}",
        r.text()
    );
    let r = bot.say("alice", "maintenance prod on --dry-run").await;
    assert!(
        r.text()
            .contains("annotation nginx.ingress.kubernetes.io/maintenance: (none) → true"),
        "{}",
        r.text()
    );

    let patches = fake.patches();
    let kinds: Vec<(&str, bool)> = patches
        .iter()
        .map(|p| {
            (
                p.content_type.as_deref().unwrap_or(""),
                p.query.contains("dryRun=All"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("application/json-patch+json", true),
            ("application/strategic-merge-patch+json", true),
            ("application/merge-patch+json", true),
        ]
    );
    let now = fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(
        now["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(format!("{REPO}:v3.0.1"))
    );
    assert!(
        fake.get("ingresses", NS, "erlmcp").unwrap()["metadata"]["annotations"]
            .get("nginx.ingress.kubernetes.io/maintenance")
            .is_none()
    );
    bot.finish().await;
}
