//! `discord.mode = "gateway"`: the bot dials Discord's gateway through serenity's client and
//! receives interactions as `INTERACTION_CREATE` events instead of being POSTed to. Each one
//! goes through the same handling as the endpoint's ([`DiscordInbound::from_gateway`]) and is
//! answered through its callback endpoint.
//!
//! Interactions reach every gateway connection whatever its intents, so the connection asks
//! for none (no privileged intent, no message content). Only one replica may hold it: the
//! daemon starts [`DiscordGateway::start`] under leadership, which aborts it when leadership
//! is lost, and calls [`DiscordGateway::close`] at shutdown so Discord sees a clean close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use serenity::all::{
    ClientBuilder, Context, Event, GatewayIntents, Interaction, RawEventHandler, ShardManager,
};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::DiscordPlatform;
use super::inbound::DiscordInbound;

/// None: interactions are delivered regardless of intents.
pub const INTENTS: GatewayIntents = GatewayIntents::empty();

/// Pause before connecting again after the connection ended with an error (a refused
/// token, a gateway that could not be reached).
const RECONNECT_AFTER: Duration = Duration::from_secs(15);

/// How long a clean close may take before the process goes on without it.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

pub struct DiscordGateway {
    inbound: Arc<DiscordInbound>,
    /// The shards of the connection while one is up, to close it.
    running: Mutex<Option<Arc<ShardManager>>>,
}

impl DiscordGateway {
    pub fn new(inbound: Arc<DiscordInbound>) -> Arc<DiscordGateway> {
        Arc::new(DiscordGateway {
            inbound,
            running: Mutex::new(None),
        })
    }

    fn platform(&self) -> &Arc<DiscordPlatform> {
        self.inbound.platform()
    }

    /// Connects and holds the connection until the task is aborted (leadership lost), which
    /// closes it.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.run().await })
    }

    async fn run(self: Arc<Self>) {
        loop {
            // Built afresh per connection: serenity's client takes its own, and the gateway
            // URL is asked of the same API (`discord.api_url`) as every other call.
            let http = self.platform().rest().new_http();
            let events = Events {
                inbound: self.inbound.clone(),
            };
            let built = ClientBuilder::new_with_http(http, INTENTS)
                .raw_event_handler(events)
                .await;
            let mut client = match built {
                Ok(c) => c,
                Err(e) => {
                    error!(error = %e, "discord: gateway client not built; trying again");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
            };
            let shards = client.shard_manager.clone();
            *lock(&self.running) = Some(shards.clone());
            // Aborted (leadership lost): serenity's shards run in tasks of their own, which
            // only a shutdown stops.
            let _close = CloseOnDrop(Some(shards));
            info!("discord: connecting to the gateway");
            match client.start().await {
                Ok(()) => {
                    info!("discord: gateway connection closed");
                    return;
                }
                Err(e) => {
                    error!(error = %e, "discord: gateway connection ended; connecting again");
                }
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    }

    /// Closes the connection (close code 1000) and waits for it, at most ten seconds.
    pub async fn close(&self) {
        let shards = lock(&self.running).take();
        if let Some(shards) = shards
            && tokio::time::timeout(CLOSE_WITHIN, shards.shutdown_all())
                .await
                .is_err()
        {
            warn!("discord: the gateway connection did not close in time");
        }
    }
}

/// Shuts the shards down when the task holding them ends or is aborted.
struct CloseOnDrop(Option<Arc<ShardManager>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let Some(shards) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shards.shutdown_all().await });
        }
    }
}

struct Events {
    inbound: Arc<DiscordInbound>,
}

#[async_trait]
impl RawEventHandler for Events {
    async fn raw_event(&self, _ctx: Context, event: Event) {
        let body = match event {
            Event::Ready(ready) => {
                info!(
                    session = %ready.ready.session_id,
                    "discord: gateway ready; interactions arrive here"
                );
                return;
            }
            Event::InteractionCreate(created) => interaction_json(&created.interaction),
            // A payload serenity's model does not read (a field Discord added or left out)
            // still arrives, untyped: the bot's own decoding reads only what it needs.
            Event::Unknown(unknown) if unknown.kind == "INTERACTION_CREATE" => {
                serde_json::to_vec(&unknown.value).ok()
            }
            _ => return,
        };
        let Some(body) = body else {
            warn!("discord: an interaction from the gateway could not be read");
            return;
        };
        self.inbound.from_gateway(&body).await;
    }
}

/// The interaction as Discord sent it, for the same decoding as the endpoint's. serenity
/// writes its models back without the `type` the variant stands for: it is put back.
pub fn interaction_json(interaction: &Interaction) -> Option<Vec<u8>> {
    let mut value = serde_json::to_value(interaction).ok()?;
    let kind: u8 = interaction.kind().into();
    if let Value::Object(map) = &mut value {
        map.insert("type".into(), Value::from(kind));
    }
    serde_json::to_vec(&value).ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
