//! Properties of the grammar that must hold for any input, not just the pinned examples.

use erlmcp_commands::grammar::{EnvironmentNames, ParseContext, parse};
use erlmcp_commands::{Command, EnvName, RequestId, Strategy as DeployStrategy};
use proptest::prelude::*;

fn ctx() -> ParseContext {
    let env = |name: &str, alias: &str| EnvironmentNames {
        name: name.to_string(),
        aliases: vec![alias.to_string()],
    };
    ParseContext {
        command: "/erlmcp".to_string(),
        environments: vec![
            env("development", "dev"),
            env("staging", "stg"),
            env("production", "prod"),
        ],
    }
}

/// Characters that have bitten chat parsers: quotes of every kind, dashes that macOS
/// substitutes for `--`, control and bidi characters, combining marks, emoji.
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        2 => prop::sample::select(vec![
            '"', '“', '”', '\'', '‘', '’', '-', '—', '–', ' ', '\t', '\n', '\r', '\0', '\u{7}',
            '\u{1b}', '\u{202e}', '\u{200f}', '\u{200b}', '\u{feff}', '\u{301}', '🚀', '👩',
            '\u{200d}', 'ש', 'ل', '@', '<', '>', '|', '!', '=', 'R', '9',
        ]),
        1 => prop::char::range('a', 'z'),
    ]
}

fn nasty_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max).prop_map(|chars| chars.into_iter().collect())
}

/// A command word followed by noise, so the noise reaches every command's argument code.
fn command_then_noise() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "help",
        "whoami",
        "status",
        "deploy prod v1",
        "rollback prod",
        "approve",
        "deny",
        "cancel",
        "requests",
        "scale prod",
        "restart stg",
        "maintenance dev",
        "canary prod",
        "pods",
        "logs prod",
        "incident",
        "incident declare",
        "incident update",
        "incident severity",
        "incident commander",
        "incident resolve",
        "incident list",
        "incident timeline",
        "audit",
        "/erlmcp",
        "help incident",
    ]);
    (words, nasty_string(40)).prop_map(|(word, noise)| format!("{word} {noise}"))
}

fn check_error_shape(input: &str) {
    if let Err(error) = parse(input, &ctx()) {
        assert!(!error.message.is_empty(), "empty message for {input:?}");
        // Tokens are cut when quoted back, so a reply stays small whatever was typed.
        assert!(
            error.message.chars().count() <= 300,
            "message too long for {input:?}: {}",
            error.message
        );
        assert!(
            !error.message.chars().any(char::is_control),
            "control character in {:?}",
            error.message
        );
        let rendered = error.render();
        assert!(rendered.starts_with(&error.message));
        if let Some(usage) = &error.usage {
            assert!(usage.starts_with("/erlmcp "), "{usage}");
            assert!(rendered.contains("\nusage: /erlmcp "));
        }
    }
}

fn env_spelling() -> impl Strategy<Value = (String, &'static str)> {
    let names = prop::sample::select(vec![
        ("development", "development"),
        ("dev", "development"),
        ("staging", "staging"),
        ("stg", "staging"),
        ("production", "production"),
        ("prod", "production"),
    ]);
    (names, any::<bool>()).prop_map(|((typed, canonical), upper)| {
        let typed = if upper {
            typed.to_uppercase()
        } else {
            typed.to_string()
        };
        (typed, canonical)
    })
}

/// Free-text words that are not options and carry no quotes.
fn reason_words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-zA-Z0-9éü🚀ש.,:#-]{1,8}", 0..6)
        .prop_map(|words| words.into_iter().filter(|w| !w.starts_with("--")).collect())
}

fn expected_text(words: &[String]) -> Option<String> {
    (!words.is_empty()).then(|| words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic(input in any::<String>()) {
        check_error_shape(&input);
    }

    #[test]
    fn nasty_strings_never_panic(input in nasty_string(200)) {
        check_error_shape(&input);
    }

    #[test]
    fn commands_followed_by_noise_never_panic(input in command_then_noise()) {
        check_error_shape(&input);
    }

    #[test]
    fn valid_deploys_parse_with_their_fields(
        (env, canonical) in env_spelling(),
        version in "v?[0-9]{1,4}(\\.[0-9]{1,4}){0,2}(-rc\\.[0-9])?",
        strategy in prop::option::of(prop::sample::select(vec![
            ("rolling", DeployStrategy::Rolling),
            ("canary", DeployStrategy::Canary),
            ("blue-green", DeployStrategy::BlueGreen),
        ])),
        words in reason_words(),
        slash in any::<bool>(),
        strategy_last in any::<bool>(),
    ) {
        let mut input = format!("{}deploy {env} {version}", if slash { "/erlmcp " } else { "" });
        let option = strategy.map(|(name, _)| format!(" --strategy {name}")).unwrap_or_default();
        if !strategy_last {
            input.push_str(&option);
        }
        for word in &words {
            input.push(' ');
            input.push_str(word);
        }
        if strategy_last {
            input.push_str(&option);
        }
        let command = parse(&input, &ctx()).map_err(|e| TestCaseError::fail(e.render()))?;
        let Command::Deploy { env, version: parsed, strategy: parsed_strategy, reason } = command
        else {
            return Err(TestCaseError::fail(format!("not a deploy: {command:?}")));
        };
        prop_assert_eq!(env.as_str(), canonical);
        prop_assert_eq!(parsed.as_str(), version.as_str());
        prop_assert_eq!(parsed_strategy, strategy.map_or(DeployStrategy::Rolling, |(_, s)| s));
        prop_assert_eq!(reason, expected_text(&words));
    }

    #[test]
    fn quoted_reasons_keep_their_inner_spaces(
        reason in "[a-z]{1,5}( {1,3}[a-z]{1,5}){0,4}",
        smart in any::<bool>(),
    ) {
        let (open, close) = if smart { ('“', '”') } else { ('"', '"') };
        let input = format!("restart prod {open}{reason}{close}");
        let command = parse(&input, &ctx()).map_err(|e| TestCaseError::fail(e.render()))?;
        let Command::Restart { reason: parsed, .. } = command else {
            return Err(TestCaseError::fail(format!("not a restart: {command:?}")));
        };
        prop_assert_eq!(parsed, Some(reason));
    }

    #[test]
    fn scale_accepts_exactly_0_to_1000(
        (env, canonical) in env_spelling(),
        replicas in prop_oneof![0u32..=1000, 1001u32..],
        words in reason_words(),
    ) {
        let input = format!("scale {env} {replicas} {}", words.join(" "));
        let result = parse(&input, &ctx());
        if replicas <= 1000 {
            let command = result.map_err(|e| TestCaseError::fail(e.render()))?;
            prop_assert_eq!(command, Command::Scale {
                env: EnvName::new(canonical),
                replicas,
                reason: expected_text(&words),
            });
        } else {
            let error = result.unwrap_err();
            prop_assert!(error.message.contains(&format!("\"{replicas}\"")), "{}", error.message);
            prop_assert!(error.message.contains("0 to 1000"), "{}", error.message);
        }
    }

    #[test]
    fn approve_accepts_every_id_spelling(
        id in 1i64..=i64::MAX,
        spelling in 0..3usize,
        words in reason_words(),
    ) {
        let token = match spelling {
            0 => format!("R-{id}"),
            1 => format!("r-{id}"),
            _ => id.to_string(),
        };
        let input = format!("APPROVE {token} {}", words.join(" "));
        let command = parse(&input, &ctx()).map_err(|e| TestCaseError::fail(e.render()))?;
        prop_assert_eq!(command, Command::Approve {
            id: RequestId(id),
            comment: expected_text(&words),
        });
    }

    #[test]
    fn bad_request_ids_are_named_in_the_error(token in "(R-|r-|)(0+|-[0-9]{1,5}|[1-9][0-9]{19,24}|[a-z]{1,4})") {
        let error = parse(&format!("cancel {token}"), &ctx()).unwrap_err();
        prop_assert_eq!(
            error.message,
            format!("invalid request id \"{token}\" (expected e.g. R-42)")
        );
        prop_assert_eq!(error.usage.as_deref(), Some("/erlmcp cancel ID"));
    }
}

proptest! {
    // Each case builds and scans up to 6,000 characters; fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn long_strings_are_refused_by_length(input in nasty_string(6000)) {
        let length = input.chars().count();
        let result = parse(&input, &ctx());
        if length > 4000 {
            let error = result.unwrap_err();
            prop_assert_eq!(
                error.message,
                format!("command too long ({length} characters, at most 4000)")
            );
        } else {
            check_error_shape(&input);
        }
    }
}
