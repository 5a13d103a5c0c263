//! The local chat: a chat platform that lives in the bot's own memory, shown as a web page
//! (`web`) and in a terminal (`erlmcp-bot console`). It has channels, messages with ids that
//! are updated in place, threads and private replies, like the hosted platforms, so the
//! whole flow can be seen on a laptop with no account anywhere.
//!
//! Everything that happens is an event with a sequence number: a page that reconnects asks
//! for what followed the last number it saw, and one that fell too far behind gets the
//! current state instead.

pub mod config;
pub mod html;
pub mod web;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use erlmcp_commands::message::Block;
use erlmcp_commands::render::{Reply, ReplyKind};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::chat::{
    Ack, Asked, ChatError, ChatPlatform, Inbound, InboundHandler, InboundUser, MessageRef,
    Platform, Responder, Unavailable,
};

/// The channels every local chat starts with.
pub const DEPLOYMENTS: &str = "deployments";
pub const INCIDENTS: &str = "incidents";

/// Messages kept in memory; older ones leave the page as a hosted chat's history would.
const MAX_MESSAGES: usize = 2_000;
/// Events kept for catch-up; a page further behind than this gets a snapshot.
const MAX_EVENTS: usize = 4_096;

/// The name the bot speaks under.
pub const BOT_NAME: &str = "erlmcp-bot";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    /// Also its name: `deployments`, `inc-3-api-down`.
    pub id: String,
    pub topic: String,
    /// Opened by the bot for an incident.
    pub incident: bool,
    /// People invited into it (incident channels).
    pub members: Vec<String>,
}

/// How a message reads: neutral for answers, and the outcome for command replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// What a person typed.
    Person,
    Ok,
    Accepted,
    Refused,
    Failed,
    Usage,
}

impl Tone {
    fn of(kind: ReplyKind) -> Tone {
        match kind {
            ReplyKind::Ok => Tone::Ok,
            ReplyKind::Accepted => Tone::Accepted,
            ReplyKind::Refused => Tone::Refused,
            ReplyKind::Failed => Tone::Failed,
            ReplyKind::Usage => Tone::Usage,
        }
    }
}

/// A rollout's progress, drawn as a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressView {
    pub done: u32,
    pub total: u32,
}

/// One message as the page and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: u64,
    pub channel: String,
    /// The message this one answers in a thread.
    pub thread: Option<u64>,
    /// `erlmcp-bot` or the person who typed it.
    pub from: String,
    /// Set for a private reply: only this person sees it.
    pub only_for: Option<String>,
    pub tone: Tone,
    /// Rendered by [`html`], everything escaped.
    pub html: String,
    /// The same content as plain text.
    pub text: String,
    /// An approval card still open for votes: the request its buttons act on.
    pub request: Option<String>,
    pub progress: Option<ProgressView>,
    /// `HH:MM:SS`, UTC.
    pub at: String,
    /// How many times it was changed after it was posted.
    pub edits: u32,
}

/// Something that happened in the local chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LocalEvent {
    /// A channel was opened or changed (topic, members).
    Channel { channel: ChannelView },
    /// A message was posted, or changed in place (same id, more edits).
    Message { message: MessageView },
    /// Everything there is now: a page that missed too much starts over from this.
    Snapshot {
        channels: Vec<ChannelView>,
        messages: Vec<MessageView>,
    },
}

/// An event with its place in the sequence.
#[derive(Debug, Clone)]
pub struct Sequenced {
    pub seq: u64,
    pub event: LocalEvent,
}

/// What a page or the console needs to follow the chat from some point on.
pub struct Follow {
    /// Events to show first (catch-up, or one snapshot).
    pub backlog: Vec<Sequenced>,
    /// What comes after; events with a number already in the backlog are not repeated.
    pub live: broadcast::Receiver<Sequenced>,
}

struct State {
    seq: u64,
    next_message: u64,
    channels: Vec<ChannelView>,
    messages: BTreeMap<u64, MessageView>,
    log: VecDeque<Sequenced>,
}

/// The local chat platform.
pub struct LocalChat {
    state: Mutex<State>,
    events: broadcast::Sender<Sequenced>,
    /// Whether messages carry their HTML: only the page shows it, the console prints text.
    html: bool,
}

/// Answers a person in the local chat privately, in the channel they spoke in.
struct LocalResponder {
    chat: Arc<LocalChat>,
    channel: String,
    person: String,
}

#[async_trait]
impl Responder for LocalResponder {
    async fn private(&self, reply: &Reply) -> Result<(), ChatError> {
        self.chat
            .post_private(&self.channel, &self.person, reply)
            .await
    }
}

/// Hands what `person` said in `channel` to the bot, as every platform hands its inbound
/// messages: a command is shown in the channel as typed, a vote comes from the card it
/// was clicked on (`thread`). Returns once the bot has taken it; the answer arrives as
/// messages.
pub async fn hand_over(
    chat: &Arc<LocalChat>,
    handler: &dyn InboundHandler,
    person: &str,
    channel: &str,
    asked: Asked,
    thread: Option<u64>,
) -> Result<(), Unavailable> {
    if let Asked::Command(text) = &asked {
        chat.post_from_person(person, channel, text);
    }
    let inbound = Inbound {
        platform: Platform::Local,
        user: InboundUser {
            id: person.to_string(),
            name: person.to_string(),
        },
        // The local chat has no groups: nothing to look up.
        groups: Some(Vec::new()),
        channel: channel.to_string(),
        asked,
        thread: thread.map(|id| MessageRef {
            platform: Platform::Local,
            channel: channel.to_string(),
            id: id.to_string(),
        }),
        delivery: None,
        // Progress shows up live here: no "working on it" first. Parse errors come back
        // through the responder like any private answer.
        ack_carries_text: false,
        responder: Arc::new(LocalResponder {
            chat: chat.clone(),
            channel: channel.to_string(),
            person: person.to_string(),
        }),
    };
    if let Ack::Private(reply) = handler.receive(inbound).await? {
        // Nothing is lost when the chat refuses: it only refuses unknown message ids.
        let _ = chat.post_private(channel, person, &reply).await;
    }
    Ok(())
}

fn now_hms() -> String {
    chrono::Utc::now().format("%H:%M:%S").to_string()
}

/// `INC-3 API down!` → `inc-3-api-down`: lowercase letters, digits and dashes.
pub fn channel_name(hint: &str) -> String {
    let mut out = String::new();
    for c in hint.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(60).collect();
    if out.is_empty() {
        out.push_str("channel");
    }
    out.trim_end_matches('-').to_string()
}

impl Default for LocalChat {
    fn default() -> Self {
        LocalChat::new()
    }
}

impl LocalChat {
    pub fn new() -> LocalChat {
        LocalChat::with_html(true)
    }

    /// A chat for the console alone: messages carry their text, not the page's HTML.
    pub fn text_only() -> LocalChat {
        LocalChat::with_html(false)
    }

    fn with_html(html: bool) -> LocalChat {
        let (events, _) = broadcast::channel(1024);
        let channel = |id: &str, topic: &str| ChannelView {
            id: id.into(),
            topic: topic.into(),
            incident: false,
            members: Vec::new(),
        };
        LocalChat {
            state: Mutex::new(State {
                seq: 0,
                next_message: 1,
                channels: vec![
                    channel(DEPLOYMENTS, "Deploys, rollbacks and their approvals"),
                    channel(INCIDENTS, "Incidents are declared and announced here"),
                ],
                messages: BTreeMap::new(),
                log: VecDeque::new(),
            }),
            events,
            html,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and tells every follower, under the state's lock so that a
    /// follower joining at the same time sees it exactly once.
    fn publish(&self, st: &mut State, event: LocalEvent) {
        st.seq += 1;
        let ev = Sequenced { seq: st.seq, event };
        st.log.push_back(ev.clone());
        while st.log.len() > MAX_EVENTS {
            st.log.pop_front();
        }
        let _ = self.events.send(ev);
    }

    /// Follows the chat after event `after` (the page's `Last-Event-ID`), or from a snapshot
    /// of the current state when `after` is unknown or too old to be caught up.
    pub fn follow(&self, after: Option<u64>) -> Follow {
        let st = self.lock();
        let live = self.events.subscribe();
        let oldest = st.log.front().map(|e| e.seq).unwrap_or(st.seq + 1);
        let backlog = match after {
            // Nothing missed since `after`, or everything missed is still in the log.
            Some(a) if a <= st.seq && a + 1 >= oldest => {
                st.log.iter().filter(|e| e.seq > a).cloned().collect()
            }
            _ => vec![Sequenced {
                seq: st.seq,
                event: LocalEvent::Snapshot {
                    channels: st.channels.clone(),
                    messages: st.messages.values().cloned().collect(),
                },
            }],
        };
        Follow { backlog, live }
    }

    pub fn channels(&self) -> Vec<ChannelView> {
        self.lock().channels.clone()
    }

    pub fn messages(&self) -> Vec<MessageView> {
        self.lock().messages.values().cloned().collect()
    }

    pub fn message(&self, id: u64) -> Option<MessageView> {
        self.lock().messages.get(&id).cloned()
    }

    pub fn has_channel(&self, id: &str) -> bool {
        self.lock().channels.iter().any(|c| c.id == id)
    }

    fn ensure_channel(&self, st: &mut State, id: &str) {
        if !st.channels.iter().any(|c| c.id == id) {
            let channel = ChannelView {
                id: id.to_string(),
                topic: String::new(),
                incident: false,
                members: Vec::new(),
            };
            st.channels.push(channel.clone());
            self.publish(st, LocalEvent::Channel { channel });
        }
    }

    fn add(&self, mut message: MessageView) -> MessageView {
        let mut st = self.lock();
        self.ensure_channel(&mut st, &message.channel.clone());
        message.id = st.next_message;
        st.next_message += 1;
        st.messages.insert(message.id, message.clone());
        while st.messages.len() > MAX_MESSAGES {
            st.messages.pop_first();
        }
        self.publish(
            &mut st,
            LocalEvent::Message {
                message: message.clone(),
            },
        );
        message
    }

    /// What a person typed, shown in the channel as they said it.
    pub fn post_from_person(&self, person: &str, channel: &str, text: &str) -> MessageView {
        self.add(MessageView {
            id: 0,
            channel: channel.to_string(),
            thread: None,
            from: person.to_string(),
            only_for: None,
            tone: Tone::Person,
            html: if self.html {
                html::escape(text)
            } else {
                String::new()
            },
            text: text.to_string(),
            request: None,
            progress: None,
            at: now_hms(),
            edits: 0,
        })
    }

    fn bot_message(&self, channel: &str, thread: Option<u64>, reply: &Reply) -> MessageView {
        let progress = reply.message.blocks.iter().find_map(|b| match b {
            Block::Progress { done, total, .. } if *total > 0 => Some(ProgressView {
                done: (*done).min(*total),
                total: *total,
            }),
            _ => None,
        });
        MessageView {
            id: 0,
            channel: channel.to_string(),
            thread,
            from: BOT_NAME.to_string(),
            only_for: None,
            tone: Tone::of(reply.kind),
            html: if self.html {
                html::message(&reply.message)
            } else {
                String::new()
            },
            text: reply.text(),
            request: reply
                .approval()
                .filter(|c| c.is_open())
                .map(|c| c.id.to_string()),
            progress,
            at: now_hms(),
            edits: 0,
        }
    }

    /// Sets the progress bar on a message (the header of a rollout's thread).
    pub fn set_progress(&self, id: u64, progress: ProgressView) {
        let mut st = self.lock();
        let Some(m) = st.messages.get_mut(&id) else {
            return;
        };
        if m.progress == Some(progress) {
            return;
        }
        m.progress = Some(progress);
        let message = m.clone();
        self.publish(&mut st, LocalEvent::Message { message });
    }

    fn parent_channel(&self, parent: u64, method: &'static str) -> Result<String, ChatError> {
        self.lock()
            .messages
            .get(&parent)
            .map(|m| m.channel.clone())
            .ok_or_else(|| ChatError::Rejected {
                platform: "local",
                method,
                error: format!("no message {parent}"),
            })
    }

    /// Replaces a message's content; nothing happens (no event) when it is unchanged.
    fn replace(&self, id: u64, fresh: MessageView) -> Result<(), ChatError> {
        let mut st = self.lock();
        let Some(m) = st.messages.get_mut(&id) else {
            return Err(ChatError::Rejected {
                platform: "local",
                method: "update",
                error: format!("no message {id}"),
            });
        };
        if m.html == fresh.html
            && m.text == fresh.text
            && m.request == fresh.request
            && m.tone == fresh.tone
        {
            return Ok(());
        }
        m.html = fresh.html;
        m.text = fresh.text;
        m.request = fresh.request;
        m.tone = fresh.tone;
        // A redrawn header keeps the bar its thread filled, unless it brings its own.
        m.progress = fresh.progress.or(m.progress);
        m.edits += 1;
        let message = m.clone();
        self.publish(&mut st, LocalEvent::Message { message });
        Ok(())
    }
}

fn message_id(m: &MessageRef) -> Result<u64, ChatError> {
    m.id.parse().map_err(|_| ChatError::Rejected {
        platform: "local",
        method: "update",
        error: format!("{:?} is not a local message id", m.id),
    })
}

fn local_ref(m: &MessageView) -> MessageRef {
    MessageRef {
        platform: Platform::Local,
        channel: m.channel.clone(),
        id: m.id.to_string(),
    }
}

/// `sandbox: 3 of 5 new replicas updated` → 3 of 5.
pub fn progress_in(line: &str) -> Option<ProgressView> {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(3).find_map(|w| {
        if w[1] != "of" {
            return None;
        }
        let done = w[0].parse().ok()?;
        let total: u32 = w[2].trim_end_matches([',', '.', ':']).parse().ok()?;
        (total > 0 && done <= total).then_some(ProgressView { done, total })
    })
}

#[async_trait]
impl ChatPlatform for LocalChat {
    fn platform(&self) -> Platform {
        Platform::Local
    }

    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError> {
        let m = self.bot_message(channel, None, message);
        Ok(local_ref(&self.add(m)))
    }

    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError> {
        let id = message_id(message)?;
        self.replace(id, self.bot_message(&message.channel, None, content))
    }

    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError> {
        let parent_id = message_id(parent)?;
        let channel = self.parent_channel(parent_id, "post_in_thread")?;
        let m = self.bot_message(&channel, Some(parent_id), message);
        // The thread's latest count is drawn as a bar on the message it hangs under.
        let text = message.text();
        let last = text.lines().rev().find_map(progress_in);
        if let Some(p) = m.progress.or(last) {
            self.set_progress(parent_id, p);
        }
        Ok(local_ref(&self.add(m)))
    }

    async fn post_private(
        &self,
        channel: &str,
        user: &str,
        message: &Reply,
    ) -> Result<(), ChatError> {
        let mut m = self.bot_message(channel, None, message);
        m.only_for = Some(user.to_string());
        self.add(m);
        Ok(())
    }

    async fn create_channel(&self, name: &str) -> Result<String, ChatError> {
        let base = channel_name(name);
        let mut st = self.lock();
        let mut id = base.clone();
        let mut n = 1;
        while st.channels.iter().any(|c| c.id == id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        let channel = ChannelView {
            id: id.clone(),
            topic: String::new(),
            incident: true,
            members: Vec::new(),
        };
        st.channels.push(channel.clone());
        self.publish(&mut st, LocalEvent::Channel { channel });
        Ok(id)
    }

    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError> {
        let mut st = self.lock();
        self.ensure_channel(&mut st, channel);
        let Some(c) = st.channels.iter_mut().find(|c| c.id == channel) else {
            return Ok(());
        };
        for u in user_ids {
            if !c.members.contains(u) {
                c.members.push(u.clone());
            }
        }
        let channel = c.clone();
        self.publish(&mut st, LocalEvent::Channel { channel });
        Ok(())
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError> {
        let mut st = self.lock();
        self.ensure_channel(&mut st, channel);
        let Some(c) = st.channels.iter_mut().find(|c| c.id == channel) else {
            return Ok(());
        };
        c.topic = topic.to_string();
        let channel = c.clone();
        self.publish(&mut st, LocalEvent::Channel { channel });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_lowercase_words_joined_by_dashes() {
        assert_eq!(channel_name("INC-3 API down!"), "inc-3-api-down");
        assert_eq!(channel_name("  "), "channel");
        assert_eq!(channel_name("<script>"), "script");
    }

    #[test]
    fn progress_is_read_from_n_of_m() {
        assert_eq!(
            progress_in("sandbox: 3 of 5 new replicas updated"),
            Some(ProgressView { done: 3, total: 5 })
        );
        assert_eq!(progress_in("sandbox: rolling out v3"), None);
        assert_eq!(progress_in("7 of 5"), None);
    }

    #[tokio::test]
    async fn a_follower_catches_up_from_its_last_event_or_gets_a_snapshot() {
        let chat = LocalChat::new();
        let first = chat.post(DEPLOYMENTS, &Reply::ok("one")).await.unwrap();
        let seen = chat.follow(None);
        assert_eq!(
            seen.backlog.len(),
            1,
            "a new follower starts from a snapshot"
        );
        let last = seen.backlog[0].seq;
        chat.post(DEPLOYMENTS, &Reply::ok("two")).await.unwrap();
        chat.update(&first, &Reply::ok("one, edited"))
            .await
            .unwrap();
        let again = chat.follow(Some(last));
        let texts: Vec<String> = again
            .backlog
            .iter()
            .map(|e| match &e.event {
                LocalEvent::Message { message } => message.text.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["two", "one, edited"]);
        // A number from before the oldest kept event, or from the future: start over.
        let lost = chat.follow(Some(10_000));
        assert!(matches!(lost.backlog[0].event, LocalEvent::Snapshot { .. }));
    }

    #[tokio::test]
    async fn a_text_only_chat_carries_no_html_and_still_sees_edits() {
        let chat = LocalChat::text_only();
        let m = chat
            .post(DEPLOYMENTS, &Reply::ok("<b>one</b>"))
            .await
            .unwrap();
        let mut f = chat.follow(None);
        let shown = chat.messages();
        assert_eq!(shown[0].text, "<b>one</b>");
        assert_eq!(shown[0].html, "");
        chat.update(&m, &Reply::ok("<b>one</b>")).await.unwrap();
        assert!(f.live.try_recv().is_err(), "unchanged: no event");
        chat.update(&m, &Reply::ok("two")).await.unwrap();
        let LocalEvent::Message { message } = f.live.try_recv().unwrap().event else {
            panic!()
        };
        assert_eq!((message.text.as_str(), message.html.as_str()), ("two", ""));
    }

    #[tokio::test]
    async fn an_unchanged_update_is_not_an_event() {
        let chat = LocalChat::new();
        let m = chat.post(DEPLOYMENTS, &Reply::ok("same")).await.unwrap();
        let mut f = chat.follow(None);
        chat.update(&m, &Reply::ok("same")).await.unwrap();
        assert!(f.live.try_recv().is_err());
        chat.update(&m, &Reply::ok("other")).await.unwrap();
        let ev = f.live.try_recv().unwrap();
        let LocalEvent::Message { message } = ev.event else {
            panic!()
        };
        assert_eq!((message.text.as_str(), message.edits), ("other", 1));
    }

    #[tokio::test]
    async fn incident_channels_get_unique_ids() {
        let chat = LocalChat::new();
        let a = chat.create_channel("inc-1 API down").await.unwrap();
        let b = chat.create_channel("inc-1 API down").await.unwrap();
        assert_eq!(
            (a.as_str(), b.as_str()),
            ("inc-1-api-down", "inc-1-api-down-2")
        );
        assert!(chat.channels().iter().any(|c| c.id == b && c.incident));
    }
}
