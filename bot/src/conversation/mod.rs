//! The conversation layer, once for every chat platform: each platform adapter hands its
//! verified inbound messages to [`Conversation`] (through [`InboundHandler`]) and this
//! decides the rest.
//!
//! For each inbound message: replays are dropped (the delivery key is remembered in the
//! store, so every replica knows it), the command is parsed once, the immediate answer is
//! chosen (a parse error or "working on it" privately, else nothing), and the command runs
//! in a task the engine tracks (a read answered in the acknowledgement starts while its key
//! is written; its answer is held until the key is known to be new). Its reply then goes
//! privately to the asker (refusals, parse errors, lookups) or into the channel; progress of
//! a long operation goes into a thread under a message opened for it, which is redrawn with
//! the outcome; a new approval card is posted and remembered so that [`redraw`] keeps it
//! current. Delivery failures are logged and counted by platform.

mod progress;
mod redraw;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use erlmcp_adapters::chat::{
    Ack, Asked, ChatError, ChatPlatform, GroupLookup, Inbound, InboundHandler, MessageRef,
    Platform, Responder, Unavailable,
};
use erlmcp_commands::grammar::ParseError;
use erlmcp_commands::message::{Handle, Line};
use erlmcp_commands::policy::{self, Access};
use erlmcp_commands::render::{Reply, ReplyKind, Visibility};
use erlmcp_commands::replies;
use erlmcp_commands::{Actor, Command, GroupMembership, RequestId};
use tracing::{Instrument, Span, error, info, info_span, warn};

use crate::engine::{Engine, Invocation};
use crate::metrics::{DeliveryLabels, Metrics};

use progress::ThreadProgress;

/// The longest a command waits for group membership it needs and does not have: Slack gives
/// the whole request three seconds, and a rate-limited platform must not hold commands.
pub const GROUP_LOOKUP_BUDGET: Duration = Duration::from_secs(2);

pub struct Conversation {
    /// Itself, for the tasks commands run in.
    me: Weak<Conversation>,
    engine: Arc<Engine>,
    chats: HashMap<Platform, Arc<dyn ChatPlatform>>,
    metrics: Arc<Metrics>,
}

/// Where a reply goes and what it belongs to.
struct Destination {
    chat: Arc<dyn ChatPlatform>,
    channel: String,
    responder: Arc<dyn Responder>,
    /// The thread the command lives in: the approval card for votes, the mention for
    /// mentions, or the message opened for the operation's progress.
    thread: Option<Thread>,
    /// For logs: the request id when known, else the command.
    label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Thread {
    parent: MessageRef,
    /// Opened by the bot for this command's progress: redrawn with the outcome.
    owned: bool,
}

/// Commands that change a workload (and so may run for minutes).
fn changes_a_workload(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Deploy { .. }
            | Command::Rollback { .. }
            | Command::Scale { .. }
            | Command::Restart { .. }
            | Command::Maintenance { .. }
            | Command::Canary { .. }
    )
}

impl Conversation {
    /// Connects the engine to the chat platforms it was built with and starts redrawing
    /// approval cards on engine events. Must run inside the runtime.
    pub fn start(engine: Arc<Engine>, metrics: Arc<Metrics>) -> Arc<Conversation> {
        let chats: HashMap<Platform, Arc<dyn ChatPlatform>> = engine
            .chats()
            .iter()
            .map(|c| (c.platform(), c.clone()))
            .collect();
        // The redraw task holds the platforms, not the engine: it ends when the engine does.
        tokio::spawn(redraw::approval_cards(
            engine.subscribe(),
            chats.clone(),
            metrics.clone(),
        ));
        Arc::new_cyclic(|me| Conversation {
            me: me.clone(),
            engine,
            chats,
            metrics,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn chat(&self, platform: Platform) -> Option<&Arc<dyn ChatPlatform>> {
        self.chats.get(&platform)
    }

    fn delivery_failed(&self, platform: Platform, what: &str, label: &str, e: &ChatError) {
        delivery_failed(&self.metrics, platform, what, label, e);
    }

    /// Whether this is the first delivery of `key`, remembered in the store so that a
    /// replay is recognized by every replica.
    async fn first_delivery(&self, platform: Platform, key: &str) -> Result<bool, Unavailable> {
        self.engine
            .store()
            .remember_event(platform, key, self.engine.now())
            .await
            .map_err(|e| {
                // Without the memory of seen deliveries a replay could run twice: refuse,
                // and let the platform (or the user) try again once the database is back.
                error!(error = %e, key, %platform, "cannot record the delivery");
                Unavailable
            })
    }
}

fn delivery_failed(metrics: &Metrics, platform: Platform, what: &str, label: &str, e: &ChatError) {
    error!(%platform, request = label, error = %e, "could not deliver {what}");
    count_failure(metrics, platform);
}

fn count_failure(metrics: &Metrics, platform: Platform) {
    metrics
        .delivery_failures
        .get_or_create(&DeliveryLabels {
            platform: platform.as_str().into(),
        })
        .inc();
}

/// A read whose answer goes back in the acknowledgement itself (Discord's response): it
/// changes nothing, so it may start before its delivery is known to be the first.
fn answered_read(inbound: &Inbound, parsed: &Result<Command, ParseError>) -> bool {
    inbound.ack_carries_text
        && matches!(inbound.asked, Asked::Command(_))
        && parsed
            .as_ref()
            .is_ok_and(|cmd| matches!(policy::access(cmd), Access::Open | Access::AnyRole))
}

#[async_trait]
impl InboundHandler for Conversation {
    async fn receive(&self, inbound: Inbound) -> Result<Ack, Unavailable> {
        let platform = inbound.platform;
        let text = inbound.asked.text();
        let parsed = self.engine.parse(&text);
        let Some(key) = inbound.delivery.clone() else {
            return Ok(self.accept(inbound, text, parsed, None));
        };
        let user = inbound.user.id.clone();
        if !answered_read(&inbound, &parsed) {
            if !self.first_delivery(platform, &key).await? {
                info!(%platform, %user, "replayed delivery ignored");
                return Ok(Ack::Replayed);
            }
            return Ok(self.accept(inbound, text, parsed, None));
        }
        // The read runs while the key is written, so the answer waits for one durable write
        // instead of that write and then the read's own round trips. It is delivered only
        // once the key is known to be new; a replay's answer goes nowhere, and so does the
        // answer of a delivery that could not be recorded (the sender dropped).
        let (first, gate) = tokio::sync::oneshot::channel();
        let ack = self.accept(inbound, text, parsed, Some(gate));
        if !self.first_delivery(platform, &key).await? {
            info!(%platform, %user, "replayed delivery ignored");
            return Ok(Ack::Replayed);
        }
        let _ = first.send(());
        Ok(ack)
    }
}

impl Conversation {
    /// Chooses the immediate answer and starts the command in a task the engine tracks.
    /// With `gate`, its reply is held until the gate opens, and dropped if it closes.
    fn accept(
        &self,
        inbound: Inbound,
        text: String,
        parsed: Result<Command, ParseError>,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Ack {
        let platform = inbound.platform;
        let Some(chat) = self.chat(platform).cloned() else {
            warn!(%platform, "inbound message from a platform the bot has no client for");
            return Ack::Nothing;
        };
        let ack = match (&parsed, &inbound.asked) {
            // Answered in the acknowledgement itself; nothing runs.
            (Err(e), _) if inbound.ack_carries_text => {
                return Ack::Private(Reply::usage(e.render()));
            }
            // A change to a workload can take minutes: say at once that it was heard.
            // Lookups answer within a second, and a second message would only be noise.
            (Ok(cmd), Asked::Command(_)) if inbound.ack_carries_text && changes_a_workload(cmd) => {
                Ack::Private(Reply::private(replies::working_on(&text)))
            }
            _ => Ack::Nothing,
        };
        // `request` is filled in once known, so that what is logged under the span (an API
        // call retried, a delivery given up) names the request.
        let span = info_span!("chat_command", %platform, user = %inbound.user.id, channel = %inbound.channel, request = tracing::field::Empty);
        let Some(this) = self.me.upgrade() else {
            return Ack::Nothing;
        };
        // Tracked by the engine, so waiting for it to be idle covers this command too.
        self.engine.spawn_tracked(
            async move {
                this.run(chat, inbound, text, parsed, gate).await;
            }
            .instrument(span),
        );
        ack
    }

    /// Runs one inbound command and delivers its reply.
    async fn run(
        &self,
        chat: Arc<dyn ChatPlatform>,
        inbound: Inbound,
        text: String,
        parsed: Result<Command, ParseError>,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) {
        let platform = inbound.platform;
        let thread = match &inbound.thread {
            Some(parent) => Some(Thread {
                parent: parent.clone(),
                owned: false,
            }),
            None => self.request_thread(platform, parsed.as_ref().ok()).await,
        };
        let label = match &inbound.asked {
            Asked::Vote { request, .. } => {
                Span::current().record("request", tracing::field::display(request));
                request.to_string()
            }
            Asked::Command(t) => t.clone(),
        };
        let mut dest = Destination {
            chat: chat.clone(),
            channel: inbound.channel.clone(),
            responder: inbound.responder.clone(),
            thread,
            label,
        };
        let actor = self.actor(&chat, &inbound, parsed.as_ref().ok()).await;
        let header = Reply::ok(
            Line::new()
                .code(text.trim())
                .text(" for ")
                .user(
                    Handle::named(&inbound.user.name).with_id(platform.as_str(), &inbound.user.id),
                )
                .text(": in progress…"),
        );
        let (sink, forwarder) = ThreadProgress::start(
            chat.clone(),
            self.metrics.clone(),
            inbound.channel.clone(),
            header,
            dest.thread.clone(),
        );
        let reply = self
            .engine
            .handle_parsed(
                Invocation {
                    actor,
                    channel: format!("{platform}:{}", inbound.channel),
                    text,
                    progress: sink,
                },
                parsed,
            )
            .await;
        if let Ok(thread) = forwarder.await {
            dest.thread = thread;
        }
        if let Some(gate) = gate
            && gate.await.is_err()
        {
            return;
        }
        if let Some(card) = reply.approval() {
            dest.label = card.id.to_string();
            Span::current().record("request", tracing::field::display(&dest.label));
        }
        self.deliver(&reply, &dest).await;
    }

    /// For `approve R-n` / `deny R-n` typed as text, replies belong under the request's
    /// approval card when it was posted on this platform.
    async fn request_thread(&self, platform: Platform, cmd: Option<&Command>) -> Option<Thread> {
        let id: RequestId = match cmd? {
            Command::Approve { id, .. } | Command::Deny { id, .. } => *id,
            _ => return None,
        };
        let row = self.engine.store().get_request(id).await.ok()??;
        let parent = row.message_ref?;
        (parent.platform == platform).then_some(Thread {
            parent,
            owned: false,
        })
    }

    /// Who is asking, with the groups they are in as far as they can be known in time.
    /// Groups the platform sent are taken as they are. Otherwise someone whose own roles
    /// already grant the command is not held up by a group lookup; the lookup gets
    /// `GROUP_LOOKUP_BUDGET`, and groups still unknown then are left out (their roles are
    /// not granted) and the actor says so.
    async fn actor(
        &self,
        chat: &Arc<dyn ChatPlatform>,
        inbound: &Inbound,
        cmd: Option<&Command>,
    ) -> Actor {
        let (platform, user) = (inbound.platform.as_str(), &inbound.user);
        if let Some(groups) = &inbound.groups {
            return self.engine.actor(platform, &user.id, &user.name, groups);
        }
        let direct = self.engine.actor(platform, &user.id, &user.name, &[]);
        let needs = match cmd {
            Some(cmd) => self.engine.needs_groups_for(&direct, cmd).await,
            None => false,
        };
        let lookup = if needs {
            let lookup = chat.groups_of(&user.id, GROUP_LOOKUP_BUDGET).await;
            if !lookup.complete {
                warn!(
                    platform,
                    user = %user.id,
                    "group membership could not be read in time; group roles left out"
                );
            }
            lookup
        } else {
            // What is cached still counts (whoami-like details, a second rule), but an
            // incomplete cache is not worth a wait or a word here.
            GroupLookup {
                complete: true,
                ..chat.cached_groups_of(&user.id)
            }
        };
        let mut actor = self
            .engine
            .actor(platform, &user.id, &user.name, &lookup.groups);
        if !lookup.complete {
            actor.groups = GroupMembership::Unreadable;
        }
        actor
    }

    async fn deliver(&self, reply: &Reply, dest: &Destination) {
        let platform = dest.chat.platform();
        if reply.kind == ReplyKind::Accepted
            && let Some(card) = reply.approval()
        {
            match self.post_public(reply, dest).await {
                Ok(message) => {
                    if let Err(e) = self
                        .engine
                        .store()
                        .set_request_message(card.id, &message)
                        .await
                    {
                        error!(request = %card.id, error = %e, "approval card posted but not recorded; it will not be updated");
                    }
                }
                Err(e) => {
                    self.delivery_failed(platform, "the approval card", &dest.label, &e);
                    // The requester still learns the request exists and how to vote by text.
                    self.respond_privately(reply, dest).await;
                }
            }
            return;
        }
        match reply.visibility {
            Visibility::Ephemeral => self.respond_privately(reply, dest).await,
            Visibility::InChannel => match &dest.thread {
                Some(thread) => {
                    if thread.owned
                        && let Err(e) = dest.chat.update(&thread.parent, reply).await
                    {
                        self.delivery_failed(platform, "the outcome", &dest.label, &e);
                    }
                    if let Err(e) = dest.chat.post_in_thread(&thread.parent, reply).await {
                        self.delivery_failed(platform, "the outcome line", &dest.label, &e);
                    }
                }
                None => {
                    if let Err(e) = self.post_public(reply, dest).await {
                        self.delivery_failed(platform, "the reply", &dest.label, &e);
                    }
                }
            },
        }
    }

    /// In the channel: as the answer to the inbound message where the platform ties them,
    /// else as a message of its own.
    async fn post_public(
        &self,
        reply: &Reply,
        dest: &Destination,
    ) -> Result<MessageRef, ChatError> {
        match dest.responder.public(reply).await? {
            Some(message) => Ok(message),
            None => dest.chat.post(&dest.channel, reply).await,
        }
    }

    async fn respond_privately(&self, reply: &Reply, dest: &Destination) {
        if let Err(e) = dest.responder.private(reply).await {
            self.delivery_failed(dest.chat.platform(), "a private reply", &dest.label, &e);
        }
    }
}
