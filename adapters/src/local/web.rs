//! The local chat page and its HTTP routes: `GET /` (the page, static and embedded),
//! `GET /local/events` (server-sent events, caught up with `Last-Event-ID`),
//! `POST /local/messages` and `POST /local/actions` (what a person types or clicks).
//!
//! Who may use it: the page speaks for anyone it lists, so it is for one trusted machine.
//! Without a token it answers only requests addressed to a loopback name (a web page
//! elsewhere cannot rebind its own name to 127.0.0.1 and drive it); with `local.token` it
//! asks for the token and then sets a cookie. Changes take JSON only and refuse a foreign
//! `Origin`, so another site open in the same browser cannot post a command or a vote.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use erlmcp_commands::RequestId;
use futures::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;
use tracing::{debug, warn};

use super::{LocalChat, Sequenced, hand_over};
use crate::chat::{Asked, InboundHandler};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The cookie that carries proof of the token (its SHA-256, never the token itself).
const COOKIE: &str = "erlmcp_local";
/// Longest command accepted from the page.
const MAX_TEXT: usize = 4_000;

/// Someone the page can speak as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonView {
    /// The local name (`alice` for `local:alice`).
    pub name: String,
    pub roles: Vec<String>,
}

/// What the page is told about this bot.
#[derive(Debug, Clone, Serialize)]
pub struct Directory {
    pub people: Vec<PersonView>,
    /// The slash command, `/erlmcp`.
    pub command: String,
}

/// Whether the page needs a token.
#[derive(Clone)]
pub struct Access {
    /// SHA-256 of `local.token`, when set.
    token_digest: Option<[u8; 32]>,
}

impl Access {
    /// Loopback use only: requests must name a loopback host.
    pub fn loopback() -> Access {
        Access { token_digest: None }
    }

    /// Any host, with the token.
    pub fn with_token(token: &str) -> Access {
        Access {
            token_digest: Some(Sha256::digest(token.as_bytes()).into()),
        }
    }

    pub fn needs_token(&self) -> bool {
        self.token_digest.is_some()
    }

    fn cookie_value(&self) -> Option<String> {
        self.token_digest.map(hex_of)
    }

    fn token_matches(&self, given: &str) -> bool {
        let Some(want) = self.token_digest else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        // Digests of equal length compared without an early exit.
        want.iter()
            .zip(got.iter())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
    }

    /// Whether a request may use the chat: the loopback rule, or the token's cookie.
    fn admits(&self, headers: &HeaderMap) -> Result<(), Refused> {
        match self.cookie_value() {
            None => {
                if host_is_loopback(headers) {
                    Ok(())
                } else {
                    Err(Refused::NotLoopback)
                }
            }
            Some(want) => {
                let has = cookies(headers).any(|(k, v)| k == COOKIE && v == want)
                    || bearer(headers).is_some_and(|t| self.token_matches(t));
                if has {
                    Ok(())
                } else {
                    Err(Refused::NeedsToken)
                }
            }
        }
    }
}

fn hex_of(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, header::AUTHORIZATION)?.strip_prefix("Bearer ")
}

/// The host part of `Host`, without the port.
fn host_name(headers: &HeaderMap) -> Option<&str> {
    let host = header_str(headers, header::HOST)?;
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map(|(h, _)| h);
    }
    Some(host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host))
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    match host_name(headers) {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A change must come from the page itself: an `Origin`, when the browser sends one, names
/// the same host the request went to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = header_str(headers, header::ORIGIN) else {
        return true;
    };
    let Some(host) = header_str(headers, header::HOST) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

#[derive(Debug)]
enum Refused {
    NotLoopback,
    NeedsToken,
    ForeignOrigin,
    Bad(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Refused::NotLoopback => (
                StatusCode::FORBIDDEN,
                "the local chat answers on a loopback address only (set local.token to use it from elsewhere)".to_string(),
            ),
            Refused::NeedsToken => (
                StatusCode::UNAUTHORIZED,
                "the local chat needs its access token".to_string(),
            ),
            Refused::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                "requests from another site are refused".to_string(),
            ),
            Refused::Bad(why) => (StatusCode::BAD_REQUEST, why),
        };
        (status, Json(serde_json::json!({ "error": text }))).into_response()
    }
}

/// The local chat as seen over HTTP.
pub struct LocalWeb {
    pub chat: Arc<LocalChat>,
    /// Where what is said goes (the bot's conversation layer).
    pub handler: Arc<dyn InboundHandler>,
    pub directory: Directory,
    pub access: Access,
}

impl LocalWeb {
    fn person(&self, name: &str) -> Result<String, Refused> {
        self.directory
            .people
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.name.clone())
            .ok_or_else(|| Refused::Bad(format!("unknown person {name:?}")))
    }

    fn channel(&self, id: &str) -> Result<String, Refused> {
        if self.chat.has_channel(id) {
            Ok(id.to_string())
        } else {
            Err(Refused::Bad(format!("unknown channel {id:?}")))
        }
    }

    /// Hands what was said to the bot; the reply arrives as events.
    async fn take(&self, said: Said) -> Response {
        match hand_over(
            &self.chat,
            self.handler.as_ref(),
            &said.person,
            &said.channel,
            said.asked,
            said.thread,
        )
        .await
        {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(serde_json::json!({ "error": "the bot cannot take commands right now; try again" })),
            )
                .into_response(),
        }
    }
}

/// What a person said on the page, checked.
struct Said {
    person: String,
    channel: String,
    thread: Option<u64>,
    asked: Asked,
}

/// The page's routes, to merge into the bot's router.
pub fn routes<S: Clone + Send + Sync + 'static>(web: Arc<LocalWeb>) -> Router<S> {
    let guarded = Router::new()
        .route("/local/directory", get(directory))
        .route("/local/events", get(events))
        .route("/local/messages", post(message))
        .route("/local/actions", post(action))
        .route_layer(middleware::from_fn_with_state(web.clone(), guard));
    Router::new()
        .route("/", get(index))
        .route("/local/app.js", get(app_js))
        .route("/local/style.css", get(style_css))
        .route("/local/info", get(info))
        .route("/local/session", post(session))
        .merge(guarded)
        .layer(middleware::from_fn(page_headers))
        .with_state(web)
}

async fn guard(
    State(web): State<Arc<LocalWeb>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let headers = request.headers();
    if let Err(r) = web.access.admits(headers) {
        return r.into_response();
    }
    if request.method() != axum::http::Method::GET && !same_origin(headers) {
        warn!("local chat: request from another origin refused");
        return Refused::ForeignOrigin.into_response();
    }
    next.run(request).await
}

/// The page runs only its own script and style, even if some text were ever let through
/// unescaped.
async fn page_headers(request: axum::extract::Request, next: middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

#[derive(Serialize)]
struct Info {
    needs_token: bool,
    /// Whether this request already may use the chat.
    admitted: bool,
}

async fn info(State(web): State<Arc<LocalWeb>>, headers: HeaderMap) -> Json<Info> {
    Json(Info {
        needs_token: web.access.needs_token(),
        admitted: web.access.admits(&headers).is_ok(),
    })
}

#[derive(Deserialize)]
struct SessionBody {
    token: String,
}

async fn session(
    State(web): State<Arc<LocalWeb>>,
    headers: HeaderMap,
    Json(body): Json<SessionBody>,
) -> Response {
    if !same_origin(&headers) {
        return Refused::ForeignOrigin.into_response();
    }
    match web.access.cookie_value() {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(value) if web.access.token_matches(body.token.trim()) => {
            let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        Some(_) => {
            warn!("local chat: a wrong access token was given");
            Refused::NeedsToken.into_response()
        }
    }
}

#[derive(Serialize)]
struct DirectoryBody<'a> {
    #[serde(flatten)]
    directory: &'a Directory,
    channels: Vec<super::ChannelView>,
}

async fn directory(State(web): State<Arc<LocalWeb>>) -> Response {
    Json(DirectoryBody {
        directory: &web.directory,
        channels: web.chat.channels(),
    })
    .into_response()
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(rename = "as")]
    person: String,
    channel: String,
    text: String,
}

fn said_in_message(web: &LocalWeb, body: MessageBody) -> Result<Said, Refused> {
    let person = web.person(&body.person)?;
    let channel = web.channel(&body.channel)?;
    let text = body.text.trim();
    if text.is_empty() {
        return Err(Refused::Bad("the message is empty".into()));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Refused::Bad(format!(
            "the message is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(Said {
        person,
        channel,
        thread: None,
        asked: Asked::Command(text.to_string()),
    })
}

async fn message(State(web): State<Arc<LocalWeb>>, Json(body): Json<MessageBody>) -> Response {
    match said_in_message(&web, body) {
        Ok(said) => web.take(said).await,
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Vote {
    Approve,
    Deny,
}

#[derive(Deserialize)]
struct ActionBody {
    #[serde(rename = "as")]
    person: String,
    /// The message the button is on.
    message: u64,
    /// `R-2`.
    request: String,
    action: Vote,
}

fn said_in_action(web: &LocalWeb, body: ActionBody) -> Result<Said, Refused> {
    let person = web.person(&body.person)?;
    let on = web
        .chat
        .message(body.message)
        .ok_or_else(|| Refused::Bad(format!("no message {}", body.message)))?;
    let request = body
        .request
        .trim()
        .trim_start_matches("R-")
        .parse::<i64>()
        .map(RequestId)
        .map_err(|_| Refused::Bad(format!("{:?} is not a request id", body.request)))?;
    Ok(Said {
        person,
        channel: on.channel,
        thread: Some(on.id),
        asked: Asked::Vote {
            request,
            approve: matches!(body.action, Vote::Approve),
        },
    })
}

async fn action(State(web): State<Arc<LocalWeb>>, Json(body): Json<ActionBody>) -> Response {
    match said_in_action(&web, body) {
        Ok(said) => web.take(said).await,
        Err(r) => r.into_response(),
    }
}

fn sse_event(e: &Sequenced) -> Event {
    let data = serde_json::to_string(&e.event).unwrap_or_else(|_| "{}".into());
    Event::default().id(e.seq.to_string()).data(data)
}

async fn events(
    State(web): State<Arc<LocalWeb>>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let follow = web.chat.follow(after);
    let last = follow.backlog.last().map(|e| e.seq).or(after).unwrap_or(0);
    debug!(after = ?after, backlog = follow.backlog.len(), "local chat: page connected");
    let backlog = futures::stream::iter(
        follow
            .backlog
            .into_iter()
            .map(|e| Ok::<_, Infallible>(sse_event(&e))),
    );
    let live = futures::stream::unfold((follow.live, last), |(mut rx, mut last)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => {
                    last = e.seq;
                    return Some((Ok(sse_event(&e)), (rx, last)));
                }
                // Fell behind: end the stream; the page reconnects with the last id it
                // has and is caught up (or starts over from a snapshot).
                Err(broadcast::error::RecvError::Lagged(_))
                | Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt as _;
    Sse::new(backlog.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn without_a_token_only_loopback_names_are_served() {
        let a = Access::loopback();
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(a.admits(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        for host in ["evil.example:8080", "192.168.1.5:8080", "[::2]:80"] {
            assert!(a.admits(&headers(&[("host", host)])).is_err(), "{host}");
        }
        assert!(a.admits(&HeaderMap::new()).is_err());
    }

    #[test]
    fn with_a_token_the_cookie_or_bearer_is_needed() {
        let a = Access::with_token("s3cret");
        let cookie = format!("other=1; {COOKIE}={}", a.cookie_value().unwrap());
        assert!(!cookie.contains("s3cret"));
        assert!(
            a.admits(&headers(&[("host", "bot.example"), ("cookie", &cookie)]))
                .is_ok()
        );
        assert!(
            a.admits(&headers(&[("authorization", "Bearer s3cret")]))
                .is_ok()
        );
        assert!(
            a.admits(&headers(&[("authorization", "Bearer nope")]))
                .is_err()
        );
        assert!(a.admits(&headers(&[("host", "127.0.0.1:8080")])).is_err());
    }

    #[test]
    fn a_foreign_origin_is_not_the_page() {
        let h = |o: &str| headers(&[("host", "127.0.0.1:8080"), ("origin", o)]);
        assert!(same_origin(&h("http://127.0.0.1:8080")));
        assert!(!same_origin(&h("https://evil.example")));
        assert!(!same_origin(&h("null")));
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
    }
}
