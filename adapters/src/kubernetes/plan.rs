//! `--dry-run` on Kubernetes: each change's own patch, sent with `?dryRun=All`, and the
//! answer compared with the object as it is.

use erlmcp_commands::plan::{ObjectPlan, PlanChange, TargetPlan};
use erlmcp_commands::{BlueGreenAction, Strategy};

use super::bluegreen::ObjectPlanParts;
use super::*;

const SOURCE: &str = "kubernetes, server-side dry run (dryRun=All)";

/// Annotations the API server or controllers keep up to date; a change there is noise.
const NOISY_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Keys of two string maps whose values differ, as changes named `what KEY`.
fn map_changes(what: &str, before: Option<&Value>, after: Option<&Value>) -> Vec<PlanChange> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !NOISY_ANNOTATIONS.contains(&k.as_str()))
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            PlanChange::new(
                format!("{what} {k}"),
                b.get(k).map(shown),
                a.get(k).map(shown),
            )
        })
        .collect()
}

fn containers(v: &Value) -> Vec<&Value> {
    ptr(v, "/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// What differs between an object and its dry-run answer, in the terms the plan uses:
/// image, replicas, resources, selector, annotations, labels, pause and canary switches.
pub fn changes(before: &Value, after: &Value) -> Vec<PlanChange> {
    let mut out = Vec::new();
    for c in containers(after) {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let old = containers(before)
            .into_iter()
            .find(|o| o.get("name").and_then(Value::as_str) == Some(name));
        for (field, label) in [("image", "image"), ("resources", "resources")] {
            let from = old.and_then(|o| o.get(field)).filter(|v| !v.is_null());
            let to = c.get(field).filter(|v| !v.is_null());
            if from != to {
                out.push(PlanChange::new(
                    format!("{label} (container {name})"),
                    from.map(shown),
                    to.map(shown),
                ));
            }
        }
    }
    for (path, label) in [
        ("/spec/replicas", "replicas"),
        ("/spec/paused", "paused"),
        ("/spec/suspend", "suspend"),
        ("/spec/skipAnalysis", "skipAnalysis"),
    ] {
        let (b, a) = (ptr(before, path), ptr(after, path));
        if b != a {
            out.push(PlanChange::new(label, b.map(shown), a.map(shown)));
        }
    }
    out.extend(map_changes(
        "selector",
        ptr(before, "/spec/selector/matchLabels").or_else(|| ptr(before, "/spec/selector")),
        ptr(after, "/spec/selector/matchLabels").or_else(|| ptr(after, "/spec/selector")),
    ));
    out.extend(map_changes(
        "annotation",
        ptr(before, "/metadata/annotations"),
        ptr(after, "/metadata/annotations"),
    ));
    out.extend(map_changes(
        "pod annotation",
        ptr(before, "/spec/template/metadata/annotations"),
        ptr(after, "/spec/template/metadata/annotations"),
    ));
    out.extend(map_changes(
        "pod label",
        ptr(before, "/spec/template/metadata/labels"),
        ptr(after, "/spec/template/metadata/labels"),
    ));
    out
}

fn object(parts: ObjectPlanParts) -> ObjectPlan {
    ObjectPlan {
        changes: changes(&parts.before, &parts.after),
        object: parts.object,
    }
}

impl KubernetesTarget {
    pub(super) async fn dry_run(
        &self,
        env: &EnvironmentSpec,
        action: &TargetAction,
        ctx: &ExecContext,
    ) -> Result<TargetPlan, TargetError> {
        let serving;
        let env = match action {
            TargetAction::Deploy {
                strategy: Strategy::BlueGreen,
                ..
            }
            | TargetAction::BlueGreen { .. }
            | TargetAction::Rollback { version: None } => env,
            _ => {
                serving = self.serving(env).await?;
                &*serving
            }
        };
        let mut notes = Vec::new();
        let parts: Vec<ObjectPlanParts> = match action {
            TargetAction::Deploy {
                version,
                strategy: Strategy::BlueGreen,
            } => {
                let (parts, n) = self.blue_green_plan(env, None, Some(version), ctx).await?;
                notes = n;
                parts
            }
            TargetAction::BlueGreen { action } => {
                let (parts, n) = self.blue_green_plan(env, Some(action), None, ctx).await?;
                notes = n;
                if matches!(action, BlueGreenAction::Status) {
                    notes.push("changes nothing".into());
                }
                parts
            }
            TargetAction::Deploy { version, .. }
            | TargetAction::Rollback {
                version: Some(version),
            } => {
                let what = if matches!(action, TargetAction::Deploy { .. }) {
                    "deploy"
                } else {
                    "rollback to"
                };
                vec![self.plan_image(env, version.as_str(), what, ctx).await?]
            }
            TargetAction::Rollback { version: None } if env.service.is_some() => {
                let svc = self.live_service(env).await?;
                let (parts, n) = self
                    .blue_green_plan(
                        env,
                        Some(&BlueGreenAction::Switch(svc.live.other())),
                        None,
                        ctx,
                    )
                    .await?;
                notes = n;
                parts
            }
            TargetAction::Rollback { version: None } => vec![self.plan_undo(env).await?],
            TargetAction::Restart => {
                let wl = self.workload(env)?;
                let before = self.get_workload(wl).await?;
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let after = self
                    .workload_api(wl)
                    .patch(
                        wl.name,
                        &dry_run_params(),
                        &Patch::Strategic(&restart_patch(&now)),
                    )
                    .await
                    .map_err(|e| api_error(&wl.to_string(), e))?;
                notes.push("every pod is replaced, one rollout step at a time".into());
                vec![ObjectPlanParts {
                    object: format!("{wl} in {}", wl.ns),
                    before,
                    after: to_value(&after),
                }]
            }
            TargetAction::Scale { replicas } => {
                let wl = self.workload(env)?;
                let before = self.get_workload(wl).await?;
                let scale = self
                    .workload_api(wl)
                    .patch_scale(
                        wl.name,
                        &dry_run_params(),
                        &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
                    )
                    .await
                    .map_err(|e| api_error(&format!("{wl}/scale"), e))?;
                let mut after = before.clone();
                after["spec"]["replicas"] = json!(
                    scale
                        .spec
                        .and_then(|s| s.replicas)
                        .unwrap_or(*replicas as i32)
                );
                vec![ObjectPlanParts {
                    object: format!("{wl}/scale in {}", wl.ns),
                    before,
                    after,
                }]
            }
            TargetAction::Maintenance { on } => {
                let wl = self.workload(env)?;
                let name = self.ingress_name(env, wl);
                let api = self.api(wl.ns, &ApiResource::erase::<Ingress>(&()));
                let what = format!("ingress {name} in namespace {}", wl.ns);
                let before = api.get(name).await.map_err(|e| api_error(&what, e))?;
                let value = if *on { json!("true") } else { Value::Null };
                let patch = json!({"metadata": {"annotations": {MAINTENANCE: value}}});
                let after = api
                    .patch(name, &dry_run_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_error(&what, e))?;
                vec![ObjectPlanParts {
                    object: format!("ingress/{name} in {}", wl.ns),
                    before: to_value(&before),
                    after: to_value(&after),
                }]
            }
            TargetAction::Canary { action } => self.plan_canary(env, action, &mut notes).await?,
            TargetAction::SetResources { change } => {
                let wl = self.workload(env)?;
                let container = env.container.as_deref().unwrap_or(wl.name);
                let before = self.get_workload(wl).await?;
                let after = match resources_patch(&before, container, change) {
                    None => {
                        notes.push(format!("container {container} already has {change}"));
                        before.clone()
                    }
                    Some(patch) => to_value(
                        &self
                            .workload_api(wl)
                            .patch(wl.name, &dry_run_params(), &Patch::Strategic(&patch))
                            .await
                            .map_err(|e| api_error(&wl.to_string(), e))?,
                    ),
                };
                vec![ObjectPlanParts {
                    object: format!("{wl} in {}", wl.ns),
                    before,
                    after,
                }]
            }
            TargetAction::DeletePod { pod, force } => {
                notes.push(format!(
                    "deletes pod {pod}{}; the workload replaces it",
                    if *force { " with grace period 0" } else { "" }
                ));
                vec![]
            }
            TargetAction::Backup => {
                notes.push(format!(
                    "creates a Job from CronJob {} and follows it to its end",
                    env.backup_cronjob
                        .as_deref()
                        .unwrap_or("(backup_cronjob not set)")
                ));
                vec![]
            }
            TargetAction::DrFailover => {
                notes.push(match env.failover_action() {
                    Some(a) => format!("fails over to the DR region: runs {}", a.describe()),
                    None => "no dr_cronjob or dr_workflow is configured".into(),
                });
                vec![]
            }
        };
        Ok(TargetPlan {
            source: SOURCE.into(),
            objects: parts.into_iter().map(object).collect(),
            notes,
        })
    }

    async fn plan_image(
        &self,
        env: &EnvironmentSpec,
        version: &str,
        what: &str,
        ctx: &ExecContext,
    ) -> Result<ObjectPlanParts, TargetError> {
        let wl = self.workload(env)?;
        let repo = env.image.as_deref().ok_or_else(|| {
            TargetError::Refused(format!("environment {} has no image configured", env.name))
        })?;
        let container = env.container.as_deref().unwrap_or(wl.name);
        let before = self.get_workload(wl).await?;
        if container_image(&before, container).is_none() {
            return Err(TargetError::Refused(format!(
                "{wl} has no container named {container:?} (containers: {})",
                container_names(&before).join(", ")
            )));
        }
        let patch = image_patch(
            ctx,
            container,
            &format!("{repo}:{version}"),
            &format!("{what} {version}"),
        );
        let after = self
            .workload_api(wl)
            .patch(wl.name, &dry_run_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        Ok(ObjectPlanParts {
            object: format!("{wl} in {}", wl.ns),
            before,
            after: to_value(&after),
        })
    }

    async fn plan_undo(&self, env: &EnvironmentSpec) -> Result<ObjectPlanParts, TargetError> {
        let wl = self.workload(env)?;
        let before = self.get_workload(wl).await?;
        let undo = match wl.kind {
            Kind::Deployment => self.undo_deployment(wl, &before, &dry_run_params()).await?,
            Kind::StatefulSet => {
                self.undo_statefulset(wl, &before, &dry_run_params())
                    .await?
            }
        };
        match undo {
            Undo::Patched(after, revision) => Ok(ObjectPlanParts {
                object: format!("{wl} in {} (back to revision {revision})", wl.ns),
                before,
                after,
            }),
            Undo::Skipped(revision) => Ok(ObjectPlanParts {
                object: format!(
                    "{wl} in {} (current template already matches revision {revision})",
                    wl.ns
                ),
                after: before.clone(),
                before,
            }),
        }
    }

    async fn plan_canary(
        &self,
        env: &EnvironmentSpec,
        action: &CanaryAction,
        notes: &mut Vec<String>,
    ) -> Result<Vec<ObjectPlanParts>, TargetError> {
        let wl = self.workload(env)?;
        let name = self.canary_name(env, wl).to_string();
        let Some(before) = self.get_canary(env).await? else {
            return Err(TargetError::Refused(format!(
                "no Flagger canary {name} in namespace {}",
                wl.ns
            )));
        };
        let spec = match action {
            CanaryAction::Status => {
                notes.push("changes nothing".into());
                return Ok(vec![]);
            }
            CanaryAction::Pause | CanaryAction::Abort => json!({"suspend": true}),
            CanaryAction::Resume => json!({"suspend": false}),
            CanaryAction::Promote => json!({"skipAnalysis": true, "suspend": false}),
        };
        let after = self
            .api(wl.ns, &canary_resource())
            .patch(
                &name,
                &dry_run_params(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .map_err(|e| api_error(&format!("canary {name} in namespace {}", wl.ns), e))?;
        let mut parts = vec![ObjectPlanParts {
            object: format!("canary/{name} in {}", wl.ns),
            before,
            after: to_value(&after),
        }];
        match action {
            CanaryAction::Promote => notes
                .push("waits for Flagger to promote, then sets skipAnalysis back to false".into()),
            CanaryAction::Abort => parts.push(self.plan_undo(env).await?),
            _ => {}
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_the_image_and_annotations() {
        let before = json!({"metadata": {"annotations": {"a": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "erlmcp", "image": "erlmcp:v1"}]}}}});
        let after = json!({"metadata": {"annotations": {"a": "1", "b": "2"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "erlmcp", "image": "erlmcp:v2"}]}}}});
        let lines: Vec<String> = changes(&before, &after).iter().map(|c| c.line()).collect();
        assert_eq!(
            lines,
            [
                "image (container erlmcp): erlmcp:v1 → erlmcp:v2",
                "annotation b: (none) → 2"
            ]
        );
    }
}
