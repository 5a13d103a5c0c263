//! Signed checkpoints of the audit log: the newest row's seq and hash, the time, signed with
//! an Ed25519 key the database never sees. Written to sinks outside the database (a file,
//! a chat channel, the JSON log), they let `audit verify` notice what the hash chain alone
//! cannot: the newest rows deleted, the database replaced, or every row rewritten with
//! recomputed hashes.
//!
//! The signed bytes (`Checkpoint::signed_bytes`) are five lines joined by `\n`, no trailing
//! newline, all ASCII:
//!
//! ```text
//! erlmcp-checkpoint-v1
//! KIND        periodic | operation | prune
//! SEQ         decimal seq of the newest row covered
//! HASH        that row's hex SHA-256 (64 lowercase hex digits)
//! AT_MS       Unix time in milliseconds when the checkpoint was signed
//! ```

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::store::AuditRow;
use crate::store::audit::{ChainWalk, GENESIS};

pub const FORMAT: &str = "erlmcp-checkpoint-v1";

/// The `type` of a checkpoint line in a checkpoint file or an export; audit rows carry none.
pub const RECORD_TYPE: &str = "checkpoint";

/// Why a checkpoint was written. Part of the signed bytes: only a `prune` checkpoint may
/// stand in for the rows before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// On the `audit.checkpoint_every` cadence.
    Periodic,
    /// After an operation's outcome was written.
    Operation,
    /// The new genesis written before older rows are pruned.
    Prune,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Periodic => "periodic",
            CheckpointKind::Operation => "operation",
            CheckpointKind::Prune => "prune",
        }
    }

    pub fn parse(s: &str) -> Option<CheckpointKind> {
        [
            CheckpointKind::Periodic,
            CheckpointKind::Operation,
            CheckpointKind::Prune,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub kind: CheckpointKind,
    pub seq: i64,
    pub hash: String,
    pub at_ms: i64,
    /// Base64 Ed25519 signature over [`Checkpoint::signed_bytes`].
    pub signature: String,
}

impl Checkpoint {
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(self.kind, self.seq, &self.hash, self.at_ms)
    }

    pub fn signature_is_valid(&self, key: &VerifyingKey) -> bool {
        let Ok(bytes) = B64.decode(&self.signature) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify_strict(&self.signed_bytes(), &sig).is_ok()
    }

    /// One JSON line, as written to a checkpoint file and to an export.
    pub fn to_line(&self) -> String {
        serde_json::json!({
            "type": RECORD_TYPE,
            "kind": self.kind,
            "seq": self.seq,
            "hash": self.hash,
            "at_ms": self.at_ms,
            "at": self.at_text(),
            "signature": self.signature,
        })
        .to_string()
    }

    /// RFC 3339 for people; only `at_ms` is signed.
    pub fn at_text(&self) -> String {
        chrono::DateTime::from_timestamp_millis(self.at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| format!("{}ms", self.at_ms))
    }
}

fn signed_bytes(kind: CheckpointKind, seq: i64, hash: &str, at_ms: i64) -> Vec<u8> {
    format!("{FORMAT}\n{}\n{seq}\n{hash}\n{at_ms}", kind.as_str()).into_bytes()
}

/// Reads one line of a checkpoint file or an export: `Ok(None)` for a line that is not a
/// checkpoint record.
pub fn parse_line(line: &str) -> Result<Option<Checkpoint>, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("type").and_then(|t| t.as_str()) != Some(RECORD_TYPE) {
        return Ok(None);
    }
    let shown = value.get("at").and_then(|a| a.as_str()).map(str::to_string);
    let checkpoint: Checkpoint =
        serde_json::from_value(value).map_err(|e| format!("malformed checkpoint: {e}"))?;
    // `at` is for people and not signed; it must not be able to say something else.
    if let Some(shown) = shown
        && shown != checkpoint.at_text()
    {
        return Err(format!(
            "checkpoint of row #{}: \"at\" {shown:?} does not match its signed time {}",
            checkpoint.seq,
            checkpoint.at_text()
        ));
    }
    Ok(Some(checkpoint))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    pub fn new(msg: impl Into<String>) -> KeyError {
        KeyError(msg.into())
    }
}

/// The checkpoint signing key. Its `Debug` never shows the key.
pub struct CheckpointSigner(SigningKey);

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner(public {})", self.public_base64())
    }
}

impl CheckpointSigner {
    /// From the base64 seed `audit keygen` prints. The error never contains the key.
    pub fn from_base64(seed: &str) -> Result<CheckpointSigner, KeyError> {
        let bytes = B64
            .decode(seed.trim())
            .map_err(|_| KeyError("audit.signing_key is not base64".into()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError("audit.signing_key must be 32 bytes".into()))?;
        Ok(CheckpointSigner(SigningKey::from_bytes(&seed)))
    }

    pub fn public_base64(&self) -> String {
        B64.encode(self.0.verifying_key().to_bytes())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    pub fn sign(&self, kind: CheckpointKind, seq: i64, hash: &str, at_ms: i64) -> Checkpoint {
        let sig = self.0.sign(&signed_bytes(kind, seq, hash, at_ms));
        Checkpoint {
            kind,
            seq,
            hash: hash.to_string(),
            at_ms,
            signature: B64.encode(sig.to_bytes()),
        }
    }
}

/// A public key as `audit keygen` printed it.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| KeyError("public key is not base64".into()))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyError("public key must be 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyError("public key is not a valid Ed25519 point".into()))
}

/// A new key pair from the operating system's entropy: `(signing_key, public_key)`, base64.
pub fn keygen() -> Result<(String, String), KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| KeyError(format!("no entropy from the operating system: {e}")))?;
    let signer = SigningKey::from_bytes(&seed);
    Ok((
        B64.encode(signer.to_bytes()),
        B64.encode(signer.verifying_key().to_bytes()),
    ))
}

/// A checkpoint and where it was read (`line 7`), to name it in a report.
#[derive(Debug, Clone)]
pub struct Located {
    pub checkpoint: Checkpoint,
    pub line: usize,
}

/// Reads every checkpoint of a checkpoint file or an export; other lines are skipped.
pub fn read_checkpoints(text: &str) -> Result<Vec<Located>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(checkpoint) = parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))? {
            out.push(Located {
                checkpoint,
                line: i + 1,
            });
        }
    }
    Ok(out)
}

/// The outcome of checking a log against signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    pub rows: u64,
    /// The first row the log holds (1, or the row after a prune genesis).
    pub complete_from: i64,
    pub last_seq: i64,
    pub checkpoints: usize,
    /// Seq and time of the newest checkpoint.
    pub newest: Option<(i64, String, i64)>,
    /// Rows after the newest checkpoint: chained, but no signature covers them yet.
    pub unanchored: u64,
    /// The newest row's time, to compare with the newest checkpoint's.
    pub last_at_ms: Option<i64>,
    pub broken: Option<String>,
}

impl CheckpointReport {
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks rows, fed in seq order, against checkpoints read from outside the database.
/// `key` is `None` only for an export checked without a key: then signatures are not
/// checked and the report says the proof is only as good as the file.
pub struct CheckpointVerifier {
    checkpoints: Vec<Located>,
    key_checked: bool,
    walk: Option<ChainWalk>,
    /// Hashes of rows a checkpoint names, as the log holds them.
    seen: BTreeMap<i64, String>,
    rows: u64,
    first_seq: Option<i64>,
    /// The hash the chain starts from: the genesis, or a prune checkpoint's.
    start_hash: Option<String>,
    last_at_ms: Option<i64>,
    broken: Option<String>,
}

impl CheckpointVerifier {
    pub fn new(checkpoints: Vec<Located>, key: Option<&VerifyingKey>) -> CheckpointVerifier {
        let mut broken = None;
        if checkpoints.is_empty() {
            broken = Some(
                "no checkpoints: nothing outside the database vouches for this log".to_string(),
            );
        }
        if let Some(key) = key
            && broken.is_none()
        {
            broken = checkpoints
                .iter()
                .find(|c| !c.checkpoint.signature_is_valid(key))
                .map(|c| {
                    format!(
                        "checkpoint on line {} (row #{}, {}): signature invalid",
                        c.line,
                        c.checkpoint.seq,
                        c.checkpoint.at_text()
                    )
                });
        }
        CheckpointVerifier {
            checkpoints,
            key_checked: key.is_some(),
            walk: None,
            seen: BTreeMap::new(),
            rows: 0,
            first_seq: None,
            start_hash: None,
            last_at_ms: None,
            broken,
        }
    }

    /// Whether signatures were checked.
    pub fn key_checked(&self) -> bool {
        self.key_checked
    }

    /// Feeds the next row; false once the log is known to be broken (stop feeding).
    pub fn feed(&mut self, row: &AuditRow) -> bool {
        if self.broken.is_some() {
            return false;
        }
        if self.walk.is_none() {
            // The log starts at row 1, or right after a signed prune genesis.
            let start = if row.seq == 1 {
                Some((0, GENESIS.to_string()))
            } else {
                self.checkpoints
                    .iter()
                    .map(|c| &c.checkpoint)
                    .find(|c| c.kind == CheckpointKind::Prune && c.seq == row.seq - 1)
                    .map(|c| (c.seq, c.hash.clone()))
            };
            let Some(start) = start else {
                self.broken = Some(format!(
                    "row {}: the log starts here, but rows 1..{} are missing and no prune checkpoint accounts for them",
                    row.seq,
                    row.seq - 1
                ));
                return false;
            };
            self.first_seq = Some(start.0 + 1);
            self.start_hash = Some(start.1.clone());
            self.walk = Some(ChainWalk::starting_at(start.0, start.1));
        }
        let Some(walk) = self.walk.as_mut() else {
            return false;
        };
        self.rows += 1;
        if let Some(b) = walk.feed(row) {
            self.broken = Some(b.to_string());
            return false;
        }
        self.last_at_ms = Some(row.entry.at.timestamp_millis());
        if self.checkpoints.iter().any(|c| c.checkpoint.seq == row.seq) {
            self.seen.insert(row.seq, row.hash.clone());
        }
        true
    }

    pub fn finish(self) -> CheckpointReport {
        let last_seq = self.walk.as_ref().map(|w| w.last_seq()).unwrap_or(0);
        let complete_from = self.first_seq.unwrap_or(1);
        let mut broken = self.broken;
        let mut sorted: Vec<&Located> = self.checkpoints.iter().collect();
        sorted.sort_by_key(|c| (c.checkpoint.seq, c.line));
        if broken.is_none() {
            for c in &sorted {
                let cp = &c.checkpoint;
                // Rows pruned away: the prune genesis vouches for them, and its own row is
                // where the chain now starts.
                if cp.seq < complete_from - 1 {
                    continue;
                }
                if cp.seq == complete_from - 1 && complete_from > 1 {
                    if Some(&cp.hash) != self.start_hash.as_ref() {
                        broken = Some(format!(
                            "checkpoint on line {} (row #{}, {}) disagrees with the prune checkpoint the log starts from",
                            c.line,
                            cp.seq,
                            cp.at_text()
                        ));
                        break;
                    }
                    continue;
                }
                if cp.seq > last_seq {
                    broken = Some(format!(
                        "checkpoint on line {} (row #{}, {}) covers rows the log no longer holds: it ends at row #{last_seq} (rows #{}..#{} deleted, or the database replaced)",
                        c.line,
                        cp.seq,
                        cp.at_text(),
                        last_seq + 1,
                        cp.seq
                    ));
                    break;
                }
                match self.seen.get(&cp.seq) {
                    Some(h) if *h == cp.hash => {}
                    _ => {
                        broken = Some(format!(
                            "row #{}: its hash differs from the checkpoint on line {} ({}): the chain was rewritten up to or before this row",
                            cp.seq,
                            c.line,
                            cp.at_text()
                        ));
                        break;
                    }
                }
            }
        }
        let newest = sorted
            .iter()
            .map(|c| &c.checkpoint)
            .max_by_key(|c| (c.seq, c.at_ms))
            .map(|c| (c.seq, c.hash.clone(), c.at_ms));
        let newest_at = sorted.iter().map(|c| c.checkpoint.at_ms).max();
        let unanchored = match &newest {
            Some((seq, _, _)) if last_seq > *seq => (last_seq - seq) as u64,
            _ => 0,
        };
        CheckpointReport {
            rows: self.rows,
            complete_from,
            last_seq,
            checkpoints: self.checkpoints.len(),
            newest: newest.map(|(s, h, _)| (s, h, newest_at.unwrap_or(0))),
            unanchored,
            last_at_ms: self.last_at_ms,
            broken,
        }
    }
}

/// Checks an export (`audit export`, jsonl) on its own: its rows as a chain, against its own
/// checkpoint records, their signatures with `key` when given.
pub fn verify_export(text: &str, key: Option<&VerifyingKey>) -> CheckpointReport {
    let failed = |msg: String| CheckpointReport {
        rows: 0,
        complete_from: 1,
        last_seq: 0,
        checkpoints: 0,
        newest: None,
        unanchored: 0,
        last_at_ms: None,
        broken: Some(msg),
    };
    let checkpoints = match read_checkpoints(text) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let mut verifier = CheckpointVerifier::new(checkpoints, key);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || matches!(parse_line(line), Ok(Some(_))) {
            continue;
        }
        let row: AuditRow = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => return failed(format!("line {}: not an audit row: {e}", i + 1)),
        };
        if !verifier.feed(&row) {
            break;
        }
    }
    verifier.finish()
}

/// What `audit verify` prints for a good log. `every` is the checkpoint cadence: rows
/// written after the newest checkpoint are only protected by the chain, and a bot that is
/// running checkpoints at least that often (and after every operation).
pub fn summary(report: &CheckpointReport, every: chrono::Duration, signed: bool) -> String {
    let mut out = format!(
        "audit log ok: rows #{}..#{} ({} rows) match {} checkpoint(s){}",
        report.complete_from,
        report.last_seq,
        report.rows,
        report.checkpoints,
        if signed {
            ", every signature valid"
        } else {
            " (signatures NOT checked: no public key given)"
        }
    );
    if report.complete_from > 1 {
        out.push_str(&format!(
            "\ncomplete from row #{}: rows before it were pruned under a signed prune checkpoint",
            report.complete_from
        ));
    }
    if let Some((seq, _, at_ms)) = &report.newest {
        let at = chrono::DateTime::from_timestamp_millis(*at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        out.push_str(&format!(
            "\nanchored through row #{seq} by the newest checkpoint ({at})"
        ));
        if report.unanchored > 0 {
            out.push_str(&format!(
                "; rows #{}..#{} are newer and only chained: rows appended after {at} could be missing undetected (the bot checkpoints every {} and after each operation)",
                seq + 1,
                report.last_seq,
                erlmcp_commands::render::duration(every)
            ));
        }
        if let Some(last) = report.last_at_ms
            && last - at_ms > every.num_milliseconds() * 2
        {
            out.push_str(&format!(
                "\nwarning: the log's newest row is more than twice {} newer than the newest checkpoint: this checkpoint file may be out of date",
                erlmcp_commands::render::duration(every)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_base64(&B64.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn signed_bytes_are_pinned() {
        let c = signer().sign(
            CheckpointKind::Operation,
            12,
            &"ab".repeat(32),
            1_700_000_000_123,
        );
        assert_eq!(
            String::from_utf8(c.signed_bytes()).unwrap(),
            format!(
                "erlmcp-checkpoint-v1\noperation\n12\n{}\n1700000000123",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let s = signer();
        let key = s.verifying_key();
        let c = s.sign(CheckpointKind::Periodic, 3, GENESIS, 5);
        assert!(c.signature_is_valid(&key));
        for changed in [
            Checkpoint {
                seq: 4,
                ..c.clone()
            },
            Checkpoint {
                at_ms: 6,
                ..c.clone()
            },
            Checkpoint {
                kind: CheckpointKind::Prune,
                ..c.clone()
            },
            Checkpoint {
                hash: "1".repeat(64),
                ..c.clone()
            },
            Checkpoint {
                signature: "AAAA".into(),
                ..c.clone()
            },
        ] {
            assert!(!changed.signature_is_valid(&key), "{changed:?}");
        }
        let other = parse_public_key(&keygen().unwrap().1).unwrap();
        assert!(!c.signature_is_valid(&other));
    }

    #[test]
    fn a_line_round_trips_and_rows_are_not_checkpoints() {
        let c = signer().sign(CheckpointKind::Prune, 9, GENESIS, 42);
        assert_eq!(parse_line(&c.to_line()).unwrap(), Some(c));
        assert_eq!(parse_line(r#"{"seq":1,"hash":"x"}"#).unwrap(), None);
        assert!(parse_line("{not json").is_err());
    }

    #[test]
    fn keys_from_keygen_work_and_errors_never_echo_the_key() {
        let (secret, public) = keygen().unwrap();
        let s = CheckpointSigner::from_base64(&secret).unwrap();
        assert_eq!(s.public_base64(), public);
        assert!(!format!("{s:?}").contains(&secret));
        let e = CheckpointSigner::from_base64("c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0").unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"));
        assert!(parse_public_key("nope").is_err());
    }
}
