//! The runbook's metric triggers for an automatic rollback ("error rate > 5% for 5
//! minutes", "P95 latency > 10s for 5 minutes") and its post-deploy success criteria, as
//! an environment configures them. Pure: the guard reads Prometheus and asks here.

use std::time::Duration;

use crate::config::EnvironmentSpec;

/// The runbook's trigger thresholds, used when the environment sets none.
pub const DEFAULT_ERROR_RATE: f64 = 0.05;
pub const DEFAULT_P95: Duration = Duration::from_secs(10);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The runbook's success criteria after a deploy.
pub const SUCCESS_ERROR_RATE: f64 = 0.01;
pub const SUCCESS_P95: Duration = Duration::from_millis(500);

/// What a query's number means, for thresholds and for showing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A fraction: 0.07 is shown as 7.0%.
    Ratio,
    Seconds,
}

impl Unit {
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Ratio => format!("{:.1}%", value * 100.0),
            Unit::Seconds if value < 1.0 => format!("{:.0} ms", value * 1000.0),
            Unit::Seconds => format!("{value:.1} s"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    ErrorRate,
    P95,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::ErrorRate => "error rate",
            MetricKind::P95 => "P95 latency",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            MetricKind::ErrorRate => Unit::Ratio,
            MetricKind::P95 => Unit::Seconds,
        }
    }

    /// The success criterion's bound, in the query's unit.
    pub fn success_bound(self) -> f64 {
        match self {
            MetricKind::ErrorRate => SUCCESS_ERROR_RATE,
            MetricKind::P95 => SUCCESS_P95.as_secs_f64(),
        }
    }
}

/// One PromQL query with the threshold it must stay under.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTrigger {
    pub kind: MetricKind,
    pub query: String,
    /// Above this, in the query's unit, the metric breaches.
    pub threshold: f64,
    /// A breach that lasts this long triggers a rollback.
    pub window: Duration,
}

impl MetricTrigger {
    /// "error rate > 5.0% for 5m".
    pub fn describe(&self) -> String {
        format!(
            "{} > {} for {}",
            self.kind.as_str(),
            self.kind.unit().show(self.threshold),
            crate::config::HumanDuration(self.window)
        )
    }
}

/// The metric triggers of one environment: its Prometheus and the queries configured.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricTriggers {
    pub prometheus_url: String,
    pub triggers: Vec<MetricTrigger>,
}

impl MetricTriggers {
    /// `None` when the environment has no Prometheus or no query.
    pub fn for_env(env: &EnvironmentSpec) -> Option<MetricTriggers> {
        let url = env.prometheus_url.clone()?;
        let mut triggers = Vec::new();
        if let Some(q) = &env.error_rate_query {
            triggers.push(MetricTrigger {
                kind: MetricKind::ErrorRate,
                query: q.clone(),
                threshold: env.error_rate_threshold.unwrap_or(DEFAULT_ERROR_RATE),
                window: env.error_rate_window.map_or(DEFAULT_WINDOW, |w| w.0),
            });
        }
        if let Some(q) = &env.p95_query {
            triggers.push(MetricTrigger {
                kind: MetricKind::P95,
                query: q.clone(),
                threshold: env.p95_threshold.map_or(DEFAULT_P95, |t| t.0).as_secs_f64(),
                window: env.p95_window.map_or(DEFAULT_WINDOW, |w| w.0),
            });
        }
        (!triggers.is_empty()).then_some(MetricTriggers {
            prometheus_url: url,
            triggers,
        })
    }

    /// The longest window: the guard watches at least this long, or no breach could last
    /// long enough to count.
    pub fn longest_window(&self) -> Duration {
        self.triggers
            .iter()
            .map(|t| t.window)
            .max()
            .unwrap_or_default()
    }
}

/// Follows one trigger across the guard's rounds. A breach counts from the first sample
/// above the threshold to the latest one, by the sample times Prometheus reports, so the
/// verdict does not depend on how fast the guard itself runs.
#[derive(Debug, Clone, Default)]
pub struct BreachTracker {
    /// Unix time of the first sample of the current breach.
    since: Option<f64>,
}

/// What one sample means for a trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum Breach {
    /// At or under the threshold: any breach is over.
    Clear,
    /// Above the threshold for this many seconds so far, less than the window.
    Ongoing { seconds: f64 },
    /// Above the threshold for at least the window: roll back.
    Triggered { seconds: f64 },
}

impl BreachTracker {
    pub fn observe(&mut self, trigger: &MetricTrigger, at: f64, value: f64) -> Breach {
        // NaN (Prometheus answers it for 0/0) compares false: not a breach.
        let breaching = value > trigger.threshold;
        if !breaching {
            self.since = None;
            return Breach::Clear;
        }
        let since = *self.since.get_or_insert(at);
        let seconds = (at - since).max(0.0);
        if seconds >= trigger.window.as_secs_f64() {
            Breach::Triggered { seconds }
        } else {
            Breach::Ongoing { seconds }
        }
    }
}

/// One of the runbook's success criteria, as checked after a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criterion {
    /// "ready pods", "health 200", "error rate < 1%", ...
    pub name: String,
    /// `None`: could not be checked (not configured, no data).
    pub met: Option<bool>,
    pub detail: String,
}

impl Criterion {
    pub fn new(name: impl Into<String>, met: Option<bool>, detail: impl Into<String>) -> Self {
        Criterion {
            name: name.into(),
            met,
            detail: detail.into(),
        }
    }
}

/// The message posted after a deploy's guard window: each criterion with what was seen.
pub fn render_criteria(env: &str, what: &str, criteria: &[Criterion]) -> String {
    let met = criteria.iter().filter(|c| c.met == Some(true)).count();
    let checked = criteria.iter().filter(|c| c.met.is_some()).count();
    let mut out = format!("Success criteria after {what} on {env}: {met} of {checked} checked met");
    for c in criteria {
        let mark = match c.met {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "–",
        };
        out.push_str(&format!("\n{mark} {}: {}", c.name, c.detail));
    }
    out
}

/// Problems in an environment's blue-green and metric keys, as (key, message).
pub fn problems(env: &EnvironmentSpec) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    for (key, url) in [
        ("prometheus_url", &env.prometheus_url),
        ("green_health_url", &env.green_health_url),
    ] {
        if let Some(u) = url
            && !http(u)
        {
            out.push((key, format!("not an http(s) URL: {u:?}")));
        }
    }
    for (key, query) in [
        ("error_rate_query", &env.error_rate_query),
        ("p95_query", &env.p95_query),
    ] {
        match query {
            Some(q) if q.trim().is_empty() => out.push((key, "empty PromQL query".into())),
            Some(_) if env.prometheus_url.is_none() => {
                out.push((key, "needs prometheus_url to be read from".into()))
            }
            _ => {}
        }
    }
    if env.prometheus_url.is_some() && env.error_rate_query.is_none() && env.p95_query.is_none() {
        out.push((
            "prometheus_url",
            "set, but neither error_rate_query nor p95_query is".into(),
        ));
    }
    if let Some(t) = env.error_rate_threshold
        && (t.is_nan() || t <= 0.0 || t > 1.0)
    {
        out.push((
            "error_rate_threshold",
            format!("must be a fraction above 0 and at most 1 (0.05 is 5%), got {t}"),
        ));
    }
    for (key, d) in [
        ("p95_threshold", env.p95_threshold),
        ("error_rate_window", env.error_rate_window),
        ("p95_window", env.p95_window),
    ] {
        if d.is_some_and(|d| d.0.is_zero()) {
            out.push((key, "must be longer than 0s".into()));
        }
    }
    if env.green_health_url.is_some() && env.service.is_none() {
        out.push((
            "green_health_url",
            "needs service (the Service whose selector switches colours)".into(),
        ));
    }
    if let Some(s) = &env.service
        && (s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    {
        out.push(("service", format!("not a Kubernetes Service name: {s:?}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> MetricTrigger {
        MetricTrigger {
            kind: MetricKind::ErrorRate,
            query: "q".into(),
            threshold: 0.05,
            window: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_breach_triggers_once_it_has_lasted_the_window() {
        let t = trigger();
        let mut b = BreachTracker::default();
        assert_eq!(
            b.observe(&t, 1000.0, 0.07),
            Breach::Ongoing { seconds: 0.0 }
        );
        assert_eq!(
            b.observe(&t, 1240.0, 0.07),
            Breach::Ongoing { seconds: 240.0 }
        );
        assert_eq!(
            b.observe(&t, 1300.0, 0.08),
            Breach::Triggered { seconds: 300.0 }
        );
    }

    #[test]
    fn a_clear_sample_ends_the_breach() {
        let t = trigger();
        let mut b = BreachTracker::default();
        b.observe(&t, 1000.0, 0.07);
        assert_eq!(b.observe(&t, 1200.0, 0.005), Breach::Clear);
        assert_eq!(
            b.observe(&t, 1400.0, 0.07),
            Breach::Ongoing { seconds: 0.0 }
        );
        // NaN (Prometheus says "NaN" for 0/0) is not a breach.
        assert_eq!(b.observe(&t, 1500.0, f64::NAN), Breach::Clear);
    }

    #[test]
    fn triggers_come_from_the_environment_with_runbook_defaults() {
        let mut env = EnvironmentSpec::sandbox("production", &[], 3);
        assert_eq!(MetricTriggers::for_env(&env), None);
        env.prometheus_url = Some("http://prometheus:9090".into());
        env.error_rate_query = Some("sum(rate(x[5m]))".into());
        let t = MetricTriggers::for_env(&env).unwrap();
        assert_eq!(t.triggers.len(), 1);
        assert_eq!(t.triggers[0].describe(), "error rate > 5.0% for 5m");
        assert!(problems(&env).is_empty());
        env.error_rate_threshold = Some(5.0);
        env.p95_query = Some(" ".into());
        let keys: Vec<&str> = problems(&env).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["p95_query", "error_rate_threshold"]);
    }

    #[test]
    fn units_show_as_people_read_them() {
        assert_eq!(Unit::Ratio.show(0.07), "7.0%");
        assert_eq!(Unit::Seconds.show(0.12), "120 ms");
        assert_eq!(Unit::Seconds.show(12.0), "12.0 s");
    }
}
