//! Socket Mode: the bot dials Slack instead of being called, and envelopes reach the same
//! handlers HTTP requests do.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use super::inbound::{Refusal, SlackAck, SlackInbound, slash_command_from_json};

impl SlackInbound {
    /// Holds a Socket Mode connection until the task is aborted, reconnecting when Slack
    /// asks (`disconnect`) or the connection drops.
    ///
    /// The client is written here on tokio-tungstenite rather than taken from
    /// slack-morphism's listener so that envelopes reach exactly the handlers HTTP mode
    /// uses, on the same raw payloads, and each envelope is acknowledged before its command
    /// runs rather than after a callback returns.
    pub fn start_socket_mode(self: &Arc<Self>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match this.socket_session().await {
                    Ok(()) => {
                        failures = 0;
                        info!("slack socket mode: reconnecting");
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = Duration::from_secs(1u64 << failures.min(5));
                        warn!(error = %e, wait_s = wait.as_secs(), "slack socket mode: connection failed");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        })
    }

    /// One connection, until Slack closes it or asks for a reconnect.
    async fn socket_session(self: &Arc<Self>) -> anyhow::Result<()> {
        let url = self.platform().open_socket_url().await?;
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        let (mut tx, mut rx) = ws.split();
        while let Some(frame) = rx.next().await {
            let text = match frame? {
                Message::Text(t) => t,
                Message::Ping(p) => {
                    tx.send(Message::Pong(p)).await?;
                    continue;
                }
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                warn!("slack socket mode: frame is not JSON");
                continue;
            };
            match frame.get("type").and_then(Value::as_str) {
                Some("hello") => info!("slack socket mode: connected"),
                Some("disconnect") => {
                    info!(reason = ?frame.get("reason"), "slack socket mode: asked to reconnect");
                    return Ok(());
                }
                _ => {
                    if let Some(ack) = self.envelope(&frame).await {
                        tx.send(Message::Text(ack.to_string().into())).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles one envelope and returns its acknowledgement.
    pub async fn envelope(&self, frame: &Value) -> Option<Value> {
        let envelope_id = frame.get("envelope_id")?.as_str()?.to_string();
        let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
        let accepts_payload = frame
            .get("accepts_response_payload")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kind = frame.get("type").and_then(Value::as_str);
        let handled = match kind {
            Some("slash_commands") => match slash_command_from_json(&payload) {
                Ok(cmd) => self.slash_command(cmd).await,
                Err(e) => Err(Refusal::Bad(e)),
            },
            Some("interactive") => self.interaction(&payload).await,
            Some("events_api") => {
                let retry = frame.get("retry_attempt").map(|v| v.to_string());
                self.event(&payload, retry.as_deref()).await
            }
            other => {
                debug!(kind = ?other, "slack socket mode: envelope ignored");
                Ok(SlackAck::Empty)
            }
        };
        let ack = match handled {
            Ok(a) => a,
            // Not acknowledging makes Slack deliver the envelope again later.
            Err(Refusal::Unavailable) => return None,
            // Already logged; acknowledged so that Slack does not send it again.
            Err(Refusal::ForeignWorkspace) => SlackAck::Empty,
            Err(Refusal::Bad(e)) => {
                warn!(kind = ?kind, reason = %e.0, "slack socket mode: malformed envelope");
                SlackAck::Empty
            }
        };
        Some(match ack {
            SlackAck::Json(p) if accepts_payload => {
                json!({ "envelope_id": envelope_id, "payload": p })
            }
            _ => json!({ "envelope_id": envelope_id }),
        })
    }
}
