//! Loading the configuration: built-in defaults (the embedded default when no file is
//! given), a TOML file, then `ERLMCP_SECTION__KEY` environment overrides.

use std::path::{Path, PathBuf};

use erlmcp_commands::config::{Config, ConfigProblem};
use figment::Figment;
use figment::providers::{Env, Format, Toml};

/// The embedded default configuration (DESIGN §7).
pub const EMBEDDED_DEFAULT: &str = include_str!("embedded.toml");

/// Where the configuration came from, for logs and `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Embedded,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Embedded => f.write_str("embedded default"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub source: Source,
}

/// Picks the file: `--config PATH`, else `erlmcp-bot.toml` in the working directory if it
/// exists, else the embedded default.
pub fn resolve_source(explicit: Option<&Path>) -> Source {
    match explicit {
        Some(p) => Source::File(p.to_path_buf()),
        None => {
            let local = PathBuf::from("erlmcp-bot.toml");
            if local.is_file() {
                Source::File(local)
            } else {
                Source::Embedded
            }
        }
    }
}

/// Loads and checks the configuration. Every problem is returned, each with its key path.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, Vec<ConfigProblem>> {
    let source = resolve_source(explicit);
    let figment = match &source {
        // A file is the whole truth: the embedded environments and demo people must not
        // leak into a real deployment by merging.
        Source::File(p) => {
            if !p.is_file() {
                return Err(vec![ConfigProblem {
                    path: p.display().to_string(),
                    message: "configuration file not found".into(),
                }]);
            }
            Figment::new().merge(Toml::file_exact(p))
        }
        Source::Embedded => Figment::new().merge(Toml::string(EMBEDDED_DEFAULT)),
    };
    // Only sectioned keys (`ERLMCP_SLACK__BOT_TOKEN`) are configuration; other ERLMCP_
    // variables (test settings, for one) are not.
    let figment = figment.merge(
        Env::prefixed("ERLMCP_")
            .split("__")
            .filter(|k| k.as_str().contains('.')),
    );
    let config: Config = figment.extract().map_err(|e| figment_problems(e, None))?;
    let config = config.finish();
    let problems = crate::platforms::problems(&config);
    if problems.is_empty() {
        Ok(Loaded { config, source })
    } else {
        Err(problems)
    }
}

/// Parses a configuration from TOML text alone (tests and tools).
pub fn from_toml(text: &str) -> Result<Config, Vec<ConfigProblem>> {
    let config: Config = Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| figment_problems(e, None))?;
    let config = config.finish();
    let problems = crate::platforms::problems(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// figment's errors as problems; `section` is the platform section they were read from,
/// which their paths are relative to.
pub(crate) fn figment_problems(err: figment::Error, section: Option<&str>) -> Vec<ConfigProblem> {
    err.into_iter()
        .map(|e| {
            let path = match (section, e.path.is_empty()) {
                (Some(section), true) => section.to_string(),
                (Some(section), false) => format!("{section}.{}", e.path.join(".")),
                (None, true) => e
                    .metadata
                    .as_ref()
                    .map(|m| m.name.to_string())
                    .unwrap_or_else(|| "config".into()),
                (None, false) => e.path.join("."),
            };
            // Values are not echoed, so secrets given in a wrong place do not leak.
            ConfigProblem {
                path,
                message: kind_message(&e.kind),
            }
        })
        .collect()
}

/// figment's text for a problem, with the unknown-key case said plainly (figment's own
/// wraps the list of known keys in a stray pair of backticks).
pub(crate) fn kind_message(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownField(found, known) => unknown_key(found, known),
        other => other.to_string(),
    }
}

pub(crate) fn unknown_key(found: &str, known: &[&str]) -> String {
    let close = erlmcp_commands::grammar::suggestion(found, known.iter().copied())
        .map(|k| format!(" did you mean `{k}`?"))
        .unwrap_or_default();
    let known: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown key `{found}`;{close} the known keys here are {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms;
    use erlmcp_adapters::slack::config::SlackSection;

    #[test]
    fn unknown_keys_are_named_with_the_known_ones_plainly() {
        let kind = figment::error::Kind::UnknownField("bogus".into(), &["listen", "command"]);
        assert_eq!(
            kind_message(&kind),
            "unknown key `bogus`; the known keys here are `listen`, `command`"
        );
        assert_eq!(
            unknown_key("slak", &["bot", "slack", "discord"]),
            "unknown key `slak`; did you mean `slack`? the known keys here are `bot`, `slack`, `discord`"
        );
    }
    #[test]
    fn embedded_default_is_valid() {
        let cfg = from_toml(EMBEDDED_DEFAULT).expect("embedded default must be valid");
        assert_eq!(cfg.environments.len(), 3);
        assert_eq!(cfg.environments["production"].aliases, vec!["prod"]);
        assert_eq!(cfg.roles_for(&["local:bob".into()]), vec!["change-board"]);
    }

    #[test]
    fn check_config_reports_every_problem_with_its_path() {
        let text = r#"
[bot]
status_update_interval = "fifteen minutes"

[environments.staging]
target = "sandbox"

[roles]
change-board = ["local:bob"]
engineer = ["nobody:x"]

[[rules]]
operation = "deploy"
environments = ["staging"]
roles = ["engineer", "wizard"]
approvals = { count = 3, from = ["change-board"] }
preconditions = { soak_from = "qa", soak = "24h" }
"#;
        let problems = from_toml(text).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        // Malformed durations stop deserialisation, so they are reported on their own.
        assert_eq!(problems.len(), 1, "{text:?}");
        assert!(
            text[0].starts_with("bot.status_update_interval"),
            "{text:?}"
        );
        assert!(text[0].contains("malformed duration"), "{text:?}");

        let fixed = text_without_interval();
        let problems = from_toml(&fixed).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"roles.engineer[0]"), "{paths:?}");
        assert!(paths.contains(&"rules[0].roles[1]"), "{paths:?}");
        assert!(paths.contains(&"rules[0].approvals.count"), "{paths:?}");
        assert!(
            paths.contains(&"rules[0].preconditions.soak_from"),
            "{paths:?}"
        );
        let count = problems
            .iter()
            .find(|p| p.path == "rules[0].approvals.count")
            .unwrap();
        assert!(count.message.contains("only 1 people"), "{}", count.message);
    }

    #[test]
    fn slack_workspace_pinning_and_group_cache_keys() {
        let slack = |extra: &str| {
            format!(
                "[slack]\nenabled = true\nbot_token = \"xoxb-test\"\nsigning_secret = \"s\"\n{extra}\n{}",
                &EMBEDDED_DEFAULT[EMBEDDED_DEFAULT.find("[environments").unwrap()..]
            )
        };
        let cfg = from_toml(&slack(
            "team_id = \"T0123ABCD\"\nenterprise_id = \"E0123ABCD\"\ngroup_cache_max_age = \"30m\"",
        ))
        .unwrap();
        let section: SlackSection = platforms::section(&cfg).unwrap();
        assert_eq!(section.team_id.as_deref(), Some("T0123ABCD"));
        assert_eq!(section.enterprise_id.as_deref(), Some("E0123ABCD"));
        assert_eq!(section.group_cache_max_age().0.as_secs(), 1800);
        let unset = from_toml(&slack("")).unwrap();
        let section: SlackSection = platforms::section(&unset).unwrap();
        assert_eq!(section.group_cache_max_age().0.as_secs(), 3600);

        let problems = from_toml(&slack(
            "team_id = \"acme\"\nenterprise_id = \"T1\"\ngroup_cache_max_age = \"0s\"",
        ))
        .unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "slack.team_id",
                "slack.enterprise_id",
                "slack.group_cache_max_age"
            ],
            "{problems:?}"
        );
    }

    fn text_without_interval() -> String {
        r#"
[environments.staging]
target = "sandbox"

[roles]
change-board = ["local:bob"]
engineer = ["nobody:x"]

[[rules]]
operation = "deploy"
environments = ["staging"]
roles = ["engineer", "wizard"]
approvals = { count = 3, from = ["change-board"] }
preconditions = { soak_from = "qa", soak = "24h" }
"#
        .to_string()
    }

    #[test]
    fn example_configuration_is_valid() {
        let text = include_str!("../../deploy/erlmcp-bot.example.toml");
        let mut cfg = Figment::new()
            .merge(Toml::string(text))
            .extract::<Config>()
            .expect("example parses")
            .finish();
        // The example leaves secrets to the environment.
        platforms::edit_section(&mut cfg, |s: &mut SlackSection| {
            s.bot_token = erlmcp_commands::config::Secret::new("set-by-env");
            s.signing_secret = erlmcp_commands::config::Secret::new("set-by-env");
        });
        assert_eq!(
            platforms::problems(&cfg),
            vec![],
            "the example must pass check-config"
        );
        assert_eq!(
            cfg.environments["production"].workload_ref(),
            Some(("statefulset", "erlmcp"))
        );
    }

    #[test]
    fn owner_lease_and_sandbox_step_are_read_and_checked() {
        let cfg = from_toml(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(cfg.bot.owner_lease.0, std::time::Duration::from_secs(30));
        assert_eq!(cfg.bot.sandbox_step, None);
        let cfg = from_toml("[bot]\nowner_lease = \"5s\"\nsandbox_step = \"2s\"\n").unwrap();
        assert_eq!(cfg.bot.owner_lease.0, std::time::Duration::from_secs(5));
        assert_eq!(
            cfg.bot.sandbox_step.map(|d| d.0),
            Some(std::time::Duration::from_secs(2))
        );
        let problems =
            from_toml("[bot]\nowner_lease = \"1s\"\nsandbox_step = \"2m\"\n").unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|p| p.starts_with("bot.owner_lease") && p.contains("at least 3s")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|p| p.starts_with("bot.sandbox_step")),
            "{text:?}"
        );
    }

    #[test]
    fn http_keys_have_defaults_and_parse() {
        let cfg = from_toml("").unwrap();
        assert_eq!(cfg.bot.http_header_timeout.0.as_secs(), 10);
        assert_eq!(cfg.bot.http_body_timeout.0.as_secs(), 30);
        assert_eq!(cfg.bot.http_idle_timeout.0.as_secs(), 60);
        assert_eq!(cfg.bot.database_timeout.0.as_secs(), 60);
        assert_eq!(cfg.bot.http_max_connections, 1024);
        assert_eq!(cfg.bot.http_max_body.0, 1024 * 1024);
        assert_eq!(cfg.bot.metrics_listen, None);
        let cfg = from_toml(
            "[bot]\nmetrics_listen = \"0.0.0.0:9090\"\nhttp_header_timeout = \"5s\"\n\
             http_max_body = \"64KiB\"\nhttp_max_connections = 10\n",
        )
        .unwrap();
        assert_eq!(cfg.bot.metrics_listen.as_deref(), Some("0.0.0.0:9090"));
        assert_eq!(cfg.bot.http_header_timeout.0.as_secs(), 5);
        assert_eq!(cfg.bot.http_max_body.0, 64 * 1024);
        assert_eq!(
            from_toml("[bot]\nhttp_max_body = 2048\n")
                .unwrap()
                .bot
                .http_max_body
                .0,
            2048
        );
    }

    #[test]
    fn check_config_names_each_bad_http_key() {
        for (line, key, says) in [
            (
                "metrics_listen = \"nine-thousand\"",
                "bot.metrics_listen",
                "socket address",
            ),
            (
                "metrics_listen = \"127.0.0.1:8080\"",
                "bot.metrics_listen",
                "differ",
            ),
            (
                "http_header_timeout = \"0s\"",
                "bot.http_header_timeout",
                "between",
            ),
            (
                "http_header_timeout = \"soon\"",
                "bot.http_header_timeout",
                "malformed",
            ),
            (
                "http_body_timeout = \"2d\"",
                "bot.http_body_timeout",
                "between",
            ),
            (
                "http_idle_timeout = \"10\"",
                "bot.http_idle_timeout",
                "unit",
            ),
            (
                "http_max_connections = 0",
                "bot.http_max_connections",
                "between",
            ),
            ("http_max_connections = -5", "bot.http_max_connections", ""),
            (
                "http_max_body = \"1TB\"",
                "bot.http_max_body",
                "unknown unit",
            ),
            ("http_max_body = \"10B\"", "bot.http_max_body", "between"),
            (
                "database_timeout = \"0s\"",
                "bot.database_timeout",
                "between",
            ),
            (
                "database_timeout = \"1h\"",
                "bot.database_timeout",
                "between",
            ),
        ] {
            let problems = from_toml(&format!("[bot]\n{line}\n")).unwrap_err();
            let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            assert!(
                problems
                    .iter()
                    .any(|p| p.path == key && p.message.contains(says)),
                "{line}: {text:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let problems = from_toml("[slack]\nsigning_secrett = \"x\"\n").unwrap_err();
        assert_eq!(problems[0].path, "slack.signing_secrett");
        assert!(
            problems[0].message.contains("signing_secrett"),
            "{:?}",
            problems
        );
        assert!(!problems[0].message.contains("\"x\""));
    }

    #[test]
    fn unknown_sections_are_named_with_the_known_ones() {
        let problems = from_toml("[slak]\nenabled = true\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "slak");
        for named in ["slak", "bot", "slack", "discord", "local", "leader"] {
            assert!(problems[0].message.contains(named), "{problems:?}");
        }
    }

    #[test]
    fn platform_sections_report_mistyped_values_with_their_path() {
        let problems = from_toml("[discord]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "discord.enabled");
        let problems = from_toml("local = 5\n").unwrap_err();
        assert_eq!(problems[0].path, "local", "{problems:?}");
    }

    #[test]
    fn identities_are_checked_against_the_wired_platforms() {
        let problems =
            from_toml("[roles]\nops = [\"slack:U1\", \"discord-role:2\", \"teams:3\"]\n")
                .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "roles.ops[2]");
        assert!(
            problems[0]
                .message
                .ends_with("one of slack, slack-group, discord, discord-role, local"),
            "{problems:?}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let cfg = from_toml("[slack]\nbot_token = \"xoxb-secret\"\n").unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("xoxb-secret"));
        assert!(dbg.contains("[redacted]"));
        let section: SlackSection = platforms::section(&cfg).unwrap();
        let dbg = format!("{section:?}");
        assert!(!dbg.contains("xoxb-secret"));
        assert!(dbg.contains("[redacted]"));
    }

    #[test]
    fn audit_section_is_checked_with_key_paths_and_never_shows_the_key() {
        let cfg = from_toml("").unwrap();
        assert_eq!(cfg.audit.checkpoint_every.0.as_secs(), 300);
        assert!(cfg.audit.signing_key.is_empty());

        let text = r#"
[audit]
signing_key = "bm90LWEta2V5"
public_key = "short"
checkpoint_every = "5s"
channel = "C123"
"#;
        let problems = from_toml(text).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "audit.signing_key",
                "audit.public_key",
                "audit.checkpoint_every",
                "audit.channel"
            ],
            "{problems:?}"
        );
        let shown: String = problems.iter().map(|p| p.to_string()).collect();
        assert!(!shown.contains("bm90LWEta2V5"), "{shown}");

        let (secret, public) = crate::checkpoint::keygen().unwrap();
        let ok = format!(
            "[audit]\nsigning_key = \"{secret}\"\npublic_key = \"{public}\"\ncheckpoint_file = \"cp.jsonl\"\n"
        );
        let cfg = from_toml(&ok).unwrap();
        assert!(!format!("{cfg:?}").contains(&secret));
        assert!(crate::engine::check_audit_keys(&cfg.audit).is_ok());

        // A public key from another pair is caught before the bot signs anything.
        let (_, other) = crate::checkpoint::keygen().unwrap();
        let cfg = from_toml(&ok.replace(&public, &other)).unwrap();
        let e = crate::engine::check_audit_keys(&cfg.audit).unwrap_err();
        assert!(e.to_string().contains("audit.public_key"), "{e}");
        assert!(!e.to_string().contains(&secret));

        // Signing with nowhere outside the database to write to is a mistake.
        let nowhere = format!("[audit]\nsigning_key = \"{secret}\"\n");
        let problems = from_toml(&nowhere).unwrap_err();
        assert_eq!(problems[0].path, "audit.checkpoint_file");
    }
}
