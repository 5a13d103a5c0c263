//! deploy/kubernetes as shipped: each overlay renders with `kubectl kustomize`, passes
//! `kubernetes-validate --strict` offline, and grants exactly the RBAC the Kubernetes
//! adapter declares in `REQUIRED_RBAC` (which the fake API server enforces on every request
//! the adapter's tests make). Without kubectl or kubernetes-validate the test prints a loud
//! `SKIPPED (no kubectl)` line, which `.ci/run` turns into a failure.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use erlmcp_adapters::kubernetes::REQUIRED_RBAC;
use serde_json::Value;

const OVERLAYS: [&str; 2] = ["single", "ha"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tools_or_skip(test: &str) -> bool {
    let kubectl = available("kubectl", &["version", "--client"]);
    let validate = available("kubernetes-validate", &["--version"]);
    if kubectl && validate {
        return true;
    }
    // Straight to the stderr handle: the harness captures eprintln! of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (no kubectl): {test} — needs kubectl (kustomize) and kubernetes-validate \
         (pip install kubernetes-validate); kubectl found: {kubectl}, kubernetes-validate \
         found: {validate}"
    );
    false
}

/// The overlay rendered, as YAML text and as objects.
fn render(overlay: &str) -> (String, Vec<Value>) {
    let dir = deploy_dir().join("overlays").join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    // kubernetes-validate is Python with PyYAML, so the same interpreter reads the YAML.
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML");
    py.stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write yaml");
    let out = py.wait_with_output().expect("python3");
    assert!(out.status.success(), "YAML to JSON failed for {overlay}");
    let objects: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    (yaml, objects)
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn rules(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for g in rule["apiGroups"].as_array().into_iter().flatten() {
            for r in rule["resources"].as_array().into_iter().flatten() {
                for v in rule["verbs"].as_array().into_iter().flatten() {
                    set.insert((s(g).into(), s(r).into(), s(v).into()));
                }
            }
        }
    }
    set
}

fn target_namespaces() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy_dir().join("base/erlmcp-bot.toml")).expect("config");
    let config: toml::Value = text.parse().expect("toml");
    config["environments"]
        .as_table()
        .expect("[environments]")
        .values()
        .chain(config.get("dr"))
        .filter(|e| e.get("target").and_then(toml::Value::as_str) == Some("kubernetes"))
        .filter_map(|e| e.get("namespace").and_then(toml::Value::as_str))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_overlay_renders_and_passes_strict_validation() {
    if !tools_or_skip("every_overlay_renders_and_passes_strict_validation") {
        return;
    }
    for overlay in OVERLAYS {
        let (yaml, objects) = render(overlay);
        assert!(!objects.is_empty(), "{overlay} renders nothing");
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), &yaml).expect("write");
        let out = Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(file.path())
            .output()
            .expect("run kubernetes-validate");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{overlay}: {report}");
        // Every built-in kind is checked against its schema; only the Prometheus Operator's
        // ServiceMonitor has none offline.
        for line in report.lines().filter(|l| l.starts_with("WARN")) {
            assert!(line.contains("kind ServiceMonitor"), "{overlay}: {line}");
        }
        let passed = report.lines().filter(|l| l.contains(" passed ")).count();
        assert_eq!(passed, objects.len() - 1, "{overlay}: {report}");
    }
}

#[test]
fn roles_grant_exactly_what_the_kubernetes_adapter_calls() {
    if !tools_or_skip("roles_grant_exactly_what_the_kubernetes_adapter_calls") {
        return;
    }
    let required: BTreeSet<(String, String, String)> = REQUIRED_RBAC
        .iter()
        .flat_map(|g| {
            g.verbs
                .iter()
                .map(|v| (g.api_group.into(), g.resource.into(), v.as_str().into()))
        })
        .collect();
    // What leader election calls on its Lease.
    let lease: BTreeSet<(String, String, String)> = erlmcp_bot::leader::kube_lease::LEASE_VERBS
        .iter()
        .map(|v| ("coordination.k8s.io".into(), "leases".into(), v.to_string()))
        .collect();
    for overlay in OVERLAYS {
        let (_, objects) = render(overlay);
        let mut target_roles = BTreeSet::new();
        for role in of_kind(&objects, "Role") {
            let ns = s(&role["metadata"]["namespace"]).to_string();
            let granted = rules(role);
            if ns == "erlmcp-bot" {
                assert_eq!(
                    granted, lease,
                    "{overlay}: the bot's own Role is the Lease's"
                );
            } else {
                assert_eq!(granted, required, "{overlay}: Role in {ns}");
                target_roles.insert(ns);
            }
        }
        assert!(
            of_kind(&objects, "ClusterRole").is_empty(),
            "{overlay}: nothing cluster-wide"
        );
        assert_eq!(
            target_roles,
            target_namespaces(),
            "{overlay}: one Role per target namespace"
        );
        let bound: BTreeSet<String> = of_kind(&objects, "RoleBinding")
            .iter()
            .filter(|b| {
                b["subjects"].as_array().is_some_and(|subs| {
                    subs.iter().all(|x| {
                        x["kind"] == "ServiceAccount"
                            && x["name"] == "erlmcp-bot"
                            && x["namespace"] == "erlmcp-bot"
                    })
                })
            })
            .map(|b| s(&b["metadata"]["namespace"]).to_string())
            .collect();
        let mut expected = target_namespaces();
        expected.insert("erlmcp-bot".into());
        assert_eq!(
            bound, expected,
            "{overlay}: each Role bound to the bot's ServiceAccount"
        );
    }
}

fn deployment(objects: &[Value]) -> &Value {
    let d = of_kind(objects, "Deployment");
    assert_eq!(d.len(), 1);
    d[0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn overlays_keep_the_deployment_safe_and_the_ingress_to_chat_endpoints() {
    if !tools_or_skip("overlays_keep_the_deployment_safe_and_the_ingress_to_chat_endpoints") {
        return;
    }
    for overlay in OVERLAYS {
        let (_, objects) = render(overlay);
        let dep = deployment(&objects);
        let pod = &dep["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{overlay}"
        );
        assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{overlay} {probe}");
        }
        let metrics_port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "metrics")
            .expect("metrics port")["containerPort"]
            .as_u64()
            .unwrap();
        assert_eq!(
            env(c, "ERLMCP_BOT__METRICS_LISTEN").map(|e| s(&e["value"]).to_string()),
            Some(format!("0.0.0.0:{metrics_port}")),
            "{overlay}: probes hit bot.metrics_listen"
        );
        let config = of_kind(&objects, "ConfigMap")[0]["data"]["erlmcp-bot.toml"].clone();
        assert!(
            s(&config).contains("metrics_listen = \"0.0.0.0:9090\""),
            "{overlay}"
        );

        // Tokens only by reference to the Secret.
        for e in c["env"].as_array().unwrap() {
            let name = s(&e["name"]);
            if ["TOKEN", "SECRET", "KEY"].iter().any(|w| name.contains(w)) {
                assert!(e.get("value").is_none(), "{overlay}: {name} is literal");
                assert_eq!(
                    e["valueFrom"]["secretKeyRef"]["name"], "erlmcp-bot",
                    "{name}"
                );
            }
        }
        assert!(
            of_kind(&objects, "Secret").is_empty(),
            "{overlay}: no Secret shipped"
        );

        let db = env(c, "ERLMCP_BOT__DATABASE_URL").expect("database URL");
        match overlay {
            "single" => {
                assert_eq!(dep["spec"]["replicas"], 1);
                assert_eq!(dep["spec"]["strategy"]["type"], "Recreate");
                assert!(s(&db["value"]).starts_with("sqlite:///var/lib/erlmcp-bot/"));
                assert_eq!(of_kind(&objects, "PersistentVolumeClaim").len(), 1);
            }
            _ => {
                assert!(dep["spec"]["replicas"].as_u64().unwrap() >= 2);
                assert!(db.get("value").is_none());
                assert_eq!(db["valueFrom"]["secretKeyRef"]["key"], "database-url");
            }
        }
        for kind in [
            "PodDisruptionBudget",
            "ServiceAccount",
            "ServiceMonitor",
            "Ingress",
        ] {
            assert_eq!(of_kind(&objects, kind).len(), 1, "{overlay}: one {kind}");
        }

        // The chat Service carries the chat port only.
        let svc = of_kind(&objects, "Service")
            .into_iter()
            .find(|x| x["metadata"]["name"] == "erlmcp-bot")
            .expect("chat Service");
        let targets: Vec<&str> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| s(&p["targetPort"]))
            .collect();
        assert_eq!(targets, ["http"], "{overlay}");

        let ing = of_kind(&objects, "Ingress")[0];
        let mut paths = BTreeSet::new();
        for rule in ing["spec"]["rules"].as_array().unwrap() {
            for p in rule["http"]["paths"].as_array().unwrap() {
                let backend = &p["backend"]["service"];
                assert_eq!(backend["name"], "erlmcp-bot", "{overlay}");
                assert_eq!(backend["port"]["name"], "http", "{overlay}");
                paths.insert((s(&p["path"]).to_string(), s(&p["pathType"]).to_string()));
            }
        }
        assert!(ing["spec"].get("defaultBackend").is_none());
        let want: BTreeSet<(String, String)> = [
            ("/slack/", "Prefix"),
            ("/discord/interactions", "Exact"),
            ("/github/webhook", "Exact"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(
            paths, want,
            "{overlay}: the ingress exposes the chat endpoints only"
        );
    }
}

/// The ConfigMap's config is one the bot accepts, and the one shipped as the example.
#[test]
fn the_configmaps_config_is_valid_and_matches_the_example() {
    let base = std::fs::read_to_string(deploy_dir().join("base/erlmcp-bot.toml")).expect("base");
    let example =
        std::fs::read_to_string(deploy_dir().join("../erlmcp-bot.example.toml")).expect("example");
    assert_eq!(
        base, example,
        "keep deploy/erlmcp-bot.example.toml and the base's copy alike"
    );
    // The tokens come from the Secret's environment variables in the pod.
    let with_secrets = base.replacen(
        "[slack]\n",
        "[slack]\nbot_token = \"xoxb-test\"\nsigning_secret = \"test\"\n",
        1,
    );
    let config = erlmcp_bot::config::from_toml(&with_secrets).expect("a valid config");
    assert_eq!(config.bot.metrics_listen.as_deref(), Some("0.0.0.0:9090"));
}
