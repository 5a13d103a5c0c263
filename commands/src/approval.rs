//! The approval state machine as a pure function: `(request, event, now) -> transition`.
//! The engine stores votes and applies the transition with a compare-and-set, so the
//! decision here is the same whichever replica makes it.

use crate::model::{Actor, Person, Timestamp};
use crate::policy::{ApprovalRequirement, VoteRefusal, may_vote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Executing,
    Succeeded,
    Failed,
    Denied,
    Cancelled,
    Expired,
    /// Its process died while carrying it out.
    Interrupted,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Executing => "being carried out",
            Phase::Succeeded => "already done",
            Phase::Failed => "already failed",
            Phase::Denied => "denied",
            Phase::Cancelled => "cancelled",
            Phase::Expired => "expired",
            Phase::Interrupted => "interrupted",
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
    pub phase: Phase,
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
    NotPending(Phase),
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
    if view.phase != Phase::Pending {
        return Err(Rejection::NotPending(view.phase));
    }
    let expired = now >= view.expires_at;
    match event {
        Event::Expire => {
            if expired {
                Ok(Transition::Expired)
            } else {
                Err(Rejection::NotPending(Phase::Pending))
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
    if view.phase != Phase::Pending {
        return None;
    }
    if view.votes.iter().any(|v| !v.approve) {
        return Some(Transition::Denied);
    }
    let approvals = view.approvals();
    (approvals >= view.requirement.count).then_some(Transition::Approved { approvals })
}
