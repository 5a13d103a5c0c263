//! `incident list` and `incident timeline`: reads open to anyone holding a role.

use erlmcp_commands::render::Reply;
use erlmcp_commands::replies;
use erlmcp_commands::{IncidentId, message::Line};

use super::{Incidents, channel_links, named_commander, timeline_entry};
use crate::store::StoreError;

impl Incidents {
    pub async fn list(&self) -> Result<Reply, StoreError> {
        let open = self.store.open_incidents().await?;
        if open.is_empty() {
            return Ok(Reply::private(replies::no_open_incidents()));
        }
        let now = self.now();
        let mut lines: Vec<Line> = Vec::new();
        for i in &open {
            let events = self.store.incident_events(i.id).await?;
            lines.push(replies::incident_list_line(
                i.id,
                i.severity,
                &i.title,
                now - i.declared_at,
                named_commander(i, &events),
                channel_links(i),
            ));
        }
        Ok(Reply::private(replies::paragraphs(lines)))
    }

    /// The timeline of the incident named, or of the one `channel` belongs to.
    pub async fn timeline(
        &self,
        channel: &str,
        id: Option<IncidentId>,
    ) -> Result<Reply, StoreError> {
        let inc = match self.find(channel, id).await? {
            Ok(i) => i,
            Err(msg) => return Ok(Reply::refused(msg)),
        };
        let events = self.store.incident_events(inc.id).await?;
        let entries: Vec<_> = events.iter().map(timeline_entry).collect();
        Ok(Reply::private(replies::incident_timeline(
            inc.id,
            inc.severity,
            &inc.title,
            inc.resolved_at,
            &entries,
        )))
    }
}
