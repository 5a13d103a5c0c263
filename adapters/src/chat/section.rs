//! A chat platform's configuration section (`[slack]`, `[discord]`, `[local]`): the adapter
//! owns its keys, their defaults and their checks; the configuration keeps it as written
//! and the bot's wiring reads it through this trait.

use erlmcp_commands::config::{Config, ConfigProblem, IdentityKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Platform;

pub trait PlatformSection:
    Serialize + DeserializeOwned + Default + std::fmt::Debug + Send + Sync + 'static
{
    /// The platform; its name is the section's.
    const PLATFORM: Platform;

    /// The identity kinds the platform owns, as `[people]` and `[roles]` write them.
    const IDENTITIES: &'static [IdentityKind];

    /// Whether the section turns the platform on (`Some`), or leaves it to the wiring
    /// (`None`).
    fn enabled(&self) -> Option<bool>;

    /// Where the platform announces new incidents, when it does.
    fn incidents_channel(&self) -> Option<String>;

    /// Every problem in the section, with key paths that start with the section's name;
    /// `cfg` is the rest of the configuration, for checks that need it.
    fn problems(&self, cfg: &Config) -> Vec<ConfigProblem>;
}
