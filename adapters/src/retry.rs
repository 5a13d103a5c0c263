//! One retry policy for the HTTP APIs the bot calls (Slack, PagerDuty): a 429 waits what
//! `Retry-After` says, a 5xx or a dropped connection backs off exponentially, anything else
//! fails at once, and the waits of one call never add up to more than `max_total`. Only
//! calls that are safe to repeat go through it.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

use crate::observe::{self, CallStatus};

/// What one failed try means for the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server asked us to slow down; `Some` is its `Retry-After`.
    RateLimited(Option<Duration>),
    /// A 5xx, a timeout or a dropped connection: worth another try after the backoff.
    Transient,
    /// Repeating the same request cannot help.
    Permanent,
}

/// How failed calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub base: Duration,
    /// Longest backoff between two tries.
    pub max: Duration,
    /// Longest `Retry-After` honoured for one wait.
    pub max_retry_after: Duration,
    /// Longest time spent waiting between the tries of one call; a wait that would pass it
    /// ends the call instead.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(250),
            max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(120),
            max_total: Duration::from_secs(300),
        }
    }
}

/// The last error of a call that did not succeed, and how many tries it took.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
    /// False when the last error was `Failure::Permanent`.
    pub retryable: bool,
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.base)
            .with_factor(2.0)
            .with_max_delay(self.max)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
    }

    /// The backoff waits in order, one per retry, before any `Retry-After` is applied.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        self.backoff().build()
    }

    /// Runs `op` until it succeeds, fails permanently, runs out of tries or of waiting time.
    /// `on_retry` sees each failure that is retried, its try number and the wait before the
    /// next.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut op: F,
        classify: impl Fn(&E) -> Failure,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, GaveUp<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // Shared by the closures below; atomics because the call's future must stay `Send`.
        let attempts = AtomicU32::new(0);
        let waited = Mutex::new(Duration::ZERO);
        let permanent = AtomicBool::new(false);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            op()
        })
        .retry(self.backoff())
        .when(|e| {
            let give_up = classify(e) == Failure::Permanent;
            permanent.store(give_up, Ordering::Relaxed);
            !give_up
        })
        .adjust(|e, next| {
            let wait = match (classify(e), next?) {
                (Failure::RateLimited(Some(after)), _) => after.min(self.max_retry_after),
                (_, backoff) => backoff,
            };
            let mut waited = waited.lock().unwrap_or_else(|p| p.into_inner());
            let total = *waited + wait;
            (total <= self.max_total).then(|| {
                *waited = total;
                wait
            })
        })
        .notify(|e, wait| on_retry(e, attempts.load(Ordering::Relaxed), wait))
        .await;
        result.map_err(|error| GaveUp {
            error,
            attempts: attempts.load(Ordering::Relaxed),
            retryable: !permanent.load(Ordering::Relaxed),
        })
    }
}

impl RetryPolicy {
    /// [`RetryPolicy::run`] for a call to `platform`, reporting each try's status and each
    /// wait a rate limit imposed to the process's observer ([`crate::observe`]).
    pub async fn run_observed<T, E, F, Fut>(
        &self,
        platform: &'static str,
        mut op: F,
        classify: impl Fn(&E) -> Failure,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, GaveUp<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let classify = &classify;
        self.run(
            || {
                let tried = op();
                async move {
                    let result = tried.await;
                    let status = match &result {
                        Ok(_) => CallStatus::Ok,
                        Err(e) => CallStatus::of_failure(classify(e)),
                    };
                    observe::api_call(platform, status);
                    result
                }
            },
            classify,
            |e, attempt, wait| {
                if let Failure::RateLimited(_) = classify(e) {
                    observe::rate_limit_wait(platform, wait);
                }
                on_retry(e, attempt, wait)
            },
        )
        .await
    }
}

/// `Retry-After` in seconds, the only form Slack and PagerDuty send.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base: Duration::ZERO,
            max: Duration::ZERO,
            max_retry_after: Duration::from_millis(5),
            max_total: Duration::from_millis(8),
        }
    }

    async fn tries(
        policy: &RetryPolicy,
        failures: &[Failure],
    ) -> (Result<u32, GaveUp<Failure>>, u32) {
        let calls = Cell::new(0u32);
        let result = policy
            .run(
                || {
                    let n = calls.get();
                    calls.set(n + 1);
                    let outcome = failures.get(n as usize).copied();
                    async move { outcome.map_or(Ok(n + 1), Err) }
                },
                |f| *f,
                |_, _, _| {},
            )
            .await;
        (result, calls.get())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let delays: Vec<u64> = p.delays().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000]);
        let long = RetryPolicy { attempts: 30, ..p };
        assert_eq!(long.delays().last(), Some(Duration::from_secs(8)));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let (result, calls) = tries(&policy(), &[Failure::Transient, Failure::Transient]).await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let (result, calls) = tries(&policy(), &[Failure::Permanent]).await;
        let gave_up = result.unwrap_err();
        assert_eq!((gave_up.attempts, gave_up.retryable), (1, false));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn tries_are_counted_and_bounded() {
        let (result, calls) = tries(&policy(), &[Failure::Transient; 10]).await;
        let gave_up = result.unwrap_err();
        assert_eq!((gave_up.attempts, gave_up.retryable), (4, true));
        assert_eq!(calls, 4);
    }

    #[tokio::test]
    async fn retry_after_is_honoured_within_the_total_budget() {
        let wait = |ms| Failure::RateLimited(Some(Duration::from_millis(ms)));
        // 5 ms then 3 ms fit in 8 ms; a third wait would not.
        let (result, calls) = tries(&policy(), &[wait(5), wait(3), wait(1), wait(1)]).await;
        assert_eq!(result.unwrap_err().attempts, 3);
        assert_eq!(calls, 3);
        // A Retry-After longer than the cap waits the cap.
        let (result, _) = tries(&policy(), &[wait(60_000)]).await;
        assert_eq!(result.unwrap(), 2);
    }
}
