//! On-call's pager and the public status page, for P0 and P1 incidents: best effort, with
//! every failure on the timeline and in the reply, so people page by hand when it fails.

use erlmcp_adapters::pagerduty::Page;
use erlmcp_adapters::statuspage::{Impact, PageStatus};
use erlmcp_commands::replies;
use erlmcp_commands::vocab::IncidentEventKind;
use tracing::warn;

use super::{Incidents, impact, page_severity};
use crate::store::{IncidentRow, StoreError};

impl Incidents {
    /// Triggers (or re-triggers at a new severity) the incident's page.
    pub(super) async fn page(&self, inc: &IncidentRow) -> Result<Vec<String>, StoreError> {
        let Some(pager) = &self.notifiers.pager else {
            return Ok(vec![]);
        };
        let page = Page {
            dedup_key: inc.id.to_string(),
            summary: replies::page_summary(inc.id, inc.severity, &inc.title),
            source: "erlmcp-bot".into(),
            severity: page_severity(inc.severity),
        };
        Ok(match pager.trigger(&page).await {
            Ok(()) => {
                self.event(
                    inc.id,
                    IncidentEventKind::Paged,
                    None,
                    &replies::event_paged(page.severity.as_str()),
                )
                .await?;
                vec![replies::oncall_paged()]
            }
            Err(e) => {
                warn!(incident = %inc.id, error = %e, "paging failed");
                self.event(inc.id, IncidentEventKind::PageFailed, None, &e.to_string())
                    .await?;
                vec![replies::paging_failed(&e)]
            }
        })
    }

    /// Resolves the incident's page, when one was sent.
    pub(super) async fn resolve_page(&self, inc: &IncidentRow) -> Result<(), StoreError> {
        let Some(pager) = &self.notifiers.pager else {
            return Ok(());
        };
        match pager.resolve(&inc.id.to_string()).await {
            Ok(()) => {
                self.event(
                    inc.id,
                    IncidentEventKind::PageResolved,
                    None,
                    replies::EVENT_PAGE_RESOLVED,
                )
                .await
            }
            Err(e) => {
                warn!(incident = %inc.id, error = %e, "page not resolved");
                self.event(
                    inc.id,
                    IncidentEventKind::PageFailed,
                    None,
                    &replies::event_page_not_resolved(&e),
                )
                .await
            }
        }
    }

    pub(super) async fn open_status_page(
        &self,
        inc: &IncidentRow,
    ) -> Result<Vec<String>, StoreError> {
        let Some(sp) = &self.notifiers.status_page else {
            return Ok(vec![]);
        };
        if self.store.incident_statuspage_id(inc.id).await?.is_some() {
            return Ok(vec![]);
        }
        Ok(
            match sp
                .open(
                    &inc.title,
                    replies::STATUS_PAGE_INVESTIGATING,
                    impact(inc.severity),
                )
                .await
            {
                Ok(sp_id) => {
                    self.store
                        .set_incident_statuspage_id(inc.id, &sp_id)
                        .await?;
                    self.event(
                        inc.id,
                        IncidentEventKind::StatusPage,
                        None,
                        &replies::event_status_page_opened(&sp_id),
                    )
                    .await?;
                    vec![replies::status_page_opened()]
                }
                Err(e) => {
                    warn!(incident = %inc.id, error = %e, "status page incident not opened");
                    self.event(
                        inc.id,
                        IncidentEventKind::StatusPageFailed,
                        None,
                        &e.to_string(),
                    )
                    .await?;
                    vec![replies::status_page_failed(&e)]
                }
            },
        )
    }

    pub(super) async fn update_status_page(
        &self,
        inc: &IncidentRow,
        status: PageStatus,
        body: &str,
        impact: Option<Impact>,
    ) {
        let Some(sp) = &self.notifiers.status_page else {
            return;
        };
        let Ok(Some(sp_id)) = self.store.incident_statuspage_id(inc.id).await else {
            return;
        };
        if let Err(e) = sp.update(&sp_id, status, body, impact).await {
            warn!(incident = %inc.id, error = %e, "status page not updated");
            let _ = self
                .event(
                    inc.id,
                    IncidentEventKind::StatusPageFailed,
                    None,
                    &e.to_string(),
                )
                .await;
        }
    }
}
