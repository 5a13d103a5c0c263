//! Blue-green on Kubernetes, as the runbook does it by hand: two Deployments,
//! `WORKLOAD-blue` and `WORKLOAD-green`, behind one Service whose selector's `version`
//! label picks the live colour.

use erlmcp_commands::bluegreen::{BlueGreenStatus, ColourState};
use erlmcp_commands::{BlueGreenAction, Colour, Version};

use super::*;

/// The Service selector label that names the live colour.
pub const COLOUR_LABEL: &str = "version";
/// Health probes of the idle colour before traffic is switched to it.
const PROBE_ATTEMPTS: u32 = 3;

/// A blue-green environment's Service as read now.
pub(super) struct LiveService {
    pub name: String,
    pub ns: String,
    pub live: Colour,
    pub selector: String,
}

/// The selector patch `kubectl patch svc NAME -p '{"spec":{"selector":{"version":C}}}'`
/// sends (a strategic merge patch).
pub(super) fn selector_patch(colour: Colour) -> Value {
    json!({"spec": {"selector": {COLOUR_LABEL: colour.as_str()}}})
}

/// `green_health_url` with `{colour}` replaced.
pub(super) fn colour_url(template: &str, colour: Colour) -> String {
    template.replace("{colour}", colour.as_str())
}

impl KubernetesTarget {
    pub(super) fn service_api(&self, ns: &str) -> Api<DynamicObject> {
        self.api(
            ns,
            &ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        )
    }

    /// The name of a colour's Deployment: `erlmcp-green` for workload `deployment/erlmcp`.
    pub(super) fn colour_name(
        &self,
        env: &EnvironmentSpec,
        c: Colour,
    ) -> Result<String, TargetError> {
        let wl = self.workload(env)?;
        if wl.kind != Kind::Deployment {
            return Err(TargetError::Refused(format!(
                "blue-green needs workload = \"deployment/NAME\" in environment {}",
                env.name
            )));
        }
        Ok(format!("{}-{c}", wl.name))
    }

    pub(super) async fn live_service(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<LiveService, TargetError> {
        let wl = self.workload(env)?;
        let name = env.service.clone().ok_or_else(|| {
            TargetError::Refused(format!(
                "environment {} is not blue-green (set its service)",
                env.name
            ))
        })?;
        let svc = self
            .service_api(wl.ns)
            .get(&name)
            .await
            .map_err(|e| api_error(&format!("service {name} in namespace {}", wl.ns), e))?;
        let svc = to_value(&svc);
        let selected = ptr(&svc, "/spec/selector")
            .and_then(|s| s.get(COLOUR_LABEL))
            .and_then(Value::as_str);
        let live = selected.and_then(Colour::parse).ok_or_else(|| {
            TargetError::Refused(format!(
                "service {name} selects no colour (spec.selector.{COLOUR_LABEL} is {}); blue-green needs {COLOUR_LABEL}: blue or green",
                selected.map_or("absent".to_string(), |s| format!("{s:?}"))
            ))
        })?;
        let selector = ptr(&svc, "/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        Ok(LiveService {
            name,
            ns: wl.ns.to_string(),
            live,
            selector,
        })
    }

    /// In a blue-green environment, the environment as seen through its live colour: its
    /// workload becomes that colour's Deployment, so status, pods, logs, scale and restart
    /// act on what serves traffic. Other environments as they are.
    pub(super) async fn serving<'e>(
        &self,
        env: &'e EnvironmentSpec,
    ) -> Result<std::borrow::Cow<'e, EnvironmentSpec>, TargetError> {
        if env.service.is_none() {
            return Ok(std::borrow::Cow::Borrowed(env));
        }
        let svc = self.live_service(env).await?;
        let mut live = env.clone();
        live.workload = Some(format!("deployment/{}", self.colour_name(env, svc.live)?));
        live.container = Some(self.container(env)?);
        // Seen through one colour, it is an ordinary environment.
        live.service = None;
        Ok(std::borrow::Cow::Owned(live))
    }

    /// A colour's Deployment, or `None` when it does not exist.
    pub(super) async fn colour_deployment(
        &self,
        env: &EnvironmentSpec,
        c: Colour,
    ) -> Result<Option<Value>, TargetError> {
        let wl = self.workload(env)?;
        let name = self.colour_name(env, c)?;
        let api = self.workload_api(Workload {
            kind: Kind::Deployment,
            name: &name,
            ns: wl.ns,
        });
        match api.get(&name).await {
            Ok(d) => Ok(Some(to_value(&d))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(&format!("deployment/{name}"), e)),
        }
    }

    pub(super) async fn colours(
        &self,
        env: &EnvironmentSpec,
    ) -> Result<BlueGreenStatus, TargetError> {
        let svc = self.live_service(env).await?;
        let container = self.container(env)?;
        let mut colours = Vec::new();
        for c in [Colour::Blue, Colour::Green] {
            let d = self.colour_deployment(env, c).await?;
            colours.push(ColourState {
                colour: c,
                workload: format!("deployment/{}", self.colour_name(env, c)?),
                version: d
                    .as_ref()
                    .and_then(|d| container_image(d, &container).and_then(image_version)),
                ready: d
                    .as_ref()
                    .map_or(0, |d| int(d, "/status/readyReplicas").max(0) as u32),
                desired: d.as_ref().map_or(0, |d| {
                    ptr(d, "/spec/replicas")
                        .and_then(Value::as_u64)
                        .unwrap_or(1) as u32
                }),
            });
        }
        Ok(BlueGreenStatus {
            env: env.name.clone(),
            service: format!("service/{}", svc.name),
            live: svc.live,
            colours,
            target: self.kind().to_string(),
        })
    }

    pub(super) fn container(&self, env: &EnvironmentSpec) -> Result<String, TargetError> {
        let wl = self.workload(env)?;
        Ok(env.container.clone().unwrap_or_else(|| wl.name.to_string()))
    }

    async fn switch_selector(
        &self,
        svc: &LiveService,
        to: Colour,
        params: &PatchParams,
    ) -> Result<Value, TargetError> {
        let after = self
            .service_api(&svc.ns)
            .patch(&svc.name, params, &Patch::Strategic(&selector_patch(to)))
            .await
            .map_err(|e| api_error(&format!("service {} in namespace {}", svc.name, svc.ns), e))?;
        Ok(to_value(&after))
    }

    /// The runbook's blue-green procedure: the idle colour gets `version`, is followed
    /// until available, its health is probed, then the Service is switched to it.
    pub(super) async fn blue_green_deploy(
        &self,
        env: &EnvironmentSpec,
        version: &Version,
        ctx: &ExecContext,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let probe_url = env.green_health_url.as_deref().ok_or_else(|| {
            TargetError::Refused(format!(
                "environment {} has no green_health_url: the idle colour must be probed before traffic is switched to it",
                env.name
            ))
        })?;
        let repo = env.image.as_deref().ok_or_else(|| {
            TargetError::Refused(format!("environment {} has no image configured", env.name))
        })?;
        let svc = self.live_service(env).await?;
        let (live, idle) = (svc.live, svc.live.other());
        let container = self.container(env)?;
        let live_d = self.colour_deployment(env, live).await?.ok_or_else(|| {
            TargetError::Refused(format!(
                "service {} sends traffic to {live}, but deployment/{} does not exist",
                svc.name,
                self.colour_name(env, live).unwrap_or_default()
            ))
        })?;
        let idle_name = self.colour_name(env, idle)?;
        if self.colour_deployment(env, idle).await?.is_none() {
            return Err(TargetError::Refused(format!(
                "the idle colour's deployment/{idle_name} does not exist in {}; blue-green needs both colours",
                svc.ns
            )));
        }
        let before = container_image(&live_d, &container).and_then(image_version);
        let patch = idle_patch(&live_d, version, ctx, repo, &container);
        let wl = Workload {
            kind: Kind::Deployment,
            name: &idle_name,
            ns: &svc.ns,
        };
        progress.report(format!(
            "{live} is live; deploying {version} to the idle colour {idle} ({wl})"
        ));
        let after = self
            .workload_api(wl)
            .patch(&idle_name, &patch_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| api_error(&wl.to_string(), e))?;
        let line = self
            .follow(wl, to_value(&after), self.timeout_for(env), progress)
            .await?;
        progress.report(format!("{wl} is available: {line}"));

        let url = colour_url(probe_url, idle);
        let mut last = None;
        for attempt in 1..=PROBE_ATTEMPTS {
            let p = probe(&self.http, &url, self.opts.probe_timeout).await;
            if p.code == Some(200) {
                last = None;
                progress.report(format!("{idle} health check {} answered 200", p.url));
                break;
            }
            last = Some(match (p.code, &p.error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "no answer".into(),
            });
            if attempt < PROBE_ATTEMPTS {
                tokio::time::sleep(self.opts.poll_interval).await;
            }
        }
        if let Some(why) = last {
            return Err(TargetError::RolloutFailed(format!(
                "{idle} runs {version} but its health check {} failed {PROBE_ATTEMPTS} times ({why}); traffic stays on {live}",
                crate::probe::display_url(&url)
            )));
        }
        self.switch_selector(&svc, idle, &patch_params()).await?;
        progress.report(format!(
            "service {} switched from {live} to {idle}",
            svc.name
        ));
        Ok(Outcome {
            summary: format!(
                "{} now runs {version} on {idle}: service {} switched from {live} ({}) to {idle}; {live} stays up for `bluegreen {} switch {live}`",
                env.name,
                svc.name,
                before.as_deref().unwrap_or("unknown"),
                env.name
            ),
            version_before: before,
            version_after: Some(version.to_string()),
        })
    }

    pub(super) async fn blue_green(
        &self,
        env: &EnvironmentSpec,
        action: &BlueGreenAction,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        match action {
            BlueGreenAction::Status => {
                let s = self.colours(env).await?;
                Ok(Outcome {
                    summary: s.render(),
                    version_before: None,
                    version_after: None,
                })
            }
            BlueGreenAction::Switch(to) => self.switch_to(env, *to, progress).await,
            BlueGreenAction::Retire => self.retire(env, progress).await,
        }
    }

    /// Sends traffic to `to` at once, if that colour has available pods.
    pub(super) async fn switch_to(
        &self,
        env: &EnvironmentSpec,
        to: Colour,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let svc = self.live_service(env).await?;
        let container = self.container(env)?;
        let version_of = |d: &Option<Value>| {
            d.as_ref()
                .and_then(|d| container_image(d, &container).and_then(image_version))
        };
        let target_d = self.colour_deployment(env, to).await?;
        let live_d = self.colour_deployment(env, svc.live).await?;
        if svc.live == to {
            return Ok(Outcome {
                summary: format!(
                    "{} already sends traffic to {to} (service {}); nothing to do",
                    env.name, svc.name
                ),
                version_before: version_of(&live_d),
                version_after: version_of(&live_d),
            });
        }
        let name = self.colour_name(env, to)?;
        // A colour scaled to zero has no pods to serve, whatever its status still says.
        let available = target_d.as_ref().map_or(0, |d| {
            let desired = ptr(d, "/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if desired == 0 {
                0
            } else {
                int(d, "/status/availableReplicas")
            }
        });
        if available == 0 {
            return Err(TargetError::Refused(format!(
                "{to} has no available pods (deployment/{name} {}); traffic stays on {}",
                if target_d.is_some() {
                    "is retired or not ready"
                } else {
                    "does not exist"
                },
                svc.live
            )));
        }
        self.switch_selector(&svc, to, &patch_params()).await?;
        progress.report(format!(
            "service {} switched from {} to {to}",
            svc.name, svc.live
        ));
        Ok(Outcome {
            summary: format!(
                "{}: service {} switched from {} to {to}, which runs {} ({available} available)",
                env.name,
                svc.name,
                svc.live,
                version_of(&target_d).as_deref().unwrap_or("unknown")
            ),
            version_before: version_of(&live_d),
            version_after: version_of(&target_d),
        })
    }

    /// `rollback` of a blue-green environment: back to the colour that is not live.
    pub(super) async fn switch_back(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let svc = self.live_service(env).await?;
        self.switch_to(env, svc.live.other(), progress).await
    }

    /// Decommissions the idle colour: scaled to zero, kept for the next release.
    async fn retire(
        &self,
        env: &EnvironmentSpec,
        progress: &dyn Progress,
    ) -> Result<Outcome, TargetError> {
        let svc = self.live_service(env).await?;
        let idle = svc.live.other();
        let name = self.colour_name(env, idle)?;
        let container = self.container(env)?;
        let Some(d) = self.colour_deployment(env, idle).await? else {
            return Err(TargetError::Refused(format!(
                "the idle colour's deployment/{name} does not exist"
            )));
        };
        let version = container_image(&d, &container).and_then(image_version);
        let wl = Workload {
            kind: Kind::Deployment,
            name: &name,
            ns: &svc.ns,
        };
        self.workload_api(wl)
            .patch_scale(
                &name,
                &patch_params(),
                &Patch::Merge(&json!({"spec": {"replicas": 0}})),
            )
            .await
            .map_err(|e| api_error(&format!("{wl}/scale"), e))?;
        progress.report(format!("{wl} scaled to 0"));
        Ok(Outcome {
            summary: format!(
                "{}: idle colour {idle} ({}) retired: {wl} scaled to 0; {} stays live",
                env.name,
                version.as_deref().unwrap_or("unknown"),
                svc.live
            ),
            version_before: version.clone(),
            version_after: version,
        })
    }

    /// Dry runs of the blue-green patches, for the plan.
    pub(super) async fn blue_green_plan(
        &self,
        env: &EnvironmentSpec,
        action: Option<&BlueGreenAction>,
        version: Option<&Version>,
        ctx: &ExecContext,
    ) -> Result<(Vec<ObjectPlanParts>, Vec<String>), TargetError> {
        let svc = self.live_service(env).await?;
        let (live, idle) = (svc.live, svc.live.other());
        let container = self.container(env)?;
        let mut objects = Vec::new();
        let mut notes = Vec::new();
        let switch_to = match (action, version) {
            (None, Some(version)) => {
                let repo = env.image.as_deref().ok_or_else(|| {
                    TargetError::Refused(format!(
                        "environment {} has no image configured",
                        env.name
                    ))
                })?;
                let live_d = self.colour_deployment(env, live).await?.ok_or_else(|| {
                    TargetError::Refused(format!("the live colour {live} has no deployment"))
                })?;
                let idle_name = self.colour_name(env, idle)?;
                let idle_d = self.colour_deployment(env, idle).await?.ok_or_else(|| {
                    TargetError::Refused(format!("deployment/{idle_name} does not exist"))
                })?;
                let patch = idle_patch(&live_d, version, ctx, repo, &container);
                let wl = Workload {
                    kind: Kind::Deployment,
                    name: &idle_name,
                    ns: &svc.ns,
                };
                let after = self
                    .workload_api(wl)
                    .patch(&idle_name, &dry_run_params(), &Patch::Strategic(&patch))
                    .await
                    .map_err(|e| api_error(&wl.to_string(), e))?;
                objects.push(ObjectPlanParts {
                    object: format!("{wl} in {} (idle colour {idle})", svc.ns),
                    before: idle_d,
                    after: to_value(&after),
                });
                notes.push(format!("waits until {wl} is available"));
                match env.green_health_url.as_deref() {
                    Some(u) => notes.push(format!(
                        "probes {} and switches only on 200",
                        crate::probe::display_url(&colour_url(u, idle))
                    )),
                    None => {
                        notes.push("no green_health_url: the deploy would be refused".to_string())
                    }
                }
                Some(idle)
            }
            (Some(BlueGreenAction::Switch(to)), _) => Some(*to),
            (Some(BlueGreenAction::Retire), _) => {
                let name = self.colour_name(env, idle)?;
                let d = self.colour_deployment(env, idle).await?.ok_or_else(|| {
                    TargetError::Refused(format!("deployment/{name} does not exist"))
                })?;
                let wl = Workload {
                    kind: Kind::Deployment,
                    name: &name,
                    ns: &svc.ns,
                };
                let scale = self
                    .workload_api(wl)
                    .patch_scale(
                        &name,
                        &dry_run_params(),
                        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
                    )
                    .await
                    .map_err(|e| api_error(&format!("{wl}/scale"), e))?;
                let mut after = d.clone();
                after["spec"]["replicas"] = json!(scale.spec.and_then(|s| s.replicas).unwrap_or(0));
                objects.push(ObjectPlanParts {
                    object: format!("{wl} in {} (idle colour {idle})", svc.ns),
                    before: d,
                    after,
                });
                notes.push(format!("{live} stays live"));
                None
            }
            _ => None,
        };
        if let Some(to) = switch_to {
            let before = self
                .service_api(&svc.ns)
                .get(&svc.name)
                .await
                .map_err(|e| api_error(&format!("service {}", svc.name), e))?;
            let after = self.switch_selector(&svc, to, &dry_run_params()).await?;
            objects.push(ObjectPlanParts {
                object: format!(
                    "service/{} in {} (selector {})",
                    svc.name, svc.ns, svc.selector
                ),
                before: to_value(&before),
                after,
            });
        }
        Ok((objects, notes))
    }
}

/// An object before and after a dry run, to be compared for the plan.
pub(super) struct ObjectPlanParts {
    pub object: String,
    pub before: Value,
    pub after: Value,
}

/// The image patch for the idle colour, which also brings a retired colour back to the
/// live colour's replica count.
pub(super) fn idle_patch(
    live_d: &Value,
    version: &Version,
    ctx: &ExecContext,
    repo: &str,
    container: &str,
) -> Value {
    let image = format!("{repo}:{version}");
    let mut patch = image_patch(
        ctx,
        container,
        &image,
        &format!("deploy {version} (blue-green)"),
    );
    let live_replicas = ptr(live_d, "/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    patch["spec"]["replicas"] = json!(live_replicas);
    patch
}
