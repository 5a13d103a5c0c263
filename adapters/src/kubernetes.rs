//! The `kubernetes` target: the runbook's `kubectl` commands done through the API server.
//!
//! Each change mirrors what kubectl sends, so the cluster's audit log and `kubectl rollout
//! history` read the same whether a human or the bot acted:
//!
//! | verb | request |
//! |------|---------|
//! | deploy / rollback to VERSION | strategic merge patch of the workload: container image by name, plus `kubernetes.io/change-cause` |
//! | rollback (Deployment) | `rollout undo`: JSON patch replacing `/spec/template` and `/metadata/annotations` from the previous ReplicaSet |
//! | rollback (StatefulSet) | `rollout undo`: strategic merge patch with the previous ControllerRevision's `data` |
//! | restart | strategic merge patch of `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]` |
//! | scale | merge patch `{"spec":{"replicas":N}}` on the `/scale` subresource |
//! | maintenance | merge patch of the Ingress annotation `nginx.ingress.kubernetes.io/maintenance` (`"true"` / `null`) |
//! | deploy --strategy blue-green | the idle colour's Deployment gets the image (strategic merge), is followed until available, its `green_health_url` probed, then the Service's selector is switched (strategic merge `{"spec":{"selector":{"version":COLOUR}}}`) |
//! | bluegreen switch / rollback (blue-green) | the Service selector patch alone |
//! | bluegreen retire | merge patch `{"spec":{"replicas":0}}` on the idle colour's `/scale` |
//!
//! `--dry-run` sends the very same patches with `?dryRun=All`: the API server validates,
//! defaults and runs admission, and answers with the object as it would be stored, which is
//! compared with the current one for the plan.
//!
//! Troubleshooting (`events`, `describe`, `top`, `pod delete`), `resources`, backups and DR
//! failover Jobs are in [`runbook`], with the requests they send.
//!
//! Every workload change is followed by a watch on that one object until the rollout
//! completes, fails (`ProgressDeadlineExceeded`) or the environment's `rollout_timeout`
//! passes; progress lines use `kubectl rollout status` wording.
//!
//! # Canary verbs (Flagger `flagger.app/v1beta1` `Canary`)
//!
//! Flagger reads only its spec; the runbook's `flagger.app/paused` annotation is not
//! something Flagger acts on, so the bot uses the spec fields Flagger documents:
//!
//! - `status`: reads `status.phase`, `status.canaryWeight`, `status.failedChecks`, and
//!   `spec.suspend` for "paused". Changes nothing.
//! - `pause`: merge patch `spec.suspend: true`. Flagger stops acting on the canary; an
//!   analysis in progress stays where it is (traffic weight included) until resumed.
//! - `resume`: merge patch `spec.suspend: false`.
//! - `promote`: merge patch `spec.skipAnalysis: true` and `spec.suspend: false`; Flagger then
//!   promotes the canary on its next run without further analysis. The bot waits until
//!   `status.phase` is `Succeeded` (or `Failed`), then sets `spec.skipAnalysis` back to
//!   `false` so the next release is analysed again. It resets the field on timeout too, and
//!   then reports that the promotion did not happen in time.
//! - `abort`: Flagger has no abort field. Its own rollback needs failed checks or a
//!   `rollback` webhook gate served by the load tester, which lives outside the API server.
//!   The bot therefore (1) sets `spec.suspend: true` so Flagger stops shifting traffic, then
//!   (2) runs `rollout undo` on the environment's workload (the Canary's target), so the pods
//!   behind the canary service run the previous, promoted template again. After a later
//!   `resume`, Flagger analyses that old revision, which matches the primary.

use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::CanaryAction;
use erlmcp_commands::config::EnvironmentSpec;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, LogParams, Patch, PatchParams, WatchEvent,
    WatchParams,
};
use serde_json::{Value, json};
use tokio::time::Instant;

mod runbook;
pub use runbook::{
    INSTANTIATE, describe_pod_value, event_info, job_from_cronjob, job_run, resources_patch,
};
mod bluegreen;
mod plan;

use crate::probe::probe;
use crate::target::{
    CanaryStatus, EnvStatus, ExecContext, HealthProbe, Outcome, PodInfo, Progress, Replicas,
    Target, TargetAction, TargetError,
};

/// A Kubernetes API verb the adapter's requests need RBAC for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Patch,
    Create,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Patch => "patch",
            Verb::Create => "create",
            Verb::Delete => "delete",
        }
    }
}

/// Permission for one resource (or `resource/subresource`) of one API group.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub api_group: &'static str,
    pub resource: &'static str,
    pub verbs: &'static [Verb],
}

/// Everything this adapter calls, per target namespace, and nothing more: the fake API
/// server in the tests refuses any request outside it (as RBAC would), and the manifests
/// test checks that the deployed Roles grant exactly this. Keep RBAC.md beside it true.
pub const REQUIRED_RBAC: &[Grant] = &[
    // status reads the workload; deploy, rollback and restart patch it; a rollout is
    // followed by watching the one object (fieldSelector on its name).
    Grant {
        api_group: "apps",
        resource: "deployments",
        verbs: &[Verb::Get, Verb::Watch, Verb::Patch],
    },
    Grant {
        api_group: "apps",
        resource: "statefulsets",
        verbs: &[Verb::Get, Verb::Watch, Verb::Patch],
    },
    // scale merge-patches the subresource, as `kubectl scale` does.
    Grant {
        api_group: "apps",
        resource: "deployments/scale",
        verbs: &[Verb::Patch],
    },
    Grant {
        api_group: "apps",
        resource: "statefulsets/scale",
        verbs: &[Verb::Patch],
    },
    // rollback finds the previous revision among those the workload owns.
    Grant {
        api_group: "apps",
        resource: "replicasets",
        verbs: &[Verb::List],
    },
    Grant {
        api_group: "apps",
        resource: "controllerrevisions",
        verbs: &[Verb::List],
    },
    // `pod delete` removes a stuck pod of the workload (after finding it in this list).
    Grant {
        api_group: "",
        resource: "pods",
        verbs: &[Verb::List, Verb::Delete],
    },
    Grant {
        api_group: "",
        resource: "pods/log",
        verbs: &[Verb::Get],
    },
    Grant {
        api_group: "networking.k8s.io",
        resource: "ingresses",
        verbs: &[Verb::Get, Verb::Patch],
    },
    Grant {
        api_group: "flagger.app",
        resource: "canaries",
        verbs: &[Verb::Get, Verb::Patch],
    },
    // `events` and `describe`.
    Grant {
        api_group: "",
        resource: "events",
        verbs: &[Verb::List],
    },
    // `top`: metrics-server's PodMetrics.
    Grant {
        api_group: "metrics.k8s.io",
        resource: "pods",
        verbs: &[Verb::List],
    },
    // `backup` and a failover Job start from the CronJob's template...
    Grant {
        api_group: "batch",
        resource: "cronjobs",
        verbs: &[Verb::Get],
    },
    // ...create the Job, read it until it ends; `backups` lists them.
    Grant {
        api_group: "batch",
        resource: "jobs",
        verbs: &[Verb::Create, Verb::Get, Verb::List],
    },
    // blue-green reads which colour the Service selects and switches it.
    Grant {
        api_group: "",
        resource: "services",
        verbs: &[Verb::Get, Verb::Patch],
    },
];

/// Whether [`REQUIRED_RBAC`] grants `verb` on `api_group`/`resource`.
pub fn rbac_grants(api_group: &str, resource: &str, verb: Verb) -> bool {
    REQUIRED_RBAC
        .iter()
        .any(|g| g.api_group == api_group && g.resource == resource && g.verbs.contains(&verb))
}

pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const MAINTENANCE: &str = "nginx.ingress.kubernetes.io/maintenance";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const FIELD_MANAGER: &str = "erlmcp-bot";

/// Annotations `rollout undo` keeps from the Deployment instead of copying them from the
/// ReplicaSet (kubectl's `annotationsToSkip`).
pub const UNDO_ANNOTATIONS_TO_SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

pub const PAUSED_ROLLBACK: &str =
    "you cannot rollback a paused deployment; resume it first with `rollout resume` and try again";
pub const PAUSED_RESTART: &str = "can't restart paused deployment (run rollout resume first)";

/// Timing knobs; tests shorten them.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// Used when the environment sets no `rollout_timeout`.
    pub rollout_timeout: Duration,
    /// Server-side timeout of one watch request; the watch is re-opened until the rollout
    /// timeout passes.
    pub watch_timeout: Duration,
    /// Between two reads while waiting on a Flagger canary (Canaries are not watched so the
    /// bot needs only `get` on them).
    pub poll_interval: Duration,
    pub probe_timeout: Duration,
    pub max_log_lines: u32,
    /// A chat message holds about 4,000 characters; logs leave room for the header.
    pub max_log_chars: usize,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        KubernetesOptions {
            rollout_timeout: Duration::from_secs(10 * 60),
            watch_timeout: Duration::from_secs(290),
            poll_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(5),
            max_log_lines: 500,
            max_log_chars: 3_500,
        }
    }
}

pub struct KubernetesTarget {
    client: kube::Client,
    http: reqwest::Client,
    opts: KubernetesOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Workload<'a> {
    kind: Kind,
    name: &'a str,
    ns: &'a str,
}

impl std::fmt::Display for Workload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// Where a rollout stands, in `kubectl rollout status` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Progressing(String),
    Complete(String),
    Failed(String),
}

impl RolloutState {
    fn line(&self) -> &str {
        match self {
            RolloutState::Progressing(s) | RolloutState::Complete(s) | RolloutState::Failed(s) => s,
        }
    }
}

fn canary_resource() -> ApiResource {
    ApiResource {
        group: "flagger.app".into(),
        version: "v1beta1".into(),
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        plural: "canaries".into(),
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// The same request as [`patch_params`] with `?dryRun=All`: validated, defaulted and
/// admitted by the API server, and not stored.
fn dry_run_params() -> PatchParams {
    PatchParams {
        dry_run: true,
        ..patch_params()
    }
}

/// What `deploy` (and `rollback ENV VERSION`) sends: the container's image by name, and the
/// change cause `kubectl rollout history` shows.
fn image_patch(ctx: &ExecContext, container: &str, image: &str, cause: &str) -> Value {
    json!({
        "metadata": {"annotations": {CHANGE_CAUSE: change_cause(ctx, cause)}},
        "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}},
    })
}

fn restart_patch(now: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}})
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn api_error(what: &str, e: kube::Error) -> TargetError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => TargetError::Refused(format!("{what} not found")),
        kube::Error::Api(s) if s.code == 403 => TargetError::Unavailable(format!(
            "not allowed to access {what}: {} (see deploy/kubernetes/RBAC.md)",
            s.message
        )),
        kube::Error::Api(s) => TargetError::Unavailable(format!("{what}: {}", s.message)),
        _ => TargetError::Unavailable(format!("{what}: {e}")),
    }
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

fn ptr<'a>(v: &'a Value, p: &str) -> Option<&'a Value> {
    v.pointer(p)
}

fn int(v: &Value, p: &str) -> i64 {
    ptr(v, p).and_then(Value::as_i64).unwrap_or(0)
}

fn string<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    ptr(v, p).and_then(Value::as_str)
}

fn flag(v: &Value, p: &str) -> bool {
    ptr(v, p).and_then(Value::as_bool).unwrap_or(false)
}

/// The tag of an image reference (`repo:tag`, `repo@sha256:..` gives the digest).
pub fn image_version(image: &str) -> Option<String> {
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest.to_string());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, tag)| tag.to_string())
}

/// `kubectl rollout status` for a Deployment given as JSON.
pub fn deployment_rollout(d: &Value) -> RolloutState {
    let generation = int(d, "/metadata/generation");
    let observed = int(d, "/status/observedGeneration");
    if generation > observed {
        return RolloutState::Progressing(
            "Waiting for deployment spec update to be observed".into(),
        );
    }
    if let Some(c) = condition(d, "Progressing")
        && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        let name = string(d, "/metadata/name").unwrap_or("");
        let msg = c
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("deployment {name:?} exceeded its progress deadline"));
        return RolloutState::Failed(msg);
    }
    let desired = ptr(d, "/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int(d, "/status/updatedReplicas");
    let replicas = int(d, "/status/replicas");
    let available = int(d, "/status/availableReplicas");
    if updated < desired {
        return RolloutState::Progressing(format!(
            "{updated} out of {desired} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return RolloutState::Progressing(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutState::Progressing(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    RolloutState::Complete(format!(
        "successfully rolled out ({available} of {desired} available)"
    ))
}

/// `kubectl rollout status` for a StatefulSet given as JSON.
pub fn statefulset_rollout(s: &Value) -> RolloutState {
    let generation = int(s, "/metadata/generation");
    let observed = int(s, "/status/observedGeneration");
    if observed == 0 || generation > observed {
        return RolloutState::Progressing(
            "Waiting for statefulset spec update to be observed".into(),
        );
    }
    let strategy = string(s, "/spec/updateStrategy/type").unwrap_or("RollingUpdate");
    if strategy != "RollingUpdate" {
        return RolloutState::Complete(format!(
            "update strategy {strategy}: pods change only when deleted"
        ));
    }
    let desired = ptr(s, "/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = int(s, "/status/readyReplicas");
    let updated = int(s, "/status/updatedReplicas");
    if ready < desired {
        return RolloutState::Progressing(format!(
            "Waiting for {} pods to be ready ({ready} of {desired} ready)",
            desired - ready
        ));
    }
    if let Some(partition) =
        ptr(s, "/spec/updateStrategy/rollingUpdate/partition").and_then(Value::as_i64)
    {
        let expected = (desired - partition).max(0);
        if updated < expected {
            return RolloutState::Progressing(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {expected} new pods have been updated"
            ));
        }
        return RolloutState::Complete(format!(
            "partitioned roll out complete: {updated} new pods have been updated"
        ));
    }
    let update_rev = string(s, "/status/updateRevision").unwrap_or("");
    let current_rev = string(s, "/status/currentRevision").unwrap_or("");
    if update_rev != current_rev {
        return RolloutState::Progressing(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}"
        ));
    }
    RolloutState::Complete(format!(
        "rolling update complete {ready} of {desired} pods ready at revision {current_rev}"
    ))
}

fn rollout_state(kind: Kind, v: &Value) -> RolloutState {
    match kind {
        Kind::Deployment => deployment_rollout(v),
        Kind::StatefulSet => statefulset_rollout(v),
    }
}

fn condition<'a>(v: &'a Value, ty: &str) -> Option<&'a Value> {
    ptr(v, "/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

fn condition_lines(v: &Value) -> Vec<String> {
    let Some(conds) = ptr(v, "/status/conditions").and_then(Value::as_array) else {
        return Vec::new();
    };
    conds
        .iter()
        .map(|c| {
            let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            let mut line = format!("{}={}", g("type"), g("status"));
            if !g("reason").is_empty() {
                line.push_str(&format!(" ({})", g("reason")));
            }
            if !g("message").is_empty() {
                line.push_str(&format!(": {}", g("message")));
            }
            line
        })
        .collect()
}

/// `spec.selector` as a label selector string. Only `matchLabels` and the set-based
/// operators are used by workloads in practice.
fn selector_string(v: &Value) -> Option<String> {
    let sel = ptr(v, "/spec/selector")?;
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, val) in m {
            parts.push(format!("{k}={}", val.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => parts.push(key.to_string()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

fn controlled_by(v: &Value, uid: &str) -> bool {
    ptr(v, "/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true)
                    && r.get("uid").and_then(Value::as_str) == Some(uid)
            })
        })
}

fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

fn strip_patch_directives(v: &mut Value) {
    if let Value::Object(m) = v {
        m.remove("$patch");
        for child in m.values_mut() {
            strip_patch_directives(child);
        }
    } else if let Value::Array(a) = v {
        for child in a {
            strip_patch_directives(child);
        }
    }
}

fn container_image<'a>(workload: &'a Value, container: &str) -> Option<&'a str> {
    ptr(workload, "/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?
        .get("image")?
        .as_str()
}

fn container_names(workload: &Value) -> Vec<String> {
    ptr(workload, "/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a pod is not serving, from its status the way `kubectl get pods` shows it.
pub fn pod_info(p: &Value, now_unix: i64) -> PodInfo {
    let name = string(p, "/metadata/name").unwrap_or("").to_string();
    let phase = string(p, "/status/phase").unwrap_or("Unknown").to_string();
    let ready = ptr(p, "/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let statuses: Vec<&Value> = ptr(p, "/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let restarts = statuses
        .iter()
        .map(|s| s.get("restartCount").and_then(Value::as_u64).unwrap_or(0))
        .sum::<u64>()
        .min(u32::MAX as u64) as u32;

    let mut reason = None;
    for s in &statuses {
        let waiting = s.pointer("/state/waiting/reason").and_then(Value::as_str);
        let terminated = s
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str);
        let last = s
            .pointer("/lastState/terminated/reason")
            .and_then(Value::as_str);
        let r = match (waiting, terminated, last) {
            // An OOM kill is the usual cause worth naming next to the back-off.
            (Some(w), _, Some("OOMKilled")) => Some(format!("{w} (OOMKilled)")),
            (Some(w), _, _) => Some(w.to_string()),
            (None, Some(t), _) => Some(t.to_string()),
            (None, None, Some(l)) if l == "OOMKilled" || !ready => Some(l.to_string()),
            _ => None,
        };
        if r.is_some() {
            reason = r;
            break;
        }
    }
    if reason.is_none() && phase == "Pending" {
        let unschedulable = ptr(p, "/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                        && c.get("status").and_then(Value::as_str) == Some("False")
                })
            })
            .and_then(|c| c.get("reason").and_then(Value::as_str));
        reason = Some(unschedulable.unwrap_or("Pending").to_string());
    }
    if reason.is_none() && !ready {
        reason = string(p, "/status/reason")
            .map(str::to_string)
            .or_else(|| Some("NotReady".to_string()));
    }
    let age_seconds = string(p, "/metadata/creationTimestamp")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| now_unix - t.timestamp());
    PodInfo {
        name,
        phase,
        ready,
        restarts,
        reason,
        node: string(p, "/spec/nodeName").map(str::to_string),
        age_seconds,
    }
}

/// Keeps the end of a log (the part with the crash) within `max_chars`, cut at a line start.
pub fn trim_log(log: &str, max_chars: usize) -> (String, bool) {
    let total = log.chars().count();
    if total <= max_chars {
        return (log.to_string(), false);
    }
    let skip = total - max_chars;
    let start = log.char_indices().nth(skip).map(|(i, _)| i).unwrap_or(0);
    let mut tail = &log[start..];
    if let Some(nl) = tail.find('\n')
        && nl + 1 < tail.len()
    {
        tail = &tail[nl + 1..];
    }
    (tail.to_string(), true)
}

fn change_cause(ctx: &ExecContext, what: &str) -> String {
    let mut s = String::from("erlmcp-bot");
    if let Some(id) = &ctx.request_id {
        s.push_str(&format!(" {id}"));
    }
    let who = if ctx.requester.is_empty() {
        "unknown"
    } else {
        &ctx.requester
    };
    s.push_str(&format!(" by {who}: {what}"));
    if let Some(r) = ctx.reason.as_deref().filter(|r| !r.is_empty()) {
        s.push_str(&format!(" ({r})"));
    }
    s
}

/// Drops repeated lines: watch events often change fields the progress line does not show.
struct Reporter<'a> {
    progress: &'a dyn Progress,
    last: Option<String>,
}

impl Reporter<'_> {
    fn report(&mut self, line: &str) {
        if self.last.as_deref() != Some(line) {
            self.last = Some(line.to_string());
            self.progress.report(line.to_string());
        }
    }
}

/// A client for `kubernetes.api_url` (an API server reached directly, without credentials:
/// a local proxy or tests), else for the in-cluster service account or `KUBECONFIG`. Its
/// calls are counted as the `kubernetes` platform's ([`crate::observe`]).
pub async fn client(api_url: Option<&str>) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let config = match api_url {
        Some(url) => kube::Config::new(
            url.parse()
                .with_context(|| format!("kubernetes.api_url {url:?} is not a URL"))?,
        ),
        None => kube::Config::infer()
            .await
            .context("no in-cluster service account or KUBECONFIG found")?,
    };
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&crate::observe::CountCalls::new("kubernetes"))
        .build())
}

impl KubernetesTarget {
    /// `api_url` points at an API server directly (no credentials; for a local proxy or
    /// tests). Without it the in-cluster service account or `KUBECONFIG` is used.
    pub async fn new(api_url: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self::from_client(
            client(api_url).await?,
            KubernetesOptions::default(),
        ))
    }

    pub fn from_client(client: kube::Client, opts: KubernetesOptions) -> Self {
        KubernetesTarget {
            client,
            http: reqwest::Client::new(),
            opts,
        }
    }

    fn api(&self, ns: &str, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, ar)
    }

    fn workload_api(&self, wl: Workload<'_>) -> Api<DynamicObject> {
        let ar = match wl.kind {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        };
        self.api(wl.ns, &ar)
    }

    fn workload<'a>(&self, env: &'a EnvironmentSpec) -> Result<Workload<'a>, TargetError> {
        let ns = env.namespace.as_deref().ok_or_else(|| {
            TargetError::Refused(format!(
                "environment {} has no namespace configured",
                env.name
            ))
        })?;
        let (kind, name) = match env.workload_ref() {
            Some(("deployment", n)) if !n.is_empty() => (Kind::Deployment, n),
            Some(("statefulset", n)) if !n.is_empty() => (Kind::StatefulSet, n),
            _ => {
                return Err(TargetError::Refused(format!(
                    "environment {} needs workload = \"deployment/NAME\" or \"statefulset/NAME\"",
                    env.name
                )));
            }
        };
        Ok(Workload { kind, name, ns })
    }

    async fn get_workload(&self, wl: Workload<'_>) -> Result<Value, TargetError> {
        let obj = self
            .workload_api(wl)
            .get(wl.name)
            .await
            .map_err(|e| api_error(&format!("{wl} in namespace {}", wl.ns), e))?;
        Ok(to_value(&obj))
    }

    fn timeout_for(&self, env: &EnvironmentSpec) -> Duration {
        env.rollout_timeout
            .map(|d| d.0)
            .unwrap_or(self.opts.rollout_timeout)
    }

    /// Watches the workload until its rollout completes or fails. `start` is the object the
    /// change returned; its resourceVersion is where the watch begins.
    async fn follow(
        &self,
        wl: Workload<'_>,
        start: Value,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<String, TargetError> {
        let mut reporter = Reporter {
            progress,
            last: None,
        };
        let deadline = Instant::now() + timeout;
        let api = self.workload_api(wl);
        let mut current = start;
        loop {
            let state = rollout_state(wl.kind, &current);
            reporter.report(state.line());
            match state {
                RolloutState::Complete(line) => return Ok(line),
                RolloutState::Failed(msg) => return Err(TargetError::RolloutFailed(msg)),
                RolloutState::Progressing(_) => {}
            }
            current = match self.next_version(&api, wl, &current, deadline).await? {
                Some(v) => v,
                None => {
                    return Err(TargetError::RolloutFailed(format!(
                        "{wl} did not finish rolling out within {}s (last state: {})",
                        timeout.as_secs(),
                        reporter.last.as_deref().unwrap_or("unknown")
                    )));
                }
            };
        }
    }

    /// The next version of the object from a watch, or `None` when the deadline passes.
    async fn next_version(
        &self,
        api: &Api<DynamicObject>,
        wl: Workload<'_>,
        current: &Value,
        deadline: Instant,
    ) -> Result<Option<Value>, TargetError> {
        let mut rv = string(current, "/metadata/resourceVersion")
            .unwrap_or("0")
            .to_string();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            let secs = remaining
                .min(self.opts.watch_timeout)
                .as_secs()
                .clamp(1, u32::MAX as u64) as u32;
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={}", wl.name))
                .timeout(secs);
            let opened = tokio::time::timeout_at(deadline, api.watch(&wp, &rv)).await;
            let stream = match opened {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(api_error(&format!("watching {wl}"), e)),
                Ok(Ok(s)) => s,
            };
            let mut stream = stream.boxed();
            loop {
                let next = match tokio::time::timeout_at(deadline, stream.try_next()).await {
                    Err(_) => return Ok(None),
                    Ok(n) => n,
                };
                match next {
                    Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                        let v = to_value(&o);
                        if v != *current {
                            return Ok(Some(v));
                        }
                        if let Some(r) = o.metadata.resource_version {
                            rv = r;
                        }
                    }
                    Ok(Some(WatchEvent::Deleted(_))) => {
                        return Err(TargetError::Refused(format!(
                            "{wl} was deleted during the rollout"
                        )));
                    }
                    Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                    Ok(Some(WatchEvent::Error(_))) => {
                        // Usually 410 Gone: our resourceVersion is too old. Start over
                        // from a fresh read.
                        let fresh = api
                            .get(wl.name)
                            .await
                            .map_err(|e| api_error(&wl.to_string(), e))?;
                        return Ok(Some(to_value(&fresh)));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "watch stream error, re-watching");
                        break;
                    }
                }
            }
        }
    }

    async fn set_image(
        &self,
        env: &EnvironmentSpec,
        version: &str,
        what: &str,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let repo = env.image.as_deref().ok_or_else(|| {
            TargetError::Refused(format!("environment {} has no image configured", env.name))
        })?;
        let container = env.container.as_deref().unwrap_or(wl.name);
        let before = self.get_workload(wl).await?;
        let Some(old_image) = container_image(&before, container) else {
            return Err(TargetError::Refused(format!(
                "{wl} has no container named {container:?} (containers: {})",
                container_names(&before).join(", ")
            )));
        };
        let image = format!("{repo}:{version}");
        let patch = image_patch(ctx, container, &image, &format!("{what} {version}"));
        progress.report(format!("setting {wl} container {container} to {image}"));
        let after = self
            .workload_api(wl)
            .patch(wl.name, &patch_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        let line = self
            .follow(wl, to_value(&after), self.timeout_for(env), progress)
            .await?;
        Ok(Outcome {
            summary: format!("{} now runs {version}: {line}", env.name),
            version_before: image_version(old_image),
            version_after: Some(version.to_string()),
        })
    }

    async fn undo(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        if env.service.is_some() {
            // A blue-green environment rolls back by sending traffic to the other colour.
            return self.switch_back(env, progress).await;
        }
        let wl = self.workload(env)?;
        let current = self.get_workload(wl).await?;
        let container = env.container.as_deref().unwrap_or(wl.name);
        let before = container_image(&current, container).and_then(image_version);
        let (patch_result, revision) = match wl.kind {
            Kind::Deployment => match self.undo_deployment(wl, &current, &patch_params()).await? {
                Undo::Patched(v, rev) => (v, rev),
                Undo::Skipped(rev) => {
                    return Ok(Outcome {
                        summary: format!(
                            "skipped rollback (current template already matches revision {rev})"
                        ),
                        version_before: before.clone(),
                        version_after: before,
                    });
                }
            },
            Kind::StatefulSet => {
                match self.undo_statefulset(wl, &current, &patch_params()).await? {
                    Undo::Patched(v, rev) => (v, rev),
                    Undo::Skipped(rev) => {
                        return Ok(Outcome {
                            summary: format!(
                                "skipped rollback (current template already matches revision {rev})"
                            ),
                            version_before: before.clone(),
                            version_after: before,
                        });
                    }
                }
            }
        };
        let after_version = container_image(&patch_result, container).and_then(image_version);
        progress.report(format!("rolled {wl} back to revision {revision}"));
        let line = self
            .follow(wl, patch_result, self.timeout_for(env), progress)
            .await?;
        Ok(Outcome {
            summary: format!(
                "{} rolled back to revision {revision}{}: {line}",
                env.name,
                after_version
                    .as_deref()
                    .map(|v| format!(" ({v})"))
                    .unwrap_or_default()
            ),
            version_before: before,
            version_after: after_version,
        })
    }

    /// kubectl's `DeploymentRollbacker` with `--to-revision=0`.
    async fn undo_deployment(
        &self,
        wl: Workload<'_>,
        deployment: &Value,
        params: &PatchParams,
    ) -> Result<Undo, TargetError> {
        if flag(deployment, "/spec/paused") {
            return Err(TargetError::Refused(PAUSED_ROLLBACK.into()));
        }
        let uid = string(deployment, "/metadata/uid").unwrap_or("");
        let mut lp = ListParams::default();
        if let Some(sel) = selector_string(deployment) {
            lp = lp.labels(&sel);
        }
        let rs_api = self.api(wl.ns, &ApiResource::erase::<ReplicaSet>(&()));
        let list = rs_api
            .list(&lp)
            .await
            .map_err(|e| api_error(&format!("replicasets of {wl}"), e))?;
        let mut latest: Option<(i64, Value)> = None;
        let mut previous: Option<(i64, Value)> = None;
        for rs in list.items.iter().map(to_value) {
            if !controlled_by(&rs, uid) {
                continue;
            }
            let Some(rev) = ptr(&rs, "/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            if latest.as_ref().is_none_or(|(l, _)| *l < rev) {
                previous = latest.take();
                latest = Some((rev, rs));
            } else if previous.as_ref().is_none_or(|(p, _)| *p < rev) {
                previous = Some((rev, rs));
            }
        }
        let Some((revision, rs)) = previous else {
            return Err(TargetError::Refused(format!(
                "no rollout history found for {wl}"
            )));
        };
        let template = without_hash(ptr(&rs, "/spec/template").unwrap_or(&Value::Null));
        let current_template =
            without_hash(ptr(deployment, "/spec/template").unwrap_or(&Value::Null));
        if template == current_template {
            return Ok(Undo::Skipped(revision));
        }

        let mut annotations = serde_json::Map::new();
        let dep_ann = ptr(deployment, "/metadata/annotations").and_then(Value::as_object);
        for key in UNDO_ANNOTATIONS_TO_SKIP {
            if let Some(v) = dep_ann.and_then(|a| a.get(key)) {
                annotations.insert(key.to_string(), v.clone());
            }
        }
        if let Some(rs_ann) = ptr(&rs, "/metadata/annotations").and_then(Value::as_object) {
            for (k, v) in rs_ann {
                if !UNDO_ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        let ops = json!([
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]);
        let patch = Patch::<()>::Json(
            serde_json::from_value(ops)
                .map_err(|e| TargetError::Unavailable(format!("building rollback patch: {e}")))?,
        );
        let after = self
            .workload_api(wl)
            .patch(wl.name, params, &patch)
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        Ok(Undo::Patched(to_value(&after), revision))
    }

    /// kubectl's `StatefulSetRollbacker` with `--to-revision=0`: the ControllerRevision
    /// before the newest holds the previous template as a ready-made patch.
    async fn undo_statefulset(
        &self,
        wl: Workload<'_>,
        sts: &Value,
        params: &PatchParams,
    ) -> Result<Undo, TargetError> {
        let uid = string(sts, "/metadata/uid").unwrap_or("");
        let mut lp = ListParams::default();
        if let Some(sel) = selector_string(sts) {
            lp = lp.labels(&sel);
        }
        let cr_api = self.api(wl.ns, &ApiResource::erase::<ControllerRevision>(&()));
        let list = cr_api
            .list(&lp)
            .await
            .map_err(|e| api_error(&format!("controllerrevisions of {wl}"), e))?;
        let mut history: Vec<Value> = list
            .items
            .iter()
            .map(to_value)
            .filter(|cr| controlled_by(cr, uid))
            .collect();
        history.sort_by_key(|cr| int(cr, "/revision"));
        if history.len() < 2 {
            return Err(TargetError::Refused(format!(
                "no rollout history found for {wl}"
            )));
        }
        let target = &history[history.len() - 2];
        let revision = int(target, "/revision");
        let data = ptr(target, "/data").cloned().unwrap_or(Value::Null);
        let mut restored = data
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        strip_patch_directives(&mut restored);
        if restored == *ptr(sts, "/spec/template").unwrap_or(&Value::Null) {
            return Ok(Undo::Skipped(revision));
        }
        let after = self
            .workload_api(wl)
            .patch(wl.name, params, &Patch::Strategic(&data))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        Ok(Undo::Patched(to_value(&after), revision))
    }

    async fn restart(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let current = self.get_workload(wl).await?;
        if wl.kind == Kind::Deployment && flag(&current, "/spec/paused") {
            return Err(TargetError::Refused(PAUSED_RESTART.into()));
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let patch = restart_patch(&now);
        let after = self
            .workload_api(wl)
            .patch(wl.name, &patch_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        progress.report(format!("{wl} restarted at {now}"));
        let line = self
            .follow(wl, to_value(&after), self.timeout_for(env), progress)
            .await?;
        let version = container_image(&current, env.container.as_deref().unwrap_or(wl.name))
            .and_then(image_version);
        Ok(Outcome {
            summary: format!("{} restarted: {line}", env.name),
            version_before: version.clone(),
            version_after: version,
        })
    }

    async fn scale(
        &self,
        env: &EnvironmentSpec,
        replicas: u32,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let current = self.get_workload(wl).await?;
        let from = ptr(&current, "/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let api = self.workload_api(wl);
        api.patch_scale(
            wl.name,
            &patch_params(),
            &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map_err(|e| api_error(&format!("{wl}/scale"), e))?;
        progress.report(format!("scaling {wl} from {from} to {replicas} replicas"));
        let after = self.get_workload(wl).await?;
        let line = self
            .follow(wl, after, self.timeout_for(env), progress)
            .await?;
        let version = container_image(&current, env.container.as_deref().unwrap_or(wl.name))
            .and_then(image_version);
        Ok(Outcome {
            summary: format!(
                "{} scaled from {from} to {replicas} replicas: {line}",
                env.name
            ),
            version_before: version.clone(),
            version_after: version,
        })
    }

    fn ingress_name<'a>(&self, env: &'a EnvironmentSpec, wl: Workload<'a>) -> &'a str {
        env.ingress.as_deref().unwrap_or(wl.name)
    }

    async fn maintenance(&self, env: &EnvironmentSpec, on: bool) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let name = self.ingress_name(env, wl);
        let value = if on { json!("true") } else { Value::Null };
        let patch = json!({"metadata": {"annotations": {MAINTENANCE: value}}});
        self.api(wl.ns, &ApiResource::erase::<Ingress>(&()))
            .patch(name, &patch_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&format!("ingress {name} in namespace {}", wl.ns), e))?;
        let summary = if on {
            format!(
                "maintenance mode ON for {}: ingress {name} annotated {MAINTENANCE}=\"true\"",
                env.name
            )
        } else {
            format!(
                "maintenance mode OFF for {}: annotation {MAINTENANCE} removed from ingress {name}",
                env.name
            )
        };
        Ok(Outcome {
            summary,
            version_before: None,
            version_after: None,
        })
    }

    fn canary_name<'a>(&self, env: &'a EnvironmentSpec, wl: Workload<'a>) -> &'a str {
        env.canary.as_deref().unwrap_or(wl.name)
    }

    async fn get_canary(&self, env: &EnvironmentSpec) -> Result<Option<Value>, TargetError> {
        let wl = self.workload(env)?;
        let name = self.canary_name(env, wl);
        match self.api(wl.ns, &canary_resource()).get(name).await {
            Ok(c) => Ok(Some(to_value(&c))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(&format!("canary {name}"), e)),
        }
    }

    async fn patch_canary(&self, env: &EnvironmentSpec, spec: Value) -> Result<Value, TargetError> {
        let wl = self.workload(env)?;
        let name = self.canary_name(env, wl);
        let c = self
            .api(wl.ns, &canary_resource())
            .patch(name, &patch_params(), &Patch::Merge(&json!({"spec": spec})))
            .await
            .map_err(|e| api_error(&format!("canary {name} in namespace {}", wl.ns), e))?;
        Ok(to_value(&c))
    }

    async fn canary(
        &self,
        env: &EnvironmentSpec,
        action: &CanaryAction,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let name = self.canary_name(env, wl).to_string();
        let outcome = |summary: String| Outcome {
            summary,
            version_before: None,
            version_after: None,
        };
        match action {
            CanaryAction::Status => match self.get_canary(env).await? {
                Some(c) => Ok(outcome(format!(
                    "canary {name}: {}",
                    describe_canary(&canary_status(&c))
                ))),
                None => Err(TargetError::Refused(format!(
                    "no Flagger canary {name} in namespace {}",
                    wl.ns
                ))),
            },
            CanaryAction::Pause => {
                let c = self.patch_canary(env, json!({"suspend": true})).await?;
                Ok(outcome(format!(
                    "canary {name} paused (spec.suspend=true): {}",
                    describe_canary(&canary_status(&c))
                )))
            }
            CanaryAction::Resume => {
                let c = self.patch_canary(env, json!({"suspend": false})).await?;
                Ok(outcome(format!(
                    "canary {name} resumed (spec.suspend=false): {}",
                    describe_canary(&canary_status(&c))
                )))
            }
            CanaryAction::Promote => {
                self.patch_canary(env, json!({"skipAnalysis": true, "suspend": false}))
                    .await?;
                progress.report(format!(
                    "canary {name}: spec.skipAnalysis=true, waiting for Flagger to promote"
                ));
                let finished = self.wait_canary_done(env, progress).await;
                // Cleared on every path so the next release is analysed again.
                self.patch_canary(env, json!({"skipAnalysis": false}))
                    .await?;
                match finished? {
                    Some(s) if s.phase == "Succeeded" => Ok(outcome(format!(
                        "canary {name} promoted without further analysis: {}",
                        describe_canary(&s)
                    ))),
                    Some(s) => Err(TargetError::RolloutFailed(format!(
                        "canary {name} ended in phase {}",
                        s.phase
                    ))),
                    None => Err(TargetError::RolloutFailed(format!(
                        "canary {name} was not promoted within {}s; spec.skipAnalysis was reset to false",
                        self.timeout_for(env).as_secs()
                    ))),
                }
            }
            CanaryAction::Abort => {
                self.patch_canary(env, json!({"suspend": true})).await?;
                progress.report(format!(
                    "canary {name}: spec.suspend=true, rolling {wl} back to the promoted revision"
                ));
                match self.undo(env, progress).await {
                    Ok(o) => Ok(Outcome {
                        summary: format!(
                            "canary {name} aborted: analysis suspended and {}",
                            o.summary
                        ),
                        ..o
                    }),
                    Err(TargetError::Refused(msg)) => Err(TargetError::Refused(format!(
                        "canary {name} is suspended, but {wl} was not rolled back: {msg}"
                    ))),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Polls the Canary until Flagger reports a final phase; `None` on timeout.
    async fn wait_canary_done(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Option<CanaryStatus>, TargetError> {
        let deadline = Instant::now() + self.timeout_for(env);
        let mut reporter = Reporter {
            progress,
            last: None,
        };
        loop {
            if let Some(c) = self.get_canary(env).await? {
                let s = canary_status(&c);
                reporter.report(&describe_canary(&s));
                if matches!(s.phase.as_str(), "Succeeded" | "Failed") {
                    return Ok(Some(s));
                }
            }
            if Instant::now() + self.opts.poll_interval > deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    async fn list_pods(&self, env: &EnvironmentSpec) -> Result<Vec<Value>, TargetError> {
        let wl = self.workload(env)?;
        let workload = self.get_workload(wl).await?;
        let Some(sel) = selector_string(&workload) else {
            return Err(TargetError::Refused(format!("{wl} has no selector")));
        };
        let list = self
            .api(wl.ns, &ApiResource::erase::<Pod>(&()))
            .list(&ListParams::default().labels(&sel))
            .await
            .map_err(|e| api_error(&format!("pods of {wl}"), e))?;
        Ok(list.items.iter().map(to_value).collect())
    }

    async fn reported_version(&self, url: &str) -> Option<String> {
        let resp = self
            .http
            .get(url)
            .timeout(self.opts.probe_timeout)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.text().await.ok()?;
        let from_json = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_string));
        let text = from_json.unwrap_or_else(|| body.trim().to_string());
        (!text.is_empty()).then(|| text.chars().take(100).collect())
    }
}

enum Undo {
    Patched(Value, i64),
    Skipped(i64),
}

pub fn canary_status(c: &Value) -> CanaryStatus {
    let n = |p: &str| {
        ptr(c, p)
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(u32::MAX as u64) as u32
    };
    CanaryStatus {
        phase: string(c, "/status/phase").unwrap_or("Unknown").to_string(),
        weight: n("/status/canaryWeight"),
        failed_checks: n("/status/failedChecks"),
        paused: flag(c, "/spec/suspend"),
    }
}

fn describe_canary(s: &CanaryStatus) -> String {
    format!(
        "{}, weight {}%, {} failed checks{}",
        s.phase,
        s.weight,
        s.failed_checks,
        if s.paused { ", suspended" } else { "" }
    )
}

#[async_trait]
impl Target for KubernetesTarget {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn execute(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let serving;
        let env = match action {
            TargetAction::Deploy {
                strategy: erlmcp_commands::Strategy::BlueGreen,
                ..
            }
            | TargetAction::BlueGreen { .. }
            | TargetAction::Rollback { version: None } => env,
            _ => {
                serving = self.serving(env).await?;
                &*serving
            }
        };
        match action {
            TargetAction::Deploy {
                version,
                strategy: erlmcp_commands::Strategy::BlueGreen,
            } => self.blue_green_deploy(env, version, ctx, progress).await,
            TargetAction::Deploy { version, .. } => {
                self.set_image(env, version.as_str(), "deploy", ctx, progress)
                    .await
            }
            TargetAction::Rollback {
                version: Some(version),
            } => {
                self.set_image(env, version.as_str(), "rollback to", ctx, progress)
                    .await
            }
            TargetAction::Rollback { version: None } => self.undo(env, progress).await,
            TargetAction::Scale { replicas } => self.scale(env, *replicas, progress).await,
            TargetAction::Restart => self.restart(env, progress).await,
            TargetAction::Maintenance { on } => self.maintenance(env, *on).await,
            TargetAction::Canary { action } => self.canary(env, action, progress).await,
            TargetAction::DeletePod { pod, force } => {
                self.delete_pod(env, pod, *force, progress).await
            }
            TargetAction::SetResources { change } => {
                self.set_resources(env, change, progress).await
            }
            TargetAction::Backup => self.backup(env, progress).await,
            TargetAction::DrFailover => self.failover(env, progress).await,
            TargetAction::BlueGreen { action } => self.blue_green(env, action, progress).await,
        }
    }

    async fn plan(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
    ) -> Result<erlmcp_commands::plan::TargetPlan, TargetError> {
        self.dry_run(env, action, ctx).await
    }

    async fn blue_green_status(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<erlmcp_commands::bluegreen::BlueGreenStatus, TargetError> {
        self.colours(env).await
    }

    async fn follow_rollout(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Option<String>, TargetError> {
        let env = &*self.serving(env).await?;
        let wl = self.workload(env)?;
        let current = self.get_workload(wl).await?;
        match rollout_state(wl.kind, &current) {
            RolloutState::Complete(_) => Ok(None),
            RolloutState::Failed(msg) => Err(TargetError::RolloutFailed(msg)),
            RolloutState::Progressing(_) => self
                .follow(wl, current, self.timeout_for(env), progress)
                .await
                .map(Some),
        }
    }

    async fn status(&self, env: &EnvironmentSpec) -> Result<EnvStatus, TargetError> {
        let env = &*self.serving(env).await?;
        let wl = self.workload(env)?;
        let w = self.get_workload(wl).await?;
        let container = env.container.as_deref().unwrap_or(wl.name);
        let image = container_image(&w, container).map(str::to_string);
        let replicas = Replicas {
            desired: ptr(&w, "/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(1) as u32,
            updated: int(&w, "/status/updatedReplicas") as u32,
            ready: int(&w, "/status/readyReplicas") as u32,
            available: int(&w, "/status/availableReplicas") as u32,
        };
        let rollout = rollout_state(wl.kind, &w).line().to_string();
        let now = chrono::Utc::now().timestamp();
        let pods_not_ready = self
            .list_pods(env)
            .await?
            .iter()
            .map(|p| pod_info(p, now))
            .filter(|p| !p.ready)
            .collect();
        let canary = match self.get_canary(env).await {
            Ok(c) => c.map(|c| canary_status(&c)),
            Err(e) => {
                tracing::warn!(env = %env.name, error = %e, "could not read the canary");
                None
            }
        };
        let ingress = self.ingress_name(env, wl);
        let maintenance = match self
            .api(wl.ns, &ApiResource::erase::<Ingress>(&()))
            .get(ingress)
            .await
        {
            Ok(i) => Some(
                i.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MAINTENANCE))
                    .is_some_and(|v| v == "true"),
            ),
            Err(e) => {
                if !is_not_found(&e) {
                    tracing::warn!(env = %env.name, error = %e, "could not read the ingress");
                }
                None
            }
        };
        let health: Option<HealthProbe> = match env.health_url.as_deref() {
            Some(url) => Some(probe(&self.http, url, self.opts.probe_timeout).await),
            None => None,
        };
        let reported_version = match env.version_url.as_deref() {
            Some(url) => self.reported_version(url).await,
            None => None,
        };
        Ok(EnvStatus {
            env: env.name.clone(),
            target: self.kind().to_string(),
            version: image.as_deref().and_then(image_version),
            image,
            replicas,
            rollout,
            conditions: condition_lines(&w),
            pods_not_ready,
            canary,
            maintenance,
            health,
            reported_version,
        })
    }

    async fn pods(&self, env: &EnvironmentSpec) -> Result<Vec<PodInfo>, TargetError> {
        let env = &*self.serving(env).await?;
        let now = chrono::Utc::now().timestamp();
        Ok(self
            .list_pods(env)
            .await?
            .iter()
            .map(|p| pod_info(p, now))
            .collect())
    }

    async fn logs(
        &self,
        env: &EnvironmentSpec,
        pod: Option<&str>,
        previous: bool,
        tail: u32,
    ) -> Result<String, TargetError> {
        let env = &*self.serving(env).await?;
        let wl = self.workload(env)?;
        let pods = self.list_pods(env).await?;
        let chosen: Value = match pod {
            Some(name) => pods
                .iter()
                .find(|p| string(p, "/metadata/name") == Some(name))
                .cloned()
                .ok_or_else(|| {
                    TargetError::Refused(format!("pod {name} is not part of {wl} in {}", wl.ns))
                })?,
            None => {
                let now = chrono::Utc::now().timestamp();
                pods.iter()
                    .find(|p| !pod_info(p, now).ready)
                    .or_else(|| pods.first())
                    .cloned()
                    .ok_or_else(|| TargetError::Refused(format!("{wl} has no pods")))?
            }
        };
        let pod_name = string(&chosen, "/metadata/name").unwrap_or("").to_string();
        let wanted = env.container.as_deref().unwrap_or(wl.name);
        let has_container = ptr(&chosen, "/spec/containers")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.get("name").and_then(Value::as_str) == Some(wanted))
            });
        let lines = if tail == 0 { 100 } else { tail }.min(self.opts.max_log_lines);
        let lp = LogParams {
            container: has_container.then(|| wanted.to_string()),
            previous,
            tail_lines: Some(lines as i64),
            ..Default::default()
        };
        let text = Api::<Pod>::namespaced(self.client.clone(), wl.ns)
            .logs(&pod_name, &lp)
            .await
            .map_err(|e| api_error(&format!("logs of pod {pod_name}"), e))?;
        let (body, trimmed) = trim_log(&text, self.opts.max_log_chars);
        let mut out = format!(
            "logs of pod {pod_name}{} (last {lines} lines)",
            if previous { ", previous container" } else { "" }
        );
        if trimmed {
            out.push_str(&format!(
                "; trimmed to the last {} characters",
                self.opts.max_log_chars
            ));
        }
        out.push('\n');
        out.push_str(&body);
        Ok(out)
    }

    async fn events(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<Vec<erlmcp_commands::runbook::EventInfo>, TargetError> {
        self.events_of(env).await
    }

    async fn describe_pod(
        &self,
        env: &EnvironmentSpec,
        pod: &str,
    ) -> Result<erlmcp_commands::runbook::PodDescription, TargetError> {
        self.describe(env, pod).await
    }

    async fn top(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<Option<Vec<erlmcp_commands::runbook::PodUsage>>, TargetError> {
        self.pod_usage(env).await
    }

    async fn backups(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<Vec<erlmcp_commands::runbook::JobRun>, TargetError> {
        self.job_runs(env).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_version_handles_registries_with_ports_and_digests() {
        assert_eq!(
            image_version("ghcr.io/a/erlmcp:v3.0.1").as_deref(),
            Some("v3.0.1")
        );
        assert_eq!(
            image_version("localhost:5000/erlmcp:v1").as_deref(),
            Some("v1")
        );
        assert_eq!(image_version("localhost:5000/erlmcp"), None);
        assert_eq!(
            image_version("erlmcp@sha256:abc").as_deref(),
            Some("sha256:abc")
        );
    }

    #[test]
    fn deployment_rollout_follows_kubectl_order() {
        let d = |generation: i64, og: i64, upd: i64, rep: i64, avail: i64| {
            json!({"metadata": {"generation": generation, "name": "erlmcp"},
                   "spec": {"replicas": 5},
                   "status": {"observedGeneration": og, "updatedReplicas": upd,
                              "replicas": rep, "availableReplicas": avail}})
        };
        assert_eq!(
            deployment_rollout(&d(2, 1, 5, 5, 5)),
            RolloutState::Progressing("Waiting for deployment spec update to be observed".into())
        );
        assert_eq!(
            deployment_rollout(&d(2, 2, 3, 7, 3)).line(),
            "3 out of 5 new replicas have been updated"
        );
        assert_eq!(
            deployment_rollout(&d(2, 2, 5, 7, 3)).line(),
            "2 old replicas are pending termination"
        );
        assert_eq!(
            deployment_rollout(&d(2, 2, 5, 5, 4)).line(),
            "4 of 5 updated replicas are available"
        );
        assert_eq!(
            deployment_rollout(&d(2, 2, 5, 5, 5)),
            RolloutState::Complete("successfully rolled out (5 of 5 available)".into())
        );
    }

    #[test]
    fn trim_log_keeps_whole_lines_from_the_end() {
        let log = "first line\nsecond line\nthird line\n";
        let (t, trimmed) = trim_log(log, 15);
        assert!(trimmed);
        assert_eq!(t, "third line\n");
        assert_eq!(trim_log("short", 15), ("short".to_string(), false));
    }

    #[test]
    fn pod_reasons_match_kubectl_get_pods() {
        let crash = json!({"metadata": {"name": "a"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "erlmcp", "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}});
        let p = pod_info(&crash, 0);
        assert_eq!(p.reason.as_deref(), Some("CrashLoopBackOff (OOMKilled)"));
        assert_eq!(p.restarts, 7);
        let pending = json!({"metadata": {"name": "b"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        assert_eq!(
            pod_info(&pending, 0).reason.as_deref(),
            Some("Unschedulable")
        );
    }
}
