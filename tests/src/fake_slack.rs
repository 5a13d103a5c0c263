//! A fake Slack: the Web API methods the bot calls, answering with Slack's JSON (`ok`,
//! `ts`, `ok:false` + `error`), a small world behind them (channels, messages, users, user
//! groups), `response_url` endpoints, and a Socket Mode WebSocket. Every call is recorded so
//! tests can read what the bot said and when.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// One request the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, or `response_url` for posts to a response URL.
    pub method: String,
    /// The body (JSON, or form fields as a JSON object) merged with the query string.
    pub params: Value,
    /// The `Authorization` header.
    pub auth: Option<String>,
    pub at: Instant,
    /// The HTTP status the fake answered with.
    pub status: u16,
}

/// A scripted answer that replaces the normal one.
#[derive(Debug, Clone)]
pub enum Failure {
    /// HTTP 429, `Retry-After` in seconds, `{"ok":false,"error":"ratelimited"}`.
    RateLimited(u64),
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 200 `{"ok":false,"error":CODE}`.
    Api(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
    /// How many times chat.update replaced it.
    pub edits: u32,
}

#[derive(Debug, Clone, Default)]
pub struct FakeChannel {
    pub id: String,
    pub name: String,
    pub topic: String,
    pub members: Vec<String>,
}

#[derive(Default)]
pub struct World {
    pub calls: Vec<Call>,
    pub messages: Vec<FakeMessage>,
    pub channels: BTreeMap<String, FakeChannel>,
    /// User group id to member user ids.
    pub groups: HashMap<String, Vec<String>>,
    /// Scripted failures per method, used up in order.
    pub failures: HashMap<String, VecDeque<Failure>>,
    /// Methods that always fail this way.
    pub always: HashMap<String, Failure>,
    pub socket_url: Option<String>,
    /// Answers for the next `response_url` posts, used up in order: status, content type,
    /// body.
    pub response_answers: VecDeque<(u16, Option<String>, String)>,
    next_ts: u64,
    next_channel: u64,
}

impl World {
    fn ts(&mut self) -> String {
        self.next_ts += 1;
        format!("1793610000.{:06}", self.next_ts)
    }
}

#[derive(Clone)]
pub struct FakeSlack {
    pub world: Arc<Mutex<World>>,
    addr: SocketAddr,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let world = Arc::new(Mutex::new(World::default()));
        let app = Router::new()
            .route("/api/{method}", post(api).get(api))
            .route("/response/{key}", post(response_url))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(world.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake slack");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack { world, addr }
    }

    /// The Web API base to put in `slack.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// A response URL on this fake; posts to it are recorded as `response_url` calls.
    pub fn response_url(&self, key: &str) -> String {
        format!("http://{}/response/{key}", self.addr)
    }

    pub fn add_group(&self, id: &str, members: &[&str]) {
        self.world
            .lock()
            .unwrap()
            .groups
            .insert(id.into(), members.iter().map(|s| s.to_string()).collect());
    }

    pub fn add_channel(&self, id: &str, name: &str) {
        self.world.lock().unwrap().channels.insert(
            id.into(),
            FakeChannel {
                id: id.into(),
                name: name.into(),
                ..FakeChannel::default()
            },
        );
    }

    /// The next calls to `method` fail as listed, then it answers normally again.
    pub fn fail_next(&self, method: &str, failures: Vec<Failure>) {
        self.world
            .lock()
            .unwrap()
            .failures
            .entry(method.into())
            .or_default()
            .extend(failures);
    }

    /// The next posts to a response URL are answered like this, in order (Slack itself
    /// answers a bare `ok`).
    pub fn answer_responses(&self, answers: &[(u16, Option<&str>, &str)]) {
        self.world.lock().unwrap().response_answers.extend(
            answers
                .iter()
                .map(|(s, ct, b)| (*s, ct.map(str::to_string), b.to_string())),
        );
    }

    pub fn fail_always(&self, method: &str, failure: Failure) {
        self.world
            .lock()
            .unwrap()
            .always
            .insert(method.into(), failure);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.world.lock().unwrap().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    pub fn messages(&self) -> Vec<FakeMessage> {
        self.world.lock().unwrap().messages.clone()
    }

    pub fn channel(&self, id: &str) -> Option<FakeChannel> {
        self.world.lock().unwrap().channels.get(id).cloned()
    }

    /// Waits until `check` holds for the recorded calls, or panics after `within`.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&FakeSlack) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                let calls: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|c| format!("{} {} {}", c.status, c.method, c.params))
                    .collect();
                panic!(
                    "timed out waiting for {what}; calls so far:\n{}",
                    calls.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn params_of(body: &[u8], query: Option<&str>) -> Value {
    let mut map = serde_json::Map::new();
    if let Some(q) = query {
        for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default() {
            map.insert(k, Value::String(v));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => map.extend(o),
        _ => {
            for (k, v) in
                serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default()
            {
                // Web API form posts carry blocks and arrays as JSON strings.
                let v = serde_json::from_str::<Value>(&v)
                    .ok()
                    .filter(|j| j.is_array() || j.is_object())
                    .unwrap_or(Value::String(v));
                map.insert(k, v);
            }
        }
    }
    Value::Object(map)
}

fn slack_error(code: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({ "ok": false, "error": code })),
    )
        .into_response()
}

fn failure_response(f: &Failure) -> Response {
    match f {
        Failure::RateLimited(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            axum::Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response(),
        Failure::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Failure::Api(code) => slack_error(code),
    }
}

fn str_param(p: &Value, k: &str) -> String {
    match p.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => String::new(),
    }
}

fn channel_json(c: &FakeChannel) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "name_normalized": c.name,
        "created": 1793610000,
        "is_channel": true,
        "is_private": false,
        "topic": { "value": c.topic, "creator": "", "last_set": 0 },
        "num_members": c.members.len(),
    })
}

async fn api(
    State(world): State<Arc<Mutex<World>>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = params_of(&body, query.as_deref());
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut w = world.lock().unwrap();
    let scripted = w
        .failures
        .get_mut(&method)
        .and_then(VecDeque::pop_front)
        .or_else(|| w.always.get(&method).cloned());
    let response = match scripted {
        Some(f) => failure_response(&f),
        None => answer(&mut w, &method, &params),
    };
    w.calls.push(Call {
        method,
        params,
        auth,
        at: Instant::now(),
        status: response.status().as_u16(),
    });
    response
}

fn answer(w: &mut World, method: &str, p: &Value) -> Response {
    let ok = |v: Value| {
        let mut v = v;
        v["ok"] = json!(true);
        (StatusCode::OK, axum::Json(v)).into_response()
    };
    match method {
        "chat.postMessage" => {
            let channel = str_param(p, "channel");
            if channel.is_empty() {
                return slack_error("channel_not_found");
            }
            let ts = w.ts();
            let thread_ts = p
                .get("thread_ts")
                .and_then(Value::as_str)
                .map(str::to_string);
            let m = FakeMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: thread_ts.clone(),
                text: str_param(p, "text"),
                blocks: p.get("blocks").cloned(),
                edits: 0,
            };
            w.messages.push(m);
            ok(json!({
                "channel": channel,
                "ts": ts,
                "message": { "type": "message", "bot_id": "B0BOT", "ts": ts, "thread_ts": thread_ts, "text": str_param(p, "text") },
            }))
        }
        "chat.update" => {
            let (channel, ts) = (str_param(p, "channel"), str_param(p, "ts"));
            let Some(m) = w
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return slack_error("message_not_found");
            };
            m.text = str_param(p, "text");
            m.blocks = p.get("blocks").cloned();
            m.edits += 1;
            ok(
                json!({ "channel": channel, "ts": ts, "text": m.text, "message": { "text": m.text } }),
            )
        }
        "chat.postEphemeral" => {
            let ts = w.ts();
            ok(json!({ "message_ts": ts }))
        }
        "conversations.create" => {
            let name = str_param(p, "name");
            let valid = !name.is_empty()
                && name.len() <= 80
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !valid {
                return slack_error("invalid_name_specials");
            }
            if w.channels.values().any(|c| c.name == name) {
                return slack_error("name_taken");
            }
            w.next_channel += 1;
            let id = format!("C0INC{:04}", w.next_channel);
            let c = FakeChannel {
                id: id.clone(),
                name,
                ..FakeChannel::default()
            };
            let body = channel_json(&c);
            w.channels.insert(id, c);
            ok(json!({ "channel": body }))
        }
        "conversations.invite" => {
            let channel = str_param(p, "channel");
            let users: Vec<String> = match p.get("users") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect(),
                Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
                _ => Vec::new(),
            };
            let Some(c) = w.channels.get_mut(&channel) else {
                return slack_error("channel_not_found");
            };
            for u in users {
                if !c.members.contains(&u) {
                    c.members.push(u);
                }
            }
            let body = channel_json(c);
            ok(json!({ "channel": body }))
        }
        "conversations.setTopic" => {
            let channel = str_param(p, "channel");
            let Some(c) = w.channels.get_mut(&channel) else {
                return slack_error("channel_not_found");
            };
            c.topic = str_param(p, "topic");
            let body = channel_json(c);
            ok(json!({ "channel": body, "topic": c.topic }))
        }
        "usergroups.users.list" => match w.groups.get(&str_param(p, "usergroup")) {
            Some(users) => ok(json!({ "users": users })),
            None => slack_error("no_such_subteam"),
        },
        "apps.connections.open" => match &w.socket_url {
            Some(url) => ok(json!({ "url": url })),
            None => slack_error("not_allowed_token_type"),
        },
        _ => slack_error("unknown_method"),
    }
}

async fn response_url(
    State(world): State<Arc<Mutex<World>>>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let mut params = params_of(&body, None);
    params["_key"] = json!(key);
    let mut w = world.lock().unwrap();
    let scripted = w
        .failures
        .get_mut("response_url")
        .and_then(VecDeque::pop_front);
    let answer = w.response_answers.pop_front();
    let response = match (scripted, answer) {
        (Some(f), _) => failure_response(&f),
        (None, Some((status, content_type, body))) => {
            let mut r = Response::new(axum::body::Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type {
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, ct.parse().expect("a content type"));
            }
            r
        }
        (None, None) => (StatusCode::OK, "ok").into_response(),
    };
    w.calls.push(Call {
        method: "response_url".into(),
        params,
        auth: None,
        at: Instant::now(),
        status: response.status().as_u16(),
    });
    response
}

/// A Socket Mode endpoint: apps.connections.open on the fake hands out its URL; a client
/// that connects gets `hello`, then whatever the test sends; its frames are recorded.
pub struct FakeSocketMode {
    to_client: mpsc::UnboundedSender<String>,
    pub received: Arc<Mutex<Vec<Value>>>,
    connections: Arc<Mutex<u32>>,
}

impl FakeSocketMode {
    pub async fn start(slack: &FakeSlack) -> FakeSocketMode {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake socket mode");
        let addr = listener.local_addr().unwrap();
        slack.world.lock().unwrap().socket_url = Some(format!("ws://{addr}/link/?ticket=fake"));
        let (to_client, rx) = mpsc::unbounded_channel::<String>();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (rec, conns) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            let mut rx = rx;
            // One client at a time, as Slack does per connection URL.
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                *conns.lock().unwrap() += 1;
                let (mut tx, mut from) = ws.split();
                let hello = json!({
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": { "host": "fake", "approximate_connection_time": 3600 },
                    "connection_info": { "app_id": "A111" },
                });
                if tx
                    .send(Message::Text(hello.to_string().into()))
                    .await
                    .is_err()
                {
                    continue;
                }
                loop {
                    tokio::select! {
                        out = rx.recv() => match out {
                            Some(text) => {
                                if tx.send(Message::Text(text.into())).await.is_err() {
                                    break;
                                }
                            }
                            None => return,
                        },
                        frame = from.next() => match frame {
                            Some(Ok(Message::Text(t))) => {
                                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                                    rec.lock().unwrap().push(v);
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
            }
        });
        FakeSocketMode {
            to_client,
            received,
            connections,
        }
    }

    /// Sends a frame (an envelope, `disconnect`) to the connected client.
    pub fn send(&self, frame: &Value) {
        let _ = self.to_client.send(frame.to_string());
    }

    pub fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}
