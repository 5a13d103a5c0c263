//! Parse + policy decision per command: the work done on the ack path before any IO.

use chrono::{TimeZone, Utc};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use erlmcp_commands::Actor;
use erlmcp_commands::config::Config;
use erlmcp_commands::grammar;
use erlmcp_commands::policy::{self, Access, CiStatus, Facts, Policy, SoakFacts};

const CONFIG: &str = include_str!("../../bot/src/embedded.toml");

fn bench(c: &mut Criterion) {
    let cfg: Config = toml_config();
    let policy = Policy::from_config(&cfg);
    let ctx = cfg.parse_context();
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    let alice = Actor {
        platform: "slack".into(),
        user_id: "U024BE7LH".into(),
        display_name: "alice".into(),
        roles: vec!["devops-lead".into()],
        groups: Default::default(),
    };
    let facts = Facts {
        open_incident: None,
        soak: Some(SoakFacts {
            deployed_at: Some(now - chrono::Duration::hours(30)),
            rolled_back_at: None,
        }),
        ci: Some(CiStatus::Green),
    };
    let commands = [
        "/erlmcp deploy prod v3.0.1 --strategy canary \"release 3.0.1 after soak\"",
        "rollback production v2.9.5 error rate above 5%",
        "scale prod 20 P0 mitigation",
        "status",
        "incident declare P0 \"Production outage: all services down\"",
    ];
    c.bench_function("parse + policy decision (5 commands)", |b| {
        b.iter(|| {
            for text in commands {
                let cmd = grammar::parse(black_box(text), &ctx).expect("parses");
                if let Access::Rule(op) = policy::access(&cmd) {
                    black_box(policy::decide(&policy, &alice, &op, &facts, now));
                }
            }
        })
    });
}

fn toml_config() -> Config {
    // The benchmark has no figment; the embedded default is plain TOML of the same schema.
    let cfg: Config = toml::from_str(CONFIG).expect("embedded default parses");
    cfg.finish()
}

criterion_group!(benches, bench);
criterion_main!(benches);
