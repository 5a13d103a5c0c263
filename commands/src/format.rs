//! How times and durations are written in every message: a leaf every other module may use.

use chrono::Duration;

use crate::model::Timestamp;

/// `2d 3h`, `23h 59m`, `5m 3s`, `45s`: two units at most, enough to read at a glance.
pub fn duration(d: Duration) -> String {
    let mut secs = d.num_seconds();
    let neg = secs < 0;
    if neg {
        secs = -secs;
    }
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m"), (s, "s")]
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n != 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    let body = if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    };
    if neg { format!("-{body}") } else { body }
}

pub fn timestamp(t: Timestamp) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}
