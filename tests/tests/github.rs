//! The github-actions target, environment gates and the GitHub webhook, with the real
//! octocrab client pointed at `FakeGithub`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use erlmcp_adapters::github::webhook::sign;
use erlmcp_adapters::github::{GithubActionsTarget, GithubClient, GithubOptions, WorkflowOptions};
use erlmcp_adapters::retry::RetryPolicy;
use erlmcp_adapters::target::{ExecContext, Progress, Target, TargetAction, TargetError};
use erlmcp_bot::app::{self, BuildOptions};
use erlmcp_bot::clock::ManualClock;
use erlmcp_bot::store::{RequestState, Store, testdb};
use erlmcp_commands::config::{Config, EnvironmentSpec, Secret, TargetKind};
use erlmcp_commands::render::ReplyKind;
use erlmcp_commands::{RequestId, Strategy, Version};
use erlmcp_tests::fake_github::{BOT_LOGIN, DispatchAnswer, FakeGithub, OWNER, REPO};
use erlmcp_tests::harness::{Bot, request_id, start_time, test_options};
use serde_json::json;
use tower::ServiceExt;

const TOKEN: &str = "ghp_s3cr3tT0kenNeverShown";
const WEBHOOK_SECRET: &str = "whsec-erlmcp-test";

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn report(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn fast_reads() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        max_total: Duration::from_secs(10),
    }
}

fn fast_workflow() -> WorkflowOptions {
    WorkflowOptions {
        poll: Duration::from_millis(10),
        find_attempts: 20,
        follow_timeout: Duration::from_secs(30),
        probe_timeout: Duration::from_secs(2),
    }
}

fn target(fake: &FakeGithub) -> GithubActionsTarget {
    let opts = GithubOptions {
        reads: fast_reads(),
        ..GithubOptions::new(&fake.url, OWNER, REPO, Secret::new(TOKEN))
    };
    GithubActionsTarget::new(Arc::new(GithubClient::new(opts).unwrap()), fast_workflow())
}

fn env(name: &str) -> EnvironmentSpec {
    let mut env = EnvironmentSpec::sandbox(name, &[], 1);
    env.target = TargetKind::GithubActions;
    env.workflow = Some("deploy.yml".into());
    env.rollback_workflow = Some("rollback.yml".into());
    env.git_ref = Some("main".into());
    env
}

fn ctx() -> ExecContext {
    ExecContext {
        request_id: Some(RequestId(4)),
        requester: "slack:U0ALICE".into(),
        reason: Some("release train".into()),
    }
}

fn deploy(v: &str) -> TargetAction {
    TargetAction::Deploy {
        version: Version::parse(v).unwrap(),
        strategy: Strategy::Rolling,
    }
}

fn posts(fake: &FakeGithub, suffix: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.starts_with("POST ") && r.ends_with(suffix))
        .count()
}

/// Dispatch → run found → progress → success: the checks every answer shape shares.
async fn deploys_and_follows(answer: DispatchAnswer) {
    let fake = FakeGithub::start().await;
    fake.answer_dispatch_with(answer);
    let t = target(&fake);
    let lines = Lines::default();

    let outcome = t
        .execute(&env("production"), &deploy("v3.0.1"), &ctx(), &lines)
        .await
        .unwrap_or_else(|e| panic!("{answer:?}: {e}"));

    let runs = fake.dispatched_runs();
    assert_eq!(runs.len(), 1, "{answer:?}: exactly one run");
    let url = FakeGithub::html_url(runs[0]);
    assert!(outcome.summary.contains(&url), "{}", outcome.summary);
    assert_eq!(outcome.version_after.as_deref(), Some("v3.0.1"));
    let lines = lines.all();
    for state in ["queued", "in_progress", "completed (success)"] {
        assert!(
            lines.iter().any(|l| l.contains(state) && l.contains(&url)),
            "{answer:?}: no {state} line with the run's URL in {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("deploy in_progress")),
        "{lines:#?}"
    );

    let dispatches = fake.dispatches();
    assert_eq!(dispatches.len(), 1);
    assert_eq!(dispatches[0]["ref"], "main");
    assert_eq!(
        dispatches[0]["inputs"],
        json!({"version": "v3.0.1", "environment": "production", "requester": "slack:U0ALICE",
               "request_id": "R-4", "reason": "release train"})
    );
    assert_eq!(
        posts(&fake, "/dispatches"),
        1,
        "{answer:?}: one dispatch POST"
    );
}

#[tokio::test]
async fn a_deploy_answered_200_follows_the_run_it_names() {
    deploys_and_follows(DispatchAnswer::Details).await;
}

#[tokio::test]
async fn a_deploy_answered_204_finds_its_run() {
    deploys_and_follows(DispatchAnswer::NoContent).await;
}

#[tokio::test]
async fn a_server_without_run_details_is_asked_again_without_the_field() {
    let fake = FakeGithub::start().await;
    fake.answer_dispatch_with(DispatchAnswer::RejectsRunDetails);
    let t = target(&fake);
    let lines = Lines::default();
    t.execute(&env("production"), &deploy("v3.0.1"), &ctx(), &lines)
        .await
        .unwrap();
    assert_eq!(
        posts(&fake, "/dispatches"),
        2,
        "refused once, then sent plain"
    );
    assert_eq!(fake.dispatches().len(), 1);
    assert!(fake.dispatches()[0].get("return_run_details").is_none());
    assert_eq!(fake.dispatched_runs().len(), 1);
}

#[tokio::test]
async fn a_dispatch_whose_answer_is_lost_starts_exactly_one_run() {
    let fake = FakeGithub::start().await;
    fake.answer_dispatch_with(DispatchAnswer::LostAfterAccepting);
    let t = target(&fake);
    let lines = Lines::default();
    let outcome = t
        .execute(&env("production"), &deploy("v3.0.1"), &ctx(), &lines)
        .await
        .unwrap();
    assert_eq!(
        fake.dispatched_runs().len(),
        1,
        "one run, however the answer went"
    );
    assert_eq!(posts(&fake, "/dispatches"), 1, "never sent again");
    assert!(outcome.summary.contains("succeeded"), "{}", outcome.summary);
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.contains("answer to the dispatch was lost")),
        "{:#?}",
        lines.all()
    );
}

#[tokio::test]
async fn a_failing_run_is_a_failure_with_its_url() {
    let fake = FakeGithub::start().await;
    fake.conclude_next_runs("failure");
    let t = target(&fake);
    let err = t
        .execute(
            &env("production"),
            &deploy("v3.0.1"),
            &ctx(),
            &Lines::default(),
        )
        .await
        .unwrap_err();
    let url = FakeGithub::html_url(fake.dispatched_runs()[0]);
    match err {
        TargetError::RolloutFailed(m) => {
            assert!(m.contains("completed (failure)") && m.contains(&url), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_rollback_without_version_goes_to_the_previous_successful_deploy() {
    let fake = FakeGithub::start().await;
    fake.add_run(
        "deploy.yml",
        "deploy v2.9.5 to production",
        "alice",
        "success",
    );
    fake.add_run("deploy.yml", "deploy v3.0.0 to staging", "alice", "success");
    fake.add_run(
        "deploy.yml",
        "deploy v3.0.0 to production",
        "alice",
        "success",
    );
    fake.add_run(
        "deploy.yml",
        "deploy v3.0.1 to production",
        "alice",
        "failure",
    );
    let t = target(&fake);
    let outcome = t
        .execute(
            &env("production"),
            &TargetAction::Rollback { version: None },
            &ctx(),
            &Lines::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.version_after.as_deref(), Some("v2.9.5"));
    let d = fake.dispatches();
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0]["inputs"],
        json!({"version": "v2.9.5", "reason": "release train"})
    );
    assert!(
        fake.requests().iter().any(|r| r.starts_with(
            "POST /repos/banyan-platform/erlmcp/actions/workflows/rollback.yml/dispatches"
        )),
        "{:#?}",
        fake.requests()
    );
}

#[tokio::test]
async fn an_exhausted_rate_limit_is_waited_out_and_retried() {
    let fake = FakeGithub::start().await;
    fake.add_run(
        "deploy.yml",
        "deploy v3.0.0 to production",
        "alice",
        "success",
    );
    fake.exhaust_rate_limit_for(1);
    let t = target(&fake);
    let started = std::time::Instant::now();
    let status = t.status(&env("production")).await.unwrap();
    assert_eq!(status.version.as_deref(), Some("v3.0.0"));
    // x-ratelimit-reset is a second ahead: the retry comes after it, not at once.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let listed: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.contains("/actions/workflows/deploy.yml/runs"))
        .collect();
    assert_eq!(listed.len(), 2, "{listed:#?}");
}

#[tokio::test]
async fn githubs_message_reaches_the_user_and_the_token_never_does() {
    let fake = FakeGithub::start().await;
    let t = target(&fake);
    let mut e = env("production");
    e.workflow = Some("deploy-prod.yml".into());
    let err = t
        .execute(&e, &deploy("v3.0.1"), &ctx(), &Lines::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 404: Not Found"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert!(fake.dispatches().is_empty());
}

// ---------------------------------------------------------------------------------------
// Through the engine

fn config(fake: &FakeGithub, webhook: bool) -> Config {
    let text = format!(
        r#"
[bot]
command = "/erlmcp"
request_ttl = "1h"

[github]
owner = "{OWNER}"
repo = "{REPO}"
token = "{TOKEN}"
api_url = "{url}"
{webhook}

[environments.staging]
aliases = ["stg"]
target = "github-actions"
workflow = "deploy.yml"
rollback_workflow = "rollback.yml"
ref = "main"

[environments.production]
aliases = ["prod"]
target = "github-actions"
workflow = "deploy.yml"
rollback_workflow = "rollback.yml"
ref = "main"
auto_rollback = false

[people]
alice = ["local:alice"]
bob = ["local:bob"]
carol = ["local:carol"]
dave = ["local:dave"]

[roles]
devops-lead = ["local:alice"]
change-board = ["local:bob", "local:carol"]
engineer = ["local:dave"]

[[rules]]
operation = "deploy"
environments = ["staging"]
roles = ["engineer", "devops-lead"]

[[rules]]
operation = "deploy"
environments = ["production"]
roles = ["devops-lead"]
preconditions = {{ ci_green = true }}

[[rules]]
operation = "runs"
roles = ["engineer", "devops-lead", "change-board"]

[[rules]]
operation = "run.view"
roles = ["engineer", "devops-lead", "change-board"]

[[rules]]
operation = "run.cancel"
environments = ["production"]
roles = ["devops-lead"]

[[rules]]
operation = "run.approve"
environments = ["production"]
roles = ["devops-lead", "change-board"]
approvals = {{ count = 2, from = ["change-board"] }}

[[rules]]
operation = "run.reject"
environments = ["production"]
roles = ["change-board"]
"#,
        url = fake.url,
        webhook = if webhook {
            format!("webhook_secret = \"{WEBHOOK_SECRET}\"")
        } else {
            String::new()
        },
    );
    erlmcp_bot::config::from_toml(&text).unwrap_or_else(|p| panic!("{p:?}"))
}

fn options() -> BuildOptions {
    BuildOptions {
        github_workflow: fast_workflow(),
        github_reads: Some(fast_reads()),
        ..test_options()
    }
}

async fn bot(store: Arc<dyn Store>, fake: &FakeGithub) -> Bot {
    Bot::start_with(store, config(fake, false), options()).await
}

async fn sqlite() -> (Arc<dyn Store>, testdb::TempDb) {
    let (store, dir) = testdb::fresh_sqlite().await;
    (Arc::new(store), dir)
}

#[tokio::test]
async fn ci_green_refuses_naming_each_failing_or_pending_check() {
    let fake = FakeGithub::start().await;
    fake.set_check_runs(
        "v3.0.1",
        &[
            ("build", "completed", Some("success")),
            ("e2e", "completed", Some("failure")),
            ("lint", "in_progress", None),
        ],
    );
    fake.set_statuses(
        "v3.0.1",
        &[("security/snyk", "pending"), ("ci/legacy", "success")],
    );
    let (store, _dir) = sqlite().await;
    let bot = bot(store, &fake).await;

    let r = bot.say("alice", "deploy prod v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    for named in [
        "e2e: failure",
        "lint is in_progress",
        "security/snyk is pending",
    ] {
        assert!(
            r.text().contains(named),
            "{named} missing from {}",
            r.text()
        );
    }
    assert!(!r.text().contains("build"), "{}", r.text());
    assert!(fake.dispatches().is_empty(), "nothing is dispatched");

    // Green everywhere: the same deploy runs.
    fake.set_check_runs("v3.0.1", &[("build", "completed", Some("success"))]);
    fake.set_statuses("v3.0.1", &[("security/snyk", "success")]);
    let r = bot.say("alice", "deploy prod v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    bot.finish().await;
}

#[tokio::test]
async fn a_chat_deploy_reports_the_run_and_status_shows_it() {
    let fake = FakeGithub::start().await;
    let (store, _dir) = sqlite().await;
    let bot = bot(store, &fake).await;

    let r = bot.say("dave", "deploy stg v3.0.1").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let run = fake.dispatched_runs()[0];
    let url = FakeGithub::html_url(run);
    assert!(r.text().contains(&url), "{}", r.text());
    let progress = bot.progress.take();
    assert!(
        progress
            .iter()
            .any(|l| l.contains("in_progress") && l.contains(&url)),
        "{progress:#?}"
    );

    let r = bot.say("dave", "status stg").await;
    assert!(
        r.text().contains("staging [github-actions]: v3.0.1"),
        "{}",
        r.text()
    );
    assert!(
        r.text()
            .contains(&format!("last deploy run {run} completed (success)")),
        "{}",
        r.text()
    );

    let r = bot.say("dave", "runs stg 5").await;
    assert!(
        r.text().contains(&format!(
            "{run} completed (success) — deploy v3.0.1 to staging"
        )),
        "{}",
        r.text()
    );
    assert!(r.text().contains(BOT_LOGIN), "{}", r.text());
    let r = bot.say("dave", &format!("run view {run}")).await;
    assert!(
        r.text().contains("job deploy: completed (success)"),
        "{}",
        r.text()
    );
    bot.finish().await;
}

#[tokio::test]
async fn run_cancel_takes_deploy_rights_on_the_runs_environment() {
    let fake = FakeGithub::start().await;
    let run = fake.add_waiting_run(
        "deploy.yml",
        "deploy v3.0.2 to production",
        77,
        "production",
    );
    let (store, _dir) = sqlite().await;
    let bot = bot(store, &fake).await;

    let r = bot.say("dave", &format!("run cancel {run}")).await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(r.text().contains("run.cancel"), "{}", r.text());
    assert!(fake.cancels().is_empty(), "nothing reached GitHub");

    let r = bot.say("alice", &format!("run cancel {run}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert_eq!(fake.cancels(), vec![run]);
    assert_eq!(
        fake.run_state(run),
        ("completed".into(), Some("cancelled".into()))
    );
    bot.finish().await;
}

/// A run waiting on production's gate, found by polling, approved by the bot's quorum of
/// two: GitHub gets one review naming both approvers.
async fn a_gate_approved_by_quorum_is_reviewed_once(store: Arc<dyn Store>) {
    let fake = FakeGithub::start().await;
    let run = fake.add_waiting_run(
        "deploy.yml",
        "deploy v3.0.2 to production",
        77,
        "production",
    );
    let bot = bot(store.clone(), &fake).await;

    assert_eq!(bot.app.engine.poll_github_gates().await.unwrap(), 1);
    assert_eq!(
        bot.app.engine.poll_github_gates().await.unwrap(),
        0,
        "one request per run"
    );
    let r = bot.say("bob", "requests").await;
    assert!(
        r.text().contains(&format!("run approve {run}")),
        "{}",
        r.text()
    );
    let id = r.text().split_whitespace().next().unwrap().to_string();

    let r = bot.say("bob", &format!("approve {id}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("1 of 2"), "{}", r.text());
    assert!(fake.reviews().is_empty(), "no quorum yet");

    // The second approver types the GitHub-flavoured command: it is a vote on the gate.
    let r = bot.say("carol", &format!("run approve {run}")).await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let reviews = fake.reviews();
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0].run, run);
    assert_eq!(reviews[0].state, "approved");
    assert_eq!(reviews[0].environment_ids, vec![77]);
    assert!(
        reviews[0].comment.contains("bob") && reviews[0].comment.contains("carol"),
        "{}",
        reviews[0].comment
    );
    assert_ne!(fake.run_state(run).0, "waiting");

    let row = store
        .get_request(RequestId(id.trim_start_matches("R-").parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, RequestState::Succeeded);
    let audit = store.audit_page(0, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.entry.operation == "run.approve" && a.entry.action == "executed"),
        "the review is audited"
    );
    bot.finish().await;
}

#[tokio::test]
async fn a_gate_approved_by_quorum_is_reviewed_once_sqlite() {
    let (store, _dir) = sqlite().await;
    a_gate_approved_by_quorum_is_reviewed_once(store).await;
}

#[tokio::test]
async fn a_gate_approved_by_quorum_is_reviewed_once_postgres() {
    let Some(store) =
        testdb::postgres_or_skip("a_gate_approved_by_quorum_is_reviewed_once_postgres").await
    else {
        return;
    };
    a_gate_approved_by_quorum_is_reviewed_once(Arc::new(store)).await;
}

#[tokio::test]
async fn a_denied_gate_is_rejected_on_github() {
    let fake = FakeGithub::start().await;
    let run = fake.add_waiting_run(
        "deploy.yml",
        "deploy v3.0.2 to production",
        77,
        "production",
    );
    let (store, _dir) = sqlite().await;
    let bot = bot(store, &fake).await;
    assert_eq!(bot.app.engine.poll_github_gates().await.unwrap(), 1);
    let r = bot.say("bob", "requests").await;
    let id = r.text().split_whitespace().next().unwrap().to_string();

    let r = bot
        .say("bob", &format!("deny {id} not during the freeze"))
        .await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("rejected on GitHub"), "{}", r.text());
    let reviews = fake.reviews();
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0].state, "rejected");
    assert!(reviews[0].comment.contains("bob"), "{}", reviews[0].comment);
    assert_eq!(
        fake.run_state(run),
        ("completed".into(), Some("failure".into()))
    );
    bot.finish().await;
}

#[tokio::test]
async fn the_webhook_refuses_forgeries_and_opens_gates_from_signed_deliveries() {
    let fake = FakeGithub::start().await;
    let run = fake.add_waiting_run(
        "deploy.yml",
        "deploy v3.0.2 to production",
        77,
        "production",
    );
    let (store, _dir) = sqlite().await;
    let clock = ManualClock::new(start_time());
    let app = app::build(
        config(&fake, true),
        store.clone(),
        Arc::new(clock),
        options(),
    )
    .await
    .unwrap();
    let engine = app.engine.clone();
    assert!(!engine.polls_github_gates(), "a webhook replaces polling");
    let router = erlmcp_bot::server::router(Arc::new(app));

    let run_json = json!({
        "id": run, "name": "deploy", "display_title": "deploy v3.0.2 to production",
        "path": ".github/workflows/deploy.yml", "head_branch": "main", "event": "workflow_dispatch",
        "status": "waiting", "conclusion": null,
        "html_url": FakeGithub::html_url(run), "actor": {"login": "octocat"},
    });
    let body = serde_json::to_vec(
        &json!({"action": "requested", "workflow_run": run_json, "environment": "production"}),
    )
    .unwrap();
    let request = |signature: String| {
        Request::post("/github/webhook")
            .header("x-github-event", "deployment_review")
            .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
            .header("x-hub-signature-256", signature)
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap()
    };

    let forged = sign(b"not-the-secret", &body);
    let resp = router.clone().oneshot(request(forged)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    engine.wait_idle().await;
    assert!(
        store.pending_requests().await.unwrap().is_empty(),
        "a forgery changes nothing"
    );

    let resp = router
        .clone()
        .oneshot(request(sign(WEBHOOK_SECRET.as_bytes(), &body)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    engine.wait_idle().await;
    let pending = store.pending_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].command_text, format!("run approve {run}"));
    assert_eq!(pending[0].environment.as_deref(), Some("production"));
    let _ = request_id;
}

#[tokio::test]
async fn without_a_webhook_the_leased_scheduler_finds_waiting_runs() {
    let fake = FakeGithub::start().await;
    let (store, _dir) = sqlite().await;
    let bot = bot(store.clone(), &fake).await;
    assert!(bot.app.engine.polls_github_gates());
    let scheduler = erlmcp_bot::scheduler::Scheduler::new(bot.app.engine.clone(), "replica-a");
    scheduler.install().await.unwrap();
    scheduler.tick().await;
    assert!(
        store.pending_requests().await.unwrap().is_empty(),
        "nothing waits yet"
    );

    let run = fake.add_waiting_run(
        "deploy.yml",
        "deploy v3.0.2 to production",
        77,
        "production",
    );
    // The next poll is due 30 seconds later, on the bot's clock.
    scheduler.tick().await;
    assert!(
        store.pending_requests().await.unwrap().is_empty(),
        "not due yet"
    );
    bot.advance(chrono::Duration::seconds(31));
    scheduler.tick().await;
    let pending = store.pending_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].command_text, format!("run approve {run}"));
    bot.finish().await;
}

#[test]
fn check_config_names_each_github_actions_problem() {
    let problems = erlmcp_bot::config::from_toml(
        r#"
[github]
gate_channel = "C0DEPLOYS"

[environments.production]
target = "github-actions"
rollback_workflow = ".github/workflows/rollback.yml"
"#,
    )
    .unwrap_err();
    let shown: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    for expected in [
        "environments.production.target: target \"github-actions\" needs github.owner and github.repo",
        "environments.production.workflow: required for target \"github-actions\"",
        "environments.production.rollback_workflow: \".github/workflows/rollback.yml\" is not a workflow file name (deploy.yml) or id",
        "github.gate_channel: must be PLATFORM:CHANNEL_ID, got \"C0DEPLOYS\"",
    ] {
        assert!(
            shown.iter().any(|s| s == expected),
            "{expected} not in {shown:#?}"
        );
    }
}

#[tokio::test]
async fn the_sandbox_says_it_runs_no_workflows() {
    let (store, _dir) = sqlite().await;
    let bot = Bot::start(store, erlmcp_tests::harness::embedded_config()).await;
    let r = bot.say("dave", "runs dev").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    assert!(r.text().contains("development [sandbox]"), "{}", r.text());
    let r = bot.say("alice", "run cancel 30433642").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    assert!(
        r.text().contains("no GitHub Actions environment"),
        "{}",
        r.text()
    );
    let r = bot.say("erin", "runs prod").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    bot.finish().await;
}
