//! GitHub: the `ci_green` lookup, the `github-actions` target (workflow dispatch, runs,
//! environment gates) and the webhook signature check, on one REST client.

pub mod ci;
pub mod client;
pub mod gates;
pub mod runs;
pub mod target;
pub mod webhook;

pub use ci::GithubCi;
pub use client::{
    DEFAULT_API_URL, DEFAULT_TIMEOUT, GithubClient, GithubError, GithubOptions, GithubSetupError,
};
pub use runs::{Job, Run, RunFilter};
pub use target::{GithubActionsTarget, WorkflowOptions};
