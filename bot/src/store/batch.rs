//! Audited writes as both backends' writers group them: whatever arrives together is
//! written in one transaction with a fixed number of statements for its requests, audit rows
//! and sandbox states, however many operations it carries.

use super::*;

/// A write that appends to the audit chain, with the request writes that go with it.
pub(crate) enum AuditWork {
    Append(NewAuditEntry),
    Request(NewRequest, NewAuditEntry),
    Finish(FinishRequest, NewAuditEntry),
}

/// What an [`AuditWork`] wrote, variant for variant.
pub(crate) enum Done {
    Appended(AuditRow),
    Requested(Box<RequestRow>, AuditRow),
    Finished(bool, AuditRow),
}

/// The request writes' part of a [`Done`], before its audit row exists and, for a
/// finish, before whether it moved its request is known.
enum Written {
    Appended,
    Requested(Box<RequestRow>),
    Finished,
}

impl Written {
    fn with(self, row: AuditRow, moved: &mut impl Iterator<Item = bool>) -> StoreResult<Done> {
        Ok(match self {
            Written::Appended => Done::Appended(row),
            Written::Requested(r) => Done::Requested(r, row),
            Written::Finished => Done::Finished(moved.next().ok_or_else(mismatched)?, row),
        })
    }
}

impl Done {
    pub(crate) fn appended(self) -> StoreResult<AuditRow> {
        match self {
            Done::Appended(row) => Ok(row),
            _ => Err(mismatched()),
        }
    }

    pub(crate) fn requested(self) -> StoreResult<(RequestRow, AuditRow)> {
        match self {
            Done::Requested(row, audit) => Ok((*row, audit)),
            _ => Err(mismatched()),
        }
    }

    pub(crate) fn finished(self) -> StoreResult<(bool, AuditRow)> {
        match self {
            Done::Finished(moved, audit) => Ok((moved, audit)),
            _ => Err(mismatched()),
        }
    }
}

fn mismatched() -> StoreError {
    StoreError::Database("internal error: the audit writer answered another kind of write".into())
}

/// The newest state of each environment among `states` (in the order they were made): one
/// upsert may not touch a row twice, and the last write is the one that counts.
pub(crate) fn newest_states(states: Vec<SandboxRow>) -> Vec<SandboxRow> {
    let mut newest: Vec<SandboxRow> = Vec::with_capacity(states.len());
    for state in states {
        match newest
            .iter_mut()
            .find(|s| s.environment == state.environment)
        {
            Some(s) => *s = state,
            None => newest.push(state),
        }
    }
    newest
}

/// The request writes among `works`, for their backend's two statements: the finishes and
/// the new requests, each in the order queued.
pub(crate) fn request_writes(works: &[AuditWork]) -> (Vec<&FinishRequest>, Vec<&NewRequest>) {
    let (mut finishes, mut news) = (Vec::new(), Vec::new());
    for work in works {
        match work {
            AuditWork::Finish(f, _) => finishes.push(f),
            AuditWork::Request(new, _) => news.push(new),
            AuditWork::Append(_) => {}
        }
    }
    (finishes, news)
}

/// A run of audited work chained onto the audit log, once its request writes are made.
pub(crate) struct Chained {
    /// The audit rows to insert, one per work, in order.
    pub(crate) rows: Vec<AuditRow>,
    /// The sandbox states the finishes carry, in order.
    pub(crate) states: Vec<SandboxRow>,
    /// `(seq, hash)` of the chain's newest row once `rows` are in.
    pub(crate) tip: Option<(i64, String)>,
    written: Vec<Written>,
}

impl Chained {
    /// Each work's answer, once its rows are written. `moved` answers the finishes, in the
    /// order of [`request_writes`]: the audit rows do not depend on it, so a backend may
    /// learn it in the statement that writes them.
    pub(crate) fn done(self, moved: Vec<bool>) -> StoreResult<Vec<Done>> {
        let mut moved = moved.into_iter();
        self.written
            .into_iter()
            .zip(self.rows)
            .map(|(before, row)| before.with(row, &mut moved))
            .collect()
    }
}

/// Chains `works` after `tip`. `inserted` answers their new requests, in the order of
/// [`request_writes`]. A finish names a request its caller was
/// given, so committed before this run began: none names a request inserted in it, and the
/// backend may make the two statements in either order.
pub(crate) fn chain(
    works: Vec<AuditWork>,
    inserted: Vec<RequestRow>,
    tip: Option<(i64, String)>,
) -> StoreResult<Chained> {
    let mut inserted = inserted.into_iter();
    let mut last = tip;
    let (mut rows, mut written) = (Vec::with_capacity(works.len()), Vec::new());
    let mut states = Vec::new();
    for work in works {
        let (entry, before) = match work {
            AuditWork::Append(entry) => (entry, Written::Appended),
            AuditWork::Request(_, mut entry) => {
                let row = inserted.next().ok_or_else(mismatched)?;
                entry.request_id = Some(row.id);
                (entry, Written::Requested(Box::new(row)))
            }
            AuditWork::Finish(f, entry) => {
                states.extend(f.sandbox);
                (entry, Written::Finished)
            }
        };
        let row = audit::next_row(entry, last.take())?;
        last = Some((row.seq, row.hash.clone()));
        rows.push(row);
        written.push(before);
    }
    Ok(Chained {
        rows,
        states,
        tip: last,
        written,
    })
}

/// The finishes that go in each statement, as indexes into `finishes`. A run rarely names
/// a request twice; when it does, the later finish goes in a later statement, so it sees
/// the state the earlier one left, as it would alone.
pub(crate) fn finish_rounds(finishes: &[&FinishRequest]) -> Vec<Vec<usize>> {
    let rounds = rounds(finishes.iter().map(|f| f.id));
    (0..rounds.iter().copied().max().map_or(0, |r| r + 1))
        .map(|round| {
            (0..finishes.len())
                .filter(|&i| rounds[i] == round)
                .collect()
        })
        .collect()
}

/// For each id, how many times it came before: the statement each finish goes in.
fn rounds(ids: impl Iterator<Item = RequestId>) -> Vec<usize> {
    let mut seen: Vec<(RequestId, usize)> = Vec::new();
    ids.map(|id| match seen.iter_mut().find(|(s, _)| *s == id) {
        Some((_, n)) => {
            *n += 1;
            *n
        }
        None => {
            seen.push((id, 0));
            0
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(env: &str, json: &str) -> SandboxRow {
        SandboxRow {
            environment: env.into(),
            state_json: json.into(),
            updated_at: chrono::DateTime::from_timestamp_millis(0).unwrap(),
        }
    }

    #[test]
    fn a_repeated_id_goes_in_a_later_round() {
        let ids = [1, 2, 1, 3, 1, 2].map(RequestId);
        assert_eq!(rounds(ids.into_iter()), vec![0, 0, 1, 0, 2, 1]);
    }

    #[test]
    fn the_last_state_of_an_environment_wins() {
        let newest = newest_states(vec![state("a", "1"), state("b", "1"), state("a", "2")]);
        assert_eq!(newest, vec![state("a", "2"), state("b", "1")]);
    }
}
