//! Approval cards redrawn in place as their requests change, on whichever platform
//! posted them.

use std::collections::HashMap;
use std::sync::Arc;

use erlmcp_adapters::chat::{ChatPlatform, Platform};
use erlmcp_commands::render::Reply;
use tokio::sync::broadcast;
use tracing::{Instrument, info_span, warn};

use super::delivery_failed;
use crate::engine::EngineEvent;
use crate::metrics::Metrics;

/// One task, in order, so a later state is never overwritten by an earlier one.
pub(super) async fn approval_cards(
    mut events: broadcast::Receiver<EngineEvent>,
    chats: HashMap<Platform, Arc<dyn ChatPlatform>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "approval card updates fell behind; some were skipped"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            EngineEvent::RequestChanged { card, message } => {
                let Some(message) = message else {
                    continue;
                };
                let Some(chat) = chats.get(&message.platform) else {
                    continue;
                };
                let id = card.id;
                let span = info_span!("approval_card", platform = %message.platform, request = %id);
                let updated = chat
                    .update(&message, &Reply::pending(card))
                    .instrument(span)
                    .await;
                if let Err(e) = updated {
                    delivery_failed(
                        &metrics,
                        message.platform,
                        "the approval card update",
                        &id.to_string(),
                        &e,
                    );
                }
            }
        }
    }
}
