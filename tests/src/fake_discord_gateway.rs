//! A fake of Discord's gateway: a plain `ws://` WebSocket on loopback speaking as much of the
//! protocol (v10, JSON, uncompressed) as serenity's client needs: HELLO on connect, READY
//! after IDENTIFY, heartbeats acknowledged, and the dispatches a test sends
//! (`INTERACTION_CREATE`). Every connection is recorded with its IDENTIFY, whether it is
//! still open and the close code it ended with. [`FakeDiscord`](crate::fake_discord) hands
//! out its URL from `GET /gateway`, as Discord does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::fake_discord::{APPLICATION_ID, BOT_USER_ID, GUILD_ID};

/// Long enough that no heartbeat is due during a test; heartbeats are answered anyway.
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

/// One connection a client opened.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The IDENTIFY payload's `d`, once sent.
    pub identify: Option<Value>,
    pub open: bool,
    /// The close code the client sent, if it closed with one.
    pub close_code: Option<u16>,
    outbox: mpsc::UnboundedSender<Message>,
    seq: u64,
}

#[derive(Default)]
struct State {
    connections: Vec<Connection>,
}

#[derive(Clone)]
pub struct FakeGateway {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake gateway");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accepting.clone(), addr));
            }
        });
        FakeGateway { addr, state }
    }

    /// What `GET /gateway` answers.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.state().connections.clone()
    }

    /// Connections open and identified: the ones Discord would dispatch to.
    pub fn sessions(&self) -> usize {
        self.state()
            .connections
            .iter()
            .filter(|c| c.open && c.identify.is_some())
            .count()
    }

    /// Waits (up to `within`) until `want` sessions are open.
    pub async fn wait_sessions(&self, want: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.sessions() != want {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sends a dispatch to every open session; returns how many got it.
    pub fn dispatch(&self, event: &str, data: Value) -> usize {
        let mut state = self.state();
        let mut sent = 0;
        for c in state
            .connections
            .iter_mut()
            .filter(|c| c.open && c.identify.is_some())
        {
            c.seq += 1;
            let frame = json!({"op": 0, "s": c.seq, "t": event, "d": data});
            if c.outbox.send(Message::text(frame.to_string())).is_ok() {
                sent += 1;
            }
        }
        sent
    }
}

fn ready(addr: SocketAddr) -> Value {
    json!({
        "op": 0, "s": 1, "t": "READY",
        "d": {
            "v": 10,
            "user": {"id": BOT_USER_ID, "username": "erlmcp", "discriminator": "0",
                     "global_name": null, "avatar": null, "bot": true},
            "guilds": [{"id": GUILD_ID, "unavailable": true}],
            "session_id": "fake-session",
            "resume_gateway_url": format!("ws://{addr}"),
            "shard": [0, 1],
            "application": {"id": APPLICATION_ID, "flags": 0},
        }
    })
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>, addr: SocketAddr) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (outbox, mut pending) = mpsc::unbounded_channel();
    let index = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.connections.push(Connection {
            identify: None,
            open: true,
            close_code: None,
            outbox: outbox.clone(),
            seq: 1,
        });
        s.connections.len() - 1
    };
    let update = |f: &dyn Fn(&mut Connection)| {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s.connections[index]);
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}});
    if sink.send(Message::text(hello.to_string())).await.is_err() {
        update(&|c| c.open = false);
        return;
    }
    loop {
        tokio::select! {
            out = pending.recv() => {
                let Some(message) = out else { break };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    match frame["op"].as_u64() {
                        // IDENTIFY
                        Some(2) => {
                            let d = frame["d"].clone();
                            update(&|c| c.identify = Some(d.clone()));
                            let _ = outbox.send(Message::text(ready(addr).to_string()));
                        }
                        // HEARTBEAT
                        Some(1) => {
                            let _ = outbox.send(Message::text(json!({"op": 11}).to_string()));
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    update(&|c| c.close_code = code);
                    let _ = sink.send(Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            }
        }
    }
    update(&|c| c.open = false);
}
