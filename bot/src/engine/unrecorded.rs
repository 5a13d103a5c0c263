//! Outcomes the store did not take. The target has done its work, but the one write that
//! records it (the request's outcome with its audit row) failed or went unanswered: the
//! request is left `executing` under this process, and no reconciliation touches a request
//! whose owner is alive. So the outcome is kept and written again, with growing pauses,
//! until the store takes it; a write that did land after all is found and not repeated.

use crate::sandbox::FinalState;

use super::*;

/// The first pause before writing again, doubled after each failure up to `RETRY_AT_MOST`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_AT_MOST: Duration = Duration::from_secs(10);

/// An outcome waiting to be written.
pub(super) struct Unrecorded {
    pub(super) finish: FinishRequest,
    pub(super) entry: NewAuditEntry,
    /// The sandbox environment's lock (its new state is in `finish`): the environment stays
    /// locked until that state is durable, so no later operation's state is overwritten by
    /// this one's.
    pub(super) final_state: Option<FinalState>,
    /// Whether the request has a card to bring up to date once the outcome is in.
    pub(super) announce: bool,
}

/// What a look at the stored request says to do with a kept outcome.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Still executing (or marked interrupted by another process meanwhile): write it.
    Write,
    /// The first write landed after all (nothing else moves a request off `executing`
    /// to another state).
    Settled,
    /// The request is gone; there is nothing to attach the outcome to.
    Gone,
}

fn next_for(state: Option<RequestState>) -> Next {
    match state {
        None => Next::Gone,
        Some(RequestState::Executing | RequestState::Interrupted) => Next::Write,
        Some(_) => Next::Settled,
    }
}

/// How many outcomes are kept, and a way to have their writers try again at once.
#[derive(Default)]
pub(super) struct Kept {
    count: Arc<tokio::sync::watch::Sender<usize>>,
    now: Arc<tokio::sync::Notify>,
}

impl Engine {
    /// Keeps `unrecorded` and writes it in the background until the store takes it. Not
    /// background work that [`Engine::wait_idle`] waits for: the console waits for that
    /// after each line, and an outage must not hold the next command up.
    pub(super) fn keep_unrecorded(&self, unrecorded: Unrecorded) {
        let counted = Counted::new(self.metrics.clone(), self.unrecorded.count.clone());
        let engine = self.me.clone();
        let now = self.unrecorded.now.clone();
        tokio::spawn(async move {
            record_late(engine, now, unrecorded).await;
            drop(counted);
        });
    }

    /// Before the process ends: has every kept outcome tried again at once, then waits up to
    /// `limit` for the database to take them. Returns how many it has not taken; their
    /// requests will be reconciled as interrupted, as if this process had died.
    pub async fn wait_unrecorded(&self, limit: Duration) -> usize {
        let mut count = self.unrecorded.count.subscribe();
        if *count.borrow() == 0 {
            return 0;
        }
        self.unrecorded.now.notify_waiters();
        let _ = tokio::time::timeout(limit, count.wait_for(|n| *n == 0)).await;
        *count.borrow()
    }

    async fn write_late(&self, kept: &Unrecorded) -> Result<(), StoreError> {
        let now = self.now();
        let finish = kept.finish.clone();
        let mut entry = kept.entry.clone();
        entry.at = now;
        entry.reason = replies::outcome_recorded_late(&entry.reason, kept.finish.at);
        let written = self.store.finish_request_audited(finish, entry).await;
        self.audited(written).map(|_| ())
    }
}

/// One kept outcome in `unrecorded_outcomes`, for as long as its writer runs (a task that
/// is dropped with the runtime counts down too).
struct Counted(Arc<Metrics>, Arc<tokio::sync::watch::Sender<usize>>);

impl Counted {
    fn new(metrics: Arc<Metrics>, count: Arc<tokio::sync::watch::Sender<usize>>) -> Counted {
        metrics.unrecorded_outcomes.inc();
        count.send_modify(|n| *n += 1);
        Counted(metrics, count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.unrecorded_outcomes.dec();
        self.1.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Writes `kept` until the store takes it, or until the engine is gone (the process is
/// stopping: the request is then reconciled as interrupted, as if it had died).
async fn record_late(engine: Weak<Engine>, now: Arc<tokio::sync::Notify>, mut kept: Unrecorded) {
    let id = kept.finish.id;
    let mut pause = RETRY_FIRST;
    let mut attempts: u32 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = now.notified() => {}
        }
        pause = (pause * 2).min(RETRY_AT_MOST);
        attempts += 1;
        let Some(me) = engine.upgrade() else {
            warn!(request = %id, outcome = %kept.finish.outcome, "stopping with an outcome the database never took");
            return;
        };
        let error = match me.store.get_request(id).await {
            Err(e) => e,
            Ok(row) => match next_for(row.map(|r| r.state)) {
                Next::Settled => {
                    info!(request = %id, "the outcome whose write was not confirmed is in the store after all");
                    return;
                }
                Next::Gone => {
                    warn!(request = %id, outcome = %kept.finish.outcome, "the request is gone; its outcome cannot be recorded");
                    return;
                }
                Next::Write => match me.write_late(&kept).await {
                    Ok(()) => {
                        info!(request = %id, attempts, "the outcome is recorded, late");
                        drop(kept.final_state.take());
                        me.request_checkpoint();
                        if kept.announce {
                            me.announce(id).await;
                        }
                        return;
                    }
                    Err(e) => e,
                },
            },
        };
        // The first few failures are logged, then every sixth: an outage of hours stays
        // visible without a line every ten seconds.
        if attempts <= 3 || attempts.is_multiple_of(6) {
            warn!(request = %id, attempts, error = %error, "the outcome still cannot be recorded; trying again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_still_open_gets_the_outcome_written() {
        assert_eq!(next_for(None), Next::Gone);
        for state in [RequestState::Executing, RequestState::Interrupted] {
            assert_eq!(next_for(Some(state)), Next::Write, "{state:?}");
        }
        for state in [
            RequestState::Succeeded,
            RequestState::Failed,
            RequestState::Pending,
            RequestState::Denied,
            RequestState::Expired,
            RequestState::Cancelled,
        ] {
            assert_eq!(next_for(Some(state)), Next::Settled, "{state:?}");
        }
    }
}
