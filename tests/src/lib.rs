//! End-to-end test support: the bot under test and fake platform servers.

pub mod fake_kube;
pub mod harness;
