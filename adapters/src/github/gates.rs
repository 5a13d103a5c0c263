//! Environment gates: a run waiting on a protected GitHub environment, and the one review
//! call that approves or rejects it.

use erlmcp_commands::RunId;

use super::client::{GithubClient, GithubError};
use super::runs::PendingDeployment;

/// What a review did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewed {
    /// The GitHub environments approved or rejected.
    pub environments: Vec<String>,
}

/// Approves or rejects every environment `run` waits on, in one call with `comment`.
/// A run that waits on nothing is an error naming it: the gate was settled elsewhere, or
/// the run never had one.
pub async fn review(
    client: &GithubClient,
    run: RunId,
    approve: bool,
    comment: &str,
) -> Result<Reviewed, ReviewError> {
    let pending = client.pending_deployments(run).await?;
    if pending.is_empty() {
        return Err(ReviewError::NothingPending(run));
    }
    let ids: Vec<u64> = pending.iter().map(|p| p.environment.id).collect();
    client
        .review_pending_deployments(run, &ids, approve, comment)
        .await?;
    Ok(Reviewed {
        environments: names(&pending),
    })
}

pub fn names(pending: &[PendingDeployment]) -> Vec<String> {
    pending.iter().map(|p| p.environment.name.clone()).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("run {0} is not waiting on any environment")]
    NothingPending(RunId),
    #[error(transparent)]
    Github(#[from] GithubError),
}

/// The comment GitHub shows on the review: who decided, and through which request.
pub fn comment(approve: bool, people: &[String], request: &str) -> String {
    let verb = if approve { "Approved" } else { "Rejected" };
    if people.is_empty() {
        format!("{verb} in chat through erlmcp-bot ({request})")
    } else {
        format!(
            "{verb} in chat by {} through erlmcp-bot ({request})",
            people.join(", ")
        )
    }
}
