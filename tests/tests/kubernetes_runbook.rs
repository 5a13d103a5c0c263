//! Troubleshooting, resources, backups and DR failover on the kubernetes target, through the
//! real `kube::Client` against `FakeKubeServer` (which refuses anything outside
//! `REQUIRED_RBAC`).

use std::sync::Mutex;
use std::time::Duration;

use erlmcp_adapters::kubernetes::{INSTANTIATE, KubernetesOptions, KubernetesTarget};
use erlmcp_adapters::target::{ExecContext, Progress, Target, TargetAction, TargetError};
use erlmcp_commands::RequestId;
use erlmcp_commands::config::{EnvironmentSpec, HumanDuration, TargetKind};
use erlmcp_commands::runbook::{
    self as rb, JobState, ResourceChange, ResourceList, describe_text, top_text,
};
use erlmcp_tests::fake_kube::{self, FakeKubeServer};
use serde_json::{Value, json};

const NS: &str = "erlmcp-prod";
const REPO: &str = "ghcr.io/banyan-platform/erlmcp";
const POD: &str = "erlmcp-5d9c7b6f83-ccccc";

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn report(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
}

struct Setup {
    fake: FakeKubeServer,
    target: KubernetesTarget,
    env: EnvironmentSpec,
}

async fn setup() -> Setup {
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
    env.workload = Some("deployment/erlmcp".into());
    env.container = Some("erlmcp".into());
    env.image = Some(REPO.into());
    env.rollout_timeout = Some(HumanDuration(Duration::from_secs(20)));
    env.backup_cronjob = Some("erlmcp-backup".into());
    env.dr_cronjob = Some("erlmcp-dr-failover".into());
    fake.insert(
        "deployments",
        fake_kube::deployment(NS, "erlmcp", "erlmcp", &format!("{REPO}:v3.0.0"), 5),
    );
    Setup { fake, target, env }
}

fn ctx() -> ExecContext {
    ExecContext {
        request_id: Some(RequestId(21)),
        requester: "slack:U1".into(),
        reason: None,
    }
}

async fn run(s: &Setup, action: TargetAction) -> (Result<String, TargetError>, Vec<String>) {
    let lines = Lines::default();
    let r = s.target.execute(&s.env, &action, &ctx(), &lines).await;
    let lines = lines.0.lock().unwrap().clone();
    (r.map(|o| o.summary), lines)
}

/// A pod of the workload killed for memory: limit 512Mi, now in CrashLoopBackOff.
fn oom_killed_pod(s: &Setup) {
    let mut p = fake_kube::pod(
        NS,
        POD,
        "erlmcp",
        false,
        json!({
        "name": "erlmcp", "ready": false, "restartCount": 3, "image": format!("{REPO}:v3.0.0"),
        "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff",
            "message": "back-off 40s restarting failed container=erlmcp"}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
            "startedAt": "2026-11-02T08:55:05Z", "finishedAt": "2026-11-02T08:58:59Z"}}}),
    );
    p["spec"]["containers"][0]["resources"] = json!({
        "limits": {"cpu": "1", "memory": "512Mi"},
        "requests": {"cpu": "500m", "memory": "256Mi"}
    });
    s.fake.insert("pods", p);
}

fn events(s: &Setup) {
    for e in [
        fake_kube::event(
            NS,
            "e1",
            "Normal",
            &format!("Pod/{POD}"),
            "Pulled",
            "Container image already present on machine",
            "2026-11-02T08:59:10Z",
        ),
        fake_kube::event(
            NS,
            "e2",
            "Warning",
            &format!("Pod/{POD}"),
            "BackOff",
            "Back-off restarting failed container erlmcp in pod",
            "2026-11-02T08:58:00Z",
        ),
        fake_kube::event(
            NS,
            "e3",
            "Warning",
            "Pod/redis-0",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"data\"",
            "2026-11-02T08:59:00Z",
        ),
        fake_kube::event(
            NS,
            "e4",
            "Normal",
            "Deployment/erlmcp",
            "ScalingReplicaSet",
            "Scaled up replica set erlmcp-5d9c7b6f83 to 5",
            "2026-11-02T09:00:00Z",
        ),
    ] {
        s.fake.insert("events", e);
    }
}

#[tokio::test]
async fn describe_of_an_oom_killed_pod_says_oomkilled_and_shows_the_limit() {
    let s = setup().await;
    oom_killed_pod(&s);
    events(&s);

    let d = s.target.describe_pod(&s.env, POD).await.unwrap();
    let text = describe_text("kubernetes", &d);

    assert!(
        text.contains("Last state: Terminated: OOMKilled (exit 137)"),
        "{text}"
    );
    assert!(text.contains("Limits: cpu=1, memory=512Mi"), "{text}");
    assert!(text.contains("Requests: cpu=500m, memory=256Mi"), "{text}");
    assert!(text.contains("Waiting: CrashLoopBackOff"), "{text}");
    assert!(text.contains("Ready=False"), "{text}");
    // Its own events, newest first; another pod's are not shown.
    let reasons: Vec<&str> = d.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["Pulled", "BackOff"]);
    assert!(!text.contains("FailedMount"), "{text}");
    assert!(s.fake.patches().is_empty());

    let other = s.target.describe_pod(&s.env, "redis-0").await.unwrap_err();
    assert!(
        other
            .to_string()
            .contains("is not part of deployment/erlmcp"),
        "{other}"
    );
}

#[tokio::test]
async fn events_put_warnings_first_and_newest_first() {
    let s = setup().await;
    events(&s);
    let mut got = s.target.events(&s.env).await.unwrap();
    rb::sort_events(&mut got);
    let order: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.kind.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("Warning", "FailedMount"),
            ("Warning", "BackOff"),
            ("Normal", "ScalingReplicaSet"),
            ("Normal", "Pulled"),
        ]
    );
    let text = rb::events_text("production", "kubernetes", &got);
    assert!(text.starts_with("production [kubernetes]: 4 events, 2 warnings"));
    assert!(
        s.fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/api/v1/namespaces/{NS}/events"))
    );
}

#[tokio::test]
async fn top_sums_pod_metrics_and_says_when_there_is_no_metrics_server() {
    let s = setup().await;
    oom_killed_pod(&s);
    s.fake.insert(
        "podmetrics",
        fake_kube::pod_metrics(NS, POD, "erlmcp", "250000000n", "471859200"),
    );
    let usage = s.target.top(&s.env).await.unwrap().expect("metrics");
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].name, POD);
    assert!((usage[0].cpu - 0.25).abs() < 1e-9);
    let text = top_text("production", "kubernetes", Some(&usage));
    assert!(
        text.contains(&format!("{POD} 250m 450Mi (88% of 512Mi limit)")),
        "{text}"
    );
    let metrics_call = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/apis/metrics.k8s.io/v1beta1/"))
        .expect("metrics read");
    assert_eq!(
        metrics_call.path,
        format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
    );
    assert!(
        metrics_call.query.contains("labelSelector=app%3Derlmcp"),
        "{}",
        metrics_call.query
    );

    // Without metrics-server the API answers 404: said so, not a failure.
    s.fake.remove_metrics_server();
    let usage = s.target.top(&s.env).await.unwrap();
    assert!(usage.is_none());
    assert_eq!(
        top_text("production", "kubernetes", usage.as_deref()),
        "production [kubernetes]: pod metrics are not available (metrics-server is not installed)"
    );
}

#[tokio::test]
async fn pod_delete_force_sends_grace_period_zero() {
    let s = setup().await;
    oom_killed_pod(&s);

    let (r, _) = run(
        &s,
        TargetAction::DeletePod {
            pod: POD.into(),
            force: true,
        },
    )
    .await;
    assert!(r.unwrap().contains("grace period 0"));
    let delete = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("a DELETE");
    assert_eq!(delete.path, format!("/api/v1/namespaces/{NS}/pods/{POD}"));
    assert_eq!(delete.body.unwrap()["gracePeriodSeconds"], json!(0));
    assert!(s.fake.get("pods", NS, POD).is_none());

    // A pod outside the workload is refused before anything is deleted.
    let (r, _) = run(
        &s,
        TargetAction::DeletePod {
            pod: "redis-0".into(),
            force: false,
        },
    )
    .await;
    assert!(matches!(r, Err(TargetError::Refused(_))), "{r:?}");
    assert_eq!(
        s.fake
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
}

#[tokio::test]
async fn resources_sends_the_strategic_merge_patch_kubectl_sends() {
    let s = setup().await;
    let change = ResourceChange {
        requests: ResourceList::parse("cpu=500m,memory=1Gi", "--requests").unwrap(),
        limits: ResourceList::parse("cpu=1000m,memory=2Gi", "--limits").unwrap(),
    };
    let (r, lines) = run(&s, TargetAction::SetResources { change }).await;
    let summary = r.unwrap();
    assert!(summary.contains("successfully rolled out"), "{summary}");
    assert!(
        lines.iter().any(|l| l.contains("new replicas")),
        "{lines:?}"
    );

    let patches = s.fake.patches();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let p = &patches[0];
    assert_eq!(
        p.path,
        format!("/apis/apps/v1/namespaces/{NS}/deployments/erlmcp")
    );
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(
        p.body.clone().unwrap(),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "erlmcp"}],
            "containers": [{"name": "erlmcp", "resources": {
                "limits": {"cpu": "1000m", "memory": "2Gi"},
                "requests": {"cpu": "500m", "memory": "1Gi"}
            }}]
        }}}})
    );
    let d = s.fake.get("deployments", NS, "erlmcp").unwrap();
    assert_eq!(
        d.pointer("/spec/template/spec/containers/0/resources/limits/memory"),
        Some(&json!("2Gi"))
    );

    // The same again changes nothing, so nothing is sent (kubectl's patch would be empty).
    let change = ResourceChange {
        requests: ResourceList::default(),
        limits: ResourceList::parse("memory=2Gi", "--limits").unwrap(),
    };
    let (r, _) = run(&s, TargetAction::SetResources { change }).await;
    assert!(r.unwrap().contains("nothing to change"));
    assert_eq!(s.fake.patches().len(), 1);
}

fn backup_cronjob(s: &Setup, name: &str) -> Value {
    s.fake.insert(
        "cronjobs",
        fake_kube::cronjob(
            NS,
            name,
            "ghcr.io/banyan-platform/erlmcp-backup:1",
            &["erlmcpctl", "backup", "/data/backup"],
        ),
    )
}

#[tokio::test]
async fn backup_creates_the_job_from_the_cronjobs_template_with_kubectls_annotation() {
    let s = setup().await;
    let cj = backup_cronjob(&s, "erlmcp-backup");

    let (r, lines) = run(&s, TargetAction::Backup).await;
    let summary = r.unwrap();
    assert!(
        summary.starts_with("backup of production: Job erlmcp-backup-"),
        "{summary}"
    );
    assert!(summary.contains("succeeded"), "{summary}");
    assert!(lines.iter().any(|l| l.contains("1 active")), "{lines:?}");

    let create = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a POST");
    assert_eq!(create.path, format!("/apis/batch/v1/namespaces/{NS}/jobs"));
    let job = create.body.unwrap();
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["spec"], cj["spec"]["jobTemplate"]["spec"]);
    assert_eq!(job["metadata"]["annotations"][INSTANTIATE], "manual");
    assert_eq!(
        job["metadata"]["annotations"]["erlmcp.io/runbook"], "backup",
        "the template's annotations are kept"
    );
    assert_eq!(
        job["metadata"]["labels"],
        cj["spec"]["jobTemplate"]["metadata"]["labels"]
    );
    assert_eq!(
        job["metadata"]["ownerReferences"],
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "erlmcp-backup",
            "uid": cj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}])
    );

    // `backups` lists it, newest first, as a manual run.
    let runs = s.target.backups(&s.env).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, JobState::Succeeded);
    assert!(runs[0].manual);
}

#[tokio::test]
async fn a_failed_backup_job_is_a_failure_with_the_jobs_reason() {
    let s = setup().await;
    backup_cronjob(&s, "erlmcp-backup");
    s.fake.fail_jobs_of("erlmcp-backup");
    let (r, _) = run(&s, TargetAction::Backup).await;
    let e = r.unwrap_err();
    assert!(e.to_string().contains("BackoffLimitExceeded"), "{e}");
    let runs = s.target.backups(&s.env).await.unwrap();
    assert_eq!(runs[0].state, JobState::Failed);

    // Without the CronJob, or without backup_cronjob, it says what is missing.
    let mut no_cj = s.env.clone();
    no_cj.backup_cronjob = Some("nope".into());
    let lines = Lines::default();
    let e = s
        .target
        .execute(&no_cj, &TargetAction::Backup, &ctx(), &lines)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cronjob nope in namespace erlmcp-prod not found"
    );
    no_cj.backup_cronjob = None;
    let e = s
        .target
        .execute(&no_cj, &TargetAction::Backup, &ctx(), &lines)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no backup_cronjob configured"),
        "{e}"
    );
}

#[tokio::test]
async fn dr_failover_runs_a_job_from_the_failover_cronjob() {
    let s = setup().await;
    backup_cronjob(&s, "erlmcp-dr-failover");
    let (r, _) = run(&s, TargetAction::DrFailover).await;
    let summary = r.unwrap();
    assert!(
        summary.starts_with("DR failover of production: Job erlmcp-dr-failover-"),
        "{summary}"
    );
    let create = s
        .fake
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a POST");
    assert_eq!(
        create.body.unwrap()["metadata"]["ownerReferences"][0]["name"],
        "erlmcp-dr-failover"
    );

    let mut by_workflow = s.env.clone();
    by_workflow.dr_cronjob = None;
    by_workflow.dr_workflow = Some("dr-failover.yml".into());
    let e = s
        .target
        .execute(
            &by_workflow,
            &TargetAction::DrFailover,
            &ctx(),
            &Lines::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::Unsupported(..)), "{e}");
}
