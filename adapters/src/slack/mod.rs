//! Slack, all of it: the Web API with slack-morphism (messages, Block Kit approval cards,
//! threads, in-place updates, ephemeral answers through `response_url`, incident channels,
//! user groups for roles), the renderer ([`blocks`]), and the inbound half ([`inbound`]:
//! signed HTTP requests and Socket Mode, handed to the bot as neutral inbound messages).
//!
//! Every call goes through one retry policy: a 429 waits what `Retry-After` says, a 5xx or a
//! broken connection backs off exponentially, a bounded number of times; `ok:false` answers
//! are final. chat.postMessage is also held to one message per second per channel, Slack's
//! documented limit for that method, so bursts queue here instead of being refused there.

pub mod blocks;
pub mod config;
pub mod inbound;
pub mod names;
pub mod signature;
mod socket;

pub use inbound::{InboundOptions, Mode, SlackInbound};
pub use signature::{MAX_SKEW_SECS, SignatureError, sign, verify_signature};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_commands::Timestamp;
use erlmcp_commands::render::Reply;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use slack_morphism::errors::{
    SlackClientError, SlackClientHttpError, SlackClientHttpProtocolError, SlackRateLimitError,
};
use slack_morphism::prelude::*;
use tracing::{debug, warn};

pub use crate::chat::GroupLookup;
use crate::chat::{ChatError, ChatPlatform, MessageRef, Platform};
use crate::retry::{Failure, retry_after};

const PLATFORM: Platform = Platform::Slack;

/// Reads the bot's clock (a manual one in tests).
pub type Now = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub use crate::retry::RetryPolicy;

pub struct SlackOptions {
    /// Base of the Web API, e.g. `https://slack.com/api/`.
    pub api_url: String,
    pub bot_token: String,
    /// App-level token (`xapp-…`) for Socket Mode; empty in HTTP mode.
    pub app_token: String,
    /// User group ids (`S…`) that the configuration binds to roles.
    pub groups: Vec<String>,
    /// How long a user group's membership is trusted before it is read again.
    pub group_refresh: Duration,
    /// How long the last known members are still used while they cannot be read again.
    pub group_max_age: Duration,
    /// The bot's clock, for the age of cached group members.
    pub now: Now,
    pub retry: RetryPolicy,
}

pub struct SlackPlatform {
    /// Itself, for group reads that run in tasks of their own.
    me: Weak<SlackPlatform>,
    client: SlackClient<SlackClientHyperHttpsConnector>,
    bot_token: SlackApiToken,
    app_token: Option<SlackApiToken>,
    retry: RetryPolicy,
    post_limiter: DefaultKeyedRateLimiter<String>,
    groups: GroupCache,
    /// For `response_url` posts.
    http: reqwest::Client,
}

/// A Slack channel id from `C123` or `slack:C123`.
pub fn channel_id(channel: &str) -> &str {
    channel.strip_prefix("slack:").unwrap_or(channel)
}

fn ts(id: &str) -> SlackTs {
    SlackTs::new(id.to_string())
}

fn chan(id: &str) -> SlackChannelId {
    SlackChannelId::new(channel_id(id).to_string())
}

/// Slack's `ok:false` codes that mean "try again later" rather than "no".
fn transient_api_error(code: &str) -> bool {
    matches!(
        code,
        "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
    )
}

fn classify(err: &SlackClientError) -> Failure {
    match err {
        // Slack always sends Retry-After with a 429; a second is its documented minimum.
        SlackClientError::RateLimitError(r) => {
            Failure::RateLimited(Some(r.retry_after.unwrap_or(Duration::from_secs(1))))
        }
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => Failure::Transient,
        SlackClientError::ApiError(a) if transient_api_error(&a.code) => Failure::Transient,
        SlackClientError::HttpProtocolError(_) | SlackClientError::EndOfStream(_) => {
            Failure::Transient
        }
        _ => Failure::Permanent,
    }
}

fn describe(err: &SlackClientError) -> String {
    match err {
        SlackClientError::RateLimitError(r) => {
            format!("rate limited (retry after {:?})", r.retry_after)
        }
        SlackClientError::HttpError(h) => format!("HTTP {}", h.status_code),
        SlackClientError::ApiError(a) => a.code.clone(),
        other => other.to_string(),
    }
}

impl SlackPlatform {
    pub fn new(opts: SlackOptions) -> anyhow::Result<Arc<SlackPlatform>> {
        // https_or_http: the API base comes from configuration, and a fake Slack in tests or
        // a local relay speaks plain http; slack-morphism's default connector refuses it.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| anyhow::anyhow!("no TLS root certificates for Slack: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let api_url = opts.api_url.trim_end_matches('/').to_string();
        let connector = SlackClientHyperConnector::from(https).with_slack_api_url(&api_url);
        let one = NonZeroU32::MIN;
        let app_token = (!opts.app_token.is_empty())
            .then(|| SlackApiToken::new(SlackApiTokenValue::new(opts.app_token.clone())));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("could not build the HTTP client for Slack: {e}"))?;
        Ok(Arc::new_cyclic(|me| SlackPlatform {
            me: me.clone(),
            client: SlackClient::new(connector),
            bot_token: SlackApiToken::new(SlackApiTokenValue::new(opts.bot_token)),
            app_token,
            retry: opts.retry,
            post_limiter: RateLimiter::keyed(Quota::per_second(one)),
            http,
            groups: GroupCache {
                ids: opts.groups,
                refresh: chrono::Duration::from_std(opts.group_refresh)
                    .unwrap_or(chrono::Duration::MAX),
                max_age: chrono::Duration::from_std(opts.group_max_age)
                    .unwrap_or(chrono::Duration::MAX),
                now: opts.now,
                state: std::sync::Mutex::new(HashMap::new()),
                read_done: tokio::sync::Notify::new(),
            },
        }))
    }

    /// Runs one Web API call under the retry policy.
    async fn call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, ChatError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        self.retry
            .run_observed(PLATFORM.as_str(), f, classify, |err, attempt, wait| {
                warn!(method, attempt, wait_ms = wait.as_millis() as u64, error = %describe(err), "slack call failed; retrying");
            })
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

    async fn post_content(
        &self,
        channel: &str,
        content: SlackMessageContent,
        thread: Option<&str>,
    ) -> Result<MessageRef, ChatError> {
        let channel = channel_id(channel).to_string();
        let paced = std::time::Instant::now();
        self.post_limiter.until_key_ready(&channel).await;
        // Slack's one message per second per channel, kept by the bot itself.
        let waited = paced.elapsed();
        if waited >= Duration::from_millis(1) {
            crate::observe::rate_limit_wait(PLATFORM.as_str(), waited);
        }
        let req = SlackApiChatPostMessageRequest::new(chan(&channel), content)
            .opt_thread_ts(thread.map(ts));
        let resp = self
            .call("chat.postMessage", || async {
                self.client
                    .open_session(&self.bot_token)
                    .chat_post_message(&req)
                    .await
            })
            .await?;
        Ok(MessageRef {
            platform: PLATFORM,
            channel: resp.channel.0,
            id: resp.ts.0,
        })
    }

    /// Answers through an interaction's or a slash command's `response_url`. Slack shows
    /// such answers to the requester only unless told otherwise, which is what refusals and
    /// parse errors need; `replace_original: false` keeps a clicked approval message intact.
    ///
    /// Sent with a plain HTTP client rather than slack-morphism's webhook call: Slack answers
    /// a response URL with a bare `ok` (not JSON), and any 2xx means it was delivered.
    pub async fn respond(&self, response_url: &str, reply: &Reply) -> Result<(), ChatError> {
        let url = url::Url::parse(response_url).map_err(|e| ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method: "response_url",
            error: format!("not a URL: {e}"),
        })?;
        let req = SlackApiPostWebhookMessageRequest::new(blocks::content(reply))
            .with_replace_original(false);
        self.call("response_url", || async {
            let resp = self
                .http
                .post(url.clone())
                .json(&req)
                .send()
                .await
                // The URL is a credential for this conversation: keep it out of errors.
                .map_err(|e| {
                    SlackClientError::HttpProtocolError(
                        SlackClientHttpProtocolError::new().with_cause(Box::new(e.without_url())),
                    )
                })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(resp.headers());
                return Err(SlackClientError::RateLimitError(
                    SlackRateLimitError::new().opt_retry_after(retry_after),
                ));
            }
            Err(SlackClientError::HttpError(SlackClientHttpError::new(
                status,
            )))
        })
        .await
    }

    /// A message only `user` sees, where there is no `response_url` (app mentions).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        reply: &Reply,
    ) -> Result<(), ChatError> {
        let req = SlackApiChatPostEphemeralRequest::new(
            chan(channel),
            SlackUserId::new(user.to_string()),
            blocks::content(reply),
        );
        self.call("chat.postEphemeral", || async {
            self.client
                .open_session(&self.bot_token)
                .chat_post_ephemeral(&req)
                .await
        })
        .await?;
        Ok(())
    }

    /// A fresh Socket Mode WebSocket URL (apps.connections.open with the app-level token).
    pub async fn open_socket_url(&self) -> Result<String, ChatError> {
        let token = self.app_token.as_ref().ok_or(ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method: "apps.connections.open",
            error: "no app-level token configured (slack.app_token)".into(),
        })?;
        let resp = self
            .call("apps.connections.open", || async {
                self.client
                    .open_session(token)
                    .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
                    .await
            })
            .await?;
        Ok(resp.url.0.to_string())
    }
}

/// After a failed read of a group, the next one waits this long (a Tier 2 method must not
/// be hammered by every command while Slack is down).
const FAILED_READ_PAUSE: chrono::Duration = chrono::Duration::seconds(30);

#[derive(Default)]
struct GroupState {
    /// When the members were read, and who they were.
    members: Option<(Timestamp, HashSet<String>)>,
    /// A read is in flight: others join it instead of starting their own.
    refreshing: bool,
    failed_at: Option<Timestamp>,
}

/// Members of each configured user group. The lock is only held to look at or store a
/// snapshot, never across a call to Slack: reads run in tasks of their own, one per group
/// at a time, and a command waits for them only as long as it chooses.
struct GroupCache {
    ids: Vec<String>,
    refresh: chrono::Duration,
    max_age: chrono::Duration,
    now: Now,
    state: std::sync::Mutex<HashMap<String, GroupState>>,
    /// Woken whenever a read ends.
    read_done: tokio::sync::Notify,
}

/// What the cache holds for one user, and which reads to start.
struct GroupView {
    lookup: GroupLookup,
    /// A read that could complete the answer is in flight.
    pending: bool,
    start: Vec<String>,
}

impl GroupCache {
    /// `cold`: also start reads for groups with nothing usable cached (a lookup that will
    /// wait for them); otherwise only stale snapshots are refreshed.
    fn view(&self, user: &str, cold: bool) -> GroupView {
        let now = (self.now)();
        let mut view = GroupView {
            lookup: GroupLookup {
                groups: Vec::new(),
                complete: true,
            },
            pending: false,
            start: Vec::new(),
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.ids {
            let st = state.entry(id.clone()).or_default();
            let age = st.members.as_ref().map(|(at, _)| now - *at);
            let usable = age.is_some_and(|a| a < self.max_age);
            match &st.members {
                Some((_, members)) if usable => {
                    if members.contains(user) {
                        view.lookup.groups.push(format!("slack-group:{id}"));
                    }
                }
                _ => view.lookup.complete = false,
            }
            let due = age.is_none_or(|a| a >= self.refresh);
            let paused = st.failed_at.is_some_and(|f| now - f < FAILED_READ_PAUSE);
            if due && !st.refreshing && !paused && (usable || cold) {
                st.refreshing = true;
                view.start.push(id.clone());
            }
            if !usable && st.refreshing {
                view.pending = true;
            }
        }
        view
    }

    fn store(&self, id: &str, read: Result<HashSet<String>, ChatError>) {
        let now = (self.now)();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = state.entry(id.to_string()).or_default();
        st.refreshing = false;
        match read {
            Ok(members) => {
                debug!(group = id, members = members.len(), "slack user group read");
                st.members = Some((now, members));
                st.failed_at = None;
            }
            Err(e) => {
                warn!(group = id, error = %e, "could not read a Slack user group; its last known members are used until they are too old");
                st.failed_at = Some(now);
            }
        }
    }
}

impl SlackPlatform {
    /// The configured user groups `user` is in, from what is cached, without waiting.
    /// Stale snapshots (older than the refresh period, younger than the maximum age) are
    /// served and refreshed in the background.
    fn cached_groups(&self, user: &str) -> GroupLookup {
        let view = self.groups.view(user, false);
        self.start_reads(view.start);
        view.lookup
    }

    /// The configured user groups `user` is in, waiting at most `within` for groups with
    /// nothing usable cached. What is still unknown then is reported as incomplete.
    async fn lookup_groups(&self, user: &str, within: Duration) -> GroupLookup {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let done = self.groups.read_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            let view = self.groups.view(user, true);
            self.start_reads(view.start);
            if view.lookup.complete || !view.pending {
                return view.lookup;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return self.groups.view(user, false).lookup;
            }
        }
    }

    fn start_reads(&self, ids: Vec<String>) {
        let Some(this) = self.me.upgrade() else {
            return;
        };
        for id in ids {
            let this = this.clone();
            tokio::spawn(async move {
                let read = this.read_group(&id).await;
                this.groups.store(&id, read);
                this.groups.read_done.notify_waiters();
            });
        }
    }

    async fn read_group(&self, group: &str) -> Result<HashSet<String>, ChatError> {
        let req = SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId::new(group.to_string()));
        let resp = self
            .call("usergroups.users.list", || async {
                self.client
                    .open_session(&self.bot_token)
                    .usergroups_users_list(&req)
                    .await
            })
            .await?;
        Ok(resp.users.into_iter().map(|u| u.0).collect())
    }
}

#[async_trait]
impl ChatPlatform for SlackPlatform {
    fn platform(&self) -> Platform {
        PLATFORM
    }

    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError> {
        self.post_content(channel, blocks::content(message), None)
            .await
    }

    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError> {
        let req = SlackApiChatUpdateRequest::new(
            chan(&message.channel),
            blocks::content(content),
            ts(&message.id),
        );
        self.call("chat.update", || async {
            self.client
                .open_session(&self.bot_token)
                .chat_update(&req)
                .await
        })
        .await?;
        Ok(())
    }

    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError> {
        self.post_content(&parent.channel, blocks::content(message), Some(&parent.id))
            .await
    }

    async fn post_private(
        &self,
        channel: &str,
        user: &str,
        message: &Reply,
    ) -> Result<(), ChatError> {
        self.post_ephemeral(channel, user, message).await
    }

    async fn groups_of(&self, user: &str, within: Duration) -> GroupLookup {
        self.lookup_groups(user, within).await
    }

    fn cached_groups_of(&self, user: &str) -> GroupLookup {
        self.cached_groups(user)
    }

    async fn create_channel(&self, name: &str) -> Result<String, ChatError> {
        let base = names::channel_name(name);
        for n in 1..=20u32 {
            let candidate = if n == 1 {
                base.clone()
            } else {
                names::with_suffix(&base, n)
            };
            let req = SlackApiConversationsCreateRequest::new(candidate.clone());
            match self
                .call("conversations.create", || async {
                    self.client
                        .open_session(&self.bot_token)
                        .conversations_create(&req)
                        .await
                })
                .await
            {
                Ok(resp) => return Ok(resp.channel.id.0),
                Err(ChatError::Rejected { error, .. }) if error == "name_taken" => {
                    debug!(name = %candidate, "channel name taken; trying the next suffix");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ChatError::Rejected {
            platform: PLATFORM.as_str(),
            method: "conversations.create",
            error: format!("name_taken for {base} and its first 19 suffixes"),
        })
    }

    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let req = SlackApiConversationsInviteRequest::new(
            chan(channel),
            user_ids
                .iter()
                .map(|u| SlackUserId::new(u.clone()))
                .collect(),
        );
        match self
            .call("conversations.invite", || async {
                self.client
                    .open_session(&self.bot_token)
                    .conversations_invite(&req)
                    .await
            })
            .await
        {
            Ok(_) => Ok(()),
            // Inviting someone already there is the state we wanted.
            Err(ChatError::Rejected { error, .. }) if error == "already_in_channel" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError> {
        let topic = blocks::strip_control_sequences(topic);
        let req = SlackApiConversationsSetTopicRequest::new(chan(channel), topic);
        self.call("conversations.setTopic", || async {
            self.client
                .open_session(&self.bot_token)
                .conversations_set_topic(&req)
                .await
        })
        .await?;
        Ok(())
    }
}
