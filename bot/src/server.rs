//! The HTTP listener: health, readiness, metrics, and (later) the chat platforms' endpoints.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::App;

#[derive(Clone)]
pub struct ServerState {
    pub app: Arc<App>,
}

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if let Some(slack) = &app.slack {
        router = router.merge(crate::slack::routes(slack.clone()));
    }
    router.with_state(ServerState { app })
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers: without it nothing can be audited, so nothing can run.
async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    match s.app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

async fn metrics(State(s): State<ServerState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.app.metrics.encode(),
    )
}
