//! Prometheus metrics, served on /metrics in the text exposition format.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub platform: String,
    /// The command's name (`deploy`, `incident declare`), or `unparsed`.
    pub command: String,
    /// ok, accepted, refused, failed, usage
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
    pub environment: String,
    /// succeeded, failed
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiCallLabels {
    pub platform: String,
    /// `erlmcp_adapters::observe::CallStatus::as_str`
    pub status: String,
}

/// A vote as cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ballot {
    Approve,
    Deny,
}

impl Ballot {
    pub fn of(approve: bool) -> Ballot {
        if approve {
            Ballot::Approve
        } else {
            Ballot::Deny
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ballot::Approve => "approve",
            Ballot::Deny => "deny",
        }
    }
}

/// What became of a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteOutcome {
    /// Stored and audited; it counts.
    Recorded,
    /// The voter may not vote on that request.
    Refused,
}

impl VoteOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VoteOutcome::Recorded => "recorded",
            VoteOutcome::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApprovalLabels {
    pub vote: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `scheduler::TimerEvent::job`
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaderLabels {
    /// `leader::Backend::as_str`
    pub backend: String,
}

fn ack_histogram() -> Histogram {
    // 0.5 ms .. 4 s: the platforms' deadline is 3 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

fn lag_histogram() -> Histogram {
    // 0.1 s .. ~7 min: a tick every few seconds, a lease of minutes when a replica died.
    Histogram::new(exponential_buckets(0.1, 2.0, 13))
}

/// The store step whose failure refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreStep {
    /// The request row (insert).
    Request,
    /// A request's state change (approved, cancelled, denied).
    RequestState,
    Vote,
    Audit,
    /// An incident's record or timeline.
    Incident,
    /// A lookup the decision needed (votes, soak facts, the request itself).
    Read,
}

impl StoreStep {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreStep::Request => "request",
            StoreStep::RequestState => "request_state",
            StoreStep::Vote => "vote",
            StoreStep::Audit => "audit",
            StoreStep::Incident => "incident",
            StoreStep::Read => "read",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreStepLabels {
    /// `StoreStep::as_str`
    pub what: String,
}

/// Outbound calls and rate-limit waits, as the adapters report them.
impl erlmcp_adapters::observe::Observer for Metrics {
    fn api_call(&self, platform: &str, status: erlmcp_adapters::observe::CallStatus) {
        self.api_calls
            .get_or_create(&ApiCallLabels {
                platform: platform.to_string(),
                status: status.as_str().to_string(),
            })
            .inc();
    }

    fn rate_limit_wait(&self, platform: &str, waited: Duration) {
        let labels = PlatformLabels {
            platform: platform.to_string(),
        };
        self.rate_limit_waits.get_or_create(&labels).inc();
        self.rate_limit_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub commands: Family<CommandLabels, Counter>,
    pub operations: Family<OperationLabels, Counter>,
    pub audit_write_failures: Counter,
    /// Commands refused because the store failed a step they needed (fail closed).
    pub store_write_failures: Family<StoreStepLabels, Counter>,
    /// Chat messages that could not be delivered after every retry.
    pub delivery_failures: Family<DeliveryLabels, Counter>,
    pub command_seconds: Histogram,
    /// Approval votes, by vote and whether they were recorded.
    pub approvals: Family<ApprovalLabels, Counter>,
    /// Time from an inbound chat request's arrival to its acknowledgement.
    pub ack_seconds: Family<PlatformLabels, Histogram, fn() -> Histogram>,
    /// Calls to platform APIs (each try counts), by platform and status.
    pub api_calls: Family<ApiCallLabels, Counter>,
    /// Waits imposed by rate limits (a 429's Retry-After, or the bot's own pacing).
    pub rate_limit_waits: Family<PlatformLabels, Counter>,
    pub rate_limit_wait_seconds: Family<PlatformLabels, Counter<f64, AtomicU64>>,
    /// How late scheduled jobs start after their due time.
    pub scheduler_lag_seconds: Family<JobLabels, Histogram, fn() -> Histogram>,
    /// 1 while this process leads (holds the long-lived chat connections).
    pub leader: Family<LeaderLabels, Gauge>,
    pub leader_transitions: Family<LeaderLabels, Counter>,
    /// Outcomes of operations that ran but that the database has not taken yet.
    pub unrecorded_outcomes: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("erlmcp_bot");
        let commands = Family::<CommandLabels, Counter>::default();
        let operations = Family::<OperationLabels, Counter>::default();
        let audit_write_failures = Counter::default();
        let delivery_failures = Family::<DeliveryLabels, Counter>::default();
        let store_write_failures = Family::<StoreStepLabels, Counter>::default();
        let command_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "commands",
            "Chat commands handled, by outcome",
            commands.clone(),
        );
        registry.register(
            "operations",
            "Operations carried out on targets, by outcome",
            operations.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit log writes that failed (the operation was not executed)",
            audit_write_failures.clone(),
        );
        registry.register(
            "store_write_failures",
            "Commands refused because the store failed a step they needed, by step \
             (request, request_state, vote, audit, incident, read); nothing was executed",
            store_write_failures.clone(),
        );
        registry.register(
            "chat_delivery_failures",
            "Chat messages given up on after every retry",
            delivery_failures.clone(),
        );
        registry.register(
            "command_duration_seconds",
            "Time from a command's arrival to the bot's reply",
            command_seconds.clone(),
        );
        let approvals = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "approvals",
            "Approval votes, by vote (approve, deny) and outcome (recorded, refused)",
            approvals.clone(),
        );
        let ack_seconds =
            Family::<PlatformLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                ack_histogram,
            );
        registry.register(
            "ack_duration_seconds",
            "Time from an inbound chat request's arrival to its acknowledgement, by platform",
            ack_seconds.clone(),
        );
        let api_calls = Family::<ApiCallLabels, Counter>::default();
        registry.register(
            "api_calls",
            "Calls to platform APIs, each try counted, by platform and status \
             (ok, rate_limited, server_error, rejected)",
            api_calls.clone(),
        );
        let rate_limit_waits = Family::<PlatformLabels, Counter>::default();
        registry.register(
            "rate_limit_waits",
            "Waits imposed by a rate limit (a 429's Retry-After or the bot's own pacing)",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = Family::<PlatformLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "rate_limit_wait_seconds",
            "Time spent waiting on rate limits",
            rate_limit_wait_seconds.clone(),
        );
        let scheduler_lag_seconds =
            Family::<JobLabels, Histogram, fn() -> Histogram>::new_with_constructor(lag_histogram);
        registry.register(
            "scheduler_lag_seconds",
            "How late a scheduled job started after its due time, by job",
            scheduler_lag_seconds.clone(),
        );
        let leader = Family::<LeaderLabels, Gauge>::default();
        registry.register(
            "leader",
            "1 while this process is the leader that holds the long-lived chat connections",
            leader.clone(),
        );
        let leader_transitions = Family::<LeaderLabels, Counter>::default();
        registry.register(
            "leader_transitions",
            "Times this process became or stopped being the leader",
            leader_transitions.clone(),
        );
        let unrecorded_outcomes = Gauge::default();
        registry.register(
            "unrecorded_outcomes",
            "Operations that ran whose outcome the database has not taken yet; the bot keeps \
             each and writes it again until it does (the request shows as executing meanwhile)",
            unrecorded_outcomes.clone(),
        );
        Arc::new(Metrics {
            registry,
            commands,
            operations,
            audit_write_failures,
            store_write_failures,
            delivery_failures,
            command_seconds,
            approvals,
            ack_seconds,
            api_calls,
            rate_limit_waits,
            rate_limit_wait_seconds,
            scheduler_lag_seconds,
            leader,
            leader_transitions,
            unrecorded_outcomes,
        })
    }

    pub fn vote(&self, vote: Ballot, outcome: VoteOutcome) {
        self.approvals
            .get_or_create(&ApprovalLabels {
                vote: vote.as_str().to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    pub fn ack(&self, platform: &str, took: Duration) {
        self.ack_seconds
            .get_or_create(&PlatformLabels {
                platform: platform.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn scheduler_lag(&self, job: &str, lag: Duration) {
        self.scheduler_lag_seconds
            .get_or_create(&JobLabels {
                job: job.to_string(),
            })
            .observe(lag.as_secs_f64());
    }

    pub fn set_leader(&self, backend: crate::leader::Backend, leading: bool) {
        let labels = LeaderLabels {
            backend: backend.as_str().to_string(),
        };
        let gauge = self.leader.get_or_create(&labels);
        let before = gauge.set(i64::from(leading));
        if before != i64::from(leading) {
            self.leader_transitions.get_or_create(&labels).inc();
        }
    }

    /// Counts a command refused because the store failed `step`.
    pub fn store_refused(&self, step: StoreStep) {
        self.store_write_failures
            .get_or_create(&StoreStepLabels {
                what: step.as_str().to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
