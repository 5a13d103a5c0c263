//! What the adapters report about their outbound calls, for the daemon's metrics: every try
//! of a platform API call with its status, and every wait a rate limit imposed.
//!
//! One observer per process, installed by the daemon at start: calls are made deep inside
//! clients that are built before (and independently of) the metrics registry, and an
//! observer threaded through every constructor would be the same single value anyway.
//! Nothing is recorded until one is installed.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;

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

impl CallStatus {
    /// The status of an HTTP answer.
    pub fn of_http(status: http::StatusCode) -> CallStatus {
        if status.is_success() {
            CallStatus::Ok
        } else if status == http::StatusCode::TOO_MANY_REQUESTS {
            CallStatus::RateLimited
        } else if status.is_server_error() {
            CallStatus::ServerError
        } else {
            CallStatus::Rejected
        }
    }
}

/// A tower layer that reports every HTTP call of a client (the kube client's) to the
/// observer: its status, or `server_error` when no answer came.
#[derive(Debug, Clone, Copy)]
pub struct CountCalls {
    platform: &'static str,
}

impl CountCalls {
    pub fn new(platform: &'static str) -> CountCalls {
        CountCalls { platform }
    }
}

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            platform: self.platform,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    platform: &'static str,
}

impl<S, Req, B> tower::Service<Req> for Counted<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let answer = self.inner.call(req);
        let platform = self.platform;
        Box::pin(async move {
            let result = answer.await;
            let status = match &result {
                Ok(response) => CallStatus::of_http(response.status()),
                Err(_) => CallStatus::ServerError,
            };
            api_call(platform, status);
            result
        })
    }
}
