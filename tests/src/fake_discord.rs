//! A fake Discord REST API (v10): the routes the bot calls, answering in Discord's JSON, with
//! a small world behind them (one guild, its channels and roles, messages, threads,
//! interaction tokens and their `@original` responses, registered commands). Every call is
//! recorded; scripted 429s come with `Retry-After`, the `X-RateLimit-*` headers and the body
//! `{message, retry_after, global}` as Discord sends them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const APPLICATION_ID: &str = "1100000000000000001";
pub const GUILD_ID: &str = "1100000000000000002";
pub const BOT_USER_ID: &str = "1100000000000000003";

/// One request the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path after `/api/v10`, ids as sent.
    pub path: String,
    /// The route with ids replaced by `{id}` and tokens by `{token}`.
    pub route: String,
    pub body: Value,
    pub auth: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    pub id: String,
    pub channel_id: String,
    pub content: String,
    pub embeds: Value,
    pub components: Value,
    pub flags: u64,
    pub allowed_mentions: Value,
    /// The interaction token it was sent with, for follow-ups and `@original`.
    pub token: Option<String>,
    pub edits: u32,
}

#[derive(Debug, Clone, Default)]
pub struct FakeChannel {
    pub id: String,
    pub name: String,
    pub topic: String,
    pub kind: u8,
    pub parent_id: Option<String>,
}

/// A scripted answer in place of the normal one.
#[derive(Debug, Clone)]
pub enum Failure {
    /// 429 with `retry_after` seconds (body and `Retry-After` header).
    RateLimited {
        retry_after: f64,
        global: bool,
    },
    ServerError,
}

#[derive(Default)]
pub struct World {
    pub calls: Vec<Call>,
    pub messages: Vec<FakeMessage>,
    pub channels: BTreeMap<String, FakeChannel>,
    pub roles: BTreeMap<String, String>,
    /// Registered commands per scope: `global` or the guild id.
    pub commands: HashMap<String, Vec<Value>>,
    /// Interaction tokens Discord handed out, with the channel the interaction came from.
    pub tokens: HashMap<String, String>,
    /// Tokens past their 15 minutes: webhook calls with them fail as Discord's do.
    pub expired: Vec<String>,
    /// Tokens whose interaction has its response (callback endpoint): a second is refused.
    pub responded: Vec<String>,
    /// Scripted failures per route (`POST /channels/{id}/messages`), used up in order.
    pub failures: HashMap<String, VecDeque<Failure>>,
    /// What `GET /gateway` answers (a [`FakeGateway`](crate::fake_discord_gateway)'s URL).
    pub gateway_url: Option<String>,
    /// Routes whose requests wait until released ([`FakeDiscord::hold`]).
    holds: HashMap<String, tokio::sync::watch::Receiver<bool>>,
    next_id: u64,
}

impl World {
    fn snowflake(&mut self) -> String {
        self.next_id += 1;
        (1_200_000_000_000_000_000u64 + self.next_id).to_string()
    }

    pub fn channel_named(&self, name: &str) -> Option<&FakeChannel> {
        self.channels.values().find(|c| c.name == name)
    }

    pub fn messages_in(&self, channel: &str) -> Vec<&FakeMessage> {
        self.messages
            .iter()
            .filter(|m| m.channel_id == channel)
            .collect()
    }

    pub fn calls_to(&self, route: &str) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.route == route).collect()
    }

    fn message_json(&self, m: &FakeMessage) -> Value {
        json!({
            "id": m.id,
            "channel_id": m.channel_id,
            "guild_id": GUILD_ID,
            "author": {"id": BOT_USER_ID, "username": "erlmcp", "discriminator": "0", "avatar": null, "bot": true},
            "content": m.content,
            "timestamp": "2026-12-01T10:00:00.000000+00:00",
            "edited_timestamp": if m.edits > 0 { json!("2026-12-01T10:00:01.000000+00:00") } else { Value::Null },
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": m.embeds,
            "components": m.components,
            "pinned": false,
            "type": 0,
            "flags": m.flags,
            "application_id": APPLICATION_ID,
        })
    }

    fn channel_json(&self, c: &FakeChannel) -> Value {
        json!({
            "id": c.id,
            "type": c.kind,
            "guild_id": GUILD_ID,
            "name": c.name,
            "topic": c.topic,
            "parent_id": c.parent_id,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": false,
        })
    }
}

#[derive(Clone)]
pub struct FakeDiscord {
    pub world: Arc<Mutex<World>>,
    addr: SocketAddr,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let world = Arc::new(Mutex::new(World::default()));
        let app = router(world.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake discord");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeDiscord { world, addr }
    }

    /// The same fake as `https://discord.com` over TLS, for a client built by
    /// [`Self::discord_com_client`]: serenity's own rate limiter sends only there.
    pub async fn start_tls() -> FakeDiscord {
        let world = Arc::new(Mutex::new(World::default()));
        let app = router(world.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake discord (tls)");
        let addr = listener.local_addr().unwrap();
        let acceptor = tls_acceptor();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        FakeDiscord { world, addr }
    }

    /// A client that reaches this fake (started with [`Self::start_tls`]) as
    /// `https://discord.com`, trusting the test CA only.
    pub fn discord_com_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(test_tls().ca_pem.as_bytes()).expect("test CA");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("discord.com", self.addr)
            .build()
            .expect("client for the TLS fake")
    }

    /// What to put in `discord.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A text channel in the guild; returns its id.
    pub fn add_channel(&self, name: &str) -> String {
        let mut w = self.world();
        let id = w.snowflake();
        w.channels.insert(
            id.clone(),
            FakeChannel {
                id: id.clone(),
                name: name.into(),
                kind: 0,
                ..FakeChannel::default()
            },
        );
        id
    }

    pub fn add_role(&self, name: &str) -> String {
        let mut w = self.world();
        let id = w.snowflake();
        w.roles.insert(id.clone(), name.into());
        id
    }

    /// A fresh snowflake, e.g. for a user or an interaction id.
    pub fn snowflake(&self) -> String {
        self.world().snowflake()
    }

    /// Records that Discord delivered an interaction with this token from this channel.
    pub fn issue_token(&self, token: &str, channel: &str) {
        self.world().tokens.insert(token.into(), channel.into());
    }

    pub fn expire_token(&self, token: &str) {
        self.world().expired.push(token.into());
    }

    pub fn fail_next(&self, route: &str, failure: Failure) {
        self.world()
            .failures
            .entry(route.into())
            .or_default()
            .push_back(failure);
    }

    /// Requests to `route` wait, unanswered, until the returned sender is sent `true`.
    pub fn hold(&self, route: &str) -> tokio::sync::watch::Sender<bool> {
        let (release, held) = tokio::sync::watch::channel(false);
        self.world().holds.insert(route.into(), held);
        release
    }

    pub fn set_gateway_url(&self, url: &str) {
        self.world().gateway_url = Some(url.into());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    pub fn messages(&self) -> Vec<FakeMessage> {
        self.world().messages.clone()
    }
}

/// A CA and a certificate for discord.com signed by it, made once per test process: no key
/// material is kept in the repository.
struct TestTls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn test_tls() -> &'static TestTls {
    static TLS: std::sync::OnceLock<TestTls> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["discord.com".to_string()])
            .expect("server params")
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");
        TestTls {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    })
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls = test_tls();
    let certs = vec![
        CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).expect("test certificate"),
        CertificateDer::from_pem_slice(tls.ca_pem.as_bytes()).expect("test CA"),
    ];
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("TLS server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub fn router(world: Arc<Mutex<World>>) -> Router {
    Router::new().fallback(handle).with_state(world)
}

/// The route of a path: snowflakes become `{id}`, interaction tokens `{token}`.
fn route_of(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let after_webhook_app = i >= 2 && parts[i - 2] == "webhooks";
        let after_interaction = i >= 2 && parts[i - 2] == "interactions";
        if after_webhook_app || after_interaction {
            out.push("{token}");
        } else if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push("{id}");
        } else {
            out.push(part);
        }
    }
    format!("{method} {}", out.join("/"))
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn handle(State(world): State<Arc<Mutex<World>>>, req: Request) -> Response {
    let method = req.method().clone();
    let headers: HeaderMap = req.headers().clone();
    let full = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let Some(path) = full.strip_prefix("/api/v10") else {
        return error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    };
    let path = path.to_string();
    let route = route_of(&method, &path);
    let parsed: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let held = {
        let w = world.lock().unwrap_or_else(|p| p.into_inner());
        w.holds.get(&route).cloned()
    };
    if let Some(mut held) = held {
        let _ = held.wait_for(|released| *released).await;
    }
    let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
    let scripted = w.failures.get_mut(&route).and_then(VecDeque::pop_front);
    let response = match scripted {
        Some(Failure::RateLimited {
            retry_after,
            global,
        }) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global})),
            )
                .into_response();
            let h = r.headers_mut();
            let secs = format!("{retry_after}");
            h.insert("retry-after", HeaderValue::from_str(&secs).unwrap());
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert(
                "x-ratelimit-reset-after",
                HeaderValue::from_str(&secs).unwrap(),
            );
            h.insert("x-ratelimit-bucket", HeaderValue::from_static("abcd1234"));
            h.insert(
                "x-ratelimit-scope",
                HeaderValue::from_static(if global { "global" } else { "user" }),
            );
            if global {
                h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
            }
            r
        }
        Some(Failure::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream error").into_response()
        }
        None => {
            let needs_bot_token =
                !path.starts_with("/webhooks/") && !path.starts_with("/interactions/");
            if needs_bot_token && !auth.as_deref().is_some_and(|a| a.starts_with("Bot ")) {
                error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
            } else {
                answer(&mut w, &method, &path, &parsed)
            }
        }
    };
    let status = response.status().as_u16();
    w.calls.push(Call {
        method: method.to_string(),
        path,
        route,
        body: parsed,
        auth,
        status,
        at: Instant::now(),
    });
    response
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

fn new_message(w: &mut World, channel_id: &str, body: &Value, token: Option<&str>) -> FakeMessage {
    FakeMessage {
        id: w.snowflake(),
        channel_id: channel_id.into(),
        content: body["content"].as_str().unwrap_or_default().into(),
        embeds: body.get("embeds").cloned().unwrap_or(json!([])),
        components: body.get("components").cloned().unwrap_or(json!([])),
        flags: body["flags"].as_u64().unwrap_or(0),
        allowed_mentions: body.get("allowed_mentions").cloned().unwrap_or(Value::Null),
        token: token.map(str::to_string),
        edits: 0,
    }
}

fn apply_edit(m: &mut FakeMessage, body: &Value) {
    if let Some(c) = body.get("content").and_then(Value::as_str) {
        m.content = c.into();
    }
    if let Some(e) = body.get("embeds") {
        m.embeds = e.clone();
    }
    if let Some(c) = body.get("components") {
        m.components = c.clone();
    }
    if let Some(a) = body.get("allowed_mentions") {
        m.allowed_mentions = a.clone();
    }
    m.edits += 1;
}

fn answer(w: &mut World, method: &Method, path: &str, body: &Value) -> Response {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["applications", app, "commands"]) if *app == APPLICATION_ID => ok(Value::Array(
            w.commands.get("global").cloned().unwrap_or_default(),
        )),
        ("GET", ["applications", app, "guilds", guild, "commands"]) if *app == APPLICATION_ID => {
            ok(Value::Array(
                w.commands.get(*guild).cloned().unwrap_or_default(),
            ))
        }
        ("PUT", ["applications", app, "commands"]) if *app == APPLICATION_ID => {
            put_commands(w, "global", None, body)
        }
        ("PUT", ["applications", app, "guilds", guild, "commands"]) if *app == APPLICATION_ID => {
            if *guild != GUILD_ID {
                return error(StatusCode::FORBIDDEN, 50001, "Missing Access");
            }
            put_commands(w, guild, Some(guild), body)
        }
        ("POST", ["channels", channel, "messages"]) => {
            if !w.channels.contains_key(*channel) {
                return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            }
            let m = new_message(w, channel, body, None);
            let json = w.message_json(&m);
            w.messages.push(m);
            ok(json)
        }
        ("PATCH", ["channels", channel, "messages", id]) => {
            let Some(at) = w
                .messages
                .iter()
                .position(|m| m.id == *id && m.channel_id == *channel)
            else {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            };
            apply_edit(&mut w.messages[at], body);
            let m = w.messages[at].clone();
            ok(w.message_json(&m))
        }
        ("POST", ["channels", channel, "messages", id, "threads"]) => {
            if !w
                .messages
                .iter()
                .any(|m| m.id == *id && m.channel_id == *channel)
            {
                return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            }
            if w.channels.contains_key(*id) {
                return error(
                    StatusCode::BAD_REQUEST,
                    160004,
                    "A thread has already been created for this message",
                );
            }
            // A thread started from a message takes the message's id.
            let thread = FakeChannel {
                id: id.to_string(),
                name: body["name"].as_str().unwrap_or("thread").into(),
                kind: 11,
                parent_id: Some(channel.to_string()),
                ..FakeChannel::default()
            };
            let json = w.channel_json(&thread);
            w.channels.insert(id.to_string(), thread);
            ok(json)
        }
        ("POST", ["guilds", guild, "channels"]) => {
            if *guild != GUILD_ID {
                return error(StatusCode::NOT_FOUND, 10004, "Unknown Guild");
            }
            let name = body["name"].as_str().unwrap_or_default();
            if name.is_empty() || name.chars().count() > 100 {
                return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let id = w.snowflake();
            let channel = FakeChannel {
                id: id.clone(),
                name: name.into(),
                topic: body["topic"].as_str().unwrap_or_default().into(),
                kind: body["type"].as_u64().unwrap_or(0) as u8,
                parent_id: body["parent_id"].as_str().map(str::to_string),
            };
            let json = w.channel_json(&channel);
            w.channels.insert(id, channel);
            (StatusCode::CREATED, axum::Json(json)).into_response()
        }
        ("PATCH", ["channels", channel]) => {
            let Some(c) = w.channels.get_mut(*channel) else {
                return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
            };
            if let Some(topic) = body["topic"].as_str() {
                c.topic = topic.into();
            }
            if let Some(name) = body["name"].as_str() {
                c.name = name.into();
            }
            let c = c.clone();
            ok(w.channel_json(&c))
        }
        ("POST", ["webhooks", app, token]) if *app == APPLICATION_ID => {
            let Some(channel) = live_token(w, token) else {
                return error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            };
            let m = new_message(w, &channel, body, Some(token));
            let json = w.message_json(&m);
            w.messages.push(m);
            ok(json)
        }
        ("PATCH", ["webhooks", app, token, "messages", which]) if *app == APPLICATION_ID => {
            let Some(channel) = live_token(w, token) else {
                return error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            };
            let found = if *which == "@original" {
                // The deferred response is the first message of the token.
                w.messages
                    .iter()
                    .position(|m| m.token.as_deref() == Some(*token))
            } else {
                w.messages
                    .iter()
                    .position(|m| m.id == *which && m.token.as_deref() == Some(*token))
            };
            let at = match (found, *which == "@original") {
                (Some(at), _) => at,
                // Discord made the "thinking…" message when it got the type 5 answer.
                (None, true) => {
                    let m = new_message(w, &channel, &json!({}), Some(token));
                    w.messages.push(m);
                    w.messages.len() - 1
                }
                (None, false) => return error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
            };
            apply_edit(&mut w.messages[at], body);
            let m = w.messages[at].clone();
            ok(w.message_json(&m))
        }
        ("DELETE", ["webhooks", app, token, "messages", "@original"]) if *app == APPLICATION_ID => {
            if live_token(w, token).is_none() {
                return error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            }
            // Only the response itself goes; follow-ups stay.
            if let Some(at) = w
                .messages
                .iter()
                .position(|m| m.token.as_deref() == Some(*token) && m.flags & 64 == 0)
            {
                w.messages.remove(at);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["interactions", _id, token, "callback"]) => {
            if live_token(w, token).is_none() {
                return error(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
            }
            if w.responded.contains(&token.to_string()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    40060,
                    "Interaction has already been acknowledged.",
                );
            }
            w.responded.push(token.to_string());
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["gateway"]) => match &w.gateway_url {
            Some(url) => ok(json!({"url": url})),
            None => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
        },
        ("GET", ["gateway", "bot"]) => match &w.gateway_url {
            Some(url) => ok(json!({
                "url": url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            })),
            None => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
        },
        _ => error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

fn live_token(w: &World, token: &str) -> Option<String> {
    if w.expired.iter().any(|t| t == token) {
        return None;
    }
    w.tokens.get(token).cloned()
}

fn put_commands(w: &mut World, scope: &str, guild: Option<&str>, body: &Value) -> Response {
    let Some(list) = body.as_array() else {
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    };
    let mut stored = Vec::new();
    for command in list {
        let mut c = command.clone();
        c["id"] = json!(w.snowflake());
        c["application_id"] = json!(APPLICATION_ID);
        c["version"] = json!(w.snowflake());
        c["type"] = json!(1);
        c["default_member_permissions"] = Value::Null;
        if let Some(g) = guild {
            c["guild_id"] = json!(g);
        }
        stored.push(c);
    }
    w.commands.insert(scope.into(), stored.clone());
    ok(Value::Array(stored))
}
