//! Whether CI is green for a version: the `ci_green` precondition.

use async_trait::async_trait;
use erlmcp_commands::Version;
pub use erlmcp_commands::policy::CiStatus;

#[async_trait]
pub trait CiStatusSource: Send + Sync {
    /// The combined CI result for the version's tag. Errors are reported as
    /// `CiStatus::Unknown`, which the policy treats as not green.
    async fn ci_status(&self, version: &Version) -> CiStatus;
}
