//! Blue-green in the sandbox: two simulated colours, one live.

use erlmcp_commands::bluegreen::{BlueGreenStatus, ColourState};
use erlmcp_commands::{BlueGreenAction, Colour};

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SimBlueGreen {
    pub live: Colour,
    /// What each colour runs; `None` when retired.
    pub blue: Option<String>,
    pub green: Option<String>,
}

impl SimBlueGreen {
    pub fn version(&self, c: Colour) -> Option<&String> {
        match c {
            Colour::Blue => self.blue.as_ref(),
            Colour::Green => self.green.as_ref(),
        }
    }

    fn set(&mut self, c: Colour, v: Option<String>) {
        match c {
            Colour::Blue => self.blue = v,
            Colour::Green => self.green = v,
        }
    }

    pub fn idle_version(&self) -> Option<&String> {
        self.version(self.live.other())
    }

    /// The colour a rollback goes back to, when it still runs.
    pub fn back(&self) -> Option<Colour> {
        self.idle_version().map(|_| self.live.other())
    }
}

/// The colours as they are, or as a first blue-green deploy would find them: the current
/// version live on blue, green absent.
pub(super) fn colours_of(w: &Workload) -> SimBlueGreen {
    w.blue_green.clone().unwrap_or(SimBlueGreen {
        live: Colour::Blue,
        blue: Some(w.version.clone()),
        green: None,
    })
}

pub(super) fn status(env: &EnvironmentSpec, w: &Workload) -> BlueGreenStatus {
    let bg = colours_of(w);
    let base = env
        .workload_ref()
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| "erlmcp".into());
    BlueGreenStatus {
        env: env.name.clone(),
        service: format!("service/{}", env.service.as_deref().unwrap_or(&base)),
        live: bg.live,
        colours: [Colour::Blue, Colour::Green]
            .into_iter()
            .map(|c| {
                let v = bg.version(c).cloned();
                let n = if v.is_some() { w.replicas } else { 0 };
                ColourState {
                    colour: c,
                    workload: format!("deployment/{base}-{c}"),
                    version: v,
                    ready: n,
                    desired: n,
                }
            })
            .collect(),
        target: "sandbox".into(),
    }
}

impl SandboxTarget {
    /// The runbook's procedure, simulated: the idle colour gets the version, becomes
    /// available, answers its health check, and the Service switches to it.
    pub(super) async fn blue_green_deploy(
        &self,
        env: &str,
        w: &mut Workload,
        version: &str,
        progress: &dyn Progress,
    ) -> Result<String, TargetError> {
        let mut bg = colours_of(w);
        let (live, idle) = (bg.live, bg.live.other());
        if bg.version(live).map(String::as_str) == Some(version) {
            return Ok(format!(
                "sandbox: {env} already runs {version} on {live}; nothing to do"
            ));
        }
        progress.report(format!(
            "sandbox: {live} is live; deploying {version} to the idle colour {idle}"
        ));
        for i in 1..=w.replicas {
            if !self.step.is_zero() {
                tokio::time::sleep(self.step).await;
            }
            progress.report(format!(
                "sandbox: {idle}: {i} of {} new replicas available",
                w.replicas
            ));
        }
        progress.report(format!("sandbox: {idle} health check answered 200"));
        bg.set(idle, Some(version.to_string()));
        bg.live = idle;
        let before = std::mem::replace(&mut w.version, version.to_string());
        w.history.push(before.clone());
        w.revision += 1;
        w.blue_green = Some(bg);
        progress.report(format!("sandbox: service switched from {live} to {idle}"));
        Ok(format!(
            "sandbox: {env} now runs {version} on {idle}: service switched from {live} ({before}) to {idle}; {live} stays up for `bluegreen {env} switch {live}`"
        ))
    }
}

pub(super) fn act(
    env: &str,
    w: &mut Workload,
    action: BlueGreenAction,
    progress: &dyn Progress,
) -> Result<String, TargetError> {
    let Some(mut bg) = w.blue_green.clone() else {
        return Err(TargetError::Refused(format!(
            "sandbox: {env} has had no blue-green deploy yet (start one with `deploy {env} VERSION --strategy blue-green`)"
        )));
    };
    let line = match action {
        BlueGreenAction::Status => status_line(env, &bg),
        BlueGreenAction::Switch(to) if to == bg.live => {
            format!("sandbox: {env} already sends traffic to {to}; nothing to do")
        }
        BlueGreenAction::Switch(to) => {
            let Some(v) = bg.version(to).cloned() else {
                return Err(TargetError::Refused(format!(
                    "sandbox: {to} is retired on {env}; traffic stays on {}",
                    bg.live
                )));
            };
            let from = bg.live;
            bg.live = to;
            w.version = v.clone();
            progress.report(format!("sandbox: service switched from {from} to {to}"));
            format!("sandbox: {env}: service switched from {from} to {to}, which runs {v}")
        }
        BlueGreenAction::Retire => {
            let idle = bg.live.other();
            let Some(v) = bg.version(idle).cloned() else {
                return Err(TargetError::Refused(format!(
                    "sandbox: the idle colour {idle} on {env} is already retired"
                )));
            };
            bg.set(idle, None);
            format!(
                "sandbox: {env}: idle colour {idle} ({v}) retired (scaled to 0); {} stays live",
                bg.live
            )
        }
    };
    w.blue_green = Some(bg);
    Ok(line)
}

fn status_line(env: &str, bg: &SimBlueGreen) -> String {
    format!("sandbox: {env}: {} is live", bg.live)
}
