//! The audit log's hash chain: every row carries the SHA-256 of its predecessor, so editing,
//! deleting or inserting a row in the middle is detected by [`verify`].
//!
//! The chain cannot reveal rows removed from the end; exported copies or an external anchor
//! of the last hash cover that.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::{AuditRow, NewAuditEntry, Store, StoreResult, from_ms, to_ms};
use crate::checkpoint::CheckpointKind;

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Rows per `audit_page` call while verifying or exporting.
const PAGE: u32 = 1000;

/// The bytes a row's hash covers: a JSON array with a format tag and every field in a fixed
/// order, the timestamp as Unix milliseconds. A JSON array needs no field separators of its
/// own, and serde_json's string escaping is deterministic.
pub fn canonical(entry: &NewAuditEntry, seq: i64) -> String {
    serde_json::json!([
        "erlmcp-audit-v1",
        seq,
        to_ms(entry.at),
        entry.action,
        entry.who.platform,
        entry.who.user_id,
        entry.who.display_name,
        entry.channel,
        entry.operation,
        entry.arguments,
        entry.environment,
        entry.request_id.map(|r| r.0),
        entry.decision,
        entry.reason,
        entry.votes,
        entry.outcome,
    ])
    .to_string()
}

/// Hex SHA-256 of `prev_hash`, a newline, then `canonical`. `prev_hash` is always 64 hex
/// digits, so the newline cannot be confused with content.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// The row that follows `last` (`(seq, hash)` of the newest row, `None` for an empty log).
/// The timestamp is cut to milliseconds so the returned row equals the one read back later.
pub(crate) fn next_row(
    mut entry: NewAuditEntry,
    last: Option<(i64, String)>,
) -> StoreResult<AuditRow> {
    entry.at = from_ms(to_ms(entry.at))?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let hash = chain_hash(&prev_hash, &canonical(&entry, seq));
    Ok(AuditRow {
        seq,
        entry,
        prev_hash,
        hash,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows checked (up to and including the broken one, when there is one).
    pub count: u64,
    /// Seq and hash of the last good row: what an external anchor should record.
    pub last_seq: i64,
    pub last_hash: String,
    pub broken: Option<BrokenLink>,
    /// The first row the log holds: 1, or the row after a prune.
    pub first_seq: i64,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub kind: BreakKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// The row's content no longer matches its own hash: it was edited.
    ContentMismatch { stored: String, computed: String },
    /// The row does not point at its predecessor's hash: a row before it was removed,
    /// inserted or rewritten together with its hash.
    PrevHashMismatch { stored: String, expected: String },
    /// Seq numbers jump: rows were deleted (or a row was inserted with a foreign seq).
    SeqGap { expected: i64 },
}

impl fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BreakKind::ContentMismatch { .. } => {
                write!(
                    f,
                    "row {}: content does not match its hash (row edited)",
                    self.seq
                )
            }
            BreakKind::PrevHashMismatch { .. } => write!(
                f,
                "row {}: prev_hash does not match the previous row (row deleted, inserted or rewritten before it)",
                self.seq
            ),
            BreakKind::SeqGap { expected } => write!(
                f,
                "row {}: expected seq {expected} (rows {expected}..{} deleted)",
                self.seq,
                self.seq - 1
            ),
        }
    }
}

/// Follows the chain row by row from a starting point (the genesis, or a pruned log's
/// first link) and names the first broken link.
#[derive(Debug, Clone)]
pub struct ChainWalk {
    report: VerifyReport,
}

impl ChainWalk {
    pub fn from_genesis() -> ChainWalk {
        ChainWalk::starting_at(0, GENESIS.to_string())
    }

    /// Expects the next row to be `seq + 1` pointing at `hash`.
    pub fn starting_at(seq: i64, hash: String) -> ChainWalk {
        ChainWalk {
            report: VerifyReport {
                count: 0,
                last_seq: seq,
                last_hash: hash,
                broken: None,
                first_seq: seq + 1,
            },
        }
    }

    pub fn last_seq(&self) -> i64 {
        self.report.last_seq
    }

    /// Checks the next row; the first broken link is returned (and kept in the report).
    pub fn feed(&mut self, row: &AuditRow) -> Option<BrokenLink> {
        let report = &mut self.report;
        report.count += 1;
        let computed = chain_hash(&row.prev_hash, &canonical(&row.entry, row.seq));
        let kind = if computed != row.hash {
            Some(BreakKind::ContentMismatch {
                stored: row.hash.clone(),
                computed,
            })
        } else if row.seq != report.last_seq + 1 {
            Some(BreakKind::SeqGap {
                expected: report.last_seq + 1,
            })
        } else if row.prev_hash != report.last_hash {
            Some(BreakKind::PrevHashMismatch {
                stored: row.prev_hash.clone(),
                expected: report.last_hash.clone(),
            })
        } else {
            None
        };
        if let Some(kind) = kind {
            let b = BrokenLink { seq: row.seq, kind };
            report.broken = Some(b.clone());
            return Some(b);
        }
        report.last_seq = row.seq;
        report.last_hash = row.hash.clone();
        None
    }

    pub fn report(self) -> VerifyReport {
        self.report
    }
}

/// Walks the whole log in seq order and reports the first broken link. A pruned log starts
/// at the row after its prune checkpoint as the store keeps it; only `--checkpoints`
/// checks that checkpoint's signature.
pub async fn verify(store: &dyn Store) -> StoreResult<VerifyReport> {
    let mut walk = ChainWalk::from_genesis();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(walk.report());
        };
        if after == 0
            && let Some(first) = page.first()
            && first.seq > 1
            && let Some(genesis) = store.checkpoints().await?.into_iter().find(|c| {
                c.kind == CheckpointKind::Prune
                    && c.seq == first.seq - 1
                    && c.hash == first.prev_hash
            })
        {
            walk = ChainWalk::starting_at(genesis.seq, genesis.hash);
        }
        after = last.seq;
        for row in &page {
            if walk.feed(row).is_some() {
                return Ok(walk.report());
            }
        }
    }
}

/// Feeds the whole log, page by page, to `f` until it returns false.
pub async fn for_each_row(
    store: &dyn Store,
    mut f: impl FnMut(&AuditRow) -> bool,
) -> StoreResult<()> {
    let mut after = 0;
    loop {
        let page = store.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        for row in &page {
            if !f(row) {
                return Ok(());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line (`AuditRow`'s serde form).
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!(
                "unknown export format {other:?}: expected jsonl or csv"
            )),
        }
    }
}

pub const CSV_HEADER: [&str; 18] = [
    "seq",
    "at",
    "at_ms",
    "action",
    "who_platform",
    "who_user_id",
    "who_display_name",
    "channel",
    "operation",
    "arguments",
    "environment",
    "request_id",
    "decision",
    "reason",
    "votes",
    "outcome",
    "prev_hash",
    "hash",
];

/// Writes the whole log in seq order; returns the number of rows written. Every field is
/// exported, hashes included, so the copy can be verified independently (`at_ms` is the
/// value the hash covers).
pub async fn export(
    store: &dyn Store,
    format: ExportFormat,
    out: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    if format == ExportFormat::Csv {
        write_csv_record(out, CSV_HEADER.iter().copied())?;
    }
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = store.audit_page(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in &page {
            match format {
                ExportFormat::Jsonl => {
                    serde_json::to_writer(&mut *out, row)?;
                    out.write_all(b"\n")?;
                }
                ExportFormat::Csv => {
                    let e = &row.entry;
                    let fields = [
                        row.seq.to_string(),
                        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        to_ms(e.at).to_string(),
                        e.action.clone(),
                        e.who.platform.clone(),
                        e.who.user_id.clone(),
                        e.who.display_name.clone(),
                        e.channel.clone(),
                        e.operation.clone(),
                        e.arguments.clone(),
                        e.environment.clone().unwrap_or_default(),
                        e.request_id.map(|r| r.0.to_string()).unwrap_or_default(),
                        e.decision.clone(),
                        e.reason.clone(),
                        e.votes.clone(),
                        e.outcome.clone(),
                        row.prev_hash.clone(),
                        row.hash.clone(),
                    ];
                    write_csv_record(out, fields.iter().map(String::as_str))?;
                }
            }
            count += 1;
        }
    }
    // Checkpoints follow the rows as records of their own type, so readers of the row
    // format skip them by their `type`; CSV has no place for them.
    if format == ExportFormat::Jsonl {
        for c in store.checkpoints().await? {
            out.write_all(c.to_line().as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(count)
}

fn write_csv_record<'a>(
    out: &mut impl std::io::Write,
    fields: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_field(field).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

/// RFC 4180: a field containing a comma, quote, CR or LF is wrapped in quotes and its quotes
/// doubled. Leading/trailing spaces are quoted too, since some readers trim them.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    let needs_quotes = s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Who;
    use chrono::TimeZone;
    use erlmcp_commands::RequestId;

    fn entry() -> NewAuditEntry {
        NewAuditEntry {
            at: chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            action: "executed".into(),
            who: Who {
                platform: "slack".into(),
                user_id: "U1".into(),
                display_name: "Ann".into(),
            },
            channel: "slack:C1".into(),
            operation: "deploy".into(),
            arguments: r#"{"env":"prod"}"#.into(),
            environment: Some("prod".into()),
            request_id: Some(RequestId(4)),
            decision: "needs_approval".into(),
            reason: String::new(),
            votes: "[]".into(),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn canonical_is_pinned() {
        // Changing this string invalidates every stored chain.
        assert_eq!(
            canonical(&entry(), 7),
            r#"["erlmcp-audit-v1",7,1700000000123,"executed","slack","U1","Ann","slack:C1","deploy","{\"env\":\"prod\"}","prod",4,"needs_approval","","[]","ok"]"#
        );
    }

    #[test]
    fn chain_hash_depends_on_prev_and_content() {
        let c = canonical(&entry(), 1);
        let h = chain_hash(GENESIS, &c);
        assert_eq!(h.len(), 64);
        assert_ne!(h, chain_hash(&h, &c));
        let mut e = entry();
        e.outcome = "failed".into();
        assert_ne!(h, chain_hash(GENESIS, &canonical(&e, 1)));
        assert_ne!(h, chain_hash(GENESIS, &canonical(&entry(), 2)));
    }

    #[test]
    fn sub_millisecond_time_does_not_change_the_hash() {
        let mut e = entry();
        e.at += chrono::Duration::microseconds(400);
        let row = next_row(e, None).unwrap();
        assert_eq!(row.entry, entry());
        assert_eq!(row.prev_hash, GENESIS);
        assert_eq!(row.hash, chain_hash(GENESIS, &canonical(&entry(), 1)));
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("l1\nl2"), "\"l1\nl2\"");
        assert_eq!(csv_field("cr\r"), "\"cr\r\"");
        assert_eq!(csv_field(" pad"), "\" pad\"");
        assert_eq!(csv_field(""), "");
    }
}
