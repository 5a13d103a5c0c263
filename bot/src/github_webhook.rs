//! `POST /github/webhook`: signed deliveries that tell the bot a run waits on an
//! environment gate. A delivery whose `X-Hub-Signature-256` does not verify with
//! `github.webhook_secret` is refused with 401 and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use erlmcp_adapters::github::webhook::{self, Event};
use tracing::{debug, info, warn};

use crate::engine::Engine;

pub fn routes<S: Clone + Send + Sync + 'static>(engine: Arc<Engine>) -> Router<S> {
    Router::new()
        .route("/github/webhook", post(delivery))
        .with_state(engine)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn delivery(State(engine): State<Arc<Engine>>, headers: HeaderMap, body: Bytes) -> Response {
    let secret = engine
        .config()
        .github
        .webhook_secret
        .expose()
        .as_bytes()
        .to_vec();
    if let Err(e) = webhook::verify(&secret, &body, header(&headers, "x-hub-signature-256")) {
        debug!(error = %e, "github: delivery refused");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    let event = header(&headers, "x-github-event").unwrap_or("");
    let delivery = header(&headers, "x-github-delivery")
        .unwrap_or("")
        .to_string();
    let event = match webhook::parse(event, &body) {
        Ok(e) => e,
        Err(why) => {
            warn!(%delivery, error = %why, "github: unreadable delivery");
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let run = match event {
        Event::WorkflowRun { run, .. } if run.status == "waiting" => run,
        Event::DeploymentReview { action, run, .. } if action == "requested" => run,
        Event::WorkflowRun { .. } | Event::DeploymentReview { .. } | Event::Ignored(_) => {
            return (StatusCode::OK, "ignored\n").into_response();
        }
    };
    info!(%delivery, run = run.id, "github: a run waits on an environment gate");
    // GitHub waits ten seconds for an answer; the gate's card is posted afterwards.
    let worker = engine.clone();
    engine.spawn_tracked(async move {
        if let Err(e) = worker.github_gate(&run).await {
            warn!(error = %e, run = run.id, "github: the gate request could not be stored");
        }
    });
    (StatusCode::ACCEPTED, "accepted\n").into_response()
}
