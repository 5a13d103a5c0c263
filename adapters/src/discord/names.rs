//! Incident channel names on Discord: lowercase words joined by hyphens, at most 100
//! characters. The API takes almost any name; the client shows text channels this way, so
//! the bot asks for what people will see.

/// Discord's limit on a channel name.
pub const MAX_CHANNEL_NAME: usize = 100;

/// `inc-7-checkout-errors-on-eu-west` from a hint such as `inc-7 Checkout errors on EU-West!`.
pub fn channel_name(hint: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in hint.chars() {
        if c.is_alphanumeric() || c == '_' {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    let mut cut: String = out.chars().take(MAX_CHANNEL_NAME).collect();
    while cut.ends_with('-') {
        cut.pop();
    }
    if cut.is_empty() {
        "incident".to_string()
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_hyphenated_and_bounded() {
        assert_eq!(
            channel_name("inc-7 Checkout errors on EU-West!"),
            "inc-7-checkout-errors-on-eu-west"
        );
        assert_eq!(channel_name("  --Ünïcode  Ok--  "), "ünïcode-ok");
        assert_eq!(channel_name("!!!"), "incident");
        let long = channel_name(&format!("inc-1 {}", "word ".repeat(50)));
        assert!(long.chars().count() <= MAX_CHANNEL_NAME);
        assert!(!long.ends_with('-'));
    }
}
