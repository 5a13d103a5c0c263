//! Workflow runs, their jobs and their pending deployments: the REST calls and the fields
//! the bot reads from them.

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{GithubClient, GithubError, path_segment};
use erlmcp_commands::RunId;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Actor {
    pub login: String,
}

/// A workflow run, as `GET .../actions/runs/{id}` and the run lists return it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Run {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    /// The run's title: a workflow's `run-name`, which for deploy workflows carries the
    /// version (`deploy v3.0.1 to production`).
    #[serde(default)]
    pub display_title: Option<String>,
    /// `.github/workflows/deploy.yml`, sometimes with `@ref` appended.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub head_branch: Option<String>,
    pub event: String,
    /// queued, in_progress, completed, waiting, requested, pending.
    pub status: String,
    pub conclusion: Option<String>,
    pub html_url: String,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub actor: Option<Actor>,
    #[serde(default)]
    pub run_attempt: Option<u32>,
}

impl Run {
    /// The workflow file name (`deploy.yml`) from `path`.
    pub fn workflow_file(&self) -> Option<&str> {
        let path = self.path.as_deref()?;
        let path = path.split('@').next().unwrap_or(path);
        path.rsplit('/').next()
    }

    pub fn is_completed(&self) -> bool {
        self.status == "completed"
    }

    pub fn succeeded(&self) -> bool {
        self.is_completed() && self.conclusion.as_deref() == Some("success")
    }

    /// `completed (failure)`, `in_progress`.
    pub fn state(&self) -> String {
        match &self.conclusion {
            Some(c) if self.is_completed() => format!("completed ({c})"),
            _ => self.status.clone(),
        }
    }

    /// The first word of the title that reads as a version: what the run deployed.
    pub fn version(&self) -> Option<erlmcp_commands::Version> {
        let title = self.display_title.as_deref()?;
        title
            .split(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '(' | ')' | '"'))
            .find_map(erlmcp_commands::Version::parse)
    }

    /// Whether the title names `env` as a word: how runs of a workflow shared by several
    /// environments are told apart.
    pub fn mentions(&self, env: &str) -> bool {
        self.display_title.as_deref().is_some_and(|t| {
            t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .any(|w| w.eq_ignore_ascii_case(env))
        })
    }
}

#[derive(Debug, Deserialize)]
struct RunList {
    workflow_runs: Vec<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
}

impl Job {
    pub fn state(&self) -> String {
        match &self.conclusion {
            Some(c) if self.status == "completed" => format!("completed ({c})"),
            _ => self.status.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct JobList {
    jobs: Vec<Job>,
}

/// An environment a run waits on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PendingDeployment {
    pub environment: PendingEnvironment,
    #[serde(default)]
    pub current_user_can_approve: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PendingEnvironment {
    pub id: u64,
    pub name: String,
}

/// Filters of `GET .../actions/workflows/{file}/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub event: Option<String>,
    pub status: Option<String>,
    pub actor: Option<String>,
    /// Only runs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    pub per_page: u32,
}

/// What a dispatch answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// 200 with `return_run_details`: the run is known.
    Run { id: u64, html_url: String },
    /// 204: accepted, the run must be looked for.
    Accepted,
}

impl GithubClient {
    pub async fn list_runs(
        &self,
        workflow: &str,
        filter: &RunFilter,
    ) -> Result<Vec<Run>, GithubError> {
        let mut query = vec![format!("per_page={}", filter.per_page.clamp(1, 100))];
        if let Some(e) = &filter.event {
            query.push(format!("event={}", path_segment(e)));
        }
        if let Some(s) = &filter.status {
            query.push(format!("status={}", path_segment(s)));
        }
        if let Some(a) = &filter.actor {
            query.push(format!("actor={}", path_segment(a)));
        }
        if let Some(t) = filter.created_after {
            query.push(format!(
                "created=%3E%3D{}",
                path_segment(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            ));
        }
        let route = self.repo_route(&format!(
            "/actions/workflows/{}/runs?{}",
            path_segment(workflow),
            query.join("&")
        ));
        let list: RunList = self.get_json(&route).await?;
        Ok(list.workflow_runs)
    }

    /// Runs of the whole repository in a given status (`waiting`), for the gate poller.
    pub async fn runs_in_status(&self, status: &str) -> Result<Vec<Run>, GithubError> {
        let route = self.repo_route(&format!(
            "/actions/runs?status={}&per_page=50",
            path_segment(status)
        ));
        let list: RunList = self.get_json(&route).await?;
        Ok(list.workflow_runs)
    }

    pub async fn get_run(&self, id: RunId) -> Result<Run, GithubError> {
        self.get_json(&self.repo_route(&format!("/actions/runs/{}", id.0)))
            .await
    }

    pub async fn jobs(&self, id: RunId) -> Result<Vec<Job>, GithubError> {
        let list: JobList = self
            .get_json(&self.repo_route(&format!("/actions/runs/{}/jobs?per_page=100", id.0)))
            .await?;
        Ok(list.jobs)
    }

    pub async fn pending_deployments(
        &self,
        id: RunId,
    ) -> Result<Vec<PendingDeployment>, GithubError> {
        self.get_json(&self.repo_route(&format!("/actions/runs/{}/pending_deployments", id.0)))
            .await
    }

    /// Approves or rejects the given environments of a waiting run, once.
    pub async fn review_pending_deployments(
        &self,
        id: RunId,
        environment_ids: &[u64],
        approve: bool,
        comment: &str,
    ) -> Result<(), GithubError> {
        let body = json!({
            "environment_ids": environment_ids,
            "state": if approve { "approved" } else { "rejected" },
            "comment": comment,
        });
        self.write(
            Method::POST,
            &self.repo_route(&format!("/actions/runs/{}/pending_deployments", id.0)),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    pub async fn cancel_run(&self, id: RunId) -> Result<(), GithubError> {
        self.write(
            Method::POST,
            &self.repo_route(&format!("/actions/runs/{}/cancel", id.0)),
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn rerun(&self, id: RunId, failed_only: bool) -> Result<(), GithubError> {
        let what = if failed_only {
            "rerun-failed-jobs"
        } else {
            "rerun"
        };
        self.write(
            Method::POST,
            &self.repo_route(&format!("/actions/runs/{}/{what}", id.0)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST .../dispatches`, sent once. With `run_details` the body asks for the run id
    /// (GitHub answers 200); without, or from a server that ignores the field, 204.
    pub async fn dispatch(
        &self,
        workflow: &str,
        git_ref: &str,
        inputs: &Value,
        run_details: bool,
    ) -> Result<Dispatched, GithubError> {
        let mut body = json!({ "ref": git_ref, "inputs": inputs });
        if run_details {
            body["return_run_details"] = json!(true);
        }
        let route = self.repo_route(&format!(
            "/actions/workflows/{}/dispatches",
            path_segment(workflow)
        ));
        let answer = self.write(Method::POST, &route, Some(&body)).await?;
        if answer.status.as_u16() == 204 || answer.body.trim().is_empty() {
            return Ok(Dispatched::Accepted);
        }
        #[derive(Deserialize)]
        struct Details {
            workflow_run_id: u64,
            #[serde(default)]
            html_url: Option<String>,
        }
        match serde_json::from_str::<Details>(&answer.body) {
            Ok(d) => Ok(Dispatched::Run {
                id: d.workflow_run_id,
                html_url: d.html_url.unwrap_or_default(),
            }),
            // Accepted all the same: the run is found by looking for it.
            Err(_) => Ok(Dispatched::Accepted),
        }
    }

    /// The login the token belongs to, to find the runs it started.
    pub async fn login(&self) -> Result<String, GithubError> {
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        let user: User = self.get_json("/user").await?;
        Ok(user.login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = include_str!("../../../tests/fixtures/github/workflow_runs_list.json");

    #[test]
    fn the_documented_run_list_decodes() {
        let list: RunList = serde_json::from_str(LIST).unwrap();
        let run = &list.workflow_runs[0];
        assert_eq!(run.id, 30433642);
        assert_eq!(run.workflow_file(), Some("build.yml"));
        assert_eq!(run.state(), "queued");
        assert_eq!(run.actor.as_ref().unwrap().login, "octocat");
        assert_eq!(run.version(), None);
    }

    #[test]
    fn the_version_and_environment_come_from_the_title() {
        let mut list: RunList = serde_json::from_str(LIST).unwrap();
        let mut run = list.workflow_runs.remove(0);
        run.display_title = Some("deploy v3.0.1 to production (R-4)".into());
        assert_eq!(run.version().unwrap().as_str(), "v3.0.1");
        assert!(run.mentions("production"));
        assert!(!run.mentions("staging"));
    }
}
