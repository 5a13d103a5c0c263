//! Progress of one command in a thread.

use std::sync::Arc;

use erlmcp_adapters::chat::ChatPlatform;
use erlmcp_adapters::target::Progress;
use erlmcp_commands::render::Reply;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::error;

use super::{Thread, count_failure};
use crate::metrics::Metrics;

/// Progress lines of one command. The engine reports synchronously, so lines go into a
/// channel and a task posts them; lines that arrive while a post waits for the channel's
/// rate limit are sent together as one message.
pub(super) struct ThreadProgress {
    tx: mpsc::UnboundedSender<String>,
}

impl Progress for ThreadProgress {
    fn report(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

impl ThreadProgress {
    /// The sink for the engine, and a task that ends (with the thread used, if any) once the
    /// sink is dropped and every line is posted. Without a thread, `header` is posted in
    /// `channel` at the first line and the lines go under it.
    pub(super) fn start(
        chat: Arc<dyn ChatPlatform>,
        metrics: Arc<Metrics>,
        channel: String,
        header: Reply,
        thread: Option<Thread>,
    ) -> (Arc<dyn Progress>, JoinHandle<Option<Thread>>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let platform = chat.platform();
            let mut thread = thread;
            while let Some(first) = rx.recv().await {
                let mut lines = vec![first];
                while let Ok(more) = rx.try_recv() {
                    lines.push(more);
                }
                if thread.is_none() {
                    match chat.post(&channel, &header).await {
                        Ok(parent) => {
                            thread = Some(Thread {
                                parent,
                                owned: true,
                            })
                        }
                        Err(e) => {
                            error!(%platform, error = %e, "could not open the progress thread");
                            count_failure(&metrics, platform);
                            continue;
                        }
                    }
                }
                if let Some(t) = &thread
                    && let Err(e) = chat
                        .post_in_thread(&t.parent, &Reply::ok(lines.join("\n")))
                        .await
                {
                    error!(%platform, error = %e, "could not post progress");
                    count_failure(&metrics, platform);
                }
            }
            thread
        });
        (Arc::new(ThreadProgress { tx }), task)
    }
}
