//! The pure domain of erlmcp-bot: the command grammar, the policy, the approval state
//! machine and the texts the bot replies with. Nothing here does IO, so every decision the
//! bot makes can be tested as a plain function.

pub mod approval;
pub mod bluegreen;
pub mod config;
pub mod format;
pub mod grammar;
pub mod message;
pub mod model;
pub mod plan;
pub mod policy;
pub mod render;
pub mod replies;
pub mod runbook;
pub mod status;
pub mod triggers;
pub mod vocab;

pub use model::*;
