//! A fake GitHub REST API with state: workflows, their runs and jobs, check runs and
//! commit statuses, environments and pending deployments. Runs move on each time they are
//! read (queued → in progress → [waiting on a gate] → completed), the way a real run moves
//! while someone watches it. Response shapes follow tests/fixtures/github.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower::ServiceExt;

pub const OWNER: &str = "banyan-platform";
pub const REPO: &str = "erlmcp";
/// The login the fake's token belongs to.
pub const BOT_LOGIN: &str = "erlmcp-bot";

const RUNS_LIST: &str = include_str!("../fixtures/github/workflow_runs_list.json");
const DISPATCH_200: &str = include_str!("../fixtures/github/workflow_dispatch_response_200.json");
const CHECK_RUNS: &str = include_str!("../fixtures/github/check_runs_for_ref.json");

/// How the fake answers a workflow dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchAnswer {
    /// 200 with the run's id when `return_run_details` is set, else 204.
    Details,
    /// Always 204, as GitHub does under 2022-11-28 without the field.
    NoContent,
    /// 400 when `return_run_details` is present (an older GitHub Enterprise Server), else 204.
    RejectsRunDetails,
    /// Starts the run, then drops the connection before answering.
    LostAfterAccepting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Queued,
    InProgress,
    Waiting { env_id: u64, env: String },
    Done(String),
}

#[derive(Debug, Clone)]
struct FakeRun {
    id: u64,
    workflow: String,
    event: String,
    head_branch: String,
    title: String,
    actor: String,
    created_at: DateTime<Utc>,
    plan: Vec<Phase>,
    at: usize,
    attempt: u32,
}

impl FakeRun {
    fn phase(&self) -> &Phase {
        &self.plan[self.at.min(self.plan.len() - 1)]
    }

    fn status(&self) -> &str {
        match self.phase() {
            Phase::Queued => "queued",
            Phase::InProgress => "in_progress",
            Phase::Waiting { .. } => "waiting",
            Phase::Done(_) => "completed",
        }
    }

    fn conclusion(&self) -> Option<&str> {
        match self.phase() {
            Phase::Done(c) => Some(c),
            _ => None,
        }
    }

    fn advance(&mut self) {
        if !matches!(self.phase(), Phase::Waiting { .. }) && self.at + 1 < self.plan.len() {
            self.at += 1;
        }
    }
}

/// A review GitHub received for a run's pending deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub run: u64,
    pub environment_ids: Vec<u64>,
    pub state: String,
    pub comment: String,
}

struct World {
    next_id: u64,
    runs: Vec<FakeRun>,
    /// Workflow file → the inputs it declares.
    workflows: HashMap<String, Vec<&'static str>>,
    dispatch_answer: DispatchAnswer,
    next_conclusion: String,
    next_gate: Option<(u64, String)>,
    dispatches: Vec<Value>,
    reviews: Vec<Review>,
    cancels: Vec<u64>,
    reruns: Vec<(u64, bool)>,
    check_runs: HashMap<String, Vec<Value>>,
    statuses: HashMap<String, Vec<Value>>,
    /// GETs still to answer with an exhausted primary rate limit.
    rate_limited_gets: u32,
    requests: Vec<String>,
}

pub struct FakeGithub {
    pub url: String,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lets a handler drop its own connection.
#[derive(Clone)]
struct Hangup(Arc<Notify>);

type Shared = Arc<Mutex<World>>;

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        let world = Arc::new(Mutex::new(World {
            next_id: 9_000_001,
            runs: Vec::new(),
            workflows: HashMap::from([
                (
                    "deploy.yml".to_string(),
                    vec![
                        "version",
                        "environment",
                        "requester",
                        "request_id",
                        "reason",
                    ],
                ),
                ("rollback.yml".to_string(), vec!["version", "reason"]),
            ]),
            dispatch_answer: DispatchAnswer::Details,
            next_conclusion: "success".into(),
            next_gate: None,
            dispatches: Vec::new(),
            reviews: Vec::new(),
            cancels: Vec::new(),
            reruns: Vec::new(),
            check_runs: HashMap::new(),
            statuses: HashMap::new(),
            rate_limited_gets: 0,
            requests: Vec::new(),
        }));
        let repo = "/repos/{owner}/{repo}";
        let router = Router::new()
            .route(
                "/user",
                get(|| async { Json(json!({"login": BOT_LOGIN, "id": 7})) }),
            )
            .route(
                &format!("{repo}/actions/workflows/{{workflow}}/dispatches"),
                post(dispatch),
            )
            .route(
                &format!("{repo}/actions/workflows/{{workflow}}/runs"),
                get(list_workflow_runs),
            )
            .route(&format!("{repo}/actions/runs"), get(list_repo_runs))
            .route(&format!("{repo}/actions/runs/{{id}}"), get(get_run))
            .route(&format!("{repo}/actions/runs/{{id}}/jobs"), get(jobs))
            .route(
                &format!("{repo}/actions/runs/{{id}}/pending_deployments"),
                get(pending).post(review),
            )
            .route(&format!("{repo}/actions/runs/{{id}}/cancel"), post(cancel))
            .route(&format!("{repo}/actions/runs/{{id}}/rerun"), post(rerun))
            .route(
                &format!("{repo}/actions/runs/{{id}}/rerun-failed-jobs"),
                post(rerun_failed),
            )
            .route(
                &format!("{repo}/commits/{{git_ref}}/check-runs"),
                get(check_runs),
            )
            .route(
                &format!("{repo}/commits/{{git_ref}}/status"),
                get(combined_status),
            )
            .layer(middleware::from_fn_with_state(world.clone(), gatekeeper))
            .with_state(world.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let router = router.clone();
                tokio::spawn(async move {
                    let hangup = Arc::new(Notify::new());
                    let mine = hangup.clone();
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let mut req = req.map(Body::new);
                            req.extensions_mut().insert(Hangup(mine.clone()));
                            let router = router.clone();
                            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap()) }
                        },
                    );
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Dropping the connection closes the socket under the client's feet.
                    tokio::select! {
                        _ = conn => {}
                        _ = hangup.notified() => {}
                    }
                });
            }
        });
        FakeGithub { url, world, task }
    }

    fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    pub fn answer_dispatch_with(&self, answer: DispatchAnswer) {
        self.with(|w| w.dispatch_answer = answer);
    }

    /// The conclusion of runs dispatched from now on.
    pub fn conclude_next_runs(&self, conclusion: &str) {
        self.with(|w| w.next_conclusion = conclusion.to_string());
    }

    /// Runs dispatched from now on wait on this protected environment.
    pub fn gate_next_runs(&self, env_id: u64, env: &str) {
        self.with(|w| w.next_gate = Some((env_id, env.to_string())));
    }

    /// A run that already exists (history, or one started outside the bot).
    pub fn add_run(&self, workflow: &str, title: &str, actor: &str, end: &str) -> u64 {
        self.with(|w| {
            let id = w.next_id;
            w.next_id += 1;
            w.runs.push(FakeRun {
                id,
                workflow: workflow.to_string(),
                event: "workflow_dispatch".into(),
                head_branch: "main".into(),
                title: title.to_string(),
                actor: actor.to_string(),
                created_at: Utc::now() - chrono::Duration::hours(1),
                plan: vec![Phase::Done(end.to_string())],
                at: 0,
                attempt: 1,
            });
            id
        })
    }

    /// A run started outside the bot that waits on a protected environment.
    pub fn add_waiting_run(&self, workflow: &str, title: &str, env_id: u64, env: &str) -> u64 {
        self.with(|w| {
            let id = w.next_id;
            w.next_id += 1;
            w.runs.push(FakeRun {
                id,
                workflow: workflow.to_string(),
                event: "workflow_dispatch".into(),
                head_branch: "main".into(),
                title: title.to_string(),
                actor: "octocat".into(),
                created_at: Utc::now(),
                plan: vec![
                    Phase::Waiting {
                        env_id,
                        env: env.to_string(),
                    },
                    Phase::InProgress,
                    Phase::Done("success".into()),
                ],
                at: 0,
                attempt: 1,
            });
            id
        })
    }

    /// Check runs on a ref, as `(name, status, conclusion)`.
    pub fn set_check_runs(&self, git_ref: &str, runs: &[(&str, &str, Option<&str>)]) {
        let template: Value = serde_json::from_str(CHECK_RUNS).unwrap();
        let runs = runs
            .iter()
            .enumerate()
            .map(|(i, (name, status, conclusion))| {
                let mut r = template["check_runs"][0].clone();
                r["id"] = json!(100 + i);
                r["name"] = json!(name);
                r["status"] = json!(status);
                r["conclusion"] = json!(conclusion);
                r
            })
            .collect();
        self.with(|w| w.check_runs.insert(git_ref.to_string(), runs));
    }

    /// Commit statuses on a ref, as `(context, state)`.
    pub fn set_statuses(&self, git_ref: &str, statuses: &[(&str, &str)]) {
        let statuses = statuses
            .iter()
            .map(
                |(context, state)| json!({"context": context, "state": state, "description": null}),
            )
            .collect();
        self.with(|w| w.statuses.insert(git_ref.to_string(), statuses));
    }

    /// The next `n` GETs are answered 403 with `x-ratelimit-remaining: 0`.
    pub fn exhaust_rate_limit_for(&self, n: u32) {
        self.with(|w| w.rate_limited_gets = n);
    }

    pub fn dispatches(&self) -> Vec<Value> {
        self.with(|w| w.dispatches.clone())
    }

    /// Runs the bot started (dispatched ones).
    pub fn dispatched_runs(&self) -> Vec<u64> {
        self.with(|w| {
            w.runs
                .iter()
                .filter(|r| r.actor == BOT_LOGIN)
                .map(|r| r.id)
                .collect()
        })
    }

    pub fn run_state(&self, id: u64) -> (String, Option<String>) {
        self.with(|w| {
            let r = w.runs.iter().find(|r| r.id == id).expect("known run");
            (r.status().to_string(), r.conclusion().map(str::to_string))
        })
    }

    pub fn reviews(&self) -> Vec<Review> {
        self.with(|w| w.reviews.clone())
    }

    pub fn cancels(&self) -> Vec<u64> {
        self.with(|w| w.cancels.clone())
    }

    pub fn reruns(&self) -> Vec<(u64, bool)> {
        self.with(|w| w.reruns.clone())
    }

    /// Every request as `METHOD /path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.with(|w| w.requests.clone())
    }

    pub fn html_url(id: u64) -> String {
        format!("https://github.com/{OWNER}/{REPO}/actions/runs/{id}")
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.as_u16().to_string()})),
    )
        .into_response()
}

/// Logs every request, checks the repository and applies an exhausted rate limit.
async fn gatekeeper(State(world): State<Shared>, req: Request, next: Next) -> Response {
    let line = format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let limited = {
        let mut w = world.lock().unwrap();
        w.requests.push(line);
        if req.method() == axum::http::Method::GET && w.rate_limited_gets > 0 {
            w.rate_limited_gets -= 1;
            true
        } else {
            false
        }
    };
    let path = req.uri().path().to_string();
    if path.starts_with("/repos/") && !path.starts_with(&format!("/repos/{OWNER}/{REPO}/")) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if limited {
        let reset = Utc::now().timestamp() + 1;
        let mut r = error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 7. If you reach out to GitHub Support for help, please include the request ID.",
        );
        let h = r.headers_mut();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        return r;
    }
    next.run(req).await
}

fn run_json(r: &FakeRun) -> Value {
    let template: Value = serde_json::from_str(RUNS_LIST).unwrap();
    let mut v = template["workflow_runs"][0].clone();
    let api = format!(
        "https://api.github.com/repos/{OWNER}/{REPO}/actions/runs/{}",
        r.id
    );
    v["id"] = json!(r.id);
    v["name"] = json!(r.workflow.trim_end_matches(".yml"));
    v["path"] = json!(format!(".github/workflows/{}", r.workflow));
    v["head_branch"] = json!(r.head_branch);
    v["event"] = json!(r.event);
    v["display_title"] = json!(r.title);
    v["status"] = json!(r.status());
    v["conclusion"] = json!(r.conclusion());
    v["url"] = json!(api);
    v["html_url"] = json!(FakeGithub::html_url(r.id));
    v["created_at"] = json!(r.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    v["updated_at"] = v["created_at"].clone();
    v["actor"]["login"] = json!(r.actor);
    v["triggering_actor"]["login"] = json!(r.actor);
    v["run_attempt"] = json!(r.attempt);
    v
}

fn list(runs: Vec<&FakeRun>, q: &HashMap<String, String>) -> Value {
    let mut runs: Vec<&FakeRun> = runs
        .into_iter()
        .filter(|r| q.get("event").is_none_or(|e| *e == r.event))
        .filter(|r| {
            q.get("status")
                .is_none_or(|s| s == r.status() || Some(s.as_str()) == r.conclusion())
        })
        .filter(|r| q.get("actor").is_none_or(|a| *a == r.actor))
        .filter(|r| {
            q.get("created").is_none_or(|c| {
                c.strip_prefix(">=")
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| r.created_at >= t)
            })
        })
        .collect();
    runs.sort_by_key(|r| std::cmp::Reverse(r.id));
    let total = runs.len();
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30usize);
    let page: Vec<Value> = runs.into_iter().take(per_page).map(run_json).collect();
    json!({"total_count": total, "workflow_runs": page})
}

async fn list_workflow_runs(
    State(world): State<Shared>,
    Path((_, _, workflow)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = world.lock().unwrap();
    if !w.workflows.contains_key(&workflow) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    Json(list(
        w.runs.iter().filter(|r| r.workflow == workflow).collect(),
        &q,
    ))
    .into_response()
}

async fn list_repo_runs(
    State(world): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = world.lock().unwrap();
    Json(list(w.runs.iter().collect(), &q)).into_response()
}

async fn dispatch(
    State(world): State<Shared>,
    Path((_, _, workflow)): Path<(String, String, String)>,
    Extension(hangup): Extension<Hangup>,
    body: String,
) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
    };
    let (answer, id) = {
        let mut w = world.lock().unwrap();
        let Some(declared) = w.workflows.get(&workflow).cloned() else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        let details = body.get("return_run_details").is_some();
        if details && w.dispatch_answer == DispatchAnswer::RejectsRunDetails {
            return error(
                StatusCode::BAD_REQUEST,
                "Invalid request.\n\n\"return_run_details\" is not a permitted key.",
            );
        }
        let Some(git_ref) = body.get("ref").and_then(Value::as_str) else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\n\"ref\" wasn't supplied.",
            );
        };
        let inputs = body.get("inputs").cloned().unwrap_or(json!({}));
        let unexpected: Vec<&String> = inputs
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !declared.contains(&k.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if !unexpected.is_empty() {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Unexpected inputs provided: {unexpected:?}"),
            );
        }
        w.dispatches.push(body.clone());
        let text = |k: &str| {
            inputs
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        // The workflows' run-name.
        let title = if workflow == "deploy.yml" {
            format!("deploy {} to {}", text("version"), text("environment"))
        } else {
            format!("rollback to {}", text("version"))
        };
        let mut plan = vec![Phase::Queued, Phase::InProgress];
        if let Some((env_id, env)) = w.next_gate.clone() {
            plan.push(Phase::Waiting { env_id, env });
            plan.push(Phase::InProgress);
        }
        plan.push(Phase::Done(w.next_conclusion.clone()));
        let id = w.next_id;
        w.next_id += 1;
        w.runs.push(FakeRun {
            id,
            workflow: workflow.clone(),
            event: "workflow_dispatch".into(),
            head_branch: git_ref.to_string(),
            title,
            actor: BOT_LOGIN.into(),
            created_at: Utc::now(),
            plan,
            at: 0,
            attempt: 1,
        });
        let answer = match w.dispatch_answer {
            DispatchAnswer::Details if details => 200,
            DispatchAnswer::LostAfterAccepting => 0,
            _ => 204,
        };
        (answer, id)
    };
    match answer {
        200 => {
            let mut v: Value = serde_json::from_str(DISPATCH_200).unwrap();
            v["workflow_run_id"] = json!(id);
            v["run_url"] = json!(format!(
                "https://api.github.com/repos/{OWNER}/{REPO}/actions/runs/{id}"
            ));
            v["html_url"] = json!(FakeGithub::html_url(id));
            Json(v).into_response()
        }
        204 => StatusCode::NO_CONTENT.into_response(),
        _ => {
            hangup.0.notify_one();
            std::future::pending::<Response>().await
        }
    }
}

async fn get_run(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    let mut w = world.lock().unwrap();
    let Some(r) = w.runs.iter_mut().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let v = run_json(r);
    r.advance();
    Json(v).into_response()
}

async fn jobs(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    let w = world.lock().unwrap();
    let Some(r) = w.runs.iter().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let job = json!({
        "id": id * 10,
        "run_id": id,
        "name": "deploy",
        "status": r.status(),
        "conclusion": r.conclusion(),
        "html_url": format!("{}/job/{}", FakeGithub::html_url(id), id * 10),
    });
    Json(json!({"total_count": 1, "jobs": [job]})).into_response()
}

async fn pending(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    let w = world.lock().unwrap();
    let Some(r) = w.runs.iter().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let list: Vec<Value> = match r.phase() {
        Phase::Waiting { env_id, env } => vec![json!({
            "environment": {"id": env_id, "node_id": "EN_1", "name": env,
                "url": format!("https://api.github.com/repos/{OWNER}/{REPO}/environments/{env}"),
                "html_url": format!("https://github.com/{OWNER}/{REPO}/deployments/activity_log?environments_filter={env}")},
            "wait_timer": 0,
            "wait_timer_started_at": null,
            "current_user_can_approve": true,
            "reviewers": [],
        })],
        _ => Vec::new(),
    };
    Json(list).into_response()
}

async fn review(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    let mut w = world.lock().unwrap();
    let ids: Vec<u64> = body["environment_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let state = body["state"].as_str().unwrap_or("").to_string();
    let comment = body["comment"].as_str().unwrap_or("").to_string();
    if comment.is_empty() || !(state == "approved" || state == "rejected") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
    }
    let Some(r) = w.runs.iter_mut().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Phase::Waiting { env_id, .. } = r.phase().clone() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No pending deployments to review",
        );
    };
    if !ids.contains(&env_id) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid environment_ids");
    }
    if state == "approved" {
        r.at += 1;
    } else {
        r.plan = vec![Phase::Done("failure".into())];
        r.at = 0;
    }
    let deployment = json!([{"id": 42, "environment": "x", "ref": r.head_branch}]);
    w.reviews.push(Review {
        run: id,
        environment_ids: ids,
        state,
        comment,
    });
    Json(deployment).into_response()
}

async fn cancel(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    let mut w = world.lock().unwrap();
    let Some(r) = w.runs.iter_mut().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if matches!(r.phase(), Phase::Done(_)) {
        return error(
            StatusCode::CONFLICT,
            "Cannot cancel a workflow run that is completed.",
        );
    }
    r.plan = vec![Phase::Done("cancelled".into())];
    r.at = 0;
    w.cancels.push(id);
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

fn rerun_run(world: &Shared, id: u64, failed: bool) -> Response {
    let mut w = world.lock().unwrap();
    let Some(r) = w.runs.iter_mut().find(|r| r.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if !matches!(r.phase(), Phase::Done(_)) {
        return error(StatusCode::FORBIDDEN, "This workflow is already running");
    }
    r.plan = vec![
        Phase::Queued,
        Phase::InProgress,
        Phase::Done("success".into()),
    ];
    r.at = 0;
    r.attempt += 1;
    w.reruns.push((id, failed));
    (StatusCode::CREATED, Json(json!({}))).into_response()
}

async fn rerun(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    rerun_run(&world, id, false)
}

async fn rerun_failed(
    State(world): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    rerun_run(&world, id, true)
}

async fn check_runs(
    State(world): State<Shared>,
    Path((_, _, git_ref)): Path<(String, String, String)>,
) -> Response {
    let w = world.lock().unwrap();
    let runs = w.check_runs.get(&git_ref).cloned().unwrap_or_default();
    Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

async fn combined_status(
    State(world): State<Shared>,
    Path((_, _, git_ref)): Path<(String, String, String)>,
) -> Response {
    let w = world.lock().unwrap();
    let statuses = w.statuses.get(&git_ref).cloned().unwrap_or_default();
    let state = if statuses
        .iter()
        .any(|s| s["state"] == "failure" || s["state"] == "error")
    {
        "failure"
    } else if statuses.is_empty() || statuses.iter().any(|s| s["state"] == "pending") {
        "pending"
    } else {
        "success"
    };
    Json(json!({
        "state": state,
        "statuses": statuses,
        "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "total_count": statuses.len(),
    }))
    .into_response()
}
