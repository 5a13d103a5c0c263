//! GitHub webhooks: the `X-Hub-Signature-256` check and the two events the bot reads
//! (`workflow_run` and `deployment_review`).

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::runs::Run;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<hex>")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("github.webhook_secret is not set")]
    NoSecret,
}

/// Checks `sha256=<hex HMAC-SHA256 of the raw body>` in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` for `body`: what GitHub sends, for tests and tools.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the bot learns from a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A run changed (`requested`, `in_progress`, `completed`); a `waiting` run may have a
    /// gate.
    WorkflowRun { action: String, run: Run },
    /// A gate was requested, approved or rejected on `environment`.
    DeploymentReview {
        action: String,
        run: Run,
        environment: Option<String>,
    },
    /// `ping` and every event the bot does not read.
    Ignored(String),
}

#[derive(Deserialize)]
struct WorkflowRunPayload {
    action: String,
    workflow_run: Run,
}

#[derive(Deserialize)]
struct DeploymentReviewPayload {
    action: String,
    workflow_run: Run,
    #[serde(default)]
    environment: Option<String>,
}

/// Reads a delivery whose signature was already checked.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, String> {
    match event {
        "workflow_run" => {
            let p: WorkflowRunPayload = serde_json::from_slice(body)
                .map_err(|e| format!("unreadable workflow_run payload: {e}"))?;
            Ok(Event::WorkflowRun {
                action: p.action,
                run: p.workflow_run,
            })
        }
        "deployment_review" => {
            let p: DeploymentReviewPayload = serde_json::from_slice(body)
                .map_err(|e| format!("unreadable deployment_review payload: {e}"))?;
            Ok(Event::DeploymentReview {
                action: p.action,
                run: p.workflow_run,
                environment: p.environment,
            })
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_documented_example_verifies() {
        // From GitHub's "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), header);
        assert_eq!(verify(secret, body, Some(header)), Ok(()));
        assert_eq!(
            verify(secret, b"Hello, World?", Some(header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(secret, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(secret, body, Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"", body, Some(header)),
            Err(SignatureError::NoSecret)
        );
    }
}
