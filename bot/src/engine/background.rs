//! Work that outlives a command (post-deploy guards, follow-ups of interrupted requests)
//! and the commands in flight: what shutdown drains and what tests wait for.

use super::*;

impl Engine {
    /// On shutdown: waits until no command is being handled, at most `limit`. Returns how
    /// many were still running when it gave up.
    pub async fn drain(&self, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.idle.notified();
            let n = self.in_flight.load(Ordering::SeqCst);
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.in_flight.load(Ordering::SeqCst);
            }
        }
    }

    /// Waits for background work (post-deploy guards) started so far.
    pub async fn wait_background(&self) {
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                if let Err(e) = h.await {
                    self.note_join_error(e);
                }
            }
        }
    }

    /// Waits until no command is being handled and no background work is left, however it
    /// was started: the point after which nothing more happens until someone speaks or the
    /// clock moves.
    pub async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                idle.await;
                continue;
            }
            if self
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            {
                return;
            }
            self.wait_background().await;
        }
    }

    /// Runs `work` as background work of the engine: [`Engine::wait_idle`] waits for it and a
    /// panic in it is kept for [`Engine::take_panics`].
    pub fn spawn_tracked(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.track(tokio::spawn(work));
    }

    pub(super) fn track(&self, handle: tokio::task::JoinHandle<()>) {
        use futures::FutureExt as _;
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        // Finished work is let go here, so a daemon that runs for months keeps only the
        // handles of what still runs.
        let mut running = Vec::with_capacity(background.len() + 1);
        for h in background.drain(..) {
            if !h.is_finished() {
                running.push(h);
            } else if let Some(Err(e)) = h.now_or_never() {
                self.note_join_error(e);
            }
        }
        running.push(handle);
        *background = running;
    }

    fn note_join_error(&self, e: tokio::task::JoinError) {
        let Ok(payload) = e.try_into_panic() else {
            return;
        };
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        error!(panic = %message, "background work panicked");
        self.panics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// The messages of background work that panicked since the last call.
    pub fn take_panics(&self) -> Vec<String> {
        std::mem::take(&mut *self.panics.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Counts a command as in flight for as long as it is handled.
pub(super) struct InFlight<'a>(&'a Engine);

impl<'a> InFlight<'a> {
    pub(super) fn enter(engine: &'a Engine) -> InFlight<'a> {
        engine.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(engine)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
