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
use crate::incidents::{DueUpdate, PassStatuses, STATUS_UPDATE_JOB, UpdateOutcome};
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
    /// The status updates due in a pass, as one batch: see
    /// [`Incidents::post_status_updates`](crate::incidents::Incidents::post_status_updates).
    pub async fn on_status_updates(
        &self,
        owner: &str,
        due: &[DueUpdate],
        pass: &PassStatuses,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        self.incidents().post_status_updates(owner, due, pass).await
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

    /// Runs a claimed batch of status update jobs together (see
    /// [`Engine::on_status_updates`]); returns how many ran. When the batch fails, none
    /// did: each job is retried once its lease runs out.
    async fn run_status_updates(&self, jobs: &[&JobRow], pass: &PassStatuses) -> usize {
        if jobs.is_empty() {
            return 0;
        }
        let now = self.engine.now();
        let every = self.engine.config().bot.status_update_interval.as_chrono();
        let due: Vec<DueUpdate> = jobs
            .iter()
            .filter_map(|job| {
                let incident = update_of(job)?;
                let lag = (now - job.due_at).to_std().unwrap_or_default();
                self.engine.metrics().scheduler_lag(STATUS_UPDATE_JOB, lag);
                Some(DueUpdate {
                    job_id: job.id,
                    incident,
                    next_due: next_due(job.due_at, now, every),
                })
            })
            .collect();
        match self.engine.on_status_updates(&self.owner, &due, pass).await {
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
                warn!(jobs = due.len(), error = %e, "status updates failed; retried after their lease");
                0
            }
        }
    }

    /// One pass: claims due jobs batch by batch; a batch's status updates run as one (the
    /// bulk of any pass), its other jobs up to `RUN_AT_ONCE` at a time. Returns how many
    /// ran.
    pub async fn tick(&self) -> usize {
        // Environments' status as read in this pass, so no update says more than it.
        let pass = PassStatuses::default();
        let mut ran = 0;
        loop {
            let jobs = match self.claim().await {
                Ok(j) => j,
                Err(e) => {
                    warn!(error = %e, "could not claim scheduled jobs");
                    return ran;
                }
            };
            let full = jobs.len() as u32 >= self.batch;
            let (updates, others): (Vec<&JobRow>, Vec<&JobRow>) =
                jobs.iter().partition(|job| update_of(job).is_some());
            // One after another, each job's durable writes would cost a commit apiece; at
            // once, the store commits them together.
            let others = async {
                let runs: Vec<_> = others.iter().map(|job| self.run(job)).collect();
                let mut running = stream::iter(runs).buffer_unordered(RUN_AT_ONCE);
                let mut ran = 0;
                while let Some(done) = running.next().await {
                    ran += usize::from(done);
                }
                ran
            };
            let (updated, others) = tokio::join!(self.run_status_updates(&updates, &pass), others);
            ran += updated + others;
            if !full {
                return ran;
            }
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
