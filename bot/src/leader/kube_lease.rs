//! Leader election through a `coordination.k8s.io/v1` Lease, the way client-go's
//! leaderelection does it: read the Lease, then create it, renew it or take it over with a
//! write that carries the `resourceVersion` read, so of two candidates writing at once the
//! API server accepts one and answers the other 409 Conflict.
//!
//! Written on the plain kube client rather than kube-lease-manager: that crate writes the
//! Lease with server-side apply and strategic merge patches (the `patch` verb), while
//! get / create / update with a resourceVersion precondition needs nothing more than
//! those three verbs (`base/rbac-lease.yaml`), and is what the API server's own
//! components use.
//!
//! A holder is considered gone when its Lease has not changed for `leaseDurationSeconds`
//! *as measured by this process's own clock* since it last saw a change, so clocks that
//! disagree between nodes cannot shorten a lease. A leader that cannot renew steps down
//! after two thirds of the duration, before any follower may take over.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use erlmcp_adapters::kube_client::api::{Api, PostParams};
use erlmcp_adapters::kube_client::{self as kube, Client};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::Candidate;

/// The verbs this backend uses on `coordination.k8s.io` `leases` (the Role in
/// `deploy/kubernetes/base/rbac-lease.yaml` grants exactly these).
pub const LEASE_VERBS: [&str; 3] = ["get", "create", "update"];

/// Where the Lease lives: `leader.lease_namespace`, else `POD_NAMESPACE` (the downward
/// API), else the client's namespace (the service account's own in a pod).
pub fn namespace(configured: Option<&str>, client_default: &str) -> String {
    configured
        .map(str::to_string)
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client_default.to_string())
}

/// What was last seen of the Lease, and when (by this process's clock).
struct Observed {
    holder: Option<String>,
    renew: Option<MicroTime>,
    duration: Duration,
    at: Instant,
}

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observed>,
    /// When this process last wrote the Lease as its holder.
    renewed: Option<Instant>,
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            observed: None,
            renewed: None,
        }
    }

    /// A leader that cannot renew stops leading this long after its last renewal, well
    /// before a follower may take the Lease over.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    fn still_leading(&self) -> bool {
        self.renewed
            .is_some_and(|at| at.elapsed() < self.renew_deadline())
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Notes what the Lease says now; the clock restarts whenever it changed.
    fn observe(&mut self, spec: &LeaseSpec) {
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder,
                renew: spec.renew_time.clone(),
                duration: spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map(Duration::from_secs)
                    .unwrap_or(self.duration),
                at: Instant::now(),
            });
        }
    }

    fn holder_gone(&self) -> bool {
        match &self.observed {
            None => true,
            Some(o) => o.holder.is_none() || o.at.elapsed() > o.duration,
        }
    }

    /// A write lost to another candidate, or failed outright: this round does not lead
    /// unless an earlier renewal still covers it.
    fn failed(&mut self, e: kube::Error) -> Result<bool, String> {
        if is_conflict(&e) {
            self.renewed = None;
            return Ok(false);
        }
        if self.still_leading() {
            tracing::warn!(error = %e, lease = %self.name, "could not renew the Lease; still within its deadline");
            return Ok(true);
        }
        self.renewed = None;
        Err(format!("Lease {}: {e}", self.name))
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    // 409: someone else wrote first (Conflict on update, AlreadyExists on create).
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[async_trait]
impl Candidate for LeaseLock {
    async fn round(&mut self) -> Result<bool, String> {
        let now = MicroTime(Timestamp::now());
        let lease = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => return self.failed(e),
        };
        let Some(mut lease) = lease else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_duration_seconds: Some(self.seconds()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(_) => {
                    self.renewed = Some(Instant::now());
                    Ok(true)
                }
                Err(e) => self.failed(e),
            };
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        self.observe(&spec);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if mine {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.seconds());
        } else if self.holder_gone() {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.seconds());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        } else {
            self.renewed = None;
            return Ok(false);
        }
        lease.spec = Some(spec);
        // `lease.metadata.resourceVersion` is the one just read: the update is refused
        // (409) if anyone wrote the Lease since.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                if let Some(spec) = &written.spec {
                    self.observe(spec);
                }
                self.renewed = Some(Instant::now());
                Ok(true)
            }
            Err(e) => self.failed(e),
        }
    }

    async fn resign(&mut self) {
        self.renewed = None;
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        // An empty holder tells the others the Lease is free now, not after its duration.
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, lease = %self.name, "could not release the Lease; it runs out by itself");
        }
    }

    fn period(&self) -> Duration {
        (self.duration / 4).max(Duration::from_millis(500))
    }
}
