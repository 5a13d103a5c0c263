//! Requests whose process died while carrying them out. Every process records itself as
//! the owner of what it executes and keeps a heartbeat in the store; any process that finds
//! an executing request whose owner's heartbeat is older than the lease claims it with a
//! compare-and-set, so exactly one of them marks it `interrupted`, audits and announces it.
//! Nothing is run again by itself: the announcement says what to run next.

use std::hash::{BuildHasher, Hasher};

use erlmcp_adapters::target::EnvStatus;

use super::*;
use crate::store::StoreResult;

static OWNER_SEQ: AtomicU64 = AtomicU64::new(0);

/// An owner id unique to this process and engine: host (the pod name where there is one),
/// pid, and a random part so a restarted pod reusing a pid is not mistaken for its
/// predecessor.
pub(super) fn process_owner() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "erlmcp-bot".into());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(OWNER_SEQ.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("{host}-{}-{:08x}", std::process::id(), h.finish() as u32)
}

/// Forwards progress lines and hands the newest to a task that stores it at most once per
/// `PROGRESS_EVERY`, starting `PROGRESS_GRACE` in, so reporting never waits for the
/// database.
pub(super) struct RecordingProgress<'a> {
    inner: &'a dyn Progress,
    latest: tokio::sync::watch::Sender<Option<String>>,
}

const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long an operation runs before its progress is stored on its own.
const PROGRESS_GRACE: Duration = Duration::from_millis(250);

/// How long an ownerless executing request is left alone (see `reconcile_interrupted`).
const OWNERLESS_GRACE: chrono::Duration = chrono::Duration::hours(1);

impl Progress for RecordingProgress<'_> {
    fn report(&self, line: String) {
        self.latest.send_replace(Some(line.clone()));
        self.inner.report(line);
    }
}

/// The heartbeat and reconciliation loops of a process.
pub struct Ownership(Vec<tokio::task::JoinHandle<()>>);

impl Ownership {
    /// Stops both loops: the process no longer vouches for what it runs.
    pub fn abort(&self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

pub(super) struct ProgressWriter {
    latest: tokio::sync::watch::Receiver<Option<String>>,
    /// Dropped (or sent) to stop the writer.
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ProgressWriter {
    /// Stops the writer and returns the newest line, for the caller to store with the
    /// outcome.
    pub(super) fn stop(self) -> Option<String> {
        let _ = self.stop.send(());
        self.latest.borrow().clone()
    }
}

impl Engine {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn owner_lease(&self) -> Duration {
        self.cfg.bot.owner_lease.0
    }

    /// Starts recording the progress of an executing request.
    pub(super) fn record_progress<'a>(
        &self,
        id: RequestId,
        inner: &'a dyn Progress,
    ) -> (RecordingProgress<'a>, ProgressWriter) {
        let (tx, rx) = tokio::sync::watch::channel(None::<String>);
        let store = self.store.clone();
        let mut seen = rx.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        // Stopping ends the waits, never a write under way: a query cancelled halfway costs
        // PostgreSQL its connection. A write that lands after the outcome changes nothing
        // (progress is only kept while executing).
        tokio::spawn(async move {
            // An operation over within the grace stores its last line with its outcome and
            // costs no write of its own.
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(PROGRESS_GRACE) => {}
            }
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    changed = seen.changed() => if changed.is_err() { return },
                }
                let line = seen.borrow_and_update().clone();
                if let Some(line) = line
                    && let Err(e) = store.set_request_progress(id, &line).await
                {
                    warn!(request = %id, error = %e, "could not store the progress line");
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(PROGRESS_EVERY) => {}
                }
            }
        });
        (
            RecordingProgress { inner, latest: tx },
            ProgressWriter { latest: rx, stop },
        )
    }

    /// Writes this process's heartbeat.
    pub async fn heartbeat(&self) -> StoreResult<()> {
        self.store
            .heartbeat(&self.owner, self.started_at, self.now())
            .await
    }

    /// Writes the first heartbeat and reconciles what dead processes left, then keeps doing
    /// both every third of the lease in the background. The heartbeat has a loop of its own:
    /// a slow reconciliation (a workload status that takes its time) must not make this
    /// process look dead.
    pub async fn start_ownership(self: &Arc<Engine>) -> Ownership {
        if let Err(e) = self.heartbeat().await {
            warn!(owner = %self.owner, error = %e, "could not write the heartbeat");
        }
        self.reconcile_pass().await;
        let every = (self.owner_lease() / 3).max(Duration::from_millis(100));
        let every_tick = move |me: Arc<Engine>, reconcile: bool| async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if reconcile {
                    me.reconcile_pass().await;
                } else if let Err(e) = me.heartbeat().await {
                    warn!(owner = %me.owner, error = %e, "could not write the heartbeat");
                }
            }
        };
        Ownership(vec![
            tokio::spawn(every_tick(self.clone(), false)),
            tokio::spawn(every_tick(self.clone(), true)),
        ])
    }

    async fn reconcile_pass(&self) {
        match self.reconcile_interrupted().await {
            Ok(0) => {}
            Ok(n) => info!(reconciled = n, "interrupted requests reconciled"),
            Err(e) => warn!(error = %e, "could not look for interrupted requests"),
        }
    }

    /// One reconciliation pass: every executing request whose owner is dead is marked
    /// interrupted, audited and announced by exactly one caller. Returns how many this call
    /// reconciled.
    pub async fn reconcile_interrupted(&self) -> StoreResult<usize> {
        let now = self.now();
        let lease = chrono::Duration::from_std(self.owner_lease())
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        let stale_before = now - lease;
        // A request without an owner was started by a version that did not record one: it
        // may still run on such a replica during a rolling upgrade, so it gets the longest
        // a rollout may take before it counts as orphaned.
        let ownerless_before = now - lease.max(OWNERLESS_GRACE);
        let orphans = self.store.orphaned_requests(stale_before).await?;
        let mut n = 0;
        for row in orphans {
            // Our own requests are running here, whatever our heartbeat row says.
            if row.owner.as_deref() == Some(self.owner.as_str()) {
                continue;
            }
            let dead = row.owner.clone().unwrap_or_else(|| "unknown".into());
            let outcome = replies::interrupted_outcome(&dead);
            let cutoff = if row.owner.is_some() {
                stale_before
            } else {
                ownerless_before
            };
            if !self
                .store
                .interrupt_request(row.id, row.owner.as_deref(), cutoff, &outcome, now)
                .await?
            {
                continue;
            }
            n += 1;
            self.reconcile_one(row, &dead, &outcome).await;
        }
        Ok(n)
    }

    async fn reconcile_one(&self, row: RequestRow, dead: &str, outcome: &str) {
        let id = row.id;
        warn!(request = %id, owner = %dead, command = %row.command_text, "request interrupted: its process died");
        let cmd: Option<Command> = serde_json::from_str(&row.command_json).ok();
        let env = row
            .environment
            .as_deref()
            .and_then(|e| self.cfg.environment(e));
        let target = env.and_then(|e| self.target_for(e).ok());
        let live = match (env, target) {
            (Some(env), Some(t)) => Some(t.status(env).await),
            _ => None,
        };
        let live_text = match &live {
            Some(Ok(st)) => Some(live_state(cmd.as_ref(), st)),
            Some(Err(e)) => Some(replies::live_state_unreadable(e)),
            None => None,
        };
        let progress = row
            .last_progress
            .clone()
            .unwrap_or_else(|| "none seen".into());
        let mut entry = self.entry(
            &system_who(),
            &row.channel,
            AuditAction::Interrupted,
            &row.operation,
        );
        entry.arguments = row.command_json.clone();
        entry.environment = row.environment.clone();
        entry.request_id = Some(id);
        entry.decision = if row.break_glass {
            AuditDecision::BreakGlass
        } else {
            AuditDecision::Allow
        }
        .into();
        entry.reason = format!(
            "{} was running on {dead}; last progress: {progress}{}",
            row.command_text,
            live_text
                .as_ref()
                .map(|t| format!("; live state: {t}"))
                .unwrap_or_default()
        );
        entry.votes = self.votes_json(id).await;
        entry.outcome = outcome.to_string();
        if let Err(e) = self.audit(entry).await {
            // Unaudited, it must not look settled: hand it back so a later pass retries.
            error!(request = %id, error = %e, "interrupted request not audited; retried on the next pass");
            let _ = self
                .store
                .transition_request(
                    id,
                    RequestState::Interrupted,
                    RequestState::Executing,
                    None,
                    self.now(),
                )
                .await;
            return;
        }
        let env_name = row.environment.clone().unwrap_or_default();
        self.metrics
            .operations
            .get_or_create(&OperationLabels {
                operation: row.operation.clone(),
                environment: env_name.clone(),
                outcome: RequestState::Interrupted.as_str().into(),
            })
            .inc();
        let text = replies::request_interrupted(
            id,
            &row.command_text,
            &env_name,
            &progress,
            live_text.as_deref(),
        );
        self.post_to(&row.channel, &Reply::failed(text)).await;
        self.announce(id).await;
        let detail = replies::last_progress(&progress);
        self.incidents
            .note_operation(&row, OperationNote::Interrupted { detail: &detail })
            .await;
        if let (Some(Ok(_)), Some(cmd)) = (&live, cmd) {
            self.follow_interrupted(row, cmd);
        }
    }

    /// Follows, in the background, a rollout the dead process left going; once it is done,
    /// an interrupted deploy gets its post-deploy guard back.
    fn follow_interrupted(&self, row: RequestRow, cmd: Command) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let handle = tokio::spawn(async move {
            let Some(env) = row
                .environment
                .as_deref()
                .and_then(|e| me.cfg.environment(e))
            else {
                return;
            };
            let Ok(target) = me.target_for(env) else {
                return;
            };
            let (kind, wanted) = match &cmd {
                Command::Deploy { version, .. } => (Some("deploy"), Some(version.to_string())),
                Command::Rollback { version, .. } => {
                    (Some("rollback"), version.as_ref().map(|v| v.to_string()))
                }
                _ => (None, None),
            };
            let followed = target
                .follow_rollout(env, &erlmcp_adapters::target::NoProgress)
                .await;
            let running = || async { target.status(env).await.ok().and_then(|s| s.version) };
            // The version the change left running, once it is known to have landed.
            let landed = match &followed {
                Ok(Some(line)) => {
                    info!(request = %row.id, env = %env.name, %line, "rollout left by an interrupted request finished");
                    let text = replies::interrupted_rollout_finished(&env.name, row.id, line);
                    me.post_to(&row.channel, &Reply::ok(text)).await;
                    running().await
                }
                // Nothing was rolling out: the change counts as landed if the workload runs
                // the version it asked for.
                Ok(None) => match &wanted {
                    Some(v) => running().await.filter(|r| r == v),
                    None => None,
                },
                Err(TargetError::Unsupported(..)) => None,
                Err(e) => {
                    warn!(request = %row.id, env = %env.name, error = %e, "rollout left by an interrupted request did not finish");
                    let text = replies::interrupted_rollout_failed(&env.name, row.id, &e);
                    me.post_to(&row.channel, &Reply::failed(text)).await;
                    None
                }
            };
            let (Some(kind), Some(version)) = (kind, landed) else {
                return;
            };
            // The change is on the workload: soak and history must know it, whatever became
            // of the process that made it.
            if let Err(e) = me
                .store
                .record_deployment(DeploymentRecord {
                    environment: env.name.clone(),
                    version,
                    kind: kind.into(),
                    succeeded: true,
                    request_id: Some(row.id),
                    at: me.now(),
                })
                .await
            {
                error!(error = %e, request = %row.id, "could not record the deployment");
            }
            if kind == "deploy" {
                me.start_guard(&row);
            }
        });
        self.track(handle);
    }

    /// `cancel` on an interrupted request: acknowledges it, so `requests` stops listing it.
    /// The requester, anyone who may vote on it, or anyone who may run that operation.
    pub(super) async fn acknowledge(&self, inv: &Invocation, row: &RequestRow) -> Reply {
        let id = row.id;
        if row.acknowledged_at.is_some() {
            return Reply::refused(replies::interrupted_already_acknowledged(id));
        }
        let actor = &inv.actor;
        let requester = self.person_of(&row.requester);
        let stored = StoredRequirement::read(&row.approvals_json);
        let may_run = serde_json::from_str::<Command>(&row.command_json)
            .ok()
            .and_then(|cmd| match policy::access(&cmd) {
                Access::Rule(op) => self.policy.rule_for(actor, op.kind, op.env.as_ref()),
                _ => None,
            })
            .is_some();
        let allowed = actor.person == requester
            || policy::may_vote(&stored.requirement(), &requester, actor).is_ok()
            || may_run;
        if !allowed {
            return Reply::refused(replies::who_may_acknowledge(
                id,
                &who_label(&row.requester),
                &row.operation,
            ));
        }
        let mut entry = self.entry(
            &who(actor),
            &inv.channel,
            AuditAction::Acknowledged,
            &row.operation,
        );
        entry.request_id = Some(id);
        entry.environment = row.environment.clone();
        entry.arguments = row.command_json.clone();
        entry.outcome = "acknowledged".into();
        if let Err(e) = self.audit(entry).await {
            return self.store_refusal(StoreStep::Audit, &e);
        }
        match self.store.acknowledge_request(id, self.now()).await {
            Ok(true) => Reply::ok(replies::interrupted_acknowledged(id)),
            Ok(false) => Reply::refused(replies::acknowledged_by_someone_else(id)),
            Err(e) => self.store_refusal(StoreStep::RequestState, &e),
        }
    }

    /// Lines for `requests`: interrupted requests nobody has acknowledged.
    pub(super) async fn interrupted_lines(&self, env: Option<&str>) -> StoreResult<Vec<String>> {
        let rows = self.store.unacknowledged_interrupted().await?;
        Ok(rows
            .iter()
            .filter(|r| env.is_none() || r.environment.as_deref() == env)
            .map(|r| {
                replies::interrupted_line(
                    r.id,
                    &r.command_text,
                    &who_label(&r.requester),
                    r.updated_at,
                    r.last_progress.as_deref(),
                )
            })
            .collect())
    }
}

fn system_who() -> Who {
    Who {
        platform: "system".into(),
        user_id: "erlmcp-bot".into(),
        display_name: "erlmcp-bot".into(),
    }
}

/// What the workload shows now, in the words the status carries.
fn live_state(cmd: Option<&Command>, st: &EnvStatus) -> String {
    let version = match cmd {
        Some(Command::Deploy { version, .. }) => Some(version.to_string()),
        Some(Command::Rollback {
            version: Some(v), ..
        }) => Some(v.to_string()),
        _ => None,
    };
    replies::live_state(version.as_deref(), st)
}
