//! Wiring: from a configuration to a running engine with its store and targets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use erlmcp_adapters::chat::ChatPlatform;
use erlmcp_adapters::target::Target;
use erlmcp_commands::config::{Config, EnvironmentSpec, TargetKind};

use crate::clock::Clock;
use crate::engine::{Engine, EngineParts};
use crate::metrics::Metrics;
use crate::sandbox::{SandboxCi, SandboxTarget};
use crate::store::Store;

pub struct App {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
}

pub struct BuildOptions {
    /// Pause between the sandbox's simulated rollout steps.
    pub sandbox_step: Duration,
    /// Chat platforms supplied by the caller (tests, the local chat) in addition to the
    /// configured ones.
    pub chats: Vec<Arc<dyn ChatPlatform>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            sandbox_step: Duration::from_millis(100),
            chats: Vec::new(),
        }
    }
}

/// Builds the engine on an open store.
pub async fn build(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    opts: BuildOptions,
) -> anyhow::Result<App> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let mut targets: Vec<Arc<dyn Target>> = Vec::new();
    let uses = |k: TargetKind| config.environments.values().any(|e| e.target == k);
    if uses(TargetKind::Sandbox) {
        let sandbox = SandboxTarget::new(store.clone(), clock.clone(), opts.sandbox_step);
        let envs: Vec<&EnvironmentSpec> = config
            .environments
            .values()
            .filter(|e| e.target == TargetKind::Sandbox)
            .collect();
        sandbox
            .seed_all(&envs)
            .await
            .context("could not prepare the sandbox environments")?;
        targets.push(Arc::new(sandbox));
    }
    let engine = Engine::new(EngineParts {
        config: config.clone(),
        store: store.clone(),
        targets,
        ci: Arc::new(SandboxCi),
        clock,
        metrics: metrics.clone(),
        chats: opts.chats,
    });
    Ok(App {
        engine: Arc::new(engine),
        store,
        metrics,
        config,
    })
}
