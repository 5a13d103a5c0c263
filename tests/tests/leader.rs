//! Leader election through a Lease on the fake API server, with the real kube client: one
//! holder at a time, renewals, a release handing over at once, a silent holder replaced
//! only once its lease has run out, and two candidates racing for a free Lease.

use std::time::{Duration, Instant};

use erlmcp_bot::leader::kube_lease::LeaseLock;
use erlmcp_bot::leader::{Backend, Candidate, Leadership};
use erlmcp_bot::metrics::Metrics;
use erlmcp_tests::fake_kube::FakeKubeServer;

const NS: &str = "erlmcp-bot";
const NAME: &str = "erlmcp-bot";
const LEASE: Duration = Duration::from_secs(2);

fn candidate(fake: &FakeKubeServer, identity: &str) -> LeaseLock {
    LeaseLock::new(fake.client(), NS, NAME, identity, LEASE)
}

fn transitions(fake: &FakeKubeServer) -> i64 {
    fake.get("leases", NS, NAME)
        .and_then(|l| l.pointer("/spec/leaseTransitions").and_then(|v| v.as_i64()))
        .unwrap_or(-1)
}

fn resource_version(fake: &FakeKubeServer) -> String {
    fake.get("leases", NS, NAME)
        .and_then(|l| {
            l.pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn one_holder_renews_releases_and_a_silent_one_is_replaced_after_its_lease() {
    let fake = FakeKubeServer::start().await;
    let (mut a, mut b) = (candidate(&fake, "replica-a"), candidate(&fake, "replica-b"));

    assert_eq!(
        a.round().await,
        Ok(true),
        "the first candidate creates the Lease"
    );
    assert_eq!(fake.lease_holder(NS, NAME).as_deref(), Some("replica-a"));
    let lease = fake.get("leases", NS, NAME).unwrap();
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2);
    assert!(lease["spec"]["renewTime"].is_string(), "{lease}");
    assert_eq!(b.round().await, Ok(false));

    let before = resource_version(&fake);
    assert_eq!(a.round().await, Ok(true));
    assert_ne!(resource_version(&fake), before, "renewed");
    assert_eq!(b.round().await, Ok(false), "a renewed Lease is not taken");

    // A release hands over at the next round, without waiting for the lease to run out.
    a.resign().await;
    assert_eq!(fake.lease_holder(NS, NAME), None);
    assert_eq!(b.round().await, Ok(true));
    assert_eq!(fake.lease_holder(NS, NAME).as_deref(), Some("replica-b"));
    assert_eq!(transitions(&fake), 1);

    // B goes silent. A waits out the whole lease, timed by its own clock from when it last
    // saw the Lease change, then takes over.
    assert_eq!(a.round().await, Ok(false));
    let silent = Instant::now();
    loop {
        if a.round().await == Ok(true) {
            break;
        }
        assert!(
            silent.elapsed() < Duration::from_secs(30),
            "never took over the silent holder's Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = silent.elapsed();
    assert!(
        took >= LEASE,
        "taken over after {took:?}, before the lease ran out"
    );
    assert_eq!(fake.lease_holder(NS, NAME).as_deref(), Some("replica-a"));
    assert_eq!(transitions(&fake), 2);

    // B comes back: it sees it no longer holds the Lease and follows.
    assert_eq!(b.round().await, Ok(false));

    // Only the verbs the Lease Role grants were used (the fake refuses any other).
    for r in fake.requests() {
        assert!(
            matches!(r.method.as_str(), "GET" | "POST" | "PUT"),
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn two_candidates_racing_for_a_free_lease_elect_one() {
    let fake = FakeKubeServer::start().await;
    let mut first = candidate(&fake, "first");
    assert_eq!(first.round().await, Ok(true));
    first.resign().await;
    for round in 0..20 {
        let (mut a, mut b) = (candidate(&fake, "racer-a"), candidate(&fake, "racer-b"));
        let (ra, rb) = tokio::join!(a.round(), b.round());
        let winners = [ra.clone(), rb.clone()]
            .iter()
            .filter(|r| **r == Ok(true))
            .count();
        assert_eq!(winners, 1, "round {round}: a={ra:?} b={rb:?}");
        let holder = fake.lease_holder(NS, NAME).unwrap();
        assert_eq!(holder, if ra == Ok(true) { "racer-a" } else { "racer-b" });
        a.resign().await;
        b.resign().await;
        assert_eq!(fake.lease_holder(NS, NAME), None);
    }
}

/// The whole election as `serve` runs it: the state on a watch channel, the metric, and a
/// release at shutdown that the other candidate notices within one round.
#[tokio::test]
async fn leadership_is_watched_and_handed_over_on_release() {
    let fake = FakeKubeServer::start().await;
    let (ma, mb) = (Metrics::new(), Metrics::new());
    let a = Leadership::campaign(
        Backend::KubernetesLease,
        "replica-a",
        Box::new(candidate(&fake, "replica-a")),
        ma.clone(),
    )
    .await;
    assert!(a.is_leader());
    let b = Leadership::campaign(
        Backend::KubernetesLease,
        "replica-b",
        Box::new(candidate(&fake, "replica-b")),
        mb.clone(),
    )
    .await;
    assert!(!b.is_leader());
    assert!(
        ma.encode()
            .contains("erlmcp_bot_leader{backend=\"kubernetes-lease\"} 1"),
        "{}",
        ma.encode()
    );
    assert!(
        mb.encode()
            .contains("erlmcp_bot_leader{backend=\"kubernetes-lease\"} 0")
    );

    let mut b_state = b.watch();
    let released = Instant::now();
    a.release(Duration::from_secs(10)).await;
    assert_eq!(fake.lease_holder(NS, NAME), None);
    tokio::time::timeout(Duration::from_secs(30), b_state.wait_for(|l| *l))
        .await
        .expect("b leads after a's release")
        .unwrap();
    // One round (a quarter of the lease), not the whole lease.
    println!("handover after release: {:?}", released.elapsed());
    assert_eq!(fake.lease_holder(NS, NAME).as_deref(), Some("replica-b"));
    assert!(
        mb.encode()
            .contains("erlmcp_bot_leader_transitions_total{backend=\"kubernetes-lease\"} 1")
    );
    b.release(Duration::from_secs(10)).await;
    assert_eq!(fake.lease_holder(NS, NAME), None);
}
