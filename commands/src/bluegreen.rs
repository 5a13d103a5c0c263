//! Blue-green environments as the bot reports them: which colour the Service sends
//! traffic to, and what each colour's Deployment runs.

use serde::{Deserialize, Serialize};

use crate::model::Colour;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourState {
    pub colour: Colour,
    /// `deployment/erlmcp-green`.
    pub workload: String,
    /// The image tag it runs; `None` when its Deployment does not exist.
    pub version: Option<String>,
    pub ready: u32,
    pub desired: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueGreenStatus {
    pub env: String,
    /// `service/erlmcp`.
    pub service: String,
    pub live: Colour,
    pub colours: Vec<ColourState>,
    /// "sandbox" for the simulated one.
    pub target: String,
}

impl BlueGreenStatus {
    pub fn render(&self) -> String {
        let label = if self.target == "sandbox" {
            "sandbox: "
        } else {
            ""
        };
        let mut out = format!(
            "{label}{}: {} sends traffic to {} (live)",
            self.env, self.service, self.live
        );
        for c in &self.colours {
            let role = if c.colour == self.live {
                "live"
            } else {
                "idle"
            };
            let state = match &c.version {
                None => "absent".to_string(),
                Some(_) if c.desired == 0 => "retired (0 replicas)".to_string(),
                Some(v) => format!("runs {v}, {}/{} ready", c.ready, c.desired),
            };
            out.push_str(&format!(
                "\n• {} ({role}, {}): {state}",
                c.colour, c.workload
            ));
        }
        out
    }
}
