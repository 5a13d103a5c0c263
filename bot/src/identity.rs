//! Who did something, as the store records it and as replies name it: shared by the engine
//! and the incident service so that neither has to reach into the other for it.

use erlmcp_commands::Actor;
use erlmcp_commands::replies;

use crate::store::Who;

pub fn who(actor: &Actor) -> Who {
    Who {
        platform: actor.platform.clone(),
        user_id: actor.user_id.clone(),
        display_name: actor.display_name.clone(),
    }
}

pub fn who_label(w: &Who) -> String {
    replies::who_label(&w.platform, &w.user_id, &w.display_name)
}

/// The bot itself, for what it records on its own account (status updates).
pub fn system() -> Who {
    Who {
        platform: "system".into(),
        user_id: "erlmcp-bot".into(),
        display_name: "erlmcp-bot".into(),
    }
}

/// Whether `w` is the bot itself.
pub fn is_system(w: &Who) -> bool {
    w.platform == "system"
}
