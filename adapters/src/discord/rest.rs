//! Discord's REST API through serenity's `Http` client, with the limits Discord sets.
//!
//! Against discord.com serenity's own rate limiter runs: it keeps the per-route buckets from
//! the `X-RateLimit-*` headers and, on a 429, waits what `Retry-After` says and sends again.
//! With another `api_url` (an HTTP proxy that rate-limits for several processes, or a fake
//! Discord in tests) serenity sends to it only with its limiter off, so there the calls are
//! retried here instead. Either way the global limit of 50 requests a second is kept here for
//! the routes that count against it, every try and every rate-limit wait is reported to the
//! process's metrics ([`crate::observe`]), and a call that finally fails is an error the
//! caller counts and logs, never dropped in silence.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serenity::all::{ApplicationId, Http, HttpBuilder};
use serenity::http::HttpError;
use tracing::warn;

use crate::chat::{ChatError, Platform};
use crate::observe;
use crate::retry::{Failure, RetryPolicy};

/// Where serenity sends requests when no proxy is set.
pub const DISCORD_API: &str = "https://discord.com/api/v10/";
const DISCORD_ORIGIN: &str = "https://discord.com";
/// The path every serenity route starts with after the origin.
const API_PATH: &str = "/api/v10";

/// Discord's global limit for a bot: 50 requests a second (interaction webhooks exempt).
pub const GLOBAL_PER_SECOND: u32 = 50;
/// What the bot allows itself of it in any one second: a burst of [`GLOBAL_BURST`], then an
/// even pace. A plain 50-a-second bucket would let a full burst and a second's refill
/// through within one second (nearly 100); the margin left absorbs clock differences.
pub const GLOBAL_BUDGET: u32 = 45;
pub const GLOBAL_BURST: u32 = 5;

const PLATFORM: Platform = Platform::Discord;

pub struct RestOptions {
    /// The API base, `https://discord.com/api/v10/` unless a proxy or a fake stands in.
    pub api_url: String,
    pub bot_token: String,
    pub application_id: u64,
    pub retry: RetryPolicy,
    /// A prepared reqwest client (tests resolve discord.com to a fake); `None` builds one.
    pub client: Option<reqwest::Client>,
}

/// `api_url` was not a Discord API base.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discord.api_url {0:?} must be an http(s) URL ending in /api/v10")]
pub struct BadApiUrl(pub String);

/// The proxy origin serenity is given for an `api_url`, `None` for Discord itself.
pub fn proxy_for(api_url: &str) -> Result<Option<String>, BadApiUrl> {
    let trimmed = api_url.trim().trim_end_matches('/');
    let origin = trimmed
        .strip_suffix(API_PATH)
        .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
        .ok_or_else(|| BadApiUrl(api_url.to_string()))?;
    Ok((origin != DISCORD_ORIGIN).then(|| origin.to_string()))
}

pub struct DiscordRest {
    http: Arc<Http>,
    /// What another client (the gateway's) is built from.
    params: HttpParams,
    /// Whether serenity's own limiter is off, so 429s come back to be retried here.
    proxied: bool,
    retry: RetryPolicy,
    global: DefaultDirectRateLimiter,
    rate_limited: AtomicU64,
}

#[derive(Clone)]
struct HttpParams {
    proxy: Option<String>,
    bot_token: String,
    application_id: u64,
    client: Option<reqwest::Client>,
}

impl HttpParams {
    fn build(&self) -> Http {
        let mut builder = HttpBuilder::new(&self.bot_token)
            .application_id(ApplicationId::new(self.application_id.max(1)));
        if let Some(client) = &self.client {
            builder = builder.client(client.clone());
        }
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(proxy).ratelimiter_disabled(true);
        }
        let mut http = builder.build();
        if let Some(limiter) = http.ratelimiter.as_mut() {
            // serenity waits out 429s and empty buckets itself, unseen by the retries here:
            // its waits are counted all the same.
            limiter.set_ratelimit_callback(Box::new(|info| {
                observe::rate_limit_wait(PLATFORM.as_str(), info.timeout);
            }));
        }
        http
    }
}

/// The global budget as a limiter: at most [`GLOBAL_BUDGET`] calls in any one second.
fn global_limiter() -> DefaultDirectRateLimiter {
    let paced = (GLOBAL_BUDGET - GLOBAL_BURST).max(1);
    let burst = NonZeroU32::new(GLOBAL_BURST).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(Duration::from_secs(1) / paced)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

impl DiscordRest {
    pub fn new(opts: RestOptions) -> Result<DiscordRest, BadApiUrl> {
        let params = HttpParams {
            proxy: proxy_for(&opts.api_url)?,
            bot_token: opts.bot_token,
            application_id: opts.application_id,
            client: opts.client,
        };
        let proxied = params.proxy.is_some();
        Ok(DiscordRest {
            http: Arc::new(params.build()),
            params,
            proxied,
            retry: opts.retry,
            global: global_limiter(),
            rate_limited: AtomicU64::new(0),
        })
    }

    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// Another client to the same API with the same token, for serenity's gateway client
    /// (which takes one of its own).
    pub fn new_http(&self) -> Http {
        self.params.build()
    }

    /// 429 answers retried here since start (serenity's limiter retries its own unseen).
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Runs one call. `counts_globally`: bot-token routes count against the global limit,
    /// interaction webhooks do not. `idempotent`: a 5xx or a dropped connection may be
    /// retried (a retried message POST could post twice; a 429 never reached the handler).
    pub async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        counts_globally: bool,
        idempotent: bool,
        f: F,
    ) -> Result<T, ChatError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = serenity::Result<T>>,
    {
        let classify = |e: &serenity::Error| classify(e, idempotent);
        self.retry
            .run_observed(
                PLATFORM.as_str(),
                || async {
                    if counts_globally && self.global.check().is_err() {
                        let started = Instant::now();
                        self.global.until_ready().await;
                        observe::rate_limit_wait(PLATFORM.as_str(), started.elapsed());
                    }
                    f().await
                },
                classify,
                |err, attempt, wait| {
                    if status(err) == Some(429) {
                        self.rate_limited.fetch_add(1, Ordering::Relaxed);
                    }
                    warn!(method, attempt, wait_ms = wait.as_millis() as u64, error = %describe(err), "discord call failed; retrying");
                },
            )
            .await
            .map_err(|gave_up| {
                let text = describe(&gave_up.error);
                if gave_up.retryable {
                    ChatError::Unavailable {
                        platform: PLATFORM.as_str(),
                        method,
                        error: format!("{text} after {} tries", gave_up.attempts),
                    }
                } else {
                    ChatError::Rejected {
                        platform: PLATFORM.as_str(),
                        method,
                        error: text,
                    }
                }
            })
    }

    pub fn is_proxied(&self) -> bool {
        self.proxied
    }
}

fn status(err: &serenity::Error) -> Option<u16> {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => Some(r.status_code.as_u16()),
        _ => None,
    }
}

fn classify(err: &serenity::Error, idempotent: bool) -> Failure {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => match r.status_code.as_u16() {
            // serenity drops the body's `retry_after` when it reads an error; the backoff
            // stands in for it (with its own limiter on, serenity has already waited it).
            429 => Failure::RateLimited(None),
            500..=599 if idempotent => Failure::Transient,
            _ => Failure::Permanent,
        },
        serenity::Error::Http(HttpError::Request(_)) if idempotent => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// An error as logged and returned: status and Discord's message, never the token.
fn describe(err: &serenity::Error) -> String {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            let mut text = format!("HTTP {} {}", r.status_code.as_u16(), r.error.message);
            if r.error.code != 0 {
                text.push_str(&format!(" (code {})", r.error.code));
            }
            text
        }
        serenity::Error::Http(HttpError::Request(e)) => {
            // reqwest's text carries the URL, whose path can hold an interaction token.
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "transport error"
            };
            format!("request failed: {what}")
        }
        serenity::Error::Http(HttpError::ApplicationIdMissing) => {
            "discord.application_id is not set".into()
        }
        other => other.to_string(),
    }
}

/// How long a retry waits at most: Discord's own hint is seconds, not minutes.
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        max_total: Duration::from_secs(120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_become_proxies_except_discord_itself() {
        assert_eq!(proxy_for(DISCORD_API), Ok(None));
        assert_eq!(proxy_for("https://discord.com/api/v10"), Ok(None));
        assert_eq!(
            proxy_for("http://127.0.0.1:9000/api/v10/"),
            Ok(Some("http://127.0.0.1:9000".into()))
        );
        assert_eq!(
            proxy_for("http://proxy.internal/api/v10"),
            Ok(Some("http://proxy.internal".into()))
        );
        for bad in [
            "https://discord.com/api/v9",
            "ftp://x/api/v10",
            "/api/v10",
            "",
        ] {
            assert!(proxy_for(bad).is_err(), "{bad}");
        }
    }
}
