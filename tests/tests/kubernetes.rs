//! The kubernetes target driven through the real `kube::Client` against `FakeKubeServer`.

use std::sync::Mutex;
use std::time::Duration;

use erlmcp_adapters::guard::{GuardPolicy, GuardVerdict, watch_after_deploy};
use erlmcp_adapters::kubernetes::{KubernetesOptions, KubernetesTarget};
use erlmcp_adapters::target::{ExecContext, Progress, Target, TargetAction, TargetError};
use erlmcp_commands::config::{EnvironmentSpec, HumanDuration, TargetKind};
use erlmcp_commands::{CanaryAction, RequestId, Strategy, Version};
use erlmcp_tests::fake_kube::{self, FakeKubeServer, KUBECTL_SHAPES};
use serde_json::{Value, json};

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";

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

struct Setup {
    fake: FakeKubeServer,
    target: KubernetesTarget,
    env: EnvironmentSpec,
}

async fn setup(workload: &str) -> Setup {
    let fake = FakeKubeServer::start_with_tick(Duration::from_millis(25)).await;
    let opts = KubernetesOptions {
        rollout_timeout: Duration::from_secs(20),
        watch_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(20),
        probe_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let target = KubernetesTarget::from_client(fake.client(), opts);
    let mut env = EnvironmentSpec::sandbox("production", &["prod"], 5);
    env.target = TargetKind::Kubernetes;
    env.namespace = Some(NS.into());
    env.workload = Some(workload.into());
    env.container = Some("erlmcp".into());
    env.image = Some(REPO.into());
    env.rollout_timeout = Some(HumanDuration(Duration::from_secs(20)));
    Setup { fake, target, env }
}

fn image(tag: &str) -> String {
    format!("{REPO}:{tag}")
}

fn ctx() -> ExecContext {
    ExecContext {
        request_id: Some(RequestId(12)),
        requester: "slack:U1".into(),
        reason: None,
    }
}

fn deploy(v: &str) -> TargetAction {
    TargetAction::Deploy {
        version: Version::parse(v).unwrap(),
        strategy: Strategy::Rolling,
    }
}

/// A deployment at revision 3 (v3.0.1) with ReplicaSets for revisions 1..=3.
fn with_history(s: &Setup) -> Value {
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5);
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("3");
    d["metadata"]["annotations"]["kubernetes.io/change-cause"] = json!("deploy v3.0.1");
    let d = s.fake.insert("deployments", d);
    for (rev, tag, hash) in [
        (1, "v2.9.0", "6c8f9b7d41"),
        (2, "v2.9.5", "7f5d8c9a22"),
        (3, "v3.0.1", "5d9c7b6f83"),
    ] {
        s.fake.insert(
            "replicasets",
            fake_kube::replicaset(&d, &image(tag), rev, hash),
        );
    }
    d
}

async fn run(
    s: &Setup,
    action: TargetAction,
) -> (
    Result<erlmcp_adapters::target::Outcome, TargetError>,
    Vec<String>,
) {
    let lines = Lines::default();
    let r = s.target.execute(&s.env, &action, &ctx(), &lines).await;
    (r, lines.all())
}

#[tokio::test]
async fn deploy_patches_the_image_and_follows_the_rollout() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );

    let (r, lines) = run(&s, deploy("v3.0.1")).await;
    let outcome = r.unwrap();

    assert!(
        outcome.summary.contains("5 of 5 available"),
        "{}",
        outcome.summary
    );
    assert_eq!(outcome.version_before.as_deref(), Some("v3.0.0"));
    assert_eq!(outcome.version_after.as_deref(), Some("v3.0.1"));
    for expected in [
        "3 out of 5 new replicas have been updated",
        "2 old replicas are pending termination",
        "4 of 5 updated replicas are available",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected:?} not in {lines:#?}"
        );
    }
    assert!(
        lines.last().unwrap().contains("5 of 5 available"),
        "{lines:#?}"
    );
    assert!(
        lines.windows(2).all(|w| w[0] != w[1]),
        "duplicate lines: {lines:#?}"
    );

    let patches = s.fake.patches();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(
        p.path,
        "/apis/apps/v1/namespaces/erlmcp-prod/deployments/erlmcp"
    );
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body = p.body.as_ref().unwrap();
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "erlmcp", "image": image("v3.0.1")}])
    );
    assert_eq!(
        body["metadata"]["annotations"]["kubernetes.io/change-cause"],
        json!("erlmcp-bot R-12 by slack:U1: deploy v3.0.1")
    );
    let d = s.fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(image("v3.0.1"))
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        json!("IfNotPresent")
    );
}

#[tokio::test]
async fn deploy_to_an_unknown_container_is_refused() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.container = Some("sidecar".into());
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    let (r, _) = run(&s, deploy("v3.0.1")).await;
    match r {
        Err(TargetError::Refused(m)) => {
            assert!(m.contains("no container named \"sidecar\""), "{m}")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(s.fake.patches().is_empty());
}

#[tokio::test]
async fn rollback_sends_kubectls_json_patch_for_the_second_highest_revision() {
    let s = setup("deployment/erlmcp").await;
    with_history(&s);

    let (r, lines) = run(&s, TargetAction::Rollback { version: None }).await;
    let outcome = r.unwrap();
    assert!(
        outcome.summary.contains("revision 2"),
        "{}",
        outcome.summary
    );
    assert_eq!(outcome.version_before.as_deref(), Some("v3.0.1"));
    assert_eq!(outcome.version_after.as_deref(), Some("v2.9.5"));
    assert!(
        lines.last().unwrap().contains("5 of 5 available"),
        "{lines:#?}"
    );

    let shapes: Value = serde_json::from_str(KUBECTL_SHAPES).unwrap();
    let undo = &shapes["rollout_undo"];
    let patches = s.fake.patches();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p.method, undo["method"].as_str().unwrap());
    assert_eq!(p.content_type.as_deref(), undo["content_type"].as_str());
    assert_eq!(
        p.path,
        undo["path"]
            .as_str()
            .unwrap()
            .replace("{namespace}", NS)
            .replace("{name}", "erlmcp")
    );
    let ops = p.body.as_ref().unwrap().as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0]["op"], "replace");
    assert_eq!(ops[0]["path"], "/spec/template");
    assert_eq!(ops[1]["op"], "replace");
    assert_eq!(ops[1]["path"], "/metadata/annotations");
    let template = &ops[0]["value"];
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        json!(image("v2.9.5"))
    );
    assert!(
        template["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
    assert_eq!(template["metadata"]["labels"], json!({"app": "erlmcp"}));
    let annotations = &ops[1]["value"];
    // Skip-list keys keep the deployment's values, everything else comes from the RS.
    assert_eq!(annotations["deployment.kubernetes.io/revision"], json!("3"));
    assert!(
        annotations
            .get("deployment.kubernetes.io/desired-replicas")
            .is_none()
    );
    assert_eq!(
        annotations["kubernetes.io/change-cause"],
        json!(format!("deploy {}", image("v2.9.5")))
    );

    // The controller brought the old ReplicaSet back as revision 4.
    let d = s.fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        json!("4")
    );
}

#[tokio::test]
async fn rollback_without_history_is_refused_clearly() {
    let s = setup("deployment/erlmcp").await;
    let d = s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5),
    );
    s.fake.insert(
        "replicasets",
        fake_kube::replicaset(&d, &image("v3.0.1"), 1, "5d9c7b6f83"),
    );
    // A ReplicaSet of another owner with a matching label does not count as history.
    let mut foreign = fake_kube::replicaset(&d, &image("v1.0.0"), 7, "1111111111");
    foreign["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    s.fake.insert("replicasets", foreign);

    let (r, _) = run(&s, TargetAction::Rollback { version: None }).await;
    match r {
        Err(TargetError::Refused(m)) => {
            assert_eq!(m, "no rollout history found for deployment/erlmcp")
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(s.fake.patches().is_empty());
}

#[tokio::test]
async fn rollback_of_a_paused_deployment_is_refused() {
    let s = setup("deployment/erlmcp").await;
    let mut d = with_history(&s);
    d["spec"]["paused"] = json!(true);
    s.fake.insert("deployments", d);

    let (r, _) = run(&s, TargetAction::Rollback { version: None }).await;
    match r {
        Err(TargetError::Refused(m)) => {
            assert!(
                m.starts_with("you cannot rollback a paused deployment"),
                "{m}"
            );
            assert!(m.contains("rollout resume"), "{m}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(s.fake.patches().is_empty());
}

#[tokio::test]
async fn rollback_to_the_template_already_running_is_skipped_not_failed() {
    let s = setup("deployment/erlmcp").await;
    let d = s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5),
    );
    s.fake.insert(
        "replicasets",
        fake_kube::replicaset(&d, &image("v3.0.1"), 2, "5d9c7b6f83"),
    );
    s.fake.insert(
        "replicasets",
        fake_kube::replicaset(&d, &image("v3.1.0"), 3, "8a8a8a8a8a"),
    );

    let (r, _) = run(&s, TargetAction::Rollback { version: None }).await;
    let outcome = r.unwrap();
    assert_eq!(
        outcome.summary,
        "skipped rollback (current template already matches revision 2)"
    );
    assert!(s.fake.patches().is_empty());
}

#[tokio::test]
async fn rollback_to_a_version_sets_the_image() {
    let s = setup("deployment/erlmcp").await;
    with_history(&s);
    let (r, _) = run(
        &s,
        TargetAction::Rollback {
            version: Some(Version::parse("v2.9.5").unwrap()),
        },
    )
    .await;
    assert_eq!(r.unwrap().version_after.as_deref(), Some("v2.9.5"));
    let p = &s.fake.patches()[0];
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        p.body.as_ref().unwrap()["metadata"]["annotations"]["kubernetes.io/change-cause"],
        json!("erlmcp-bot R-12 by slack:U1: rollback to v2.9.5")
    );
}

#[tokio::test]
async fn statefulset_rollback_applies_the_previous_controller_revision() {
    let s = setup("statefulset/erlmcp").await;
    let mut sts = fake_kube::statefulset(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 3);
    sts["status"]["currentRevision"] = json!("erlmcp-rev3");
    sts["status"]["updateRevision"] = json!("erlmcp-rev3");
    let sts = s.fake.insert("statefulsets", sts);
    let mut revisions = Vec::new();
    for (rev, tag) in [(1, "v2.9.0"), (2, "v2.9.5"), (3, "v3.0.1")] {
        revisions.push(s.fake.insert(
            "controllerrevisions",
            fake_kube::controller_revision(&sts, &image(tag), rev),
        ));
    }

    let (r, lines) = run(&s, TargetAction::Rollback { version: None }).await;
    let outcome = r.unwrap();
    assert_eq!(outcome.version_after.as_deref(), Some("v2.9.5"));
    assert!(
        outcome.summary.contains("revision 2"),
        "{}",
        outcome.summary
    );
    // The API server defaults rollingUpdate.partition to 0, which kubectl reports as a
    // partitioned roll out.
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("1 out of 3 new pods have been updated")),
        "{lines:#?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        "partitioned roll out complete: 3 new pods have been updated"
    );

    let patches = s.fake.patches();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(
        p.path,
        "/apis/apps/v1/namespaces/erlmcp-prod/statefulsets/erlmcp"
    );
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(p.body.as_ref().unwrap(), &revisions[1]["data"]);
    let after = s.fake.get("statefulsets", NS, "erlmcp").unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        json!(image("v2.9.5"))
    );
    assert!(after["spec"]["template"].get("$patch").is_none());
}

#[tokio::test]
async fn progress_deadline_exceeded_is_a_rollout_failure_with_the_condition_message() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    s.fake.stall(NS, "erlmcp");

    let (r, _) = run(&s, deploy("v3.0.1")).await;
    match r {
        Err(TargetError::RolloutFailed(m)) => {
            assert!(m.starts_with("ReplicaSet \"erlmcp-"), "{m}");
            assert!(m.ends_with("\" has timed out progressing."), "{m}");
        }
        other => panic!("expected RolloutFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rollout_that_never_finishes_times_out() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.rollout_timeout = Some(HumanDuration(Duration::from_secs(1)));
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5);
    // The fake's controller leaves paused deployments alone, so nothing progresses.
    d["spec"]["paused"] = json!(true);
    s.fake.insert("deployments", d);
    let (r, _) = run(&s, deploy("v3.0.1")).await;
    match r {
        Err(TargetError::RolloutFailed(m)) => {
            assert!(m.contains("did not finish rolling out within 1s"), "{m}");
            assert!(m.contains("spec update to be observed"), "{m}");
        }
        other => panic!("expected RolloutFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn restart_sets_restarted_at_by_strategic_merge() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    let (r, _) = run(&s, TargetAction::Restart).await;
    assert!(r.unwrap().summary.contains("restarted"));
    let p = &s.fake.patches()[0];
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body = p.body.as_ref().unwrap();
    let at =
        body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only the annotation is sent: {body}"
    );
}

#[tokio::test]
async fn restart_of_a_paused_deployment_is_refused() {
    let s = setup("deployment/erlmcp").await;
    let mut d = fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5);
    d["spec"]["paused"] = json!(true);
    s.fake.insert("deployments", d);
    let (r, _) = run(&s, TargetAction::Restart).await;
    match r {
        Err(TargetError::Refused(m)) => {
            assert_eq!(
                m,
                "can't restart paused deployment (run rollout resume first)"
            )
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn scale_patches_the_scale_subresource() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    let (r, _) = run(&s, TargetAction::Scale { replicas: 7 }).await;
    let outcome = r.unwrap();
    assert!(
        outcome.summary.contains("from 5 to 7"),
        "{}",
        outcome.summary
    );
    assert!(
        outcome.summary.contains("7 of 7 available"),
        "{}",
        outcome.summary
    );

    let shapes: Value = serde_json::from_str(KUBECTL_SHAPES).unwrap();
    let p = &s.fake.patches()[0];
    assert_eq!(
        p.path,
        "/apis/apps/v1/namespaces/erlmcp-prod/deployments/erlmcp/scale"
    );
    assert_eq!(
        p.content_type.as_deref(),
        shapes["scale"]["content_type"].as_str()
    );
    assert_eq!(p.body.as_ref().unwrap(), &json!({"spec": {"replicas": 7}}));
    let d = s.fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(d["spec"]["replicas"], json!(7));
}

#[tokio::test]
async fn maintenance_annotates_the_ingress_and_removes_it_again() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    s.fake.insert("ingresses", fake_kube::ingress(NS, "erlmcp"));
    let key = "nginx.ingress.kubernetes.io/maintenance";

    run(&s, TargetAction::Maintenance { on: true })
        .await
        .0
        .unwrap();
    let ing = s.fake.get("ingresses", NS, "erlmcp").unwrap();
    assert_eq!(ing["metadata"]["annotations"][key], json!("true"));
    assert_eq!(
        ing["metadata"]["annotations"]["kubernetes.io/ingress.class"],
        json!("nginx")
    );
    assert_eq!(
        s.target.status(&s.env).await.unwrap().maintenance,
        Some(true)
    );

    run(&s, TargetAction::Maintenance { on: false })
        .await
        .0
        .unwrap();
    let ing = s.fake.get("ingresses", NS, "erlmcp").unwrap();
    assert!(ing["metadata"]["annotations"].get(key).is_none());
    assert_eq!(
        s.target.status(&s.env).await.unwrap().maintenance,
        Some(false)
    );

    let patches = s.fake.patches();
    assert_eq!(patches.len(), 2);
    for p in &patches {
        assert_eq!(
            p.path,
            "/apis/networking.k8s.io/v1/namespaces/erlmcp-prod/ingresses/erlmcp"
        );
        assert_eq!(
            p.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
    }
    assert_eq!(
        patches[1].body.as_ref().unwrap()["metadata"]["annotations"][key],
        Value::Null
    );
}

#[tokio::test]
async fn canary_verbs_touch_the_documented_fields() {
    let s = setup("deployment/erlmcp").await;
    with_history(&s);
    s.fake.insert("canaries", fake_kube::canary(NS, "erlmcp"));
    let canary_path = "/apis/flagger.app/v1beta1/namespaces/erlmcp-prod/canaries/erlmcp";
    let canary_patches = |fake: &FakeKubeServer| -> Vec<Value> {
        fake.patches()
            .into_iter()
            .filter(|p| p.path == canary_path)
            .inspect(|p| {
                assert_eq!(
                    p.content_type.as_deref(),
                    Some("application/merge-patch+json")
                )
            })
            .map(|p| p.body.unwrap())
            .collect()
    };
    let act = |a: CanaryAction| TargetAction::Canary { action: a };

    let o = run(&s, act(CanaryAction::Status)).await.0.unwrap();
    assert!(
        o.summary
            .contains("Progressing, weight 20%, 1 failed checks"),
        "{}",
        o.summary
    );
    assert!(s.fake.patches().is_empty(), "status changes nothing");

    let o = run(&s, act(CanaryAction::Pause)).await.0.unwrap();
    assert!(o.summary.contains("suspended"), "{}", o.summary);
    assert_eq!(
        canary_patches(&s.fake),
        vec![json!({"spec": {"suspend": true}})]
    );
    let status = s.target.status(&s.env).await.unwrap();
    assert!(status.canary.as_ref().unwrap().paused);
    assert_eq!(status.canary.as_ref().unwrap().weight, 20);

    run(&s, act(CanaryAction::Resume)).await.0.unwrap();
    assert_eq!(
        canary_patches(&s.fake)[1],
        json!({"spec": {"suspend": false}})
    );

    let (r, lines) = run(&s, act(CanaryAction::Promote)).await;
    let o = r.unwrap();
    assert!(o.summary.contains("promoted"), "{}", o.summary);
    assert!(
        lines.iter().any(|l| l.starts_with("Promoting")),
        "{lines:#?}"
    );
    let patches = canary_patches(&s.fake);
    assert_eq!(
        patches[2..],
        [
            json!({"spec": {"skipAnalysis": true, "suspend": false}}),
            json!({"spec": {"skipAnalysis": false}}),
        ]
    );
    let c = s.fake.get("canaries", NS, "erlmcp").unwrap();
    assert_eq!(c["status"]["phase"], json!("Succeeded"));
    assert_eq!(c["spec"]["skipAnalysis"], json!(false));

    let o = run(&s, act(CanaryAction::Abort)).await.0.unwrap();
    assert!(
        o.summary.starts_with("canary erlmcp aborted"),
        "{}",
        o.summary
    );
    assert_eq!(
        canary_patches(&s.fake)[4],
        json!({"spec": {"suspend": true}})
    );
    let workload_patch = s.fake.patches().into_iter().last().unwrap();
    assert_eq!(
        workload_patch.path,
        "/apis/apps/v1/namespaces/erlmcp-prod/deployments/erlmcp"
    );
    assert_eq!(
        workload_patch.content_type.as_deref(),
        Some("application/json-patch+json")
    );
}

#[tokio::test]
async fn canary_status_without_a_canary_is_refused_and_status_shows_none() {
    let s = setup("deployment/erlmcp").await;
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    let r = run(
        &s,
        TargetAction::Canary {
            action: CanaryAction::Status,
        },
    )
    .await
    .0;
    assert!(matches!(r, Err(TargetError::Refused(m)) if m.contains("no Flagger canary")));
    assert_eq!(s.target.status(&s.env).await.unwrap().canary, None);
}

fn sick_pods(s: &Setup) {
    s.fake.insert(
        "pods",
        fake_kube::pod(
            NS,
            "erlmcp-5d9c7b6f83-aaaaa",
            "erlmcp",
            true,
            json!({
            "name": "erlmcp", "ready": true, "restartCount": 0, "image": image("v3.0.0"),
            "imageID": "", "state": {"running": {"startedAt": "2026-02-02T10:00:05Z"}}}),
        ),
    );
    s.fake.insert(
        "pods",
        fake_kube::pod(
            NS,
            "erlmcp-5d9c7b6f83-bbbbb",
            "erlmcp",
            false,
            json!({
            "name": "erlmcp", "ready": false, "restartCount": 7, "image": image("v3.0.0"),
            "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 5m0s restarting failed container=erlmcp"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1,
                "startedAt": "2026-02-02T10:00:05Z", "finishedAt": "2026-02-02T10:00:09Z"}}}),
        ),
    );
    s.fake.insert(
        "pods",
        fake_kube::pod(
            NS,
            "erlmcp-5d9c7b6f83-ccccc",
            "erlmcp",
            false,
            json!({
            "name": "erlmcp", "ready": false, "restartCount": 3, "image": image("v3.0.0"),
            "imageID": "", "state": {"running": {"startedAt": "2026-02-02T10:05:00Z"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                "startedAt": "2026-02-02T10:00:05Z", "finishedAt": "2026-02-02T10:04:59Z"}}}),
        ),
    );
    // Another app's pod in the namespace must not show up.
    s.fake.insert(
        "pods",
        fake_kube::pod(
            NS,
            "redis-0",
            "redis",
            false,
            json!({"name": "redis", "ready": false,
            "restartCount": 99, "image": "redis", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}),
        ),
    );
}

#[tokio::test]
async fn status_pods_and_logs_show_crash_looping_and_oom_killed_pods() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.health_url = Some(format!("{}/health", s.fake.url));
    s.env.version_url = Some(format!("{}/version", s.fake.url));
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.0"), 5),
    );
    sick_pods(&s);

    let st = s.target.status(&s.env).await.unwrap();
    assert_eq!(st.target, "kubernetes");
    assert_eq!(st.version.as_deref(), Some("v3.0.0"));
    assert_eq!(st.image.as_deref(), Some(image("v3.0.0").as_str()));
    assert_eq!(st.replicas.desired, 5);
    assert_eq!(st.replicas.available, 5);
    assert_eq!(st.rollout, "successfully rolled out (5 of 5 available)");
    assert!(
        st.conditions.contains(
            &"Available=True (MinimumReplicasAvailable): Deployment has minimum availability."
                .to_string()
        ),
        "{:#?}",
        st.conditions
    );
    let not_ready: Vec<(&str, Option<&str>, u32)> = st
        .pods_not_ready
        .iter()
        .map(|p| (p.name.as_str(), p.reason.as_deref(), p.restarts))
        .collect();
    assert_eq!(
        not_ready,
        vec![
            ("erlmcp-5d9c7b6f83-bbbbb", Some("CrashLoopBackOff"), 7),
            ("erlmcp-5d9c7b6f83-ccccc", Some("OOMKilled"), 3),
        ]
    );
    let health = st.health.unwrap();
    assert_eq!(health.code, Some(200));
    assert_eq!(st.reported_version.as_deref(), Some("v3.0.0"));
    assert_eq!(st.canary, None);
    assert_eq!(st.maintenance, None);

    let pods = s.target.pods(&s.env).await.unwrap();
    assert_eq!(pods.len(), 3);
    assert!(pods[0].ready && pods[0].node.as_deref() == Some("node-1"));

    let long: String = (1..=1000)
        .map(|i| format!("2026-02-02T10:00:{i:04} crash line {i}\n"))
        .collect();
    s.fake.set_logs(NS, "erlmcp-5d9c7b6f83-bbbbb", true, &long);
    let out = s.target.logs(&s.env, None, true, 1000).await.unwrap();
    assert!(
        out.starts_with("logs of pod erlmcp-5d9c7b6f83-bbbbb, previous container (last 500 lines)"),
        "{out}"
    );
    assert!(out.contains("trimmed to the last 3500 characters"), "{out}");
    assert!(out.ends_with("crash line 1000\n"));
    assert!(out.len() < 3_700, "{}", out.len());
    let log_req = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/pods/erlmcp-5d9c7b6f83-bbbbb/log"))
        .unwrap();
    assert!(log_req.query.contains("tailLines=500"), "{}", log_req.query);
    assert!(log_req.query.contains("previous=true"), "{}", log_req.query);

    s.fake.set_logs(
        NS,
        "erlmcp-5d9c7b6f83-aaaaa",
        false,
        "started\nserving on :8080\n",
    );
    let out = s
        .target
        .logs(&s.env, Some("erlmcp-5d9c7b6f83-aaaaa"), false, 50)
        .await
        .unwrap();
    assert!(out.ends_with("started\nserving on :8080\n"), "{out}");
    assert!(!out.contains("trimmed"));

    let r = s.target.logs(&s.env, Some("redis-0"), false, 50).await;
    assert!(matches!(r, Err(TargetError::Refused(_))), "{r:?}");
}

fn no_wait() -> impl Fn(Duration) -> futures::future::BoxFuture<'static, ()> {
    |_| Box::pin(async {})
}

#[tokio::test]
async fn guard_rolls_back_after_three_failed_health_checks() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.health_url = Some(format!("{}/health", s.fake.url));
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5),
    );
    s.fake.set_health(503);
    let policy = GuardPolicy {
        window: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        ..Default::default()
    };
    let http = reqwest::Client::new();
    let verdict = watch_after_deploy(&s.target, &s.env, &http, &policy, no_wait()).await;
    let GuardVerdict::Rollback { evidence } = verdict else {
        panic!("expected Rollback, got {verdict:?}");
    };
    assert_eq!(evidence[0], "3 consecutive health check failures");
    assert_eq!(evidence.len(), 4, "{evidence:#?}");
    for line in &evidence[1..] {
        assert!(line.contains("/health failed: HTTP 503"), "{line}");
        assert!(chrono::DateTime::parse_from_rfc3339(line.split(' ').next().unwrap()).is_ok());
    }
    assert_eq!(health_probes(&s), 3);
}

#[tokio::test]
async fn guard_stays_healthy_when_probes_pass_and_no_pod_crash_loops() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.health_url = Some(format!("{}/health", s.fake.url));
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5),
    );
    let policy = GuardPolicy {
        window: Duration::from_secs(50),
        interval: Duration::from_secs(10),
        ..Default::default()
    };
    let http = reqwest::Client::new();
    let slept = std::sync::Arc::new(Mutex::new(Vec::new()));
    let record = slept.clone();
    let verdict = watch_after_deploy(&s.target, &s.env, &http, &policy, move |d| {
        record.lock().unwrap().push(d);
        Box::pin(async {})
    })
    .await;
    assert_eq!(verdict, GuardVerdict::Healthy);
    assert_eq!(*slept.lock().unwrap(), vec![Duration::from_secs(10); 4]);
    assert_eq!(health_probes(&s), 5);
}

#[tokio::test]
async fn guard_rolls_back_on_a_crash_looping_pod() {
    let mut s = setup("deployment/erlmcp").await;
    s.env.health_url = Some(format!("{}/health", s.fake.url));
    s.fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &image("v3.0.1"), 5),
    );
    sick_pods(&s);
    let http = reqwest::Client::new();
    let verdict =
        watch_after_deploy(&s.target, &s.env, &http, &GuardPolicy::default(), no_wait()).await;
    let GuardVerdict::Rollback { evidence } = verdict else {
        panic!("expected Rollback, got {verdict:?}");
    };
    assert_eq!(evidence[0], "crash loop detected");
    assert_eq!(evidence.len(), 2, "{evidence:#?}");
    assert!(
        evidence[1].ends_with("pod erlmcp-5d9c7b6f83-bbbbb is in CrashLoopBackOff (7 restarts)"),
        "{}",
        evidence[1]
    );
}

/// How many times the guard probed the fake's /health.
fn health_probes(s: &Setup) -> usize {
    s.fake
        .requests()
        .iter()
        .filter(|r| r.path == "/health")
        .count()
}
