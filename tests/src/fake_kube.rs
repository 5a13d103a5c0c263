//! A fake Kubernetes API server: just enough of apps/v1, core/v1, batch/v1,
//! networking.k8s.io/v1, metrics.k8s.io/v1beta1 and Flagger's `flagger.app/v1beta1` for the
//! real `kube::Client` to deploy, roll back, watch, read logs, events and metrics, delete
//! pods and run Jobs against it.
//!
//! Objects are kept as JSON per namespace. A controller task plays the Deployment,
//! StatefulSet and Flagger controllers one small step per tick so watches see a rollout
//! progress the way `kubectl rollout status` would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use erlmcp_adapters::kubernetes::{Verb, rbac_grants};
use serde_json::{Value, json};
use tokio::sync::broadcast;

pub const DEPLOYMENT_VECTOR: &str =
    include_str!("../fixtures/kubernetes/deployment_complete_with_conditions.json");
pub const REPLICASET_VECTOR: &str =
    include_str!("../fixtures/kubernetes/replicaset_with_revision.json");
pub const KUBECTL_SHAPES: &str =
    include_str!("../fixtures/kubernetes/kubectl_request_shapes_DERIVED.json");

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

type Key = (String, String, String); // (plural, namespace, name)

#[derive(Clone)]
struct Change {
    plural: String,
    ns: String,
    object: Value,
}

#[derive(Default)]
struct World {
    objects: BTreeMap<Key, Value>,
    requests: Vec<RecordedRequest>,
    resource_version: u64,
    /// Deployments that time out instead of progressing.
    stalled: HashSet<(String, String)>,
    /// Workloads whose current rollout replaces pods (a template change), as opposed to a
    /// scale, where no old pods are terminated.
    replacing: HashSet<Key>,
    logs: HashMap<(String, String, bool), String>,
    health_status: u16,
    uid_counter: u64,
    /// CronJobs whose Jobs fail (`backoffLimit` reached) instead of completing.
    failing_cronjobs: HashSet<String>,
    /// No metrics-server: `metrics.k8s.io` answers 404.
    no_metrics: bool,
}

impl World {
    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn store(&mut self, plural: &str, mut obj: Value, tx: &broadcast::Sender<Change>) -> Value {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv);
        let ns = str_at(&obj, "/metadata/namespace").to_string();
        let name = str_at(&obj, "/metadata/name").to_string();
        self.objects
            .insert((plural.into(), ns.clone(), name), obj.clone());
        let _ = tx.send(Change {
            plural: plural.into(),
            ns,
            object: obj.clone(),
        });
        obj
    }

    fn uid(&mut self) -> String {
        self.uid_counter += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid_counter)
    }
}

pub struct FakeKubeServer {
    pub url: String,
    world: Arc<Mutex<World>>,
    tx: broadcast::Sender<Change>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeKubeServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct AppState {
    world: Arc<Mutex<World>>,
    tx: broadcast::Sender<Change>,
}

impl FakeKubeServer {
    /// Starts on 127.0.0.1 with a 10 ms controller tick.
    pub async fn start() -> FakeKubeServer {
        Self::start_with_tick(Duration::from_millis(10)).await
    }

    pub async fn start_with_tick(tick: Duration) -> FakeKubeServer {
        let world = Arc::new(Mutex::new(World {
            health_status: 200,
            ..Default::default()
        }));
        let (tx, _) = broadcast::channel(1024);
        let state = AppState {
            world: world.clone(),
            tx: tx.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind fake kube server");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (w, t) = (world.clone(), tx.clone());
        let controller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                controller_tick(&w, &t);
            }
        });
        FakeKubeServer {
            url: format!("http://{addr}"),
            world,
            tx,
            tasks: vec![server, controller],
        }
    }

    pub fn client(&self) -> kube::Client {
        let uri = self.url.parse().expect("fake url");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client")
    }

    /// Stores `obj` under `plural` (e.g. "deployments"), filling uid, generation and
    /// resourceVersion the way the API server would.
    pub fn insert(&self, plural: &str, mut obj: Value) -> Value {
        let mut w = self.world.lock().unwrap();
        if obj.pointer("/metadata/uid").is_none() {
            obj["metadata"]["uid"] = json!(w.uid());
        }
        if obj.pointer("/metadata/generation").is_none() {
            obj["metadata"]["generation"] = json!(1);
        }
        w.store(plural, obj, &self.tx)
    }

    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let w = self.world.lock().unwrap();
        w.objects
            .get(&(plural.into(), ns.into(), name.into()))
            .cloned()
    }

    pub fn list(&self, plural: &str, ns: &str) -> Vec<Value> {
        let w = self.world.lock().unwrap();
        w.objects
            .iter()
            .filter(|((p, n, _), _)| p == plural && n == ns)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.world.lock().unwrap().requests.clone()
    }

    pub fn patches(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    /// The holder a Lease names now (`None` when released or absent).
    pub fn lease_holder(&self, ns: &str, name: &str) -> Option<String> {
        self.get("leases", ns, name)
            .and_then(|l| l.pointer("/spec/holderIdentity").cloned())
            .and_then(|h| h.as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// From now on the deployment's rollouts time out with ProgressDeadlineExceeded.
    pub fn stall(&self, ns: &str, name: &str) {
        self.world
            .lock()
            .unwrap()
            .stalled
            .insert((ns.into(), name.into()));
    }

    pub fn set_logs(&self, ns: &str, pod: &str, previous: bool, text: &str) {
        self.world
            .lock()
            .unwrap()
            .logs
            .insert((ns.into(), pod.into(), previous), text.into());
    }

    /// What `/health` answers from now on.
    /// Jobs created from this CronJob fail with BackoffLimitExceeded.
    pub fn fail_jobs_of(&self, cronjob: &str) {
        self.world
            .lock()
            .unwrap()
            .failing_cronjobs
            .insert(cronjob.to_string());
    }

    /// From now on the cluster has no metrics-server.
    pub fn remove_metrics_server(&self) {
        self.world.lock().unwrap().no_metrics = true;
    }

    pub fn set_health(&self, code: u16) {
        self.world.lock().unwrap().health_status = code;
    }
}

// ----- object builders from the captured vectors -------------------------------------

/// A completed Deployment from the captured vector, renamed and re-imaged.
pub fn deployment(ns: &str, name: &str, container: &str, image: &str, replicas: i64) -> Value {
    let mut d: Value = serde_json::from_str(DEPLOYMENT_VECTOR).expect("deployment vector");
    let labels = json!({"app": name});
    d["metadata"]["name"] = json!(name);
    d["metadata"]["namespace"] = json!(ns);
    d["metadata"]["labels"] = labels.clone();
    if let Some(m) = d["metadata"].as_object_mut() {
        m.remove("selfLink");
        m.remove("resourceVersion");
    }
    d["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
    d["spec"]["replicas"] = json!(replicas);
    d["spec"]["selector"] = json!({"matchLabels": labels});
    d["spec"]["template"]["metadata"]["labels"] = labels;
    d["spec"]["template"]["spec"]["containers"][0]["name"] = json!(container);
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    d["status"]["replicas"] = json!(replicas);
    d["status"]["updatedReplicas"] = json!(replicas);
    d["status"]["readyReplicas"] = json!(replicas);
    d["status"]["availableReplicas"] = json!(replicas);
    d["status"]["conditions"][1]["message"] = json!(format!(
        "ReplicaSet \"{name}-5d9c7b6f8\" has successfully progressed."
    ));
    d
}

/// A ReplicaSet from the captured vector, owned by `deployment`, holding `image` at
/// `revision`.
pub fn replicaset(deployment: &Value, image: &str, revision: i64, hash: &str) -> Value {
    let mut rs: Value = serde_json::from_str(REPLICASET_VECTOR).expect("replicaset vector");
    let name = str_at(deployment, "/metadata/name");
    let ns = str_at(deployment, "/metadata/namespace");
    let mut labels = deployment["spec"]["template"]["metadata"]["labels"].clone();
    labels["pod-template-hash"] = json!(hash);
    if let Some(m) = rs["metadata"].as_object_mut() {
        m.remove("selfLink");
        m.remove("resourceVersion");
        m.remove("uid");
    }
    rs["metadata"]["name"] = json!(format!("{name}-{hash}"));
    rs["metadata"]["namespace"] = json!(ns);
    rs["metadata"]["labels"] = labels.clone();
    rs["metadata"]["annotations"] = json!({
        "deployment.kubernetes.io/desired-replicas": "5",
        "deployment.kubernetes.io/max-replicas": "7",
        "deployment.kubernetes.io/revision": revision.to_string(),
        "kubernetes.io/change-cause": format!("deploy {image}"),
    });
    rs["metadata"]["ownerReferences"][0]["name"] = json!(name);
    rs["metadata"]["ownerReferences"][0]["uid"] = deployment["metadata"]["uid"].clone();
    rs["spec"]["selector"]["matchLabels"] = labels.clone();
    rs["spec"]["template"] = deployment["spec"]["template"].clone();
    rs["spec"]["template"]["metadata"]["labels"] = labels;
    rs["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    rs
}

/// An apps/v1 StatefulSet in the shape the API server returns.
pub fn statefulset(ns: &str, name: &str, container: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": name}},
                "spec": {"containers": [{"name": container, "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {}, "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                    "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                    "terminationGracePeriodSeconds": 30}
            }
        },
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
            "currentReplicas": replicas, "updatedReplicas": replicas,
            "currentRevision": format!("{name}-rev2"), "updateRevision": format!("{name}-rev2"),
            "availableReplicas": replicas, "collisionCount": 0}
    })
}

/// A ControllerRevision owned by `sts` whose data restores its template with `image`.
pub fn controller_revision(sts: &Value, image: &str, revision: i64) -> Value {
    let name = str_at(sts, "/metadata/name");
    let mut template = sts["spec"]["template"].clone();
    template["spec"]["containers"][0]["image"] = json!(image);
    template["$patch"] = json!("replace");
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{name}-rev{revision}"),
            "namespace": str_at(sts, "/metadata/namespace"),
            "labels": sts["spec"]["selector"]["matchLabels"].clone(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                "uid": sts["metadata"]["uid"].clone(), "controller": true,
                "blockOwnerDeletion": true}]
        },
        "data": {"spec": {"template": template}},
        "revision": revision
    })
}

/// A v1 Pod of `app`; `container_status` is its single containerStatuses entry.
pub fn pod(ns: &str, name: &str, app: &str, ready: bool, container_status: Value) -> Value {
    let phase = if container_status
        .pointer("/state/waiting/reason")
        .and_then(Value::as_str)
        == Some("ContainerCreating")
    {
        "Pending"
    } else {
        "Running"
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
            "creationTimestamp": "2026-02-02T10:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": app, "image": "erlmcp"}]},
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ],
            "containerStatuses": [container_status]
        }
    })
}

/// A core/v1 Event about `object` (`Pod/NAME`, `Deployment/NAME`).
pub fn event(
    ns: &str,
    name: &str,
    kind: &str,
    object: &str,
    reason: &str,
    message: &str,
    last: &str,
) -> Value {
    let (obj_kind, obj_name) = object.split_once('/').unwrap_or(("Pod", object));
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": last},
        "involvedObject": {"kind": obj_kind, "name": obj_name, "namespace": ns},
        "reason": reason,
        "message": message,
        "type": kind,
        "count": 1,
        "firstTimestamp": last,
        "lastTimestamp": last,
        "source": {"component": "kubelet"}
    })
}

/// A batch/v1 CronJob whose job template runs `image` with `command`.
pub fn cronjob(ns: &str, name: &str, image: &str, command: &[&str]) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "schedule": "0 2 * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": {"app": name},
                    "annotations": {"erlmcp.io/runbook": "backup"}},
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": name, "image": image,
                                "command": command}]
                        }
                    }
                }
            }
        }
    })
}

/// metrics.k8s.io/v1beta1 PodMetrics of one pod with one container.
pub fn pod_metrics(ns: &str, pod: &str, app: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": pod, "namespace": ns, "labels": {"app": app},
            "creationTimestamp": "2026-11-02T09:00:00Z"},
        "timestamp": "2026-11-02T08:59:45Z",
        "window": "15.01s",
        "containers": [{"name": app, "usage": {"cpu": cpu, "memory": memory}}]
    })
}

pub fn ingress(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns,
            "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "erlmcp.io", "http": {"paths": [{"path": "/",
            "pathType": "Prefix", "backend": {"service": {"name": name,
            "port": {"number": 8080}}}}]}}]}
    })
}

/// A v1 Service selecting `app: NAME` and the blue-green colour `version: COLOUR`.
pub fn service(ns: &str, name: &str, colour: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.12.34",
            "clusterIPs": ["10.96.12.34"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": name, "version": colour},
            "sessionAffinity": "None"
        },
        "status": {"loadBalancer": {}}
    })
}

/// A Flagger Canary mid-analysis.
pub fn canary(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 8080},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10}
        },
        "status": {"phase": "Progressing", "canaryWeight": 20, "failedChecks": 1,
            "iterations": 0, "lastTransitionTime": "2026-02-02T10:00:00Z"}
    })
}

// ----- request handling ---------------------------------------------------------------

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn status_error(code: u16, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c=d` selectors (equality only, which is all the bot sends).
fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = if let Some((k, v)) = term.split_once("!=") {
            return obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k.trim()))
                != Some(&json!(v.trim()));
        } else if let Some((k, v)) = term.split_once("==") {
            (k, v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v)
        } else {
            return obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(term.trim()))
                .is_some();
        };
        obj.pointer("/metadata/labels")
            .and_then(|l| l.get(k.trim()))
            == Some(&json!(v.trim()))
    })
}

fn field_matches(obj: &Value, selector: Option<&String>) -> bool {
    match selector.and_then(|s| s.strip_prefix("metadata.name=")) {
        Some(name) => str_at(obj, "/metadata/name") == name,
        None => true,
    }
}

struct Route {
    plural: String,
    /// Where the objects are kept: the plural, except for other groups' resources that
    /// share a core plural (`metrics.k8s.io` pods are kept as `podmetrics`).
    key: String,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let (group, rest) = if let Some(r) = path.strip_prefix("/api/v1/") {
        ("", r)
    } else {
        let r = path.strip_prefix("/apis/")?;
        let mut it = r.splitn(3, '/');
        let (group, _version, rest) = (it.next()?, it.next()?, it.next()?);
        (group, rest)
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 3 || parts[0] != "namespaces" {
        return None;
    }
    let key = match (group, parts[2]) {
        ("metrics.k8s.io", "pods") => "podmetrics".to_string(),
        (_, plural) => plural.to_string(),
    };
    Some(Route {
        key,
        ns: parts[1].into(),
        plural: parts[2].into(),
        name: parts.get(3).map(|s| s.to_string()),
        sub: parts.get(4).map(|s| s.to_string()),
    })
}

/// (API group, resource or `resource/subresource`, verb) of a namespaced API request, as
/// the API server's authorizer sees it; `None` for verbs the adapter has no name for.
fn rbac_of(
    method: &Method,
    path: &str,
    r: &Route,
    q: &HashMap<String, String>,
) -> Option<(String, String, Verb)> {
    let group = match path.strip_prefix("/apis/") {
        Some(rest) => rest.split('/').next().unwrap_or("").to_string(),
        None => String::new(),
    };
    let resource = match &r.sub {
        Some(sub) => format!("{}/{sub}", r.plural),
        None => r.plural.clone(),
    };
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method, &r.name) {
        (&Method::GET, None) if watching => Verb::Watch,
        (&Method::GET, None) => Verb::List,
        (&Method::GET, Some(_)) => Verb::Get,
        (&Method::PATCH, Some(_)) => Verb::Patch,
        (&Method::POST, None) => Verb::Create,
        (&Method::DELETE, Some(_)) => Verb::Delete,
        _ => return None,
    };
    Some((group, resource, verb))
}

async fn handle(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    {
        let mut w = state.world.lock().unwrap();
        w.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body_json.clone(),
        });
    }

    if path == "/health" {
        let code = state.world.lock().unwrap().health_status;
        return (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            "{\"status\":\"ok\"}",
        )
            .into_response();
    }
    if path == "/version" {
        return json_response(&json!({"version": "v3.0.0"}));
    }

    let Some(r) = route(&path) else {
        return status_error(404, "NotFound", format!("no route for {path}"));
    };
    if r.plural == "leases" {
        return lease(&state, &method, &r, body_json);
    }
    let q = parse_query(&query);
    // The adapter's declared RBAC is enforced here as a cluster would: a call it does not
    // declare fails the test that makes it.
    match rbac_of(&method, &path, &r, &q) {
        Some((group, resource, verb)) if rbac_grants(&group, &resource, verb) => {}
        Some((group, resource, verb)) => {
            return status_error(
                403,
                "Forbidden",
                format!(
                    "{} on {resource} in API group {group:?} is not in REQUIRED_RBAC",
                    verb.as_str()
                ),
            );
        }
        None => {
            return status_error(
                403,
                "Forbidden",
                format!("{method} {path}: a verb outside REQUIRED_RBAC's vocabulary"),
            );
        }
    }
    if r.key == "podmetrics" && state.world.lock().unwrap().no_metrics {
        return status_error(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
        );
    }
    match (method, r.name.as_deref(), r.sub.as_deref()) {
        (Method::GET, None, None) => {
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                watch(&state, &r, &q)
            } else {
                list(&state, &r, &q)
            }
        }
        (Method::GET, Some(name), None) => match get_obj(&state, &r.plural, &r.ns, name) {
            Some(o) => json_response(&o),
            None => not_found(&r.plural, name),
        },
        (Method::GET, Some(name), Some("scale")) => match get_obj(&state, &r.plural, &r.ns, name) {
            Some(o) => json_response(&scale_view(&o)),
            None => not_found(&r.plural, name),
        },
        (Method::GET, Some(name), Some("log")) => logs(&state, &r.ns, name, &q),
        (Method::PATCH, Some(name), sub) => {
            let Some(patch) = body_json else {
                return status_error(400, "BadRequest", "patch body is not JSON".into());
            };
            let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
            patch_obj(
                &state,
                &r,
                name,
                sub,
                content_type.as_deref(),
                patch,
                dry_run,
            )
        }
        (Method::POST, None, None) => {
            let Some(obj) = body_json else {
                return status_error(400, "BadRequest", "create body is not JSON".into());
            };
            create_obj(&state, &r, obj)
        }
        (Method::DELETE, Some(name), None) => delete_obj(&state, &r, name),
        _ => status_error(405, "MethodNotAllowed", format!("{path} not supported")),
    }
}

/// `coordination.k8s.io/v1` Leases, as leader election uses them: get, create, and update
/// with the API server's optimistic concurrency (a `resourceVersion` other than the stored
/// one is a 409 Conflict). Only the verbs the bot's Lease Role grants are answered.
fn lease(state: &AppState, method: &Method, r: &Route, body: Option<Value>) -> Response {
    let verb = match (method, &r.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        _ => "other",
    };
    if !erlmcp_bot::leader::kube_lease::LEASE_VERBS.contains(&verb) || r.sub.is_some() {
        return status_error(
            403,
            "Forbidden",
            format!("{method} on leases is not granted by the bot's Lease Role"),
        );
    }
    let mut w = state.world.lock().unwrap();
    match verb {
        "get" => {
            let name = r.name.as_deref().unwrap_or("");
            match w.objects.get(&("leases".into(), r.ns.clone(), name.into())) {
                Some(o) => json_response(o),
                None => not_found("leases", name),
            }
        }
        "create" => {
            let Some(mut obj) = body else {
                return status_error(400, "BadRequest", "lease body is not JSON".into());
            };
            let name = str_at(&obj, "/metadata/name").to_string();
            if w.objects
                .contains_key(&("leases".into(), r.ns.clone(), name.clone()))
            {
                return status_error(
                    409,
                    "AlreadyExists",
                    format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            obj["metadata"]["namespace"] = json!(r.ns);
            obj["metadata"]["uid"] = json!(w.uid());
            let stored = w.store("leases", obj, &state.tx);
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                stored.to_string(),
            )
                .into_response()
        }
        _ => {
            let Some(mut obj) = body else {
                return status_error(400, "BadRequest", "lease body is not JSON".into());
            };
            let name = r.name.clone().unwrap_or_default();
            let key = ("leases".to_string(), r.ns.clone(), name.clone());
            let Some(current) = w.objects.get(&key) else {
                return not_found("leases", &name);
            };
            let sent = str_at(&obj, "/metadata/resourceVersion");
            if !sent.is_empty() && sent != str_at(current, "/metadata/resourceVersion") {
                return status_error(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": \
                         the object has been modified; please apply your changes to the latest \
                         version and try again"
                    ),
                );
            }
            obj["metadata"]["namespace"] = json!(r.ns);
            obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
            json_response(&w.store("leases", obj, &state.tx))
        }
    }
}

fn not_found(plural: &str, name: &str) -> Response {
    status_error(404, "NotFound", format!("{plural} \"{name}\" not found"))
}

fn get_obj(state: &AppState, plural: &str, ns: &str, name: &str) -> Option<Value> {
    state
        .world
        .lock()
        .unwrap()
        .objects
        .get(&(plural.into(), ns.into(), name.into()))
        .cloned()
}

fn list(state: &AppState, r: &Route, q: &HashMap<String, String>) -> Response {
    let w = state.world.lock().unwrap();
    let items: Vec<Value> = w
        .objects
        .iter()
        .filter(|((p, n, _), _)| *p == r.key && *n == r.ns)
        .map(|(_, v)| v)
        .filter(|v| q.get("labelSelector").is_none_or(|s| labels_match(v, s)))
        .filter(|v| field_matches(v, q.get("fieldSelector")))
        .cloned()
        .collect();
    json_response(&json!({
        "kind": "List",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": w.resource_version.to_string()},
        "items": items,
    }))
}

fn watch(state: &AppState, r: &Route, q: &HashMap<String, String>) -> Response {
    // Subscribe before reading the current state so no change falls in between.
    let rx = state.tx.subscribe();
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(290);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let (plural, ns) = (r.plural.clone(), r.ns.clone());
    let field = q.get("fieldSelector").cloned();
    let labels = q.get("labelSelector").cloned();
    let matches = move |plural_: &str, ns_: &str, obj: &Value| {
        plural_ == plural
            && ns_ == ns
            && field_matches(obj, field.as_ref())
            && labels.as_ref().is_none_or(|s| labels_match(obj, s))
    };
    let initial: Vec<String> = {
        let w = state.world.lock().unwrap();
        w.objects
            .iter()
            .filter(|((p, n, _), v)| matches(p, n, v))
            .map(|(_, v)| event_line(v))
            .collect()
    };
    let updates = futures::stream::unfold((rx, matches), move |(mut rx, matches)| async move {
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return None,
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Ok(c)) => {
                    if matches(&c.plural, &c.ns, &c.object) {
                        return Some((event_line(&c.object), (rx, matches)));
                    }
                }
            }
        }
    });
    let stream = futures::StreamExt::map(
        futures::StreamExt::chain(futures::stream::iter(initial), updates),
        Ok::<String, Infallible>,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn event_line(obj: &Value) -> String {
    let mut s = json!({"type": "MODIFIED", "object": obj}).to_string();
    s.push('\n');
    s
}

fn logs(state: &AppState, ns: &str, pod: &str, q: &HashMap<String, String>) -> Response {
    let w = state.world.lock().unwrap();
    if !w
        .objects
        .contains_key(&("pods".into(), ns.into(), pod.into()))
    {
        return not_found("pods", pod);
    }
    let previous = q.get("previous").is_some_and(|v| v == "true");
    let Some(text) = w.logs.get(&(ns.into(), pod.into(), previous)) else {
        if previous {
            return status_error(
                400,
                "BadRequest",
                format!("previous terminated container in pod \"{pod}\" not found"),
            );
        }
        return (StatusCode::OK, String::new()).into_response();
    };
    let body = match q.get("tailLines").and_then(|t| t.parse::<usize>().ok()) {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut s = lines[start..].join("\n");
            s.push('\n');
            s
        }
        None => text.clone(),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn scale_view(obj: &Value) -> Value {
    let labels = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": labels}
    })
}

fn patch_obj(
    state: &AppState,
    r: &Route,
    name: &str,
    sub: Option<&str>,
    content_type: Option<&str>,
    patch: Value,
    dry_run: bool,
) -> Response {
    let mut w = state.world.lock().unwrap();
    let key = (r.plural.clone(), r.ns.clone(), name.to_string());
    let Some(before) = w.objects.get(&key).cloned() else {
        drop(w);
        return not_found(&r.plural, name);
    };
    let ct = content_type.unwrap_or("").split(';').next().unwrap_or("");
    let mut doc = match sub {
        Some("scale") => scale_view(&before),
        None => before.clone(),
        Some(other) => {
            return status_error(404, "NotFound", format!("subresource {other} not served"));
        }
    };
    let applied: Result<(), String> = match ct {
        "application/json-patch+json" => serde_json::from_value::<json_patch::Patch>(patch)
            .map_err(|e| e.to_string())
            .and_then(|p| json_patch::patch(&mut doc, &p).map_err(|e| e.to_string())),
        "application/merge-patch+json" => {
            json_patch::merge(&mut doc, &patch);
            Ok(())
        }
        "application/strategic-merge-patch+json" => {
            strategic_merge(&mut doc, &patch);
            Ok(())
        }
        other => Err(format!("unsupported patch content type {other:?}")),
    };
    if let Err(e) = applied {
        return status_error(422, "Invalid", e);
    }
    let mut after = if sub == Some("scale") {
        let mut o = before.clone();
        o["spec"]["replicas"] = doc["spec"]["replicas"].clone();
        o
    } else {
        doc
    };
    if matches!(r.plural.as_str(), "deployments" | "statefulsets")
        && after.get("spec") != before.get("spec")
    {
        let g = after
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        after["metadata"]["generation"] = json!(g + 1);
        if !dry_run && after.pointer("/spec/template") != before.pointer("/spec/template") {
            w.replacing.insert(key.clone());
        }
    }
    // dryRun=All: the object as it would be stored, and nothing stored.
    let stored = if dry_run {
        after
    } else {
        w.store(&r.plural, after, &state.tx)
    };
    if sub == Some("scale") {
        json_response(&scale_view(&stored))
    } else {
        json_response(&stored)
    }
}

/// Strategic merge as far as the bot uses it: maps merge, `null` deletes, `$patch: replace`
/// replaces a map, and container lists merge by their `name` key.
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = p.clone();
        replacement.remove("$patch");
        let mut v = Value::Object(replacement);
        strip_directives(&mut v);
        *doc = v;
        return;
    }
    if !doc.is_object() {
        *doc = json!({});
    }
    let d = doc.as_object_mut().expect("object");
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            d.remove(k);
            continue;
        }
        match d.get_mut(k) {
            Some(Value::Array(items))
                if matches!(k.as_str(), "containers" | "initContainers") && pv.is_array() =>
            {
                for pitem in pv.as_array().expect("array") {
                    let name = pitem.get("name");
                    match items.iter_mut().find(|i| i.get("name") == name) {
                        Some(existing) => strategic_merge(existing, pitem),
                        None => items.push(pitem.clone()),
                    }
                }
            }
            Some(existing) if existing.is_object() && pv.is_object() => {
                strategic_merge(existing, pv)
            }
            _ => {
                let mut v = pv.clone();
                strip_directives(&mut v);
                d.insert(k.clone(), v);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

// ----- the controllers ------------------------------------------------------------------

fn template_without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
    }
    t
}

fn owned_by<'a>(w: &'a World, plural: &str, ns: &str, uid: &Value) -> Vec<&'a Value> {
    w.objects
        .iter()
        .filter(|((p, n, _), _)| p == plural && n == ns)
        .map(|(_, v)| v)
        .filter(|v| {
            v.pointer("/metadata/ownerReferences/0/uid") == Some(uid)
                && v.pointer("/metadata/ownerReferences/0/controller") == Some(&json!(true))
        })
        .collect()
}

fn short_hash(v: &Value) -> String {
    // FNV-1a: stable across runs, unlike the std hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:x}", h)[..9].to_string()
}

fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    let conds = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some(ty))
        .collect();
    conds.push(
        json!({"type": ty, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": "2026-02-02T10:00:00Z", "lastTransitionTime": "2026-02-02T10:00:00Z"}),
    );
    obj["status"]["conditions"] = json!(conds);
}

/// POST: stores a new object the way the API server does (uid, creation time,
/// resourceVersion); 409 when the name is taken.
fn create_obj(state: &AppState, r: &Route, mut obj: Value) -> Response {
    let mut w = state.world.lock().unwrap();
    let name = str_at(&obj, "/metadata/name").to_string();
    if name.is_empty() {
        return status_error(422, "Invalid", "metadata.name: Required value".into());
    }
    if w.objects
        .contains_key(&(r.key.clone(), r.ns.clone(), name.clone()))
    {
        return status_error(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", r.plural),
        );
    }
    obj["metadata"]["namespace"] = json!(r.ns);
    obj["metadata"]["uid"] = json!(w.uid());
    obj["metadata"]["creationTimestamp"] = json!("2026-11-02T09:00:00Z");
    obj["metadata"]["generation"] = json!(1);
    let stored = w.store(&r.key, obj, &state.tx);
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        stored.to_string(),
    )
        .into_response()
}

/// DELETE: removes the object and answers with it, as the API server does for a pod.
fn delete_obj(state: &AppState, r: &Route, name: &str) -> Response {
    let mut w = state.world.lock().unwrap();
    match w
        .objects
        .remove(&(r.key.clone(), r.ns.clone(), name.to_string()))
    {
        Some(obj) => json_response(&obj),
        None => {
            drop(w);
            not_found(&r.plural, name)
        }
    }
}

/// The Job controller in one step: a new Job starts (one active pod), then completes, or
/// fails when its CronJob is marked failing.
fn job_step(w: &mut World, key: &Key, tx: &broadcast::Sender<Change>) {
    let Some(mut job) = w.objects.get(key).cloned() else {
        return;
    };
    if job.pointer("/status/conditions").is_some() {
        return;
    }
    if job.pointer("/status/startTime").is_none() {
        job["status"] = json!({"startTime": "2026-11-02T09:00:01Z", "active": 1});
        w.store("jobs", job, tx);
        return;
    }
    let owner = job
        .pointer("/metadata/ownerReferences/0/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (ty, reason, message) = if w.failing_cronjobs.contains(&owner) {
        (
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
    } else {
        ("Complete", "", "")
    };
    let mut status = json!({"startTime": "2026-11-02T09:00:01Z", "active": 0,
        "conditions": [{"type": ty, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": "2026-11-02T09:00:41Z",
            "lastTransitionTime": "2026-11-02T09:00:41Z"}]});
    if ty == "Complete" {
        status["succeeded"] = json!(1);
        status["completionTime"] = json!("2026-11-02T09:00:41Z");
    } else {
        status["failed"] = json!(1);
    }
    job["status"] = status;
    w.store("jobs", job, tx);
}

fn controller_tick(world: &Arc<Mutex<World>>, tx: &broadcast::Sender<Change>) {
    let mut w = world.lock().unwrap();
    let keys: Vec<Key> = w.objects.keys().cloned().collect();
    for key in keys {
        match key.0.as_str() {
            "deployments" => deployment_step(&mut w, &key, tx),
            "statefulsets" => statefulset_step(&mut w, &key, tx),
            "canaries" => canary_step(&mut w, &key, tx),
            "jobs" => job_step(&mut w, &key, tx),
            _ => {}
        }
    }
}

fn deployment_step(w: &mut World, key: &Key, tx: &broadcast::Sender<Change>) {
    let Some(mut d) = w.objects.get(key).cloned() else {
        return;
    };
    if d.pointer("/spec/paused") == Some(&json!(true)) {
        return;
    }
    let name = key.2.clone();
    let ns = key.1.clone();
    let generation = d
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let observed = d
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let get = |d: &Value, f: &str| d["status"][f].as_i64().unwrap_or(0);

    if observed < generation {
        d["status"]["observedGeneration"] = json!(generation);
        let replacing = w.replacing.remove(key);
        let template = template_without_hash(&d["spec"]["template"]);
        let uid = d["metadata"]["uid"].clone();
        let owned: Vec<Value> = owned_by(w, "replicasets", &ns, &uid)
            .into_iter()
            .cloned()
            .collect();
        let revision_of = |rs: &Value| {
            rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let max_rev = owned.iter().map(revision_of).max().unwrap_or(0);
        let matching = owned
            .iter()
            .find(|rs| template_without_hash(&rs["spec"]["template"]) == template)
            .cloned();
        let current_rev = str_at(
            &d,
            "/metadata/annotations/deployment.kubernetes.io~1revision",
        )
        .parse::<i64>()
        .unwrap_or(0);
        let rs_name = if !replacing {
            format!("{name}-{}", short_hash(&template))
        } else {
            match matching {
                Some(mut rs) if revision_of(&rs) != current_rev || max_rev == 0 => {
                    // An old ReplicaSet comes back (rollback): it gets the next revision.
                    let old = revision_of(&rs);
                    let next = max_rev.max(current_rev) + 1;
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(next.to_string());
                    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] =
                        json!(old.to_string());
                    rs["spec"]["replicas"] = json!(desired);
                    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(next.to_string());
                    let n = str_at(&rs, "/metadata/name").to_string();
                    w.store("replicasets", rs, tx);
                    n
                }
                Some(rs) => str_at(&rs, "/metadata/name").to_string(),
                None => {
                    let hash = short_hash(&template);
                    let next = max_rev.max(current_rev) + 1;
                    let mut tmpl = d["spec"]["template"].clone();
                    tmpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                    let mut annotations = d["metadata"]["annotations"].clone();
                    if !annotations.is_object() {
                        annotations = json!({});
                    }
                    annotations["deployment.kubernetes.io/revision"] = json!(next.to_string());
                    annotations["deployment.kubernetes.io/desired-replicas"] =
                        json!(desired.to_string());
                    let rs_uid = w.uid();
                    let rs = json!({
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": format!("{name}-{hash}"), "namespace": ns,
                            "uid": rs_uid, "generation": 1,
                            "labels": tmpl["metadata"]["labels"].clone(),
                            "annotations": annotations,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                "name": name, "uid": uid, "controller": true,
                                "blockOwnerDeletion": true}]},
                        "spec": {"replicas": desired, "selector": {"matchLabels":
                            tmpl["metadata"]["labels"].clone()}, "template": tmpl},
                        "status": {"replicas": 0, "observedGeneration": 1}
                    });
                    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                        json!(next.to_string());
                    w.store("replicasets", rs, tx);
                    format!("{name}-{hash}")
                }
            }
        };
        if w.stalled.contains(&(ns.clone(), name.clone())) {
            set_condition(
                &mut d,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            );
            w.store("deployments", d, tx);
            return;
        }
        if replacing {
            d["status"]["updatedReplicas"] = json!(0);
            d["status"]["readyReplicas"] = json!(0);
            d["status"]["availableReplicas"] = json!(0);
            d["status"]["replicas"] = json!(desired);
            w.replacing.insert(key.clone());
        }
        set_condition(
            &mut d,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
        );
        w.store("deployments", d, tx);
        return;
    }

    if w.stalled.contains(&(ns.clone(), name.clone()))
        && d.pointer("/status/conditions").is_some_and(|c| {
            c.as_array().is_some_and(|a| {
                a.iter()
                    .any(|c| c["reason"] == json!("ProgressDeadlineExceeded"))
            })
        })
    {
        return;
    }

    let (mut updated, mut ready, mut available) = (
        get(&d, "updatedReplicas"),
        get(&d, "readyReplicas"),
        get(&d, "availableReplicas"),
    );
    let replacing = w.replacing.contains(key);
    if updated > desired || ready > desired || available > desired {
        updated = updated.min(desired);
        ready = ready.min(desired);
        available = available.min(desired);
    } else if updated < desired {
        updated += 1;
    } else if ready < desired {
        ready += 1;
    } else if available < desired {
        available += 1;
    } else {
        let done = get(&d, "replicas") == desired
            && d.pointer("/status/conditions").is_some_and(|c| {
                c.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|c| c["reason"] == json!("NewReplicaSetAvailable"))
                })
            });
        if done {
            return;
        }
        w.replacing.remove(key);
        d["status"]["replicas"] = json!(desired);
        set_condition(
            &mut d,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
        let rs_name = format!(
            "{name}-{}",
            short_hash(&template_without_hash(&d["spec"]["template"]))
        );
        set_condition(
            &mut d,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        );
        w.store("deployments", d, tx);
        return;
    }
    // Old pods go away as new ones become ready.
    let old = if replacing { desired - ready } else { 0 };
    d["status"]["updatedReplicas"] = json!(updated);
    d["status"]["readyReplicas"] = json!(ready);
    d["status"]["availableReplicas"] = json!(available);
    d["status"]["replicas"] = json!(updated + old);
    w.store("deployments", d, tx);
}

fn statefulset_step(w: &mut World, key: &Key, tx: &broadcast::Sender<Change>) {
    let Some(mut s) = w.objects.get(key).cloned() else {
        return;
    };
    let ns = key.1.clone();
    let name = key.2.clone();
    let generation = s
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let observed = s
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let desired = s
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if observed < generation {
        s["status"]["observedGeneration"] = json!(generation);
        let uid = s["metadata"]["uid"].clone();
        let owned: Vec<Value> = owned_by(w, "controllerrevisions", &ns, &uid)
            .into_iter()
            .cloned()
            .collect();
        let max_rev = owned
            .iter()
            .filter_map(|c| c["revision"].as_i64())
            .max()
            .unwrap_or(0);
        let template = s["spec"]["template"].clone();
        let restores = |c: &Value| {
            let mut t = c
                .pointer("/data/spec/template")
                .cloned()
                .unwrap_or(Value::Null);
            strip_directives(&mut t);
            t == template
        };
        let update_name = match owned.iter().find(|c| restores(c)).cloned() {
            Some(mut cr) => {
                let n = str_at(&cr, "/metadata/name").to_string();
                if n != str_at(&s, "/status/updateRevision") {
                    cr["revision"] = json!(max_rev + 1);
                    w.store("controllerrevisions", cr, tx);
                }
                n
            }
            None => {
                let mut t = template.clone();
                t["$patch"] = json!("replace");
                let cr_name = format!("{name}-{}", short_hash(&template));
                let cr = json!({
                    "apiVersion": "apps/v1", "kind": "ControllerRevision",
                    "metadata": {"name": cr_name, "namespace": ns,
                        "labels": s["spec"]["selector"]["matchLabels"].clone(),
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                            "name": name, "uid": uid, "controller": true,
                            "blockOwnerDeletion": true}]},
                    "data": {"spec": {"template": t}},
                    "revision": max_rev + 1
                });
                w.store("controllerrevisions", cr, tx);
                cr_name
            }
        };
        if update_name != str_at(&s, "/status/currentRevision") {
            s["status"]["updateRevision"] = json!(update_name);
            s["status"]["updatedReplicas"] = json!(0);
        }
        w.store("statefulsets", s, tx);
        return;
    }
    let updated = s["status"]["updatedReplicas"].as_i64().unwrap_or(0);
    let current = str_at(&s, "/status/currentRevision").to_string();
    let update = str_at(&s, "/status/updateRevision").to_string();
    if current == update && updated == desired && s["status"]["readyReplicas"] == json!(desired) {
        return;
    }
    if updated < desired {
        s["status"]["updatedReplicas"] = json!(updated + 1);
    } else {
        s["status"]["currentRevision"] = json!(update);
        s["status"]["currentReplicas"] = json!(desired);
        s["status"]["replicas"] = json!(desired);
        s["status"]["readyReplicas"] = json!(desired);
        s["status"]["availableReplicas"] = json!(desired);
    }
    w.store("statefulsets", s, tx);
}

fn canary_step(w: &mut World, key: &Key, tx: &broadcast::Sender<Change>) {
    let Some(mut c) = w.objects.get(key).cloned() else {
        return;
    };
    if c.pointer("/spec/suspend") == Some(&json!(true))
        || c.pointer("/spec/skipAnalysis") != Some(&json!(true))
    {
        return;
    }
    let next = match str_at(&c, "/status/phase") {
        "Succeeded" | "Failed" => return,
        "Promoting" => "Finalising",
        "Finalising" => "Succeeded",
        _ => "Promoting",
    };
    c["status"]["phase"] = json!(next);
    if next == "Succeeded" {
        c["status"]["canaryWeight"] = json!(0);
        c["status"]["failedChecks"] = json!(0);
    }
    w.store("canaries", c, tx);
}
