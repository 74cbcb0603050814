//! The durable outbox of reports awaiting upload, and the log of what left.

use std::fs;
use std::path::PathBuf;

use hush_report::{Report, ReportId};

use crate::durable::{append_line, atomic_write, private_dir, sync_dir};
use crate::{AgentError, AgentPaths};

/// Reports waiting for the collector, one file each (`<id>.report`, the wire bytes).
///
/// A report is produced only once its file is durable; it is removed only after
/// the collector acknowledged it and the sent log recorded it.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    max: usize,
}

impl Outbox {
    /// The outbox of an agent, keeping at most `max` reports.
    pub fn new(paths: &AgentPaths, max: usize) -> Self {
        Outbox {
            dir: paths.outbox(),
            max: max.max(1),
        }
    }

    /// Durably stores a report; if the outbox is full, drops the oldest and logs it.
    /// Accepts nothing but a [`Report`].
    pub fn push(&self, report: &Report) -> Result<(), AgentError> {
        private_dir(&self.dir)?;
        atomic_write(&self.file(report.id()), &report.encode())?;
        let ids = self.ids()?;
        if ids.len() > self.max {
            for old in &ids[..ids.len() - self.max] {
                tracing::warn!(report = %old, "outbox full: dropping the oldest queued report");
                fs::remove_file(self.file(*old))?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Queued report ids, oldest period first (ids start with their period).
    pub fn ids(&self) -> Result<Vec<ReportId>, AgentError> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let Some(hex_id) = name.strip_suffix(".report") else {
                continue;
            };
            let Ok(bytes) = hex::decode(hex_id) else {
                continue;
            };
            if let Ok(id) = <[u8; 16]>::try_from(bytes) {
                ids.push(ReportId(id));
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Loads a queued report; a file that no longer decodes is quarantined.
    pub fn load(&self, id: ReportId) -> Result<Option<Report>, AgentError> {
        let path = self.file(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match Report::decode(&bytes) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                tracing::error!(report = %id, "queued report is corrupt ({e}); moving it aside");
                fs::rename(&path, path.with_extension("corrupt"))?;
                Ok(None)
            }
        }
    }

    /// Removes an acknowledged report.
    pub fn remove(&self, id: ReportId) -> Result<(), AgentError> {
        match fs::remove_file(self.file(id)) {
            Ok(()) => sync_dir(&self.dir).map_err(Into::into),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn file(&self, id: ReportId) -> PathBuf {
        self.dir.join(format!("{id}.report"))
    }
}

/// What the sent log records about a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentStatus {
    /// The collector acknowledged it.
    Sent,
    /// The collector refused it for good (a 4xx); it was dropped.
    Refused,
}

/// One line of the sent log.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEntry {
    /// Unix time of the acknowledgement or refusal.
    pub at: u64,
    /// Sent or refused.
    pub status: SentStatus,
    /// The report exactly as it left.
    pub report: Report,
}

/// Appends an entry to the sent log: `UNIX_TIME sent|refused HEX_OF_WIRE_BYTES`.
pub fn log_sent(
    paths: &AgentPaths,
    at: u64,
    status: SentStatus,
    report: &Report,
) -> Result<(), AgentError> {
    let word = match status {
        SentStatus::Sent => "sent",
        SentStatus::Refused => "refused",
    };
    append_line(
        &paths.sent_log(),
        &format!("{at} {word} {}", hex::encode(report.encode())),
    )?;
    Ok(())
}

/// Reads the sent log, keeping the first entry of a report logged twice (a
/// crash between logging and removing from the outbox makes the retry log again).
pub fn read_sent(paths: &AgentPaths) -> Result<Vec<SentEntry>, AgentError> {
    let text = match fs::read_to_string(paths.sent_log()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(at), Some(word), Some(hex_bytes)) = (parts.next(), parts.next(), parts.next())
        else {
            // A line torn by a crash mid-append: skip it, the report is still in the outbox.
            continue;
        };
        let status = match word {
            "sent" => SentStatus::Sent,
            "refused" => SentStatus::Refused,
            _ => continue,
        };
        let (Ok(at), Ok(bytes)) = (at.parse(), hex::decode(hex_bytes)) else {
            continue;
        };
        let Ok(report) = Report::decode(&bytes) else {
            continue;
        };
        if seen.insert(report.id()) {
            out.push(SentEntry { at, status, report });
        }
    }
    Ok(out)
}
