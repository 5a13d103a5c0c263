//! `--dry-run` in the sandbox: the change worked out on the simulated workload, not saved.

use erlmcp_commands::plan::{ObjectPlan, PlanChange, TargetPlan};
use erlmcp_commands::{BlueGreenAction, Colour};

use super::bluegreen::colours_of;
use super::*;

const SOURCE: &str = "sandbox (simulated; no cluster was asked)";

pub(super) fn plan(
    env: &EnvironmentSpec,
    w: &Workload,
    action: &TargetAction,
    now: Timestamp,
) -> Result<TargetPlan, TargetError> {
    let name = env.name.as_str();
    let base = env
        .workload_ref()
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| "erlmcp".into());
    let container = env.container.clone().unwrap_or_else(|| base.clone());
    let repo = env.image.clone().unwrap_or_else(|| base.clone());
    let image = |v: &str| Some(format!("{repo}:{v}"));
    let workload = format!("deployment/{base} ({name}, sandbox)");
    let image_change = |from: &str, to: &str| {
        PlanChange::new(
            format!("image (container {container})"),
            image(from),
            image(to),
        )
    };
    let one = |object: String, changes: Vec<PlanChange>| vec![ObjectPlan { object, changes }];
    let mut notes = Vec::new();
    let objects = match action {
        TargetAction::Deploy {
            version,
            strategy: Strategy::BlueGreen,
        } => {
            let bg = colours_of(w);
            let idle = bg.live.other();
            notes.push(format!(
                "waits until {base}-{idle} is available, probes its health"
            ));
            let mut objects = one(
                format!("deployment/{base}-{idle} (idle colour {idle})"),
                vec![
                    PlanChange::new(
                        format!("image (container {container})"),
                        bg.version(idle).and_then(|v| image(v)),
                        image(version.as_str()),
                    ),
                    PlanChange::new(
                        "replicas",
                        Some(running(bg.version(idle), w.replicas).to_string()),
                        Some(w.replicas.to_string()),
                    ),
                ],
            );
            objects.extend(selector(&base, env, bg.live, idle));
            objects
        }
        TargetAction::Deploy {
            version,
            strategy: Strategy::Canary,
        } => {
            notes.push(format!("a canary of {version} starts at 10% of traffic"));
            one(
                format!("canary/{base}"),
                vec![image_change(&w.version, version.as_str())],
            )
        }
        TargetAction::Deploy { version, .. }
        | TargetAction::Rollback {
            version: Some(version),
        } => {
            notes.push(format!("rolls out {} replicas one at a time", w.replicas));
            one(workload, vec![image_change(&w.version, version.as_str())])
        }
        TargetAction::Rollback { version: None } => {
            match w.blue_green.as_ref().and_then(|b| b.back()) {
                Some(back) => {
                    let live = w.blue_green.as_ref().map_or(Colour::Blue, |b| b.live);
                    selector(&base, env, live, back)
                }
                None => {
                    let prev = w.history.last().ok_or_else(|| {
                        TargetError::Refused(format!(
                            "sandbox: no rollout history found for {name}"
                        ))
                    })?;
                    notes.push(format!("back to revision {}", w.revision.saturating_sub(1)));
                    one(workload, vec![image_change(&w.version, prev)])
                }
            }
        }
        TargetAction::Scale { replicas } => one(
            workload,
            vec![PlanChange::new(
                "replicas",
                Some(w.replicas.to_string()),
                Some(replicas.to_string()),
            )],
        ),
        TargetAction::Restart => one(
            workload,
            vec![PlanChange::new(
                "pod annotation kubectl.kubernetes.io/restartedAt",
                w.restarted_at.map(|t| t.to_rfc3339()),
                Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            )],
        ),
        TargetAction::Maintenance { on } => one(
            format!("ingress/{base}"),
            vec![PlanChange::new(
                "annotation nginx.ingress.kubernetes.io/maintenance",
                w.maintenance.then(|| "true".to_string()),
                on.then(|| "true".to_string()),
            )],
        ),
        TargetAction::Canary { action } => {
            let c = w.canary.as_ref().ok_or_else(|| {
                TargetError::Refused(format!("sandbox: no canary in progress on {name}"))
            })?;
            let (field, from, to) = match action {
                erlmcp_commands::CanaryAction::Status => ("nothing", None, None),
                erlmcp_commands::CanaryAction::Pause => ("suspend", Some(c.paused), Some(true)),
                erlmcp_commands::CanaryAction::Resume => ("suspend", Some(c.paused), Some(false)),
                erlmcp_commands::CanaryAction::Abort => {
                    notes.push(format!("all traffic back on {}", w.version));
                    ("suspend", Some(c.paused), Some(true))
                }
                erlmcp_commands::CanaryAction::Promote => {
                    notes.push(format!("{name} then runs {}", c.version));
                    ("skipAnalysis", Some(false), Some(true))
                }
            };
            one(
                format!("canary/{base}"),
                vec![PlanChange::new(
                    field,
                    from.map(|b| b.to_string()),
                    to.map(|b| b.to_string()),
                )],
            )
        }
        TargetAction::BlueGreen { action } => {
            let bg = w.blue_green.clone().ok_or_else(|| {
                TargetError::Refused(format!("sandbox: {name} has had no blue-green deploy yet"))
            })?;
            match action {
                BlueGreenAction::Status => Vec::new(),
                BlueGreenAction::Switch(to) => selector(&base, env, bg.live, *to),
                BlueGreenAction::Retire => {
                    let idle = bg.live.other();
                    notes.push(format!("{} stays live", bg.live));
                    one(
                        format!("deployment/{base}-{idle} (idle colour {idle})"),
                        vec![PlanChange::new(
                            "replicas",
                            Some(running(bg.version(idle), w.replicas).to_string()),
                            Some("0".into()),
                        )],
                    )
                }
            }
        }
        TargetAction::SetResources { change } => {
            let now = resources_of(w);
            let mut changes = Vec::new();
            for (key, list, current) in [
                ("requests", &change.requests, &now.requests),
                ("limits", &change.limits, &now.limits),
            ] {
                for (r, q) in &list.0 {
                    let from = current.get(*r).map(|c| c.to_string());
                    if from.as_deref() != Some(q.as_str()) {
                        changes.push(PlanChange::new(
                            format!("{key} {} (container {container})", r.as_str()),
                            from,
                            Some(q.to_string()),
                        ));
                    }
                }
            }
            notes.push(format!("rolls out {} replicas one at a time", w.replicas));
            one(workload, changes)
        }
        TargetAction::DeletePod { pod, force } => {
            notes.push(format!(
                "deletes pod {pod}{}; the workload replaces it",
                if *force { " with grace period 0" } else { "" }
            ));
            Vec::new()
        }
        TargetAction::Backup => {
            notes.push(format!(
                "creates a Job from CronJob {}",
                env.backup_cronjob
                    .as_deref()
                    .unwrap_or("(backup_cronjob not set)")
            ));
            Vec::new()
        }
        TargetAction::DrFailover => {
            notes.push(match env.failover_action() {
                Some(a) => format!("fails over to the DR region: runs {}", a.describe()),
                None => "no dr_cronjob or dr_workflow is configured".into(),
            });
            Vec::new()
        }
    };
    Ok(TargetPlan {
        source: SOURCE.into(),
        objects,
        notes,
    })
}

/// The replicas a colour runs: none once retired.
fn running(version: Option<&String>, replicas: u32) -> u32 {
    if version.is_some() { replicas } else { 0 }
}

fn selector(base: &str, env: &EnvironmentSpec, from: Colour, to: Colour) -> Vec<ObjectPlan> {
    vec![ObjectPlan {
        object: format!("service/{}", env.service.as_deref().unwrap_or(base)),
        changes: if from == to {
            Vec::new()
        } else {
            vec![PlanChange::new(
                "selector version",
                Some(from.to_string()),
                Some(to.to_string()),
            )]
        },
    }]
}
