//! The approval state machine as a pure function: `(request, event, now) -> transition`.
//! The engine stores votes and applies the transition with a compare-and-set, so the
//! decision here is the same whichever replica makes it.

use crate::model::{Actor, Person, Timestamp};
use crate::policy::{ApprovalRequirement, VoteRefusal, may_vote};
use serde::{Deserialize, Serialize};

/// Lifecycle of an operation request: what the store keeps and what the state machine
/// decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved (or allowed at once) and being carried out by exactly one process.
    Executing,
    Succeeded,
    Failed,
    Denied,
    Cancelled,
    Expired,
    /// Its process died while carrying it out; reconciled by another one, never re-run by
    /// itself.
    Interrupted,
}

impl RequestState {
    pub const ALL: [RequestState; 8] = [
        RequestState::Pending,
        RequestState::Executing,
        RequestState::Succeeded,
        RequestState::Failed,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::Expired,
        RequestState::Interrupted,
    ];

    /// The string stored in `requests.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Executing => "executing",
            RequestState::Succeeded => "succeeded",
            RequestState::Failed => "failed",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
            RequestState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RequestState::Pending | RequestState::Executing)
    }

    /// How a reply names a request that is in this state.
    pub fn describe(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Executing => "being carried out",
            RequestState::Succeeded => "already done",
            RequestState::Failed => "already failed",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::Expired => "expired",
            RequestState::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The person who voted (the store keeps one vote per identity; a person with two
    /// identities may have two stored votes, which count once here).
    pub voter: Person,
    pub approve: bool,
}

/// What the state machine needs to know about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub state: RequestState,
    pub requester: Person,
    pub requirement: ApprovalRequirement,
    pub expires_at: Timestamp,
    /// Votes already recorded.
    pub votes: Vec<Vote>,
}

impl RequestView {
    /// Distinct approving persons.
    pub fn approvals(&self) -> u32 {
        let mut voters: Vec<&Person> = self
            .votes
            .iter()
            .filter(|v| v.approve)
            .map(|v| &v.voter)
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters.len() as u32
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Vote { voter: &'a Actor, approve: bool },
    Cancel { by: &'a Actor },
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The vote counts; more approvals are still needed.
    VoteRecorded {
        approvals: u32,
        needed: u32,
    },
    /// Enough approvals: carry the operation out now.
    Approved {
        approvals: u32,
    },
    Denied,
    Cancelled,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The request is no longer pending.
    NotPending(RequestState),
    /// It expired before this event; the caller should mark it expired.
    Expired,
    Vote(VoteRefusal),
    /// The voter already voted on this request (through any of their identities).
    AlreadyVoted,
    /// Only the requester (through any of their identities) can cancel.
    NotRequester,
}

/// Applies one event. Votes in `view.votes` are those already stored; a vote event is the
/// new one, not yet counted.
pub fn apply(
    view: &RequestView,
    event: &Event<'_>,
    now: Timestamp,
) -> Result<Transition, Rejection> {
    if view.state != RequestState::Pending {
        return Err(Rejection::NotPending(view.state));
    }
    let expired = now >= view.expires_at;
    match event {
        Event::Expire => {
            if expired {
                Ok(Transition::Expired)
            } else {
                Err(Rejection::NotPending(RequestState::Pending))
            }
        }
        _ if expired => Err(Rejection::Expired),
        Event::Cancel { by } => {
            if by.person == view.requester {
                Ok(Transition::Cancelled)
            } else {
                Err(Rejection::NotRequester)
            }
        }
        Event::Vote { voter, approve } => {
            may_vote(&view.requirement, &view.requester, voter).map_err(Rejection::Vote)?;
            if view.votes.iter().any(|v| v.voter == voter.person) {
                return Err(Rejection::AlreadyVoted);
            }
            if !approve {
                return Ok(Transition::Denied);
            }
            let approvals = view.approvals() + 1;
            let needed = view.requirement.count;
            if approvals >= needed {
                Ok(Transition::Approved { approvals })
            } else {
                Ok(Transition::VoteRecorded { approvals, needed })
            }
        }
    }
}

/// Recomputes the outcome from the stored votes alone. Used after a vote was written, so
/// that two voters racing each other both see the full set and exactly one of them wins
/// the compare-and-set that starts execution.
pub fn settle(view: &RequestView) -> Option<Transition> {
    if view.state != RequestState::Pending {
        return None;
    }
    if view.votes.iter().any(|v| !v.approve) {
        return Some(Transition::Denied);
    }
    let approvals = view.approvals();
    (approvals >= view.requirement.count).then_some(Transition::Approved { approvals })
}

#[cfg(test)]
mod tests {
    use super::RequestState;

    /// `requests.state` already holds these strings.
    #[test]
    fn request_states_are_stored_as_before() {
        let stored: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            stored,
            [
                "pending",
                "executing",
                "succeeded",
                "failed",
                "denied",
                "cancelled",
                "expired",
                "interrupted"
            ]
        );
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RequestState::parse("done"), None);
    }
}
