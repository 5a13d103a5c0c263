//! What the engine offers the incident service: an environment's state now.

use super::*;

/// The engine as the incident service sees it: environments' state now, nothing more. Weak,
/// so the service inside the engine does not keep the engine alive.
pub(super) struct EngineEnvironments(pub(super) Weak<Engine>);

impl EnvironmentStatus for EngineEnvironments {
    fn status_now<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<EnvStatus, String>> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(engine) => engine.status_now(name).await,
                None => Err(replies::status_unavailable(&"the bot is shutting down")),
            }
        })
    }
}

impl Engine {
    /// `name`'s state from its target, probing the health URL when the target does not.
    async fn status_now(&self, name: &str) -> Result<EnvStatus, String> {
        let Some(spec) = self.cfg.environment(name) else {
            return Err(replies::NO_LONGER_CONFIGURED.into());
        };
        let target = self.target_for(spec)?;
        let mut status = target
            .status(spec)
            .await
            .map_err(|e| replies::status_unavailable(&e))?;
        if status.health.is_none()
            && let Some(url) = &spec.health_url
        {
            status.health =
                Some(erlmcp_adapters::probe::probe(self.http(), url, Duration::from_secs(5)).await);
        }
        Ok(status)
    }
}
