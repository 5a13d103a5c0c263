//! Writing signed checkpoints of the audit log to the sinks outside the database: the
//! checkpoint file, the audit channel and the log. Operations only ask for one; a single
//! background writer coalesces the requests of a busy moment into one checkpoint of the
//! newest row, so checkpointing does not slow operations down.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use erlmcp_adapters::target::{Outcome, TargetError};
use erlmcp_commands::Timestamp;
use erlmcp_commands::config::AuditSection;
use erlmcp_commands::render::Reply;
use erlmcp_commands::replies;
use tokio::sync::{Mutex, Notify, watch};
use tracing::{error, info};

use super::Engine;
use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner, KeyError};

pub(crate) struct Checkpoints {
    signer: CheckpointSigner,
    file: Option<PathBuf>,
    channel: Option<String>,
    /// One writer at a time, so the file's lines are in seq order.
    writing: Mutex<()>,
    wake: Arc<Notify>,
    writer_started: AtomicBool,
    /// Newest seq this process has checkpointed.
    written: watch::Sender<i64>,
}

impl Checkpoints {
    /// `None` when no signing key is configured.
    pub(crate) fn from_config(audit: &AuditSection) -> Result<Option<Checkpoints>, KeyError> {
        if audit.signing_key.is_empty() {
            return Ok(None);
        }
        let signer = CheckpointSigner::from_base64(audit.signing_key.expose())?;
        if let Some(public) = &audit.public_key
            && signer.public_base64() != public.trim()
        {
            return Err(KeyError::new(
                "audit.public_key is not the public half of audit.signing_key",
            ));
        }
        Ok(Some(Checkpoints {
            signer,
            file: audit.checkpoint_file.as_ref().map(PathBuf::from),
            channel: audit.channel.clone(),
            writing: Mutex::new(()),
            wake: Arc::new(Notify::new()),
            writer_started: AtomicBool::new(false),
            written: watch::channel(0).0,
        }))
    }
}

/// Whether `[audit]`'s keys are usable (and agree with each other).
pub fn check_audit_keys(audit: &AuditSection) -> Result<(), KeyError> {
    Checkpoints::from_config(audit).map(|_| ())
}

impl Engine {
    /// Whether checkpoints are signed (a signing key is configured).
    pub fn checkpointing(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// After an operation's outcome is written: asks the background writer for a
    /// checkpoint covering it.
    pub(super) fn request_checkpoint(&self) {
        let Some(cp) = &self.checkpoints else {
            return;
        };
        if !cp.writer_started.swap(true, Ordering::SeqCst) {
            let (me, wake) = (self.me.clone(), cp.wake.clone());
            let spawned = tokio::runtime::Handle::try_current().map(|h| {
                h.spawn(async move {
                    loop {
                        // A permit left by `notify_one` while writing is not lost: requests
                        // made meanwhile get one more checkpoint.
                        wake.notified().await;
                        let Some(engine) = me.upgrade() else { return };
                        if let Err(e) = engine.write_checkpoint(CheckpointKind::Operation).await {
                            error!(error = %e, "could not write an audit checkpoint");
                        }
                    }
                })
            });
            if spawned.is_err() {
                cp.writer_started.store(false, Ordering::SeqCst);
            }
        }
        cp.wake.notify_one();
    }

    /// Waits until this process has checkpointed row `seq` or later; for a one-shot command
    /// before it exits, and for tests (no sleeping).
    pub async fn checkpointed_through(&self, seq: i64) {
        let Some(cp) = &self.checkpoints else { return };
        let mut rx = cp.written.subscribe();
        let _ = rx.wait_for(|s| *s >= seq).await;
    }

    /// Writes any checkpoint still owed to an operation that finished, now.
    pub async fn flush_checkpoints(&self) {
        if self.checkpoints.is_none() {
            return;
        }
        if let Err(e) = self.write_checkpoint(CheckpointKind::Operation).await {
            error!(error = %e, "could not write an audit checkpoint");
        }
    }

    /// Signs a checkpoint of the newest row and writes it to every sink. An operation
    /// checkpoint of a row already checkpointed is skipped; periodic ones are written
    /// regardless, so a current file shows the bot was alive and checkpointing.
    pub async fn write_checkpoint(
        &self,
        kind: CheckpointKind,
    ) -> Result<Option<Checkpoint>, String> {
        let Some(cp) = &self.checkpoints else {
            return Ok(None);
        };
        if kind == CheckpointKind::Prune {
            // A prune genesis is signed only by the prune operation, for the row it names.
            return Err("prune checkpoints are written by `audit prune` only".into());
        }
        let _one = cp.writing.lock().await;
        let tail = self
            .store
            .audit_tail(1)
            .await
            .map_err(|e| format!("reading the newest audit row: {e}"))?;
        let Some(newest) = tail.into_iter().next() else {
            return Ok(None);
        };
        if kind == CheckpointKind::Operation && newest.seq <= *cp.written.borrow() {
            return Ok(None);
        }
        let checkpoint = cp.signer.sign(
            kind,
            newest.seq,
            &newest.hash,
            self.now().timestamp_millis(),
        );
        self.publish_checkpoint(cp, &checkpoint).await?;
        cp.written.send_if_modified(|s| {
            let newer = checkpoint.seq > *s;
            if newer {
                *s = checkpoint.seq;
            }
            newer
        });
        Ok(Some(checkpoint))
    }

    /// Signs a prune checkpoint of a given row: the genesis a pruned log starts from.
    pub(super) async fn write_prune_checkpoint(
        &self,
        seq: i64,
        hash: &str,
    ) -> Result<Checkpoint, String> {
        let Some(cp) = &self.checkpoints else {
            return Err(
                "no audit.signing_key is configured: a pruned log could not be verified".into(),
            );
        };
        let _one = cp.writing.lock().await;
        let checkpoint = cp.signer.sign(
            CheckpointKind::Prune,
            seq,
            hash,
            self.now().timestamp_millis(),
        );
        self.publish_checkpoint(cp, &checkpoint).await?;
        Ok(checkpoint)
    }

    /// `audit prune`: signs the newest row written before `before` as the new genesis, keeps
    /// that checkpoint, then deletes it and every older row. Nothing is deleted unless the
    /// checkpoint reached the file and the store.
    pub(super) async fn prune_audit_log(&self, before: Timestamp) -> Result<Outcome, TargetError> {
        let refused = |why: String| TargetError::Refused(replies::nothing_pruned(&why));
        let shown = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let Some((seq, hash)) = self
            .store
            .newest_audit_before(before)
            .await
            .map_err(|e| refused(replies::audit_log_unavailable(&e)))?
        else {
            return Err(refused(replies::no_audit_entries_before(&shown)));
        };
        let genesis = self
            .write_prune_checkpoint(seq, &hash)
            .await
            .map_err(refused)?;
        self.store
            .save_checkpoint(genesis.clone())
            .await
            .map_err(|e| refused(replies::prune_checkpoint_not_stored(&e)))?;
        let n = self
            .store
            .prune_audit(seq)
            .await
            .map_err(|e| refused(replies::audit_log_unavailable(&e)))?;
        info!(through = seq, rows = n, "audit log pruned");
        Ok(Outcome {
            summary: replies::audit_pruned(n, &shown, seq),
            version_before: None,
            version_after: None,
        })
    }

    /// The file comes first and must succeed: it is the copy verification relies on. The
    /// log line, the store's copy and the channel are best effort.
    async fn publish_checkpoint(&self, cp: &Checkpoints, c: &Checkpoint) -> Result<(), String> {
        if let Some(path) = &cp.file {
            let line = c.to_line();
            let path = path.clone();
            tokio::task::spawn_blocking(move || append_line(&path, &line))
                .await
                .map_err(|e| format!("checkpoint file writer: {e}"))?
                .map_err(|e| format!("appending to the checkpoint file: {e}"))?;
        }
        info!(
            target: "erlmcp_bot::audit_checkpoint",
            kind = c.kind.as_str(),
            seq = c.seq,
            hash = %c.hash,
            at_ms = c.at_ms,
            signature = %c.signature,
            "audit checkpoint"
        );
        if let Err(e) = self.store.save_checkpoint(c.clone()).await {
            error!(error = %e, seq = c.seq, "could not keep the audit checkpoint in the store");
        }
        if let Some(channel) = &cp.channel {
            let reply = Reply::ok(replies::audit_checkpoint(
                c.kind.as_str(),
                c.seq,
                &c.hash,
                &c.at_text(),
                &c.signature,
            ));
            self.post_to(channel, &reply).await;
        }
        Ok(())
    }
}

/// Appends one line and makes it durable: a checkpoint that is lost on a crash proves
/// nothing.
fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}
