//! Reads PromQL instant queries from the Prometheus HTTP API (`GET /api/v1/query`), for the
//! post-deploy guard's metric triggers and success criteria.

use std::time::Duration;

use serde::Deserialize;

use crate::probe::display_url;

/// One evaluated number: its evaluation time (Unix seconds) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    /// The query matched no series: no data, which is not the same as healthy.
    #[error("no data")]
    NoData,
    /// Prometheus answered `"status":"error"` (bad query, timeout, unavailable).
    #[error("Prometheus refused the query: {0}")]
    Refused(String),
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    value: (f64, String),
}

/// Prometheus writes numbers as strings, including `NaN` and `+Inf`.
fn number(s: &str) -> Result<f64, PromError> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|_| PromError::Malformed(format!("sample value {s:?} is not a number"))),
    }
}

/// Reads an instant query's answer. Several series (a query without `sum`) give the worst
/// (highest) one, since every trigger is "above a threshold".
pub fn parse_answer(body: &str) -> Result<Sample, PromError> {
    let env: Envelope = serde_json::from_str(body)
        .map_err(|e| PromError::Malformed(format!("not a Prometheus API answer ({e})")))?;
    if env.status != "success" {
        return Err(PromError::Refused(format!(
            "{}: {}",
            env.error_type.as_deref().unwrap_or("error"),
            env.error.as_deref().unwrap_or("no message")
        )));
    }
    match env.data {
        Some(Data::Vector(series)) => {
            let mut worst: Option<Sample> = None;
            for s in series {
                let sample = Sample {
                    at: s.value.0,
                    value: number(&s.value.1)?,
                };
                if worst.is_none_or(|w| sample.value > w.value || w.value.is_nan()) {
                    worst = Some(sample);
                }
            }
            worst.ok_or(PromError::NoData)
        }
        Some(Data::Scalar((at, v))) => Ok(Sample {
            at,
            value: number(&v)?,
        }),
        Some(Data::Matrix(_) | Data::String(_)) => Err(PromError::Malformed(
            "the query must give an instant vector or a scalar".into(),
        )),
        None => Err(PromError::Malformed("no data field".into())),
    }
}

pub struct PrometheusClient<'a> {
    http: &'a reqwest::Client,
    base: String,
    timeout: Duration,
}

impl<'a> PrometheusClient<'a> {
    pub fn new(http: &'a reqwest::Client, base: &str, timeout: Duration) -> Self {
        PrometheusClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// Evaluates `query` now.
    pub async fn query(&self, query: &str) -> Result<Sample, PromError> {
        let url = format!("{}/api/v1/query", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[("query", query)])
            .timeout(self.timeout)
            .send()
            .await
            // reqwest's message carries the URL, which may hold credentials.
            .map_err(|e| {
                PromError::Unreachable(if e.is_timeout() {
                    format!("{} timed out", display_url(&url))
                } else {
                    format!("{} did not answer", display_url(&url))
                })
            })?;
        let code = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|_| PromError::Unreachable("the answer was cut short".into()))?;
        match parse_answer(&body) {
            Err(PromError::Malformed(_)) if !code.is_success() => {
                Err(PromError::Refused(format!("HTTP {}", code.as_u16())))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_gives_its_worst_series() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a"},"value":[1700000000.5,"0.01"]},
            {"metric":{"pod":"b"},"value":[1700000000.5,"0.07"]}]}}"#;
        assert_eq!(
            parse_answer(body),
            Ok(Sample {
                at: 1700000000.5,
                value: 0.07
            })
        );
    }

    #[test]
    fn an_empty_vector_is_no_data_and_errors_say_why() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(empty), Err(PromError::NoData));
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        assert_eq!(
            parse_answer(bad),
            Err(PromError::Refused("bad_data: parse error at char 4".into()))
        );
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"NaN"]}}"#;
        assert!(parse_answer(scalar).unwrap().value.is_nan());
    }
}
