//! Scheduled work kept in the store: incident status updates, request expiry, audit
//! checkpoints and the daily health report.
//!
//! A job is claimed with a lease before it runs, so with several replicas on one database
//! each due job runs once, and a job whose holder died is taken over when its lease runs
//! out. Running a job only emits a [`TimerEvent`] into the engine; the loop that calls
//! [`Scheduler::tick`] is the only thing that knows about wall-clock time, so tests drive
//! the scheduler with the engine's injected clock.

use std::sync::Arc;

use chrono::Duration;
use erlmcp_commands::{IncidentId, Timestamp};
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::engine::Engine;
use crate::incidents::{
    DueUpdate, PassStatuses, PreparedUpdates, STATUS_UPDATE_JOB, UpdateOutcome,
};
use crate::store::{JobRow, StoreError, StoreResult};

/// How often every replica looks for due jobs: an update is at most this late, plus the
/// time its pass takes.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Jobs claimed in one statement.
const CLAIM_BATCH: u32 = 500;
/// Jobs run at once within a pass: bounds the chat posts and database writes in flight.
const RUN_AT_ONCE: usize = 64;

pub const EXPIRE_REQUESTS_JOB: &str = "expire_requests";
/// A signed checkpoint of the audit log every `audit.checkpoint_every`.
pub const AUDIT_CHECKPOINT_JOB: &str = "audit_checkpoint";
/// Looks for GitHub runs waiting on an environment gate, for a repository without a
/// webhook.
pub const GITHUB_GATES_JOB: &str = "github_gates";
const GITHUB_POLL_DEFAULT_SECONDS: i64 = 30;
/// The daily health report, when `report.channel` is set.
pub const DAILY_REPORT_JOB: &str = "daily_report";

/// Something due, handed to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerEvent {
    IncidentStatusUpdate(IncidentId),
    ExpireRequests,
    AuditCheckpoint,
    GithubGates,
    DailyReport,
}

impl TimerEvent {
    /// The job's kind, as metrics label it.
    pub fn job(self) -> &'static str {
        match self {
            TimerEvent::IncidentStatusUpdate(_) => STATUS_UPDATE_JOB,
            TimerEvent::ExpireRequests => EXPIRE_REQUESTS_JOB,
            TimerEvent::AuditCheckpoint => AUDIT_CHECKPOINT_JOB,
            TimerEvent::GithubGates => GITHUB_GATES_JOB,
            TimerEvent::DailyReport => DAILY_REPORT_JOB,
        }
    }
}

/// Whether a recurring job goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    Again,
    Stop,
}

impl Engine {
    pub async fn on_timer(&self, event: TimerEvent) -> Result<Recurrence, StoreError> {
        match event {
            TimerEvent::IncidentStatusUpdate(id) => {
                Ok(if self.incidents().post_status_update(id).await? {
                    Recurrence::Again
                } else {
                    Recurrence::Stop
                })
            }
            TimerEvent::ExpireRequests => {
                let n = self.expire_due().await?;
                if n > 0 {
                    info!(expired = n, "requests expired");
                }
                Ok(Recurrence::Again)
            }
            TimerEvent::AuditCheckpoint => {
                // Not a store error: the file may be the sink that failed. Logged as what it
                // is; the next slot tries again.
                if let Err(e) = self
                    .write_checkpoint(crate::checkpoint::CheckpointKind::Periodic)
                    .await
                {
                    warn!(error = %e, "periodic audit checkpoint not written");
                }
                Ok(Recurrence::Again)
            }
            TimerEvent::GithubGates => {
                let n = self.poll_github_gates().await?;
                if n > 0 {
                    info!(opened = n, "environment gates found by polling");
                }
                Ok(Recurrence::Again)
            }
            TimerEvent::DailyReport => {
                self.post_daily_report().await?;
                Ok(Recurrence::Again)
            }
        }
    }
}

impl Engine {
    /// A batch of status updates due in a pass, read and composed: see
    /// [`Incidents::prepare_status_updates`](crate::incidents::Incidents::prepare_status_updates).
    pub async fn prepare_status_updates(
        &self,
        due: &[DueUpdate],
        pass: &PassStatuses,
    ) -> Result<PreparedUpdates, StoreError> {
        self.incidents().prepare_status_updates(due, pass).await
    }

    /// The batch stored and posted: see
    /// [`Incidents::finish_status_updates`](crate::incidents::Incidents::finish_status_updates).
    pub async fn finish_status_updates(
        &self,
        owner: &str,
        prepared: PreparedUpdates,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        self.incidents()
            .finish_status_updates(owner, prepared)
            .await
    }
}

/// The incident a status update job is for; `None` for any other job (or one whose payload
/// names no incident, which `Scheduler::run` drops).
fn update_of(job: &JobRow) -> Option<IncidentId> {
    if job.kind != STATUS_UPDATE_JOB {
        return None;
    }
    job.payload.parse().ok().map(IncidentId)
}

/// The next due time of a recurring job: on its cadence, except after downtime, when the
/// one catch-up run now restarts the cadence instead of replaying every missed slot.
pub fn next_due(due_at: Timestamp, now: Timestamp, every: Duration) -> Timestamp {
    let next = due_at + every;
    if next <= now { now + every } else { next }
}

/// One claimed batch of due jobs, its status updates already read and composed.
struct Claimed {
    /// The claim took a whole batch: more may be due.
    full: bool,
    /// `None` when the batch holds no status update.
    updates: Option<Result<PreparedUpdates, StoreError>>,
    others: Vec<JobRow>,
}

pub struct Scheduler {
    engine: Arc<Engine>,
    owner: String,
    lease: Duration,
    batch: u32,
    expiry_every: Duration,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, owner: impl Into<String>) -> Scheduler {
        Scheduler {
            engine,
            owner: owner.into(),
            // Far longer than one status update takes (a status call per environment and a
            // post per platform), so a live holder never loses a job to another replica.
            lease: Duration::minutes(2),
            batch: CLAIM_BATCH,
            expiry_every: Duration::seconds(30),
        }
    }

    /// A lease owner unique to this process: the pod name where there is one.
    pub fn process_owner() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "erlmcp-bot".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{host}-{}-{nanos:08x}", std::process::id())
    }

    pub fn with_lease(mut self, lease: Duration) -> Scheduler {
        self.lease = lease;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Creates the recurring jobs every replica relies on.
    pub async fn install(&self) -> StoreResult<()> {
        self.engine
            .store()
            .upsert_job(
                EXPIRE_REQUESTS_JOB,
                EXPIRE_REQUESTS_JOB,
                "",
                self.engine.now(),
            )
            .await?;
        if self.engine.config().report.channel.is_some()
            && let Some(due) = self.engine.config().report.next_after(self.engine.now())
        {
            // Every replica computes the same next time, so a restart cannot add a post.
            self.engine
                .store()
                .upsert_job(DAILY_REPORT_JOB, DAILY_REPORT_JOB, "", due)
                .await?;
        }
        if self.engine.checkpointing() {
            self.engine
                .store()
                .upsert_job(
                    AUDIT_CHECKPOINT_JOB,
                    AUDIT_CHECKPOINT_JOB,
                    "",
                    self.engine.now(),
                )
                .await?;
        }
        if self.engine.polls_github_gates() {
            self.engine
                .store()
                .upsert_job(GITHUB_GATES_JOB, GITHUB_GATES_JOB, "", self.engine.now())
                .await?;
        }
        Ok(())
    }

    /// Leases up to one batch of due jobs to this process.
    pub async fn claim(&self) -> StoreResult<Vec<JobRow>> {
        let now = self.engine.now();
        self.engine
            .store()
            .claim_due_jobs(&self.owner, now, now + self.lease, self.batch)
            .await
    }

    /// Runs one claimed job and releases it with its next due time; false when it did not
    /// run to completion (it is retried once its lease runs out).
    pub async fn run(&self, job: &JobRow) -> bool {
        let event = match job.kind.as_str() {
            STATUS_UPDATE_JOB => match job.payload.parse() {
                Ok(n) => Some(TimerEvent::IncidentStatusUpdate(IncidentId(n))),
                Err(_) => None,
            },
            EXPIRE_REQUESTS_JOB => Some(TimerEvent::ExpireRequests),
            AUDIT_CHECKPOINT_JOB => Some(TimerEvent::AuditCheckpoint),
            GITHUB_GATES_JOB => Some(TimerEvent::GithubGates),
            DAILY_REPORT_JOB => Some(TimerEvent::DailyReport),
            _ => None,
        };
        let Some(event) = event else {
            warn!(job = %job.key, kind = %job.kind, "unknown scheduled job dropped");
            let _ = self
                .engine
                .store()
                .complete_job(job.id, &self.owner, None)
                .await;
            return false;
        };
        let lag = (self.engine.now() - job.due_at)
            .to_std()
            .unwrap_or_default();
        self.engine.metrics().scheduler_lag(event.job(), lag);
        let every = match event {
            TimerEvent::IncidentStatusUpdate(_) => {
                self.engine.config().bot.status_update_interval.as_chrono()
            }
            TimerEvent::ExpireRequests => self.expiry_every,
            TimerEvent::AuditCheckpoint => self.engine.config().audit.checkpoint_every.as_chrono(),
            TimerEvent::GithubGates => self
                .engine
                .config()
                .github
                .poll_interval
                .map(|d| d.as_chrono())
                .unwrap_or_else(|| Duration::seconds(GITHUB_POLL_DEFAULT_SECONDS)),
            TimerEvent::DailyReport => Duration::days(1),
        };
        let recurrence = match self.engine.on_timer(event).await {
            Ok(r) => r,
            Err(e) => {
                warn!(job = %job.key, error = %e, "scheduled job failed; retried after its lease");
                return false;
            }
        };
        let next = match recurrence {
            Recurrence::Again => Some(next_due(job.due_at, self.engine.now(), every)),
            Recurrence::Stop => None,
        };
        match self
            .engine
            .store()
            .complete_job(job.id, &self.owner, next)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                warn!(job = %job.key, "lease lost while running; another replica took the job over");
                true
            }
            Err(e) => {
                warn!(job = %job.key, error = %e, "could not release a finished job");
                true
            }
        }
    }

    /// Claims a batch and prepares its status updates as one (see
    /// [`Engine::prepare_status_updates`]). Only a failed claim is an error: a batch whose
    /// updates could not be prepared carries that failure to [`Scheduler::run_claimed`].
    async fn claim_and_prepare(&self, pass: &PassStatuses) -> StoreResult<Claimed> {
        let jobs = self.claim().await?;
        let full = jobs.len() as u32 >= self.batch;
        let now = self.engine.now();
        let every = self.engine.config().bot.status_update_interval.as_chrono();
        let mut due = Vec::new();
        let mut others = Vec::new();
        for job in jobs {
            match update_of(&job) {
                Some(incident) => {
                    let lag = (now - job.due_at).to_std().unwrap_or_default();
                    self.engine.metrics().scheduler_lag(STATUS_UPDATE_JOB, lag);
                    due.push(DueUpdate {
                        job_id: job.id,
                        incident,
                        next_due: next_due(job.due_at, now, every),
                    });
                }
                None => others.push(job),
            }
        }
        let updates = if due.is_empty() {
            None
        } else {
            Some(self.engine.prepare_status_updates(&due, pass).await)
        };
        Ok(Claimed {
            full,
            updates,
            others,
        })
    }

    /// Stores and posts a claimed batch's status updates while its other jobs run up to
    /// `RUN_AT_ONCE` at a time; returns how many ran. When the updates fail, none of them
    /// did: each is retried once its lease runs out.
    async fn run_claimed(&self, claimed: Claimed) -> usize {
        let updates = async {
            let prepared = match claimed.updates {
                None => return 0,
                Some(Ok(prepared)) => prepared,
                Some(Err(e)) => {
                    warn!(error = %e, "status updates failed; retried after their lease");
                    return 0;
                }
            };
            let jobs = prepared.len();
            match self
                .engine
                .finish_status_updates(&self.owner, prepared)
                .await
            {
                Ok(outcomes) => {
                    let lost = outcomes
                        .iter()
                        .filter(|o| **o == UpdateOutcome::LeaseLost)
                        .count();
                    if lost > 0 {
                        warn!(
                            jobs = lost,
                            "lease lost before the status updates were written; another replica took them over"
                        );
                    }
                    outcomes.len()
                }
                Err(e) => {
                    warn!(jobs, error = %e, "status updates failed; retried after their lease");
                    0
                }
            }
        };
        // One after another, each job's durable writes would cost a commit apiece; at once,
        // the store commits them together.
        let others = async {
            let runs: Vec<_> = claimed.others.iter().map(|job| self.run(job)).collect();
            let mut running = stream::iter(runs).buffer_unordered(RUN_AT_ONCE);
            let mut ran = 0;
            while let Some(done) = running.next().await {
                ran += usize::from(done);
            }
            ran
        };
        let (updated, others) = tokio::join!(updates, others);
        updated + others
    }

    /// One pass: claims due jobs batch by batch; a batch's status updates are stored and
    /// posted as one (the bulk of any pass), its other jobs run up to `RUN_AT_ONCE` at a
    /// time. Returns how many ran.
    pub async fn tick(&self) -> usize {
        // Environments' status as read in this pass, so no update says more than it.
        let pass = PassStatuses::default();
        let mut ran = 0;
        let mut next = self.claim_and_prepare(&pass).await;
        loop {
            let claimed = match next {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "could not claim scheduled jobs");
                    return ran;
                }
            };
            if !claimed.full {
                return ran + self.run_claimed(claimed).await;
            }
            // The next batch is claimed and read while this one commits and posts: the
            // database and the bot each work while the other does. The batches cannot
            // overlap, as this one's jobs stay leased until its commit.
            let (done, following) =
                tokio::join!(self.run_claimed(claimed), self.claim_and_prepare(&pass));
            ran += done;
            next = following;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn next_due_keeps_the_cadence_and_catches_up_once() {
        let t = |h, m| Utc.with_ymd_and_hms(2026, 11, 2, h, m, 0).unwrap();
        let every = Duration::minutes(15);
        assert_eq!(next_due(t(9, 15), t(9, 15), every), t(9, 30));
        assert_eq!(next_due(t(9, 15), t(9, 16), every), t(9, 30));
        // Down from 09:10 to 09:50: one update now, the next at 10:05, not at 09:30 and 09:45.
        assert_eq!(next_due(t(9, 15), t(9, 50), every), t(10, 5));
        assert_eq!(next_due(t(9, 15), t(9, 30), every), t(9, 45));
    }
}
