//! The words the audit log and the incident timeline are written in. Each is stored and
//! hashed as its `as_str`, so those strings never change: a log written by an older binary
//! must still verify.

/// Defines a closed vocabulary: the enum, its stored string (one exhaustive match), `ALL`,
/// and `parse` back from the stored string.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The string stored (and hashed) for this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_string()
            }
        }
    };
}

vocabulary! {
    /// What an audit row records.
    AuditAction {
        /// An operation waiting for approvals.
        Requested => "requested",
        /// The policy refused an operation or a command.
        Refused => "refused",
        Voted => "voted",
        /// A vote the policy did not accept (own request, wrong role, ...).
        VoteRefused => "vote_refused",
        /// Written before an operation starts.
        Executing => "executing",
        Executed => "executed",
        Failed => "failed",
        Denied => "denied",
        Cancelled => "cancelled",
        Expired => "expired",
        /// Done by the bot itself (the post-deploy guard's rollback).
        Automatic => "automatic",
        /// Its process died while carrying it out.
        Interrupted => "interrupted",
        /// Someone took note of an interrupted operation.
        Acknowledged => "acknowledged",
        /// The plan of a change was shown (`--dry-run`); nothing was changed.
        DryRun => "dry_run",
    }
}

vocabulary! {
    /// Why an audited step was (or was not) allowed.
    AuditDecision {
        /// No decision applies (a vote, a cancellation, an expiry).
        None => "",
        Allow => "allow",
        NeedsApproval => "needs_approval",
        Deny => "deny",
        /// Ran at once without approval during a P0/P1 incident.
        BreakGlass => "break_glass",
        /// Enough approvals were given.
        Approved => "approved",
        /// The post-deploy guard rolled back on its own.
        AutoRollback => "auto_rollback",
    }
}

vocabulary! {
    /// One entry of an incident's timeline.
    IncidentEventKind {
        Declared => "declared",
        /// A human update.
        Update => "update",
        Severity => "severity",
        Commander => "commander",
        /// An operation that finished during the incident.
        Operation => "operation",
        /// An operation run at once without approval during the incident.
        BreakGlass => "break_glass",
        /// An automatic status update posted by the bot.
        StatusUpdate => "status_update",
        Resolved => "resolved",
        /// A chat channel opened for the incident.
        Channel => "channel",
        /// A chat channel that could not be opened.
        ChatError => "chat_error",
        /// On-call was paged.
        Paged => "paged",
        /// Paging (or resolving the page) failed.
        PageFailed => "page_failed",
        PageResolved => "page_resolved",
        /// A status page incident was opened.
        StatusPage => "status_page",
        StatusPageFailed => "status_page_failed",
        /// A failover to the DR region started.
        DrFailover => "dr_failover",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings the log already holds: changing one breaks `audit verify` of old logs.
    #[test]
    fn stored_strings_are_pinned() {
        let actions: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            actions,
            [
                "requested",
                "refused",
                "voted",
                "vote_refused",
                "executing",
                "executed",
                "failed",
                "denied",
                "cancelled",
                "expired",
                "automatic",
                "interrupted",
                "acknowledged",
                "dry_run",
            ]
        );
        let decisions: Vec<&str> = AuditDecision::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(
            decisions,
            [
                "",
                "allow",
                "needs_approval",
                "deny",
                "break_glass",
                "approved",
                "auto_rollback"
            ]
        );
        let kinds: Vec<&str> = IncidentEventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "declared",
                "update",
                "severity",
                "commander",
                "operation",
                "break_glass",
                "status_update",
                "resolved",
                "channel",
                "chat_error",
                "paged",
                "page_failed",
                "page_resolved",
                "status_page",
                "status_page_failed",
                "dr_failover",
            ]
        );
    }

    #[test]
    fn every_value_parses_back() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
        for d in AuditDecision::ALL {
            assert_eq!(AuditDecision::parse(d.as_str()), Some(*d));
        }
        for k in IncidentEventKind::ALL {
            assert_eq!(IncidentEventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(AuditAction::parse("Executed"), None);
        assert_eq!(IncidentEventKind::parse("nope"), None);
    }
}
