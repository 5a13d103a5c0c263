//! The batch reads and writes of a chunk of status updates (`store::job_batch`).

use super::*;

async fn incident(s: &Arc<dyn Store>, title: &str) -> IncidentRow {
    s.insert_incident(NewIncident {
        severity: Severity::P2,
        title: title.into(),
        declared_by: who("U1"),
        declared_at: t(T0),
        channel: "slack:C1".into(),
    })
    .await
    .unwrap()
}

fn status_event(incident: IncidentId, at: i64, text: &str) -> NewIncidentEvent {
    NewIncidentEvent {
        incident,
        at: t(at),
        kind: IncidentEventKind::StatusUpdate,
        who: Some(who("UBOT")),
        text: text.into(),
    }
}

async fn job_of(s: &Arc<dyn Store>, inc: IncidentId) {
    s.upsert_job(
        &format!("incident_update:{inc}"),
        "incident_update",
        &inc.0.to_string(),
        t(T0),
    )
    .await
    .unwrap();
}

pub(super) async fn incidents_and_events_read_by_the_batch(db: &Db) {
    let s = &db.store;
    let (a, b, c) = (
        incident(s, "a").await,
        incident(s, "b").await,
        incident(s, "c").await,
    );
    for (inc, text) in [(c.id, "c1"), (a.id, "a1"), (c.id, "c2")] {
        s.append_incident_event(inc, t(T0), IncidentEventKind::Update, None, text)
            .await
            .unwrap();
    }
    let missing = IncidentId(c.id.0 + 1000);
    let found = s.incidents_by_id(&[c.id, missing, a.id]).await.unwrap();
    assert_eq!(
        found,
        vec![a.clone(), c.clone()],
        "existing ones, in id order"
    );
    let events = s
        .events_of_incidents(&[c.id, b.id, a.id, missing])
        .await
        .unwrap();
    let seen: Vec<(IncidentId, i64, &str)> = events
        .iter()
        .map(|e| (e.incident_id, e.seq, e.text.as_str()))
        .collect();
    assert_eq!(seen, [(a.id, 1, "a1"), (c.id, 1, "c1"), (c.id, 2, "c2")]);
    assert!(s.incidents_by_id(&[]).await.unwrap().is_empty());
    assert!(s.events_of_incidents(&[]).await.unwrap().is_empty());
}

pub(super) async fn jobs_completed_with_their_events(db: &Db) {
    let s = &db.store;
    let (a, b, c, d) = (
        incident(s, "a").await,
        incident(s, "b").await,
        incident(s, "c").await,
        incident(s, "d").await,
    );
    s.append_incident_event(a.id, t(T0), IncidentEventKind::Declared, None, "a")
        .await
        .unwrap();
    for inc in [&a, &b, &c, &d] {
        job_of(s, inc.id).await;
    }
    let mut held = s
        .claim_due_jobs("one", t(T0), t(T0 + 1_000), 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 4);
    held.sort_by_key(|j| j.payload.parse::<i64>().unwrap());
    // C's lease runs out and another owner takes it over.
    let taken = s
        .claim_due_jobs("two", t(T0 + 2_000), t(T0 + 200_000), 1)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let lost = taken[0].id;
    let again = |j: &JobRow, event| JobDone {
        id: j.id,
        next_due: Some(t(T0 + 60_000)),
        event,
    };
    let mut done: Vec<JobDone> = held
        .iter()
        .map(|j| {
            let inc = IncidentId(j.payload.parse().unwrap());
            again(
                j,
                Some(status_event(inc, T0 + 3_000, &format!("update {inc}"))),
            )
        })
        .collect();
    // D is over: its job goes, with no event.
    done[3].next_due = None;
    done[3].event = None;
    let answers = s.complete_jobs_with_events("one", done).await.unwrap();
    let expected: Vec<bool> = held.iter().map(|j| j.id != lost).collect();
    assert_eq!(answers, expected);

    let events = s
        .events_of_incidents(&[a.id, b.id, c.id, d.id])
        .await
        .unwrap();
    let seen: Vec<(IncidentId, i64, IncidentEventKind)> = events
        .iter()
        .map(|e| (e.incident_id, e.seq, e.kind))
        .collect();
    let lost_incident = IncidentId(taken[0].payload.parse().unwrap());
    let mut want = vec![(a.id, 1, IncidentEventKind::Declared)];
    for inc in [a.id, b.id, c.id] {
        if inc != lost_incident {
            let seq = if inc == a.id { 2 } else { 1 };
            want.push((inc, seq, IncidentEventKind::StatusUpdate));
        }
    }
    assert_eq!(seen, want, "a lost job's event is not written");
    let update = events.iter().find(|e| e.incident_id == b.id).unwrap();
    assert_eq!(
        (update.at, update.who.as_ref(), update.text.as_str()),
        (
            t(T0 + 3_000),
            Some(&who("UBOT")),
            format!("update {}", b.id).as_str()
        )
    );

    // Rescheduled and released: due again at the new time, D's job gone, the lost one
    // still the other owner's.
    assert!(
        s.claim_due_jobs("three", t(T0 + 59_999), t(T0 + 70_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let next = s
        .claim_due_jobs("three", t(T0 + 60_000), t(T0 + 70_000), 10)
        .await
        .unwrap();
    let mut ids: Vec<i64> = next.iter().map(|j| j.id).collect();
    ids.sort();
    let mut want: Vec<i64> = held[..3]
        .iter()
        .map(|j| j.id)
        .filter(|id| *id != lost)
        .collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(s.complete_job(lost, "two", None).await.unwrap());

    // Two events of one incident in one batch take consecutive seqs.
    job_of(s, d.id).await;
    s.upsert_job("second", "incident_update", &d.id.0.to_string(), t(T0))
        .await
        .unwrap();
    let mut jobs = s
        .claim_due_jobs("four", t(T0 + 80_000), t(T0 + 90_000), 10)
        .await
        .unwrap();
    jobs.retain(|j| j.payload == d.id.0.to_string());
    assert_eq!(jobs.len(), 2);
    let done = jobs
        .iter()
        .zip(["first", "second"])
        .map(|(j, text)| JobDone {
            id: j.id,
            next_due: Some(t(T0 + 100_000)),
            event: Some(status_event(d.id, T0 + 80_000, text)),
        })
        .collect();
    let answers = s.complete_jobs_with_events("four", done).await.unwrap();
    assert_eq!(answers, [true, true]);
    let texts: Vec<(i64, String)> = s
        .incident_events(d.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.text))
        .collect();
    assert_eq!(texts, [(1, "first".to_string()), (2, "second".to_string())]);
}

pub(super) async fn failed_batch_completion_writes_nothing(db: &Db) {
    let s = &db.store;
    let a = incident(s, "a").await;
    let gone = IncidentId(a.id.0 + 1000);
    job_of(s, a.id).await;
    job_of(s, gone).await;
    let mut held = s
        .claim_due_jobs("one", t(T0), t(T0 + 1_000), 10)
        .await
        .unwrap();
    held.sort_by_key(|j| j.payload.parse::<i64>().unwrap());
    assert_eq!(held.len(), 2);
    let done = vec![
        JobDone {
            id: held[0].id,
            next_due: Some(t(T0 + 60_000)),
            event: Some(status_event(a.id, T0, "written?")),
        },
        JobDone {
            id: held[1].id,
            next_due: Some(t(T0 + 60_000)),
            event: Some(status_event(gone, T0, "no such incident")),
        },
    ];
    let err = s.complete_jobs_with_events("one", done).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert!(s.incident_events(a.id).await.unwrap().is_empty());
    // Still leased to their owner, at their old due time: retried once the lease runs out.
    assert!(
        s.claim_due_jobs("two", t(T0 + 1_000), t(T0 + 2_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = s
        .claim_due_jobs("two", t(T0 + 1_001), t(T0 + 2_000), 10)
        .await
        .unwrap();
    assert_eq!(retried.len(), 2);
    assert!(retried.iter().all(|j| j.due_at == t(T0)));
}
