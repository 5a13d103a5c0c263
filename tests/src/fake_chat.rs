//! A chat platform in memory: every call the bot makes is recorded so a test can read the
//! channel the way a person in it would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use erlmcp_adapters::chat::{ChatError, ChatPlatform, MessageRef, Platform};
use erlmcp_commands::message::{Span, plain};
use erlmcp_commands::render::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCall {
    Post {
        channel: String,
        text: String,
    },
    Update {
        message: MessageRef,
        text: String,
    },
    Thread {
        parent: MessageRef,
        text: String,
    },
    Private {
        channel: String,
        user: String,
        text: String,
    },
    CreateChannel {
        name: String,
        id: String,
    },
    Invite {
        channel: String,
        users: Vec<String>,
    },
    Topic {
        channel: String,
        topic: String,
    },
}

#[derive(Clone)]
pub struct FakeChat {
    platform: Platform,
    calls: Arc<Mutex<Vec<ChatCall>>>,
    /// How many calls the test has looked at: everything before this index was read.
    read: Arc<AtomicUsize>,
}

impl FakeChat {
    pub fn new(platform: Platform) -> FakeChat {
        FakeChat {
            platform,
            calls: Arc::new(Mutex::new(Vec::new())),
            read: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Every call so far; looking at them counts as reading them all.
    pub fn calls(&self) -> Vec<ChatCall> {
        let calls = self.calls.lock().unwrap().clone();
        self.read.fetch_max(calls.len(), Ordering::SeqCst);
        calls
    }

    /// Calls made since the test last looked at the channel.
    pub fn unread(&self) -> Vec<ChatCall> {
        let calls = self.calls.lock().unwrap();
        calls[self.read.load(Ordering::SeqCst).min(calls.len())..].to_vec()
    }

    /// Texts posted in a channel, oldest first.
    pub fn posts_in(&self, channel: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ChatCall::Post { channel: ch, text } if ch == channel => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Posts in a channel that contain `needle`.
    pub fn posts_containing(&self, channel: &str, needle: &str) -> Vec<String> {
        self.posts_in(channel)
            .into_iter()
            .filter(|t| t.contains(needle))
            .collect()
    }

    pub fn channels_created(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ChatCall::CreateChannel { name, id } => Some((name, id)),
                _ => None,
            })
            .collect()
    }

    pub fn invited(&self, channel: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ChatCall::Invite { channel: ch, users } if ch == channel => Some(users),
                _ => None,
            })
            .flatten()
            .collect()
    }

    pub fn topic(&self, channel: &str) -> Option<String> {
        self.calls().into_iter().rev().find_map(|c| match c {
            ChatCall::Topic { channel: ch, topic } if ch == channel => Some(topic),
            _ => None,
        })
    }

    /// A message as a person on this platform reads it: plain text, with channels,
    /// people and groups that have an id here shown as links (`<#C1>`, `<@U1>`, `<@&S1>`).
    pub fn render(&self, reply: &Reply) -> String {
        let platform = self.platform.as_str();
        plain::message_with(&reply.message, &|s: &Span| match s {
            Span::Channel(h) => match h.id_on(platform) {
                Some(id) => format!("<#{id}>"),
                None => plain::span(s),
            },
            Span::User(h) => match h.id_on(platform) {
                Some(id) => format!("<@{id}>"),
                None => plain::span(s),
            },
            Span::Group(h) => match h.id_on(platform) {
                Some(id) => format!("<@&{id}>"),
                None => plain::span(s),
            },
            _ => plain::span(s),
        })
    }

    fn record(&self, call: ChatCall) -> usize {
        let mut calls = self.calls.lock().unwrap();
        calls.push(call);
        calls.len()
    }
}

#[async_trait]
impl ChatPlatform for FakeChat {
    fn platform(&self) -> Platform {
        self.platform
    }

    async fn post(&self, channel: &str, message: &Reply) -> Result<MessageRef, ChatError> {
        let n = self.record(ChatCall::Post {
            channel: channel.to_string(),
            text: self.render(message),
        });
        Ok(MessageRef {
            platform: self.platform,
            channel: channel.to_string(),
            id: format!("m{n}"),
        })
    }

    async fn update(&self, message: &MessageRef, content: &Reply) -> Result<(), ChatError> {
        self.record(ChatCall::Update {
            message: message.clone(),
            text: self.render(content),
        });
        Ok(())
    }

    async fn post_in_thread(
        &self,
        parent: &MessageRef,
        message: &Reply,
    ) -> Result<MessageRef, ChatError> {
        let n = self.record(ChatCall::Thread {
            parent: parent.clone(),
            text: self.render(message),
        });
        Ok(MessageRef {
            platform: self.platform,
            channel: parent.channel.clone(),
            id: format!("m{n}"),
        })
    }

    async fn post_private(
        &self,
        channel: &str,
        user: &str,
        message: &Reply,
    ) -> Result<(), ChatError> {
        self.record(ChatCall::Private {
            channel: channel.to_string(),
            user: user.to_string(),
            text: self.render(message),
        });
        Ok(())
    }

    async fn create_channel(&self, name: &str) -> Result<String, ChatError> {
        let n = self
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, ChatCall::CreateChannel { .. }))
            .count()
            + 1;
        let id = format!("C{n:04}");
        self.record(ChatCall::CreateChannel {
            name: name.to_string(),
            id: id.clone(),
        });
        Ok(id)
    }

    async fn invite(&self, channel: &str, user_ids: &[String]) -> Result<(), ChatError> {
        self.record(ChatCall::Invite {
            channel: channel.to_string(),
            users: user_ids.to_vec(),
        });
        Ok(())
    }

    async fn set_topic(&self, channel: &str, topic: &str) -> Result<(), ChatError> {
        self.record(ChatCall::Topic {
            channel: channel.to_string(),
            topic: topic.to_string(),
        });
        Ok(())
    }
}
