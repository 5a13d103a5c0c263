//! Slack channel names: conversations.create accepts only lowercase letters, digits, hyphens
//! and underscores, at most 80 characters, and refuses a name already taken.

pub const MAX_CHANNEL_NAME: usize = 80;

/// Turns a hint such as `INC-7 Checkout 500s on EU` into `inc-7-checkout-500s-on-eu`.
/// Runs of anything Slack refuses become one hyphen, so the words stay readable.
pub fn channel_name(hint: &str) -> String {
    let mut out = String::with_capacity(hint.len().min(MAX_CHANNEL_NAME));
    let mut pending_hyphen = false;
    for ch in hint.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' {
            if pending_hyphen && !out.is_empty() {
                out.push('-');
            }
            pending_hyphen = false;
            out.push(ch);
        } else {
            pending_hyphen = true;
        }
        if out.len() >= MAX_CHANNEL_NAME {
            break;
        }
    }
    out.truncate(MAX_CHANNEL_NAME);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "incident".to_string()
    } else {
        out
    }
}

/// The `n`th alternative when `name` is taken: `name-2`, `name-3`, ..., cut so the whole
/// stays within the limit.
pub fn with_suffix(name: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let keep = MAX_CHANNEL_NAME - suffix.len();
    let base: String = name.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_CHANNEL_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    }

    #[test]
    fn names_follow_slack_rules() {
        assert_eq!(
            channel_name("INC-7 Checkout 500s on EU!"),
            "inc-7-checkout-500s-on-eu"
        );
        assert_eq!(channel_name("inc_7  Ümlaut ß café"), "inc_7-mlaut-caf");
        assert_eq!(channel_name("!!!"), "incident");
        let long = channel_name(&"very long title ".repeat(20));
        assert!(valid(&long) && long.len() <= 80, "{long}");
        assert!(!long.ends_with('-'));
    }

    #[test]
    fn suffixes_keep_the_limit() {
        let long = "a".repeat(80);
        let s = with_suffix(&long, 12);
        assert_eq!(s.len(), 80);
        assert!(s.ends_with("-12"));
        assert_eq!(with_suffix("inc-7-db", 2), "inc-7-db-2");
        for hint in ["x", "INC-9 ☃☃☃ snow", &"z-".repeat(60)] {
            let n = channel_name(hint);
            assert!(valid(&n), "{n}");
            assert!(valid(&with_suffix(&n, 99)), "{n}");
        }
    }
}
