//! End-to-end test support: the bot under test and fake platform servers.

pub mod benchkit;
pub mod fake_chat;
pub mod fake_discord;
pub mod fake_discord_gateway;
pub mod fake_github;
pub mod fake_kube;
pub mod fake_slack;
pub mod harness;
