//! The erlmcp-bot daemon: configuration, wiring, the engine, the store, the HTTP server and
//! the command line.

pub mod app;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod console;
pub mod conversation;
pub mod discord;
pub mod engine;
pub mod github_webhook;
pub mod identity;
pub mod incidents;
pub mod leader;
pub mod local;
pub mod metrics;
pub mod platforms;
pub mod sandbox;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
