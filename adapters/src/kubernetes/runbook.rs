//! Troubleshooting, resources, backups and DR failover, each as kubectl does it:
//!
//! | verb | request |
//! |------|---------|
//! | events | `GET /api/v1/namespaces/{ns}/events`, warnings first, newest first (`lastTimestamp`, else `eventTime`) |
//! | describe | the workload's pods (`list` by its selector) and the pod's own events |
//! | top | `GET /apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?labelSelector=…`; a 404 means no metrics-server |
//! | pod delete | `DELETE /api/v1/namespaces/{ns}/pods/{name}`, `gracePeriodSeconds: 0` with `--force` |
//! | resources | `kubectl set resources`: strategic merge patch of `spec.template.spec.containers[name=…].resources` with `$setElementOrder/containers` |
//! | backup, dr failover (Job) | `kubectl create job --from=cronjob/…`: POST a Job with the CronJob's `jobTemplate`, `cronjob.kubernetes.io/instantiate: manual` and a controller reference to the CronJob, then read it until `Complete` or `Failed` |
//! | backups | the Jobs in the namespace whose controller is the backup CronJob |

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Event;
use kube::api::{DeleteParams, PostParams};

use erlmcp_commands::runbook::{
    ContainerDescription, EventInfo, FailoverAction, JobRun, JobState, PodDescription, PodUsage,
    ResourceChange, ResourceList, quantity_value,
};

use super::*;

/// The annotation `kubectl create job --from=cronjob/…` puts on the Job.
pub const INSTANTIATE: &str = "cronjob.kubernetes.io/instantiate";

/// Runs of the backup CronJob that `backups` lists.
const MAX_RUNS_SHOWN: usize = 10;

fn metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

/// An event as `events` and `describe` show it.
pub fn event_info(v: &Value) -> EventInfo {
    let kind = string(v, "/involvedObject/kind").unwrap_or("");
    let name = string(v, "/involvedObject/name").unwrap_or("");
    EventInfo {
        kind: string(v, "/type").unwrap_or("Normal").to_string(),
        reason: string(v, "/reason").unwrap_or("").to_string(),
        message: string(v, "/message").unwrap_or("").trim().to_string(),
        object: format!("{kind}/{name}"),
        last_seen: string(v, "/lastTimestamp")
            .or_else(|| string(v, "/eventTime"))
            .or_else(|| string(v, "/metadata/creationTimestamp"))
            .map(str::to_string),
        count: ptr(v, "/count")
            .and_then(Value::as_u64)
            .unwrap_or(1)
            .min(u32::MAX as u64) as u32,
    }
}

fn sorted_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, q)| (k.clone(), q.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A container state (`state` or `lastState`) in `kubectl describe` words.
fn state_text(s: Option<&Value>) -> Option<String> {
    let s = s?;
    if let Some(r) = s.get("running") {
        return Some(match r.get("startedAt").and_then(Value::as_str) {
            Some(t) => format!("Running since {t}"),
            None => "Running".into(),
        });
    }
    if let Some(w) = s.get("waiting") {
        let reason = w.get("reason").and_then(Value::as_str).unwrap_or("Waiting");
        let mut text = format!("Waiting: {reason}");
        if let Some(m) = w.get("message").and_then(Value::as_str) {
            text.push_str(&format!(" ({m})"));
        }
        return Some(text);
    }
    if let Some(t) = s.get("terminated") {
        let reason = t
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Terminated");
        let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
        let mut text = format!("Terminated: {reason} (exit {code})");
        if let Some(at) = t.get("finishedAt").and_then(Value::as_str) {
            text.push_str(&format!(" at {at}"));
        }
        return Some(text);
    }
    None
}

/// `kubectl describe pod` in short: phase, conditions, each container's state, last
/// state, limits and requests; `events` are the pod's own.
pub fn describe_pod_value(p: &Value, mut events: Vec<EventInfo>) -> PodDescription {
    let statuses: Vec<&Value> = ptr(p, "/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let containers = ptr(p, "/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    let status = statuses
                        .iter()
                        .find(|s| s.get("name").and_then(Value::as_str) == Some(name));
                    ContainerDescription {
                        name: name.to_string(),
                        image: c
                            .get("image")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        ready: status
                            .and_then(|s| s.get("ready"))
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        restarts: status
                            .and_then(|s| s.get("restartCount"))
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            .min(u32::MAX as u64) as u32,
                        state: state_text(status.and_then(|s| s.get("state")))
                            .unwrap_or_else(|| "Unknown".into()),
                        last_state: state_text(status.and_then(|s| s.get("lastState"))),
                        requests: sorted_pairs(c.pointer("/resources/requests")),
                        limits: sorted_pairs(c.pointer("/resources/limits")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let conditions = ptr(p, "/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
                    let mut line = format!("{}={}", g("type"), g("status"));
                    if !g("reason").is_empty() {
                        line.push_str(&format!(" ({})", g("reason")));
                    }
                    line
                })
                .collect()
        })
        .unwrap_or_default();
    events.sort_by(|a, b| b.last_seen.cmp(&a.last_seen));
    PodDescription {
        name: string(p, "/metadata/name").unwrap_or("").to_string(),
        namespace: string(p, "/metadata/namespace").unwrap_or("").to_string(),
        node: string(p, "/spec/nodeName").map(str::to_string),
        phase: string(p, "/status/phase").unwrap_or("Unknown").to_string(),
        started: string(p, "/status/startTime").map(str::to_string),
        conditions,
        containers,
        events,
    }
}

/// The Job `kubectl create job NAME --from=cronjob/CJ` posts: the CronJob's job template,
/// its labels and annotations plus the manual-instantiation annotation, owned by the
/// CronJob.
pub fn job_from_cronjob(cronjob: &Value, name: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(INSTANTIATE.into(), json!("manual"));
    if let Some(a) =
        ptr(cronjob, "/spec/jobTemplate/metadata/annotations").and_then(Value::as_object)
    {
        for (k, v) in a {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
        "ownerReferences": [{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": string(cronjob, "/metadata/name").unwrap_or(""),
            "uid": string(cronjob, "/metadata/uid").unwrap_or(""),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some(labels) = ptr(cronjob, "/spec/jobTemplate/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    if let Some(ns) = string(cronjob, "/metadata/namespace") {
        metadata["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": ptr(cronjob, "/spec/jobTemplate/spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Job name unique per second, within the 63 characters a Job's name may have.
fn job_name(cronjob: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let suffix = format!("-{}", now.timestamp());
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = cronjob.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches(['-', '.']))
}

fn condition_true<'a>(v: &'a Value, ty: &str) -> Option<&'a Value> {
    condition(v, ty).filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

/// Where a Job stands, from its `Complete` / `Failed` conditions.
pub fn job_run(v: &Value) -> JobRun {
    let (state, detail, finished) = if let Some(c) = condition_true(v, "Complete") {
        (
            JobState::Succeeded,
            None,
            string(v, "/status/completionTime")
                .or_else(|| c.get("lastTransitionTime").and_then(Value::as_str)),
        )
    } else if let Some(c) = condition_true(v, "Failed") {
        let g = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let detail = match (g("reason"), g("message")) {
            ("", "") => None,
            (r, "") => Some(r.to_string()),
            ("", m) => Some(m.to_string()),
            (r, m) => Some(format!("{r}: {m}")),
        };
        (
            JobState::Failed,
            detail,
            c.get("lastTransitionTime").and_then(Value::as_str),
        )
    } else {
        let active = int(v, "/status/active");
        (
            JobState::Running,
            (active > 0).then(|| format!("{active} active")),
            None,
        )
    };
    JobRun {
        name: string(v, "/metadata/name").unwrap_or("").to_string(),
        started: string(v, "/status/startTime")
            .or_else(|| string(v, "/metadata/creationTimestamp"))
            .map(str::to_string),
        finished: finished.map(str::to_string),
        state,
        manual: string(
            v,
            &format!("/metadata/annotations/{}", INSTANTIATE.replace('/', "~1")),
        ) == Some("manual"),
        detail,
    }
}

fn owned_by_cronjob(job: &Value, cronjob: &str) -> bool {
    ptr(job, "/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("kind").and_then(Value::as_str) == Some("CronJob")
                    && r.get("name").and_then(Value::as_str) == Some(cronjob)
            })
        })
}

/// The strategic merge patch `kubectl set resources -c CONTAINER` sends: only the values
/// that change, with the containers' order kept by `$setElementOrder`. `None` when nothing
/// would change.
pub fn resources_patch(
    workload: &Value,
    container: &str,
    change: &ResourceChange,
) -> Option<Value> {
    let current = ptr(workload, "/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?;
    let changed = |list: &ResourceList, key: &str| {
        let mut m = serde_json::Map::new();
        for (name, q) in &list.0 {
            let now = current
                .pointer(&format!("/resources/{key}/{}", name.as_str()))
                .and_then(Value::as_str);
            if now != Some(q.as_str()) {
                m.insert(name.as_str().to_string(), json!(q.as_str()));
            }
        }
        m
    };
    let limits = changed(&change.limits, "limits");
    let requests = changed(&change.requests, "requests");
    if limits.is_empty() && requests.is_empty() {
        return None;
    }
    let mut resources = serde_json::Map::new();
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    let order: Vec<Value> = container_names(workload)
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    Some(json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": order,
        "containers": [{"name": container, "resources": resources}],
    }}}}))
}

impl KubernetesTarget {
    async fn namespace_events(&self, ns: &str) -> Result<Vec<Value>, TargetError> {
        let list = self
            .api(ns, &ApiResource::erase::<Event>(&()))
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(&format!("events in namespace {ns}"), e))?;
        Ok(list.items.iter().map(to_value).collect())
    }

    pub(super) async fn events_of(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<Vec<EventInfo>, TargetError> {
        let wl = self.workload(env)?;
        Ok(self
            .namespace_events(wl.ns)
            .await?
            .iter()
            .map(event_info)
            .collect())
    }

    /// One of the workload's pods; any other name is refused, as `logs` does.
    async fn workload_pod(&self, env: &EnvironmentSpec, pod: &str) -> Result<Value, TargetError> {
        let wl = self.workload(env)?;
        self.list_pods(env)
            .await?
            .into_iter()
            .find(|p| string(p, "/metadata/name") == Some(pod))
            .ok_or_else(|| {
                TargetError::Refused(format!("pod {pod} is not part of {wl} in {}", wl.ns))
            })
    }

    pub(super) async fn describe(
        &self,
        env: &EnvironmentSpec,
        pod: &str,
    ) -> Result<PodDescription, TargetError> {
        let wl = self.workload(env)?;
        let p = self.workload_pod(env, pod).await?;
        let events = self
            .namespace_events(wl.ns)
            .await?
            .iter()
            .filter(|e| {
                string(e, "/involvedObject/kind") == Some("Pod")
                    && string(e, "/involvedObject/name") == Some(pod)
            })
            .map(event_info)
            .collect();
        Ok(describe_pod_value(&p, events))
    }

    pub(super) async fn pod_usage(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<Option<Vec<PodUsage>>, TargetError> {
        let wl = self.workload(env)?;
        let workload = self.get_workload(wl).await?;
        let Some(sel) = selector_string(&workload) else {
            return Err(TargetError::Refused(format!("{wl} has no selector")));
        };
        let metrics = match self
            .api(wl.ns, &metrics_resource())
            .list(&ListParams::default().labels(&sel))
            .await
        {
            Ok(l) => l.items.iter().map(to_value).collect::<Vec<_>>(),
            // No metrics-server (404), or one registered but not serving (503).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 503 => return Ok(None),
            Err(e) => return Err(api_error(&format!("pod metrics in {}", wl.ns), e)),
        };
        let pods = self.list_pods(env).await?;
        let memory_limit = |name: &str| -> Option<f64> {
            let pod = pods
                .iter()
                .find(|p| string(p, "/metadata/name") == Some(name))?;
            ptr(pod, "/spec/containers")?
                .as_array()?
                .iter()
                .map(|c| {
                    c.pointer("/resources/limits/memory")
                        .and_then(Value::as_str)
                        .and_then(quantity_value)
                })
                .sum()
        };
        let mut usage: Vec<PodUsage> = metrics
            .iter()
            .map(|m| {
                let name = string(m, "/metadata/name").unwrap_or("").to_string();
                let containers = ptr(m, "/containers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let sum = |key: &str| -> f64 {
                    containers
                        .iter()
                        .filter_map(|c| {
                            c.pointer(&format!("/usage/{key}"))
                                .and_then(Value::as_str)
                                .and_then(quantity_value)
                        })
                        .sum()
                };
                PodUsage {
                    memory_limit: memory_limit(&name),
                    cpu: sum("cpu"),
                    memory: sum("memory"),
                    name,
                }
            })
            .collect();
        usage.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(usage))
    }

    pub(super) async fn delete_pod(
        &self,
        env: &EnvironmentSpec,
        pod: &str,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        self.workload_pod(env, pod).await?;
        let dp = DeleteParams {
            grace_period_seconds: force.then_some(0),
            ..Default::default()
        };
        progress.report(format!(
            "deleting pod {pod}{}",
            if force { " with grace period 0" } else { "" }
        ));
        Api::<Pod>::namespaced(self.client.clone(), wl.ns)
            .delete(pod, &dp)
            .await
            .map_err(|e| api_error(&format!("pod {pod} in namespace {}", wl.ns), e))?;
        Ok(Outcome {
            summary: format!(
                "pod {pod} in {} deleted{}; {wl} replaces it",
                env.name,
                if force {
                    " at once (grace period 0)"
                } else {
                    ""
                }
            ),
            version_before: None,
            version_after: None,
        })
    }

    pub(super) async fn set_resources(
        &self,
        env: &EnvironmentSpec,
        change: &ResourceChange,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let wl = self.workload(env)?;
        let container = env.container.as_deref().unwrap_or(wl.name);
        let current = self.get_workload(wl).await?;
        if container_image(&current, container).is_none() {
            return Err(TargetError::Refused(format!(
                "{wl} has no container named {container:?} (containers: {})",
                container_names(&current).join(", ")
            )));
        }
        let version = container_image(&current, container).and_then(image_version);
        let Some(patch) = resources_patch(&current, container, change) else {
            return Ok(Outcome {
                summary: format!(
                    "{} container {container} already has {change}; nothing to change",
                    env.name
                ),
                version_before: version.clone(),
                version_after: version,
            });
        };
        progress.report(format!("setting {wl} container {container} {change}"));
        let after = self
            .workload_api(wl)
            .patch(wl.name, &patch_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        let line = self
            .follow(wl, to_value(&after), self.timeout_for(env), progress)
            .await?;
        Ok(Outcome {
            summary: format!(
                "{} container {container} now has {change}: {line}",
                env.name
            ),
            version_before: version.clone(),
            version_after: version,
        })
    }

    /// `kubectl create job --from=cronjob/CRONJOB`, then follows the Job to its end.
    async fn run_cronjob(
        &self,
        env: &EnvironmentSpec,
        cronjob: &str,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(String, JobRun), TargetError> {
        let wl = self.workload(env)?;
        let cj = self
            .api(wl.ns, &ApiResource::erase::<CronJob>(&()))
            .get(cronjob)
            .await
            .map_err(|e| api_error(&format!("cronjob {cronjob} in namespace {}", wl.ns), e))?;
        let name = job_name(cronjob, chrono::Utc::now());
        let job: DynamicObject = serde_json::from_value(job_from_cronjob(&to_value(&cj), &name))
            .map_err(|e| TargetError::Unavailable(format!("building Job {name}: {e}")))?;
        let jobs = self.api(wl.ns, &ApiResource::erase::<Job>(&()));
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        jobs.create(&pp, &job)
            .await
            .map_err(|e| api_error(&format!("job {name} in namespace {}", wl.ns), e))?;
        progress.report(format!("{what}: Job {name} created from CronJob {cronjob}"));
        let deadline = Instant::now() + self.timeout_for(env);
        let mut reporter = Reporter {
            progress,
            last: None,
        };
        loop {
            let v = to_value(
                &jobs
                    .get(&name)
                    .await
                    .map_err(|e| api_error(&format!("job {name}"), e))?,
            );
            let run = job_run(&v);
            reporter.report(&format!("Job {name}: {}", job_line_state(&run)));
            if run.state != JobState::Running {
                return Ok((name, run));
            }
            if Instant::now() + self.opts.poll_interval > deadline {
                return Err(TargetError::RolloutFailed(format!(
                    "Job {name} was still running after {}s; it goes on in the cluster",
                    self.timeout_for(env).as_secs()
                )));
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    pub(super) async fn backup(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let cronjob = env.backup_cronjob.as_deref().ok_or_else(|| {
            TargetError::Refused(format!(
                "environment {} has no backup_cronjob configured",
                env.name
            ))
        })?;
        let (name, run) = self.run_cronjob(env, cronjob, "backup", progress).await?;
        job_outcome(&format!("backup of {}", env.name), &name, cronjob, &run)
    }

    pub(super) async fn failover(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        match env.failover_action() {
            Some(FailoverAction::Job { cronjob }) => {
                let (name, run) = self
                    .run_cronjob(env, &cronjob, "DR failover", progress)
                    .await?;
                job_outcome(
                    &format!("DR failover of {}", env.name),
                    &name,
                    &cronjob,
                    &run,
                )
            }
            Some(FailoverAction::Workflow { .. }) => Err(TargetError::Unsupported(
                "DR failover by workflow",
                "kubernetes",
            )),
            None => Err(TargetError::Refused(format!(
                "environment {} has no dr_cronjob or dr_workflow configured",
                env.name
            ))),
        }
    }

    pub(super) async fn job_runs(&self, env: &EnvironmentSpec) -> Result<Vec<JobRun>, TargetError> {
        let wl = self.workload(env)?;
        let cronjob = env.backup_cronjob.as_deref().ok_or_else(|| {
            TargetError::Refused(format!(
                "environment {} has no backup_cronjob configured",
                env.name
            ))
        })?;
        let list = self
            .api(wl.ns, &ApiResource::erase::<Job>(&()))
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error(&format!("jobs in namespace {}", wl.ns), e))?;
        let mut runs: Vec<(String, JobRun)> = list
            .items
            .iter()
            .map(to_value)
            .filter(|j| owned_by_cronjob(j, cronjob))
            .map(|j| {
                let created = string(&j, "/metadata/creationTimestamp")
                    .unwrap_or("")
                    .to_string();
                (created, job_run(&j))
            })
            .collect();
        runs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.name.cmp(&a.1.name)));
        Ok(runs
            .into_iter()
            .take(MAX_RUNS_SHOWN)
            .map(|(_, r)| r)
            .collect())
    }
}

fn job_line_state(run: &JobRun) -> String {
    match &run.detail {
        Some(d) => format!("{} ({d})", run.state.as_str()),
        None => run.state.as_str().to_string(),
    }
}

fn job_outcome(
    what: &str,
    name: &str,
    cronjob: &str,
    run: &JobRun,
) -> Result<Outcome, TargetError> {
    match run.state {
        JobState::Succeeded => Ok(Outcome {
            summary: format!(
                "{what}: Job {name} from CronJob {cronjob} succeeded{}",
                run.finished
                    .as_deref()
                    .map(|f| format!(" at {f}"))
                    .unwrap_or_default()
            ),
            version_before: None,
            version_after: None,
        }),
        _ => Err(TargetError::RolloutFailed(format!(
            "{what}: Job {name} from CronJob {cronjob} failed{}",
            run.detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_in_63_characters() {
        let now = chrono::DateTime::from_timestamp(1_762_074_000, 0).unwrap();
        assert_eq!(job_name("erlmcp-backup", now), "erlmcp-backup-1762074000");
        let long = "a".repeat(60);
        assert_eq!(job_name(&long, now).len(), 63);
    }

    #[test]
    fn describe_names_the_oom_kill_and_the_limit() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "erlmcp", "image": "erlmcp:v1",
                "resources": {"limits": {"memory": "512Mi", "cpu": "1"},
                    "requests": {"memory": "256Mi"}}}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "erlmcp",
                "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                    "finishedAt": "2026-11-02T08:59:00Z"}}}]}
        });
        let d = describe_pod_value(&pod, vec![]);
        let c = &d.containers[0];
        assert_eq!(c.state, "Waiting: CrashLoopBackOff");
        assert_eq!(
            c.last_state.as_deref(),
            Some("Terminated: OOMKilled (exit 137) at 2026-11-02T08:59:00Z")
        );
        assert_eq!(
            c.limits,
            [
                ("cpu".to_string(), "1".to_string()),
                ("memory".to_string(), "512Mi".to_string())
            ]
        );
    }
}
