//! The paging and status page clients the incident service holds, and what the engine tells
//! it about an operation.

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
