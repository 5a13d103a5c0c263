//! Policy table tests: who may do what where, and how approvals count.

use chrono::{Duration, TimeZone, Utc};
use erlmcp_commands::approval::{
    self, Event, Rejection, RequestState, RequestView, Transition, Vote,
};
use erlmcp_commands::config::{
    ApprovalSpec, BreakGlassSpec, Config, EnvironmentSpec, HumanDuration, IdentityKind,
    IdentityKinds, PreconditionSpec, RuleSpec,
};
use erlmcp_commands::policy::{
    self, ApprovalRequirement, CiStatus, Decision, Facts, Operation, Policy, Refusal, SoakFacts,
    Unmet, VoteRefusal,
};
use erlmcp_commands::{Actor, EnvName, OperationKind, Person, Severity, Timestamp, Version};

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

/// The identity kinds of the platforms the daemon wires, as it hands them to the checks.
fn identity_kinds() -> IdentityKinds {
    IdentityKinds::new([
        IdentityKind::person("slack"),
        IdentityKind::group("slack-group"),
        IdentityKind::person("discord"),
        IdentityKind::group("discord-role"),
        IdentityKind::person("local"),
    ])
}

fn rule(op: &str, envs: &[&str], roles: &[&str]) -> RuleSpec {
    RuleSpec {
        operation: op.into(),
        environments: envs.iter().map(|s| s.to_string()).collect(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
        approvals: None,
        preconditions: None,
        break_glass: None,
    }
}

/// The runbook's policy, built in code so the table reads on its own.
fn runbook() -> Policy {
    let mut cfg = Config::default();
    for (n, a) in [
        ("development", "dev"),
        ("staging", "stg"),
        ("production", "prod"),
    ] {
        cfg.environments
            .insert(n.into(), EnvironmentSpec::sandbox(n, &[a], 3));
    }
    for (role, who) in [
        ("devops-lead", "alice"),
        ("change-board", "bob"),
        ("oncall", "carol"),
        ("engineer", "dave"),
    ] {
        cfg.roles.insert(role.into(), vec![format!("local:{who}")]);
    }
    cfg.rules.push(rule(
        "deploy",
        &["development", "staging"],
        &["engineer", "devops-lead"],
    ));
    let mut prod_deploy = rule("deploy", &["production"], &["devops-lead"]);
    prod_deploy.approvals = Some(ApprovalSpec {
        count: 1,
        from: vec!["change-board".into()],
    });
    prod_deploy.preconditions = Some(PreconditionSpec {
        soak_from: Some("staging".into()),
        soak: Some(HumanDuration::parse("24h").unwrap()),
        ci_green: true,
    });
    cfg.rules.push(prod_deploy);
    let mut prod_rollback = rule("rollback", &["production"], &["oncall", "devops-lead"]);
    prod_rollback.approvals = Some(ApprovalSpec {
        count: 1,
        from: vec!["devops-lead".into(), "oncall".into()],
    });
    prod_rollback.break_glass = Some(BreakGlassSpec {
        roles: vec!["oncall".into()],
        during: vec![Severity::P0, Severity::P1],
    });
    cfg.rules.push(prod_rollback);
    let mut prod_scale = rule("scale", &["production"], &["oncall", "devops-lead"]);
    prod_scale.approvals = Some(ApprovalSpec {
        count: 1,
        from: vec!["devops-lead".into()],
    });
    cfg.rules.push(prod_scale);
    cfg.rules.push(rule("audit", &[], &["devops-lead"]));
    Policy::from_config(&cfg.finish())
}

fn actor(name: &str, roles: &[&str]) -> Actor {
    Actor::new(
        "local",
        name,
        name,
        roles.iter().map(|s| s.to_string()).collect(),
    )
}

fn op(kind: OperationKind, env: Option<&str>, version: Option<&str>) -> Operation {
    Operation {
        kind,
        env: env.map(EnvName::new),
        version: version.map(|v| Version::parse(v).unwrap()),
    }
}

fn soaked(hours_ago: i64) -> Facts {
    Facts {
        open_incident: None,
        soak: Some(SoakFacts {
            deployed_at: Some(now() - Duration::hours(hours_ago)),
            rolled_back_at: None,
        }),
        ci: Some(CiStatus::Green),
    }
}

#[derive(Debug, PartialEq)]
enum D {
    Allow,
    BreakGlass,
    Approval,
    NoRole,
    NotPermitted,
    Unmet(usize),
}

fn short(d: &Decision) -> D {
    match d {
        Decision::Allow {
            break_glass: true, ..
        } => D::BreakGlass,
        Decision::Allow { .. } => D::Allow,
        Decision::NeedsApproval { .. } => D::Approval,
        Decision::Deny(Refusal::NoRole) => D::NoRole,
        Decision::Deny(Refusal::NotPermitted { .. }) => D::NotPermitted,
        Decision::Deny(Refusal::Preconditions(u)) => D::Unmet(u.len()),
    }
}

/// who, roles, operation, environment, version, expected decision
type Case<'a> = (
    &'a str,
    &'a [&'a str],
    OperationKind,
    Option<&'a str>,
    Option<&'a str>,
    D,
);

#[test]
fn allow_and_deny_per_role_and_environment() {
    use OperationKind::*;
    let p = runbook();
    let green = soaked(48);
    let table: &[Case] = &[
        (
            "dave",
            &["engineer"],
            Deploy,
            Some("development"),
            Some("v1.0.0"),
            D::Allow,
        ),
        (
            "dave",
            &["engineer"],
            Deploy,
            Some("staging"),
            Some("v1.0.0"),
            D::Allow,
        ),
        (
            "dave",
            &["engineer"],
            Deploy,
            Some("production"),
            Some("v1.0.0"),
            D::NotPermitted,
        ),
        (
            "alice",
            &["devops-lead"],
            Deploy,
            Some("production"),
            Some("v1.0.0"),
            D::Approval,
        ),
        (
            "bob",
            &["change-board"],
            Deploy,
            Some("production"),
            Some("v1.0.0"),
            D::NotPermitted,
        ),
        (
            "carol",
            &["oncall"],
            Rollback,
            Some("production"),
            None,
            D::Approval,
        ),
        (
            "dave",
            &["engineer"],
            Rollback,
            Some("production"),
            None,
            D::NotPermitted,
        ),
        (
            "dave",
            &["engineer"],
            Rollback,
            Some("staging"),
            None,
            D::NotPermitted,
        ),
        (
            "alice",
            &["devops-lead"],
            Scale,
            Some("production"),
            None,
            D::Approval,
        ),
        (
            "alice",
            &["devops-lead"],
            Scale,
            Some("staging"),
            None,
            D::NotPermitted,
        ),
        (
            "erin",
            &[],
            Deploy,
            Some("development"),
            Some("v1.0.0"),
            D::NoRole,
        ),
        ("alice", &["devops-lead"], Audit, None, None, D::Allow),
        ("dave", &["engineer"], Audit, None, None, D::NotPermitted),
        (
            "dave",
            &["engineer"],
            IncidentDeclare,
            None,
            None,
            D::NotPermitted,
        ),
    ];
    for (name, roles, kind, env, version, want) in table {
        let d = policy::decide(
            &p,
            &actor(name, roles),
            &op(*kind, *env, *version),
            &green,
            now(),
        );
        assert_eq!(&short(&d), want, "{name} {kind:?} {env:?}: {d:?}");
    }
}

#[test]
fn refusal_names_the_roles_that_could() {
    let p = runbook();
    let d = policy::decide(
        &p,
        &actor("dave", &["engineer"]),
        &op(OperationKind::Rollback, Some("production"), None),
        &Facts::default(),
        now(),
    );
    match d {
        Decision::Deny(Refusal::NotPermitted { allowed, .. }) => {
            assert_eq!(allowed, vec!["devops-lead", "oncall"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_unmet_precondition_is_listed() {
    let p = runbook();
    let alice = actor("alice", &["devops-lead"]);
    let deploy = op(OperationKind::Deploy, Some("production"), Some("v3.0.1"));

    // Soaked 10h, CI red: both named.
    let facts = Facts {
        soak: Some(SoakFacts {
            deployed_at: Some(now() - Duration::hours(10)),
            rolled_back_at: None,
        }),
        ci: Some(CiStatus::NotGreen("2 checks failed".into())),
        ..Facts::default()
    };
    let Decision::Deny(Refusal::Preconditions(unmet)) =
        policy::decide(&p, &alice, &deploy, &facts, now())
    else {
        panic!("expected unmet preconditions");
    };
    assert_eq!(unmet.len(), 2, "{unmet:?}");
    match &unmet[0] {
        Unmet::Soak { met_at, .. } => assert_eq!(*met_at, Some(now() + Duration::hours(14))),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&unmet[1], Unmet::CiNotGreen { detail, .. } if detail.contains("2 checks")));

    // Never deployed to staging: no "met at", says so.
    let facts = Facts {
        ci: Some(CiStatus::Green),
        ..Facts::default()
    };
    let d = policy::decide(&p, &alice, &deploy, &facts, now());
    let text = match &d {
        Decision::Deny(r) => erlmcp_commands::replies::refusal(r, now()),
        other => panic!("{other:?}"),
    };
    assert!(
        text.contains("has not been deployed successfully to staging"),
        "{text}"
    );

    // Rolled back in staging since the deploy: the soak does not count.
    let facts = Facts {
        soak: Some(SoakFacts {
            deployed_at: Some(now() - Duration::hours(48)),
            rolled_back_at: Some(now() - Duration::hours(2)),
        }),
        ci: Some(CiStatus::Green),
        ..Facts::default()
    };
    assert_eq!(
        short(&policy::decide(&p, &alice, &deploy, &facts, now())),
        D::Unmet(1)
    );

    // CI unknown fails closed.
    let facts = Facts {
        ci: Some(CiStatus::Unknown("GitHub timed out".into())),
        ..soaked(48)
    };
    assert_eq!(
        short(&policy::decide(&p, &alice, &deploy, &facts, now())),
        D::Unmet(1)
    );

    // Exactly 24h is enough.
    assert_eq!(
        short(&policy::decide(&p, &alice, &deploy, &soaked(24), now())),
        D::Approval
    );
}

#[test]
fn break_glass_only_for_oncall_only_in_p0_p1_only_for_rollback() {
    let p = runbook();
    let carol = actor("carol", &["oncall"]);
    let alice = actor("alice", &["devops-lead"]);
    let rollback = op(OperationKind::Rollback, Some("production"), None);
    let scale = op(OperationKind::Scale, Some("production"), None);
    let during = |s: Option<Severity>| Facts {
        open_incident: s,
        ..Facts::default()
    };
    let cases = [
        (&carol, &rollback, None, D::Approval),
        (&carol, &rollback, Some(Severity::P0), D::BreakGlass),
        (&carol, &rollback, Some(Severity::P1), D::BreakGlass),
        (&carol, &rollback, Some(Severity::P2), D::Approval),
        (&alice, &rollback, Some(Severity::P0), D::Approval),
        (&alice, &scale, Some(Severity::P0), D::Approval),
        (&carol, &scale, Some(Severity::P0), D::Approval),
    ];
    for (who, operation, sev, want) in cases {
        let d = policy::decide(&p, who, operation, &during(sev), now());
        assert_eq!(
            short(&d),
            want,
            "{} {:?} during {sev:?}",
            who.user_id,
            operation.kind
        );
    }
    // Break-glass on a non-rollback rule is rejected by check-config.
    let mut cfg = Config::default();
    cfg.roles
        .insert("oncall".into(), vec!["local:carol".into()]);
    let mut r = rule("scale", &[], &["oncall"]);
    r.break_glass = Some(BreakGlassSpec {
        roles: vec!["oncall".into()],
        during: vec![Severity::P0],
    });
    cfg.rules.push(r);
    let problems = cfg.finish().problems(&identity_kinds());
    assert!(
        problems.iter().any(|p| p.path == "rules[0].break_glass"),
        "{problems:?}"
    );
}

fn view(requester: &str, count: u32, from: &[&str], votes: &[(&str, bool)]) -> RequestView {
    RequestView {
        state: RequestState::Pending,
        requester: Person::Identity(format!("local:{requester}")),
        requirement: ApprovalRequirement {
            count,
            from: from.iter().map(|s| s.to_string()).collect(),
        },
        expires_at: now() + Duration::hours(1),
        votes: votes
            .iter()
            .map(|(v, a)| Vote {
                voter: Person::Identity(format!("local:{v}")),
                approve: *a,
            })
            .collect(),
    }
}

#[test]
fn requester_cannot_approve_even_holding_the_role() {
    let bob = actor("bob", &["change-board", "devops-lead"]);
    let v = view("bob", 1, &["change-board"], &[]);
    assert_eq!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &bob,
                approve: true
            },
            now()
        ),
        Err(Rejection::Vote(VoteRefusal::Requester))
    );
}

#[test]
fn only_named_roles_vote() {
    let dave = actor("dave", &["engineer"]);
    let v = view("alice", 1, &["change-board"], &[]);
    assert!(matches!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &dave,
                approve: true
            },
            now()
        ),
        Err(Rejection::Vote(VoteRefusal::NotApprover { .. }))
    ));
}

#[test]
fn each_approver_counts_once() {
    let bob = actor("bob", &["change-board"]);
    let frank = actor("frank", &["change-board"]);
    let v = view("alice", 2, &["change-board"], &[("bob", true)]);
    assert_eq!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &bob,
                approve: true
            },
            now()
        ),
        Err(Rejection::AlreadyVoted)
    );
    // The same voter stored twice (e.g. a replayed insert) still counts as one.
    let dup = view(
        "alice",
        2,
        &["change-board"],
        &[("bob", true), ("bob", true)],
    );
    assert_eq!(dup.approvals(), 1);
    assert_eq!(approval::settle(&dup), None);
    assert_eq!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &frank,
                approve: true
            },
            now()
        ),
        Ok(Transition::Approved { approvals: 2 })
    );
    let first = view("alice", 2, &["change-board"], &[]);
    assert_eq!(
        approval::apply(
            &first,
            &Event::Vote {
                voter: &frank,
                approve: true
            },
            now()
        ),
        Ok(Transition::VoteRecorded {
            approvals: 1,
            needed: 2
        })
    );
}

#[test]
fn a_deny_settles_as_denied() {
    let bob = actor("bob", &["change-board"]);
    let v = view("alice", 2, &["change-board"], &[]);
    assert_eq!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &bob,
                approve: false
            },
            now()
        ),
        Ok(Transition::Denied)
    );
    assert_eq!(
        approval::settle(&view(
            "alice",
            2,
            &["change-board"],
            &[("frank", true), ("bob", false)]
        )),
        Some(Transition::Denied)
    );
}

#[test]
fn expiry() {
    let bob = actor("bob", &["change-board"]);
    let alice = actor("alice", &["devops-lead"]);
    let v = view("alice", 1, &["change-board"], &[]);
    let later = now() + Duration::hours(1);
    assert_eq!(
        approval::apply(
            &v,
            &Event::Vote {
                voter: &bob,
                approve: true
            },
            later
        ),
        Err(Rejection::Expired)
    );
    assert_eq!(
        approval::apply(&v, &Event::Cancel { by: &alice }, later),
        Err(Rejection::Expired)
    );
    assert_eq!(
        approval::apply(&v, &Event::Expire, later),
        Ok(Transition::Expired)
    );
    assert_eq!(
        approval::apply(&v, &Event::Expire, now()),
        Err(Rejection::NotPending(RequestState::Pending)),
        "not yet due"
    );
    let mut done = v.clone();
    done.state = RequestState::Succeeded;
    assert_eq!(
        approval::apply(
            &done,
            &Event::Vote {
                voter: &bob,
                approve: true
            },
            now()
        ),
        Err(Rejection::NotPending(RequestState::Succeeded))
    );
}

#[test]
fn only_the_requester_cancels() {
    let bob = actor("bob", &["change-board"]);
    let alice = actor("alice", &["devops-lead"]);
    let v = view("alice", 1, &["change-board"], &[]);
    assert_eq!(
        approval::apply(&v, &Event::Cancel { by: &bob }, now()),
        Err(Rejection::NotRequester)
    );
    assert_eq!(
        approval::apply(&v, &Event::Cancel { by: &alice }, now()),
        Ok(Transition::Cancelled)
    );
}

#[test]
fn access_is_open_for_help_and_whoami_only() {
    use erlmcp_commands::Command;
    use policy::Access;
    assert_eq!(policy::access(&Command::Whoami), Access::Open);
    assert_eq!(policy::access(&Command::Help { topic: None }), Access::Open);
    assert_eq!(policy::access(&Command::Requests), Access::AnyRole);
    assert_eq!(
        policy::access(&Command::Status { env: None }),
        Access::AnyRole
    );
}

/// An identity that belongs to a named person.
fn person_actor(platform: &str, id: &str, person: &str, roles: &[&str]) -> Actor {
    let mut a = Actor::new(
        platform,
        id,
        id,
        roles.iter().map(|s| s.to_string()).collect(),
    );
    a.person = Person::Named(person.into());
    a
}

fn person_view(requester: Person, count: u32, votes: &[(Person, bool)]) -> RequestView {
    RequestView {
        state: RequestState::Pending,
        requester,
        requirement: ApprovalRequirement {
            count,
            from: vec!["change-board".into()],
        },
        expires_at: now() + Duration::hours(1),
        votes: votes
            .iter()
            .map(|(p, a)| Vote {
                voter: p.clone(),
                approve: *a,
            })
            .collect(),
    }
}

#[test]
fn requester_and_vote_rules_apply_per_person() {
    let alice = || Person::Named("alice".into());
    let bob = || Person::Named("bob".into());
    let alice_slack = person_actor("slack", "U0ALICE", "alice", &["change-board"]);
    let alice_local = person_actor("local", "alice", "alice", &["change-board"]);
    let bob_slack = person_actor("slack", "U0BOB", "bob", &["change-board"]);
    let frank = actor("frank", &["change-board"]);
    let erin = || Person::Identity("local:erin".into());
    // requester, needed, stored votes, voter, expected
    type PersonCase<'a> = (
        Person,
        u32,
        Vec<(Person, bool)>,
        &'a Actor,
        Result<Transition, Rejection>,
    );
    let cases: Vec<PersonCase> = vec![
        // Her own request, from her other identity.
        (
            alice(),
            1,
            vec![],
            &alice_slack,
            Err(Rejection::Vote(VoteRefusal::Requester)),
        ),
        (
            alice(),
            1,
            vec![],
            &alice_local,
            Err(Rejection::Vote(VoteRefusal::Requester)),
        ),
        // She voted locally; her Slack identity may not vote again, not even to deny.
        (
            erin(),
            2,
            vec![(alice(), true)],
            &alice_slack,
            Err(Rejection::AlreadyVoted),
        ),
        // Different people still approve normally.
        (
            erin(),
            2,
            vec![(alice(), true)],
            &bob_slack,
            Ok(Transition::Approved { approvals: 2 }),
        ),
        (
            alice(),
            1,
            vec![],
            &bob_slack,
            Ok(Transition::Approved { approvals: 1 }),
        ),
        (
            erin(),
            2,
            vec![],
            &frank,
            Ok(Transition::VoteRecorded {
                approvals: 1,
                needed: 2,
            }),
        ),
        // An identity no person claims is its own person.
        (
            Person::Identity("local:frank".into()),
            1,
            vec![],
            &frank,
            Err(Rejection::Vote(VoteRefusal::Requester)),
        ),
        (
            bob(),
            2,
            vec![(Person::Identity("local:frank".into()), true)],
            &frank,
            Err(Rejection::AlreadyVoted),
        ),
    ];
    for (i, (requester, count, votes, voter, want)) in cases.into_iter().enumerate() {
        let v = person_view(requester, count, &votes);
        for approve in [true, false] {
            let got = approval::apply(&v, &Event::Vote { voter, approve }, now());
            let want = match (&want, approve) {
                (Ok(_), false) => Ok(Transition::Denied),
                _ => want.clone(),
            };
            assert_eq!(got, want, "case {i} (approve={approve})");
        }
    }

    // Two stored votes from one person's two identities (they raced) count once.
    let raced = person_view(erin(), 2, &[(alice(), true), (alice(), true)]);
    assert_eq!(raced.approvals(), 1);
    assert_eq!(approval::settle(&raced), None);
    let two = person_view(erin(), 2, &[(alice(), true), (bob(), true)]);
    assert_eq!(
        approval::settle(&two),
        Some(Transition::Approved { approvals: 2 })
    );

    // The requester cancels from any identity; nobody else does.
    let hers = person_view(alice(), 1, &[]);
    assert_eq!(
        approval::apply(&hers, &Event::Cancel { by: &alice_slack }, now()),
        Ok(Transition::Cancelled)
    );
    assert_eq!(
        approval::apply(&hers, &Event::Cancel { by: &bob_slack }, now()),
        Err(Rejection::NotRequester)
    );
    assert_eq!(
        policy::may_vote(&hers.requirement, &alice(), &alice_slack),
        Err(VoteRefusal::Requester)
    );
}

fn people_config(people: &[(&str, &[&str])], roles: &[(&str, &[&str])]) -> Config {
    let mut cfg = Config::default();
    for (name, ids) in people {
        cfg.people.insert(
            name.to_string(),
            ids.iter().map(|s| s.to_string()).collect(),
        );
    }
    for (role, members) in roles {
        cfg.roles.insert(
            role.to_string(),
            members.iter().map(|s| s.to_string()).collect(),
        );
    }
    cfg.finish()
}

#[test]
fn people_resolve_identities_and_role_members() {
    let cfg = people_config(
        &[("alice", &["slack:U0ALICE", "discord:42", "alice"])],
        &[
            ("change-board", &["alice"]),
            ("oncall", &["local:alice"]),
            ("engineer", &["dave"]),
        ],
    );
    assert_eq!(cfg.problems(&identity_kinds()), vec![]);
    let alice = Person::Named("alice".into());
    for id in ["slack:U0ALICE", "discord:42", "local:alice"] {
        assert_eq!(cfg.person_for(id), alice, "{id}");
    }
    assert_eq!(
        cfg.person_for("slack:U0BOB"),
        Person::Identity("slack:U0BOB".into())
    );
    assert_eq!(
        cfg.identities_of(&alice),
        vec!["slack:U0ALICE", "discord:42", "local:alice"]
    );
    // A role naming the person reaches every identity; one naming an identity, that one.
    assert_eq!(cfg.roles_for(&["discord:42".into()]), vec!["change-board"]);
    assert_eq!(
        cfg.roles_for(&["local:alice".into()]),
        vec!["change-board", "oncall"]
    );
    // A bare name that is not a person still means `local:NAME`.
    assert_eq!(cfg.roles_for(&["local:dave".into()]), vec!["engineer"]);
    assert_eq!(cfg.role_identities("engineer"), vec!["local:dave"]);
}

#[test]
fn check_config_names_people_mistakes() {
    let cfg = people_config(
        &[
            ("alice", &["slack:U0ALICE", "local:alice", "local:alice"]),
            (
                "bob",
                &["slack:U0ALICE", "slack-group:S1", "nobody:x", "slack:"],
            ),
            ("carol", &[]),
            ("dave:ops", &["local:dave"]),
        ],
        &[("change-board", &["alice", "bob"])],
    );
    let problems = cfg.problems(&identity_kinds());
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let has = |path: &str, needle: &str| {
        problems
            .iter()
            .any(|p| p.path == path && p.message.contains(needle))
    };
    assert!(has("people.alice[2]", "listed twice"), "{text:#?}");
    assert!(
        has("people.bob[0]", "already claimed by person \"alice\""),
        "{text:#?}"
    );
    assert!(has("people.bob[1]", "a group is not a person"), "{text:#?}");
    assert!(has("people.bob[2]", "PLATFORM:ID"), "{text:#?}");
    assert!(has("people.bob[3]", "PLATFORM:ID"), "{text:#?}");
    assert!(has("people.carol", "at least one identity"), "{text:#?}");
    assert!(has("people.dave:ops", "person name"), "{text:#?}");
    // Role members naming people are not malformed identities.
    assert!(
        !problems.iter().any(|p| p.path.starts_with("roles.")),
        "{text:#?}"
    );
}

#[test]
fn approval_capacity_counts_people_not_identities() {
    let mut cfg = people_config(
        &[("bob", &["slack:U0BOB", "local:bob"])],
        &[
            ("change-board", &["local:bob", "slack:U0BOB"]),
            ("lead", &["local:alice"]),
        ],
    );
    let mut r = rule("scale", &[], &["lead"]);
    r.approvals = Some(ApprovalSpec {
        count: 2,
        from: vec!["change-board".into()],
    });
    cfg.rules.push(r);
    let problems = cfg.problems(&identity_kinds());
    let count = problems
        .iter()
        .find(|p| p.path == "rules[0].approvals.count")
        .unwrap_or_else(|| panic!("two identities of bob are one approver: {problems:?}"));
    assert!(count.message.contains("only 1 people"), "{}", count.message);
}
