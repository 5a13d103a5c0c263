//! What the engine tells the incident work: the paging and status page clients it holds
//! for incidents, and what happened to an operation. Defined here so the engine does not
//! depend on the incidents module; incidents depend on the engine.

use std::sync::Arc;

use erlmcp_adapters::pagerduty::{Pager, PagerDuty};
use erlmcp_adapters::statuspage::{StatusPage, Statuspage};
use erlmcp_commands::config::Config;

/// The paging and status page clients, when configured.
pub struct Notifiers {
    pub(crate) pager: Option<Arc<dyn Pager>>,
    pub(crate) status_page: Option<Arc<dyn StatusPage>>,
}

impl Notifiers {
    pub fn from_config(cfg: &Config) -> Notifiers {
        Notifiers {
            pager: PagerDuty::from_config(&cfg.pagerduty).map(|p| Arc::new(p) as Arc<dyn Pager>),
            status_page: Statuspage::from_config(&cfg.statuspage)
                .map(|s| Arc::new(s) as Arc<dyn StatusPage>),
        }
    }
}

/// What happened to an operation, for the timeline of the incidents it belongs to.
pub enum OperationNote<'a> {
    /// A break-glass operation started without approval.
    BreakGlass,
    Finished {
        ok: bool,
        outcome: &'a str,
    },
    /// Its process died while carrying it out.
    Interrupted {
        detail: &'a str,
    },
}
