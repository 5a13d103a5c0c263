//! Prometheus metrics, served on /metrics in the text exposition format.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub platform: String,
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
        Arc::new(Metrics {
            registry,
            commands,
            operations,
            audit_write_failures,
            store_write_failures,
            delivery_failures,
            command_seconds,
        })
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
