//! One leader among the replicas, for what only one process may hold at a time: the
//! long-lived chat connections (Slack Socket Mode, a Discord gateway). Everything else is
//! shared by every replica (HTTP handlers) or leased per job in the store (the scheduler).
//!
//! The leader is elected through a Kubernetes Lease when running in a cluster, else through
//! a PostgreSQL advisory lock; on SQLite there is one process per file, so it always leads.
//! The state is a watch channel: [`while_leader`] starts a task when this process becomes
//! the leader and stops it when leadership is lost, and [`Leadership::release`] hands the
//! role over at shutdown instead of letting the others wait for the lease to run out.

pub mod kube_lease;
pub mod postgres;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use erlmcp_commands::config::{Config, LeaderElection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How the leader is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// No election: one process per database (SQLite), or `leader.election = "none"`.
    Single,
    Postgres,
    KubernetesLease,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Single => "single",
            Backend::Postgres => "postgres",
            Backend::KubernetesLease => "kubernetes-lease",
        }
    }
}

/// The backend `leader.election` asks for, given the database and whether this process runs
/// in a Kubernetes pod.
pub fn choose(
    election: LeaderElection,
    database_url: &str,
    in_cluster: bool,
) -> Result<Backend, String> {
    let postgres = database_url.starts_with("postgres:") || database_url.starts_with("postgresql:");
    match election {
        LeaderElection::None => Ok(Backend::Single),
        LeaderElection::Auto if !postgres => Ok(Backend::Single),
        LeaderElection::Auto if in_cluster => Ok(Backend::KubernetesLease),
        LeaderElection::Auto => Ok(Backend::Postgres),
        LeaderElection::Kubernetes => Ok(Backend::KubernetesLease),
        LeaderElection::Postgres if postgres => Ok(Backend::Postgres),
        LeaderElection::Postgres => {
            Err("leader.election = \"postgres\" needs bot.database_url = \"postgres://...\"".into())
        }
    }
}

/// Whether this process runs in a Kubernetes pod (the variable every pod gets).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// One way of taking part in an election, driven by [`campaign`].
#[async_trait]
pub trait Candidate: Send {
    /// One round: become or stay the leader if possible. `Ok(true)` means this process
    /// leads until the next round; an error means it does not (and is logged).
    async fn round(&mut self) -> Result<bool, String>;
    /// Gives leadership up so another candidate can take it at once.
    async fn resign(&mut self);
    /// Pause between rounds.
    fn period(&self) -> Duration;
}

/// This process's part in the election.
pub struct Leadership {
    backend: Backend,
    identity: String,
    state: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Always the leader: nobody else can run on this database.
    pub fn single(identity: &str, metrics: Arc<Metrics>) -> Leadership {
        let (tx, state) = watch::channel(true);
        let (stop, mut stopped) = watch::channel(false);
        metrics.set_leader(Backend::Single, true);
        // Holds the state open until release: a closed channel would read as lost.
        let task = tokio::spawn(async move {
            let _ = stopped.wait_for(|s| *s).await;
            tx.send_replace(false);
            metrics.set_leader(Backend::Single, false);
        });
        Leadership {
            backend: Backend::Single,
            identity: identity.to_string(),
            state,
            stop,
            task: Some(task),
        }
    }

    /// Starts campaigning with `candidate`; the first round runs before this returns, so a
    /// process that can lead at once does.
    pub async fn campaign(
        backend: Backend,
        identity: &str,
        mut candidate: Box<dyn Candidate>,
        metrics: Arc<Metrics>,
    ) -> Leadership {
        let leading = run_round(backend, candidate.as_mut()).await;
        metrics.set_leader(backend, leading);
        if leading {
            info!(backend = backend.as_str(), identity, "leadership acquired");
        }
        let (tx, state) = watch::channel(leading);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(campaign(
            backend,
            identity.to_string(),
            candidate,
            tx,
            stopped,
            metrics,
        ));
        Leadership {
            backend,
            identity: identity.to_string(),
            state,
            stop,
            task: Some(task),
        }
    }

    /// Elects with the backend the configuration asks for. `identity` names this process
    /// unless `leader.identity` does.
    pub async fn start(
        cfg: &Config,
        database_url: &str,
        identity: &str,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Leadership> {
        let backend =
            choose(cfg.leader.election, database_url, in_cluster()).map_err(anyhow::Error::msg)?;
        let identity = cfg.leader.identity.as_deref().unwrap_or(identity);
        let duration = cfg.leader.lease_duration.0;
        let candidate: Box<dyn Candidate> = match backend {
            Backend::Single => return Ok(Leadership::single(identity, metrics)),
            Backend::Postgres => Box::new(
                postgres::AdvisoryLock::new(database_url, postgres::LEADER_LOCK, duration / 3)
                    .context("leader election on PostgreSQL")?,
            ),
            Backend::KubernetesLease => {
                let client = erlmcp_adapters::kubernetes::client(cfg.kubernetes.api_url.as_deref())
                    .await
                    .context("leader election through a Kubernetes Lease")?;
                let namespace = kube_lease::namespace(
                    cfg.leader.lease_namespace.as_deref(),
                    client.default_namespace(),
                );
                Box::new(kube_lease::LeaseLock::new(
                    client,
                    &namespace,
                    &cfg.leader.lease_name,
                    identity,
                    duration,
                ))
            }
        };
        Ok(Leadership::campaign(backend, identity, candidate, metrics).await)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Leadership as it changes: `true` while this process leads.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Stops campaigning and gives leadership up; waits at most `within` for the backend to
    /// confirm (a lock or lease not released in time still runs out by itself).
    pub async fn release(mut self, within: Duration) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(within, task).await.is_err()
        {
            warn!(
                backend = self.backend.as_str(),
                "leadership not released in time; it runs out with its lease"
            );
        }
    }
}

async fn run_round(backend: Backend, candidate: &mut dyn Candidate) -> bool {
    match candidate.round().await {
        Ok(leading) => leading,
        Err(e) => {
            warn!(backend = backend.as_str(), error = %e, "leader election round failed");
            false
        }
    }
}

async fn campaign(
    backend: Backend,
    identity: String,
    mut candidate: Box<dyn Candidate>,
    tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(candidate.period()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let leading = run_round(backend, candidate.as_mut()).await;
        if leading != *tx.borrow() {
            if leading {
                info!(backend = backend.as_str(), %identity, "leadership acquired");
            } else {
                warn!(backend = backend.as_str(), %identity, "leadership lost");
            }
            metrics.set_leader(backend, leading);
            tx.send_replace(leading);
        }
    }
    // What runs under leadership stops before the lock is given up, so two processes never
    // hold the connection at once.
    tx.send_replace(false);
    metrics.set_leader(backend, false);
    candidate.resign().await;
    info!(backend = backend.as_str(), %identity, "leadership released");
}

/// Aborts the task it holds when dropped, so stopping the gate stops what it started.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs what `start` starts while this process leads: started when leadership is acquired,
/// aborted when it is lost (and started again if it comes back). Aborting the returned
/// handle stops both the gate and what it started.
pub fn while_leader<F>(
    what: &'static str,
    mut state: watch::Receiver<bool>,
    start: F,
) -> JoinHandle<()>
where
    F: Fn() -> JoinHandle<()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            if state.wait_for(|leading| *leading).await.is_err() {
                return;
            }
            info!(what, "leader: starting");
            let running = AbortOnDrop(start());
            let lost = state.wait_for(|leading| !*leading).await.is_err();
            drop(running);
            info!(what, "leader: stopped");
            if lost {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_follows_the_database_and_the_cluster() {
        let pg = "postgres://u@h/db";
        let sqlite = "sqlite://erlmcp-bot.db";
        let auto = LeaderElection::Auto;
        assert_eq!(choose(auto, sqlite, true), Ok(Backend::Single));
        assert_eq!(choose(auto, sqlite, false), Ok(Backend::Single));
        assert_eq!(choose(auto, pg, true), Ok(Backend::KubernetesLease));
        assert_eq!(choose(auto, pg, false), Ok(Backend::Postgres));
        assert_eq!(
            choose(LeaderElection::Kubernetes, pg, false),
            Ok(Backend::KubernetesLease)
        );
        assert_eq!(
            choose(LeaderElection::Postgres, pg, true),
            Ok(Backend::Postgres)
        );
        assert!(
            choose(LeaderElection::Postgres, sqlite, false)
                .unwrap_err()
                .contains("bot.database_url")
        );
        assert_eq!(choose(LeaderElection::None, pg, true), Ok(Backend::Single));
    }

    #[test]
    fn leader_keys_have_defaults_and_each_bad_one_is_named() {
        let cfg = crate::config::from_toml("").unwrap();
        assert_eq!(cfg.leader.election, LeaderElection::Auto);
        assert_eq!(cfg.leader.lease_name, "erlmcp-bot");
        assert_eq!(cfg.leader.lease_duration.0, Duration::from_secs(15));
        assert_eq!(cfg.bot.shutdown_delay.0, Duration::ZERO);
        let cfg = crate::config::from_toml(
            "[bot]\nshutdown_delay = \"5s\"\n[leader]\nelection = \"kubernetes\"\n\
             lease_namespace = \"ops\"\nlease_duration = \"30s\"\nidentity = \"pod-1\"\n",
        )
        .unwrap();
        assert_eq!(cfg.bot.shutdown_delay.0, Duration::from_secs(5));
        assert_eq!(cfg.leader.election, LeaderElection::Kubernetes);
        assert_eq!(cfg.leader.lease_namespace.as_deref(), Some("ops"));
        assert_eq!(cfg.leader.identity.as_deref(), Some("pod-1"));
        for (toml, key) in [
            ("[leader]\nelection = \"zookeeper\"\n", "leader.election"),
            (
                "[leader]\nlease_duration = \"1s\"\n",
                "leader.lease_duration",
            ),
            (
                "[leader]\nlease_duration = \"1h\"\n",
                "leader.lease_duration",
            ),
            (
                "[leader]\nlease_name = \"Erlmcp Bot\"\n",
                "leader.lease_name",
            ),
            (
                "[leader]\nlease_namespace = \"-ops\"\n",
                "leader.lease_namespace",
            ),
            ("[leader]\nidentity = \" \"\n", "leader.identity"),
            ("[bot]\nshutdown_delay = \"10m\"\n", "bot.shutdown_delay"),
        ] {
            let problems = crate::config::from_toml(toml).unwrap_err();
            assert!(
                problems.iter().any(|p| p.path == key),
                "{toml}: {problems:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_single_process_leads_until_it_releases() {
        let metrics = Metrics::new();
        let leadership = Leadership::single("me", metrics.clone());
        assert!(leadership.is_leader());
        let (tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let gate = while_leader("test", leadership.watch(), move || {
            let _ = tx.send(());
            tokio::spawn(std::future::pending::<()>())
        });
        started.recv().await.unwrap();
        // Still running a while later: nothing took leadership away.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!gate.is_finished());
        assert!(
            metrics
                .encode()
                .contains("erlmcp_bot_leader{backend=\"single\"} 1")
        );
        leadership.release(Duration::from_secs(10)).await;
        gate.await.unwrap();
        assert!(
            metrics
                .encode()
                .contains("erlmcp_bot_leader{backend=\"single\"} 0")
        );
    }

    /// A candidate whose rounds answer what the test scripts.
    struct Scripted(watch::Receiver<bool>, Arc<std::sync::atomic::AtomicBool>);

    #[async_trait]
    impl Candidate for Scripted {
        async fn round(&mut self) -> Result<bool, String> {
            Ok(*self.0.borrow())
        }
        async fn resign(&mut self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        fn period(&self) -> Duration {
            Duration::from_millis(5)
        }
    }

    #[tokio::test]
    async fn the_gated_task_runs_only_while_leading_and_stops_before_resigning() {
        let (script, rx) = watch::channel(false);
        let resigned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let metrics = Metrics::new();
        let leadership = Leadership::campaign(
            Backend::Postgres,
            "me",
            Box::new(Scripted(rx, resigned.clone())),
            metrics.clone(),
        )
        .await;
        assert!(!leadership.is_leader());
        let (runs_tx, mut runs) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let gate = {
            let runs_tx = runs_tx.clone();
            while_leader("test", leadership.watch(), move || {
                let runs_tx = runs_tx.clone();
                tokio::spawn(async move {
                    let _ = runs_tx.send("started");
                    // Reports its own end when aborted.
                    struct Ended(tokio::sync::mpsc::UnboundedSender<&'static str>);
                    impl Drop for Ended {
                        fn drop(&mut self) {
                            let _ = self.0.send("stopped");
                        }
                    }
                    let _ended = Ended(runs_tx);
                    std::future::pending::<()>().await;
                })
            })
        };
        script.send_replace(true);
        assert_eq!(runs.recv().await, Some("started"));
        assert!(leadership.is_leader());
        assert!(
            metrics
                .encode()
                .contains("erlmcp_bot_leader{backend=\"postgres\"} 1")
        );
        script.send_replace(false);
        assert_eq!(runs.recv().await, Some("stopped"));
        script.send_replace(true);
        assert_eq!(runs.recv().await, Some("started"));
        let mut state = leadership.watch();
        leadership.release(Duration::from_secs(10)).await;
        assert_eq!(runs.recv().await, Some("stopped"));
        assert!(!*state.borrow_and_update());
        assert!(resigned.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            metrics
                .encode()
                .contains("erlmcp_bot_leader{backend=\"postgres\"} 0")
        );
        gate.await.unwrap();
    }
}
