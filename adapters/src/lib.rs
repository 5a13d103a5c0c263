//! IO at the edges of erlmcp-bot. Every external system sits behind a small trait defined
//! here so the engine can be driven without a network; each implementation takes its base
//! URL from configuration so tests point the real client at a fake server.

pub mod chat;
pub mod ci;
pub mod discord;
pub mod github;
pub mod guard;
pub mod kubernetes;
pub mod local;
pub mod observe;
pub mod pagerduty;
pub mod probe;
pub mod prometheus;
pub mod retry;
pub mod slack;
pub mod statuspage;
pub mod target;

/// The kube client crate, re-exported so the daemon and tests name one version.
pub use kube as kube_client;
