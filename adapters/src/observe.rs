//! What the adapters report about their outbound calls, for the daemon's metrics: every try
//! of a platform API call with its status, and every wait a rate limit imposed.
//!
//! One observer per process, installed by the daemon at start: calls are made deep inside
//! clients that are built before (and independently of) the metrics registry, and an
//! observer threaded through every constructor would be the same single value anyway.
//! Nothing is recorded until one is installed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::retry::Failure;

/// How one try of an outbound call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    Ok,
    /// 429, or the platform's own "slow down".
    RateLimited,
    /// A 5xx, a timeout or a dropped connection.
    ServerError,
    /// Refused for good (4xx, an API error): repeating it cannot help.
    Rejected,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::RateLimited => "rate_limited",
            CallStatus::ServerError => "server_error",
            CallStatus::Rejected => "rejected",
        }
    }

    /// The status of a failed try, as the retry policy classified it.
    pub fn of_failure(failure: Failure) -> CallStatus {
        match failure {
            Failure::RateLimited(_) => CallStatus::RateLimited,
            Failure::Transient => CallStatus::ServerError,
            Failure::Permanent => CallStatus::Rejected,
        }
    }
}

pub trait Observer: Send + Sync {
    fn api_call(&self, platform: &str, status: CallStatus);
    fn rate_limit_wait(&self, platform: &str, waited: Duration);
}

static OBSERVER: OnceLock<Arc<dyn Observer>> = OnceLock::new();

/// Installs the process's observer; false when one was installed already (it stays).
pub fn install(observer: Arc<dyn Observer>) -> bool {
    OBSERVER.set(observer).is_ok()
}

pub fn api_call(platform: &str, status: CallStatus) {
    if let Some(o) = OBSERVER.get() {
        o.api_call(platform, status);
    }
}

pub fn rate_limit_wait(platform: &str, waited: Duration) {
    if let Some(o) = OBSERVER.get() {
        o.rate_limit_wait(platform, waited);
    }
}
