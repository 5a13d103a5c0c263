//! Wiring: from a configuration to a running engine with its store and targets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use erlmcp_adapters::chat::ChatPlatform;
use erlmcp_adapters::ci::{CiStatus, CiStatusSource};
use erlmcp_adapters::target::Target;
use erlmcp_commands::config::{Config, EnvironmentSpec, TargetKind};

use crate::clock::Clock;
use crate::conversation::Conversation;
use crate::engine::{Engine, EngineParts, GuardSleep, real_sleep};
use crate::metrics::Metrics;
use crate::platforms::{self, Platforms};
use crate::sandbox::{SandboxCi, SandboxTarget};
use crate::store::Store;
use erlmcp_adapters::discord::DiscordPlatform;
use erlmcp_adapters::discord::gateway::DiscordGateway;
use erlmcp_adapters::discord::inbound::DiscordInbound;
use erlmcp_adapters::github::{
    GithubActionsTarget, GithubCi, GithubClient, GithubOptions, WorkflowOptions,
};
use erlmcp_adapters::kube_client;
use erlmcp_adapters::kubernetes::{KubernetesOptions, KubernetesTarget};
use erlmcp_adapters::slack::SlackInbound;

pub struct App {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Where every chat platform hands its inbound messages.
    pub conversation: Arc<Conversation>,
    /// Slack's endpoints and Socket Mode, when `slack.enabled`.
    pub slack: Option<Arc<SlackInbound>>,
    /// The local chat (page and console), when `BuildOptions::local_chat`.
    pub local: Option<Arc<crate::local::Local>>,
    /// Discord's interactions endpoint, when `discord.enabled` in HTTP mode.
    pub discord: Option<Arc<DiscordInbound>>,
    /// Discord's gateway connection, in gateway mode; held by the leader only.
    pub discord_gateway: Option<Arc<DiscordGateway>>,
    /// Discord's client, for registering the command at start-up.
    pub discord_client: Option<Arc<DiscordPlatform>>,
    /// Set when the process starts shutting down: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

impl App {
    /// The inbound halves of the platforms, for the HTTP server.
    pub fn platforms(&self) -> Platforms {
        Platforms {
            slack: self.slack.clone(),
            local: self.local.as_ref().and_then(|l| l.web()),
            discord: self.discord.clone(),
        }
    }
}

pub struct BuildOptions {
    /// Pause between the sandbox's simulated rollout steps.
    pub sandbox_step: Duration,
    /// Chat platforms supplied by the caller (tests, the local chat) in addition to the
    /// configured ones.
    pub chats: Vec<Arc<dyn ChatPlatform>>,
    /// How the post-deploy guard waits between checks.
    pub guard_sleep: GuardSleep,
    /// A kube client to use instead of the configured cluster (tests).
    pub kube_client: Option<kube_client::Client>,
    /// How the github-actions target polls runs.
    pub github_workflow: WorkflowOptions,
    /// How GitHub reads are retried; `None` for the defaults.
    pub github_reads: Option<erlmcp_adapters::retry::RetryPolicy>,
    /// Runs the local chat platform in this process (`serve` when it is enabled, `console`).
    pub local_chat: bool,
    /// The local chat has no page here (`console`): its messages need no HTML.
    pub local_chat_text_only: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            sandbox_step: Duration::from_millis(100),
            chats: Vec::new(),
            guard_sleep: real_sleep(),
            kube_client: None,
            github_workflow: WorkflowOptions::default(),
            github_reads: None,
            local_chat: false,
            local_chat_text_only: false,
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
    let uses = |k: TargetKind| {
        config.environments.values().any(|e| e.target == k)
            || config.dr.as_ref().is_some_and(|dr| dr.target == k)
    };
    let mut sandbox_target = None;
    if uses(TargetKind::Sandbox) {
        let step = config
            .bot
            .sandbox_step
            .map(|d| d.0)
            .unwrap_or(opts.sandbox_step);
        let sandbox = SandboxTarget::new(store.clone(), clock.clone(), step);
        let envs: Vec<&EnvironmentSpec> = config
            .environments
            .values()
            .filter(|e| e.target == TargetKind::Sandbox)
            .collect();
        sandbox
            .seed_all(&envs)
            .await
            .context("could not prepare the sandbox environments")?;
        let sandbox = Arc::new(sandbox);
        targets.push(sandbox.clone());
        sandbox_target = Some(sandbox);
    }
    if uses(TargetKind::Kubernetes) {
        let target = match opts.kube_client {
            Some(client) => KubernetesTarget::from_client(client, KubernetesOptions::default()),
            None => KubernetesTarget::new(config.kubernetes.api_url.as_deref())
                .await
                .context("could not connect to Kubernetes (in-cluster config, KUBECONFIG or kubernetes.api_url)")?,
        };
        targets.push(Arc::new(target));
    }
    let github = match GithubOptions::from_config(&config.github) {
        Some(mut gopts) => {
            if let Some(reads) = opts.github_reads {
                gopts.reads = reads;
            }
            Some(Arc::new(
                GithubClient::new(gopts).context("could not set up the GitHub client")?,
            ))
        }
        None => None,
    };
    let github_target = match (&github, uses(TargetKind::GithubActions)) {
        (Some(client), true) => {
            let target = Arc::new(GithubActionsTarget::new(
                client.clone(),
                opts.github_workflow.clone(),
            ));
            targets.push(target.clone());
            Some(target)
        }
        (None, true) => {
            anyhow::bail!("the github-actions target needs github.owner and github.repo")
        }
        _ => None,
    };
    let mut chats = opts.chats;
    let clients = platforms::clients(&config, clock.clone())?;
    chats.extend(clients.chats());
    let local = opts.local_chat.then(|| {
        Arc::new(if opts.local_chat_text_only {
            erlmcp_adapters::local::LocalChat::text_only()
        } else {
            erlmcp_adapters::local::LocalChat::new()
        })
    });
    if let Some(chat) = &local {
        chats.push(chat.clone());
    }
    // A bot told to sign checkpoints must not run without being able to.
    crate::engine::check_audit_keys(&config.audit)?;
    let engine = Engine::new(EngineParts {
        config: config.clone(),
        store: store.clone(),
        targets,
        ci: ci_source(&config, github.as_ref()),
        clock: clock.clone(),
        metrics: metrics.clone(),
        chats,
        incidents_channels: platforms::incidents_channels(&config),
        guard_sleep: opts.guard_sleep,
    });
    if let Some(target) = github_target {
        engine.set_github(target);
    }
    if let Some(target) = sandbox_target {
        engine.set_sandbox(target);
    }
    let conversation = Conversation::start(engine.clone(), metrics.clone());
    let connected = platforms::connect(&config, clock, &clients, conversation.clone());
    let local = local
        .map(|chat| crate::local::Local::new(&config, engine.clone(), chat, conversation.clone()));
    Ok(App {
        local,
        engine,
        store,
        metrics,
        config,
        conversation,
        slack: connected.platforms.slack,
        discord: connected.platforms.discord,
        discord_gateway: connected.discord_gateway,
        discord_client: clients.discord.clone(),
        draining: Arc::default(),
    })
}

/// Where the `ci_green` precondition is answered. The sandbox answers for its own world;
/// for real environments CI is the check runs on the version's tag on GitHub. Without a
/// configured repository the answer is "unknown", which the policy treats as not green: a
/// production deploy is never waved through on a guess.
fn ci_source(config: &Config, github: Option<&Arc<GithubClient>>) -> Arc<dyn CiStatusSource> {
    if config
        .environments
        .values()
        .all(|e| e.target == TargetKind::Sandbox)
    {
        return Arc::new(SandboxCi);
    }
    match github {
        Some(client) => Arc::new(GithubCi::with_client(
            client.clone(),
            erlmcp_adapters::github::DEFAULT_TIMEOUT,
        )),
        None => Arc::new(UnavailableCi),
    }
}

struct UnavailableCi;

#[async_trait::async_trait]
impl CiStatusSource for UnavailableCi {
    async fn ci_status(&self, version: &erlmcp_commands::Version) -> CiStatus {
        CiStatus::Unknown(format!(
            "no CI lookup is available to check {version} (set github.owner and github.repo)"
        ))
    }
}
