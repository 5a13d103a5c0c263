//! The Grafana dashboard in deploy/grafana asks only for what `/metrics` serves, and shows
//! every metric the bot exports.

use std::collections::BTreeSet;
use std::sync::Arc;

use std::time::Duration;

use erlmcp_adapters::observe::{CallStatus, Observer};
use erlmcp_bot::leader::Backend;
use erlmcp_bot::metrics::{DeliveryLabels, StoreStep};
use erlmcp_bot::scheduler::Scheduler;
use erlmcp_bot::server;
use erlmcp_bot::store::testdb;
use erlmcp_commands::render::ReplyKind;
use erlmcp_tests::harness::{Bot, embedded_config};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../../deploy/grafana/erlmcp-bot.json");

/// Metric names in a PromQL expression: the bot's prefix up to the first character that
/// cannot be part of a name.
fn names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("erlmcp_bot_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.push(name);
    }
    out
}

/// Sample names `/metrics` can carry, from its `# TYPE` lines, with the family each
/// belongs to.
fn exported(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(decl) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = decl.split_whitespace();
        let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "gauge" => &[""],
            other => panic!("unexpected metric type {other} for {family}"),
        };
        for s in suffixes {
            out.push((format!("{family}{s}"), family.to_string()));
        }
    }
    out
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_names_an_exported_metric_and_every_metric_has_a_panel() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "erlmcp-bot");
    assert!(dashboard["schemaVersion"].as_u64().is_some());

    // The real server's /metrics. A family shows there once it has a sample: give each
    // one, through real work where that is cheap, else through its recorder.
    let (store, _db) = testdb::fresh_sqlite().await;
    let bot = Bot::start(Arc::new(store), embedded_config()).await;
    let r = bot.say("dave", "restart development").await;
    assert_eq!(r.kind, ReplyKind::Ok, "{}", r.text());
    let r = bot.say("alice", "deploy production v3.0.0").await;
    assert_eq!(r.kind, ReplyKind::Accepted, "{}", r.text());
    let r = bot.say("erin", "approve R-2").await;
    assert_eq!(r.kind, ReplyKind::Refused, "{}", r.text());
    let scheduler = Scheduler::new(bot.app.engine.clone(), "dashboard");
    scheduler.install().await.unwrap();
    bot.advance(chrono::Duration::seconds(3));
    assert!(scheduler.tick().await > 0);
    let m = &bot.app.metrics;
    m.ack("slack", Duration::from_millis(2));
    Observer::api_call(m.as_ref(), "slack", CallStatus::Ok);
    Observer::rate_limit_wait(m.as_ref(), "slack", Duration::from_secs(1));
    m.set_leader(Backend::Single, true);
    m.store_refused(StoreStep::Audit);
    m.delivery_failures
        .get_or_create(&DeliveryLabels {
            platform: "slack".into(),
        })
        .inc();
    let app = Arc::new(erlmcp_bot::app::App {
        engine: bot.app.engine.clone(),
        store: bot.app.store.clone(),
        metrics: bot.app.metrics.clone(),
        config: bot.app.config.clone(),
        conversation: bot.app.conversation.clone(),
        slack: bot.app.slack.clone(),
        local: bot.app.local.clone(),
        discord: bot.app.discord.clone(),
        discord_gateway: bot.app.discord_gateway.clone(),
        discord_client: bot.app.discord_client.clone(),
        draining: bot.app.draining.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = server::router(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = exported(&text);
    let samples: BTreeSet<&str> = exported.iter().map(|(s, _)| s.as_str()).collect();
    let families: BTreeSet<&str> = exported.iter().map(|(_, f)| f.as_str()).collect();

    let mut shown = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{title}: id");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = names_in(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no bot metric");
            for name in names {
                assert!(
                    samples.contains(name.as_str()),
                    "{title}: {expr} asks for {name}, which /metrics does not serve:\n{text}"
                );
                let family = exported.iter().find(|(s, _)| *s == name).unwrap();
                shown.insert(family.1.clone());
            }
        }
    }
    let missing: Vec<&&str> = families.iter().filter(|f| !shown.contains(**f)).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
    for wanted in [
        "erlmcp_bot_commands",
        "erlmcp_bot_approvals",
        "erlmcp_bot_ack_duration_seconds",
        "erlmcp_bot_api_calls",
        "erlmcp_bot_rate_limit_waits",
        "erlmcp_bot_scheduler_lag_seconds",
        "erlmcp_bot_leader",
        "erlmcp_bot_store_write_failures",
    ] {
        assert!(families.contains(wanted), "/metrics lacks {wanted}");
    }
    bot.finish().await;
}

#[test]
fn metric_names_are_read_from_expressions() {
    assert_eq!(
        names_in("sum by (le) (rate(erlmcp_bot_a_bucket[5m])) / erlmcp_bot_b"),
        ["erlmcp_bot_a_bucket", "erlmcp_bot_b"]
    );
}
