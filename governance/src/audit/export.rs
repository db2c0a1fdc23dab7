//! Exports for a SIEM: JSON Lines and CSV, streamed page by page.
//!
//! A JSON Lines record is
//! `{"workspace":…,"seq":…,"prev_hash":…,"hash":…,"event":{…}}` with the
//! event written in its canonical form (see [`super::hash`]), so an auditor
//! can check each line's hash from the line alone. CSV has one row per
//! entry with the columns of [`csv_header`]; `details` is canonical JSON.
//! Values are exported exactly as recorded (no spreadsheet-formula
//! escaping: a SIEM must see what the server saw).

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use super::hash::canonical_event;
use super::{AuditError, AuditLog, AuditQuery, Outcome};
use crate::clock::rfc3339;
use crate::store::AuditEntry;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    JsonLines,
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
}

/// A format name that is not `jsonl` or `csv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}: use jsonl or csv")]
pub struct UnknownFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "jsonl" | "ndjson" => Ok(ExportFormat::JsonLines),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::JsonLines => "jsonl",
            ExportFormat::Csv => "csv",
        })
    }
}

impl ExportFormat {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "application/x-ndjson",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

const CSV_COLUMNS: &[&str] = &[
    "workspace",
    "seq",
    "at",
    "at_ms",
    "action",
    "actor_kind",
    "actor_id",
    "document",
    "outcome",
    "policy",
    "reason",
    "source_ip",
    "user_agent",
    "node",
    "details",
    "prev_hash",
    "hash",
];

/// Writes one CSV row. With `guard_formulas`, a cell starting with `=`,
/// `+`, `-`, `@`, tab or carriage return gets a leading `'` so a spreadsheet
/// shows it instead of evaluating it (reports for people); exports for
/// machines keep values exact.
pub(crate) fn write_csv_row<S: AsRef<str>>(cells: &[S], out: &mut Vec<u8>, guard_formulas: bool) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut cell = cell.as_ref().to_owned();
        if guard_formulas && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            cell.insert(0, '\'');
        }
        if cell.contains([',', '"', '\n', '\r']) || cell.starts_with(' ') || cell.ends_with(' ') {
            out.push(b'"');
            out.extend_from_slice(cell.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(cell.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The CSV header row.
pub fn csv_header(out: &mut Vec<u8>) {
    write_csv_row(CSV_COLUMNS, out, false);
}

/// Appends one entry in `format` to `out`.
pub fn encode_entry(format: ExportFormat, entry: &AuditEntry, out: &mut Vec<u8>) {
    let event = &entry.event;
    match format {
        ExportFormat::JsonLines => {
            let head = serde_json::json!({
                "workspace": entry.workspace,
                "seq": entry.seq,
                "prev_hash": entry.prev_hash,
                "hash": entry.hash,
            })
            .to_string();
            // `{"hash":…,"prev_hash":…,"seq":…,"workspace":…` then the event.
            out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(canonical_event(event).as_bytes());
            out.extend_from_slice(b"}\n");
        }
        ExportFormat::Csv => {
            let (policy, reason) = match &event.outcome {
                Outcome::Allowed => ("", ""),
                Outcome::Denied { policy, reason } => (policy.as_str(), reason.as_str()),
                Outcome::Failed { reason } => ("", reason.as_str()),
            };
            let mut details = String::new();
            super::hash::write_canonical(&event.details, &mut details);
            let cells = [
                entry.workspace.clone(),
                entry.seq.to_string(),
                rfc3339(event.at_ms),
                event.at_ms.to_string(),
                event.action.as_str().to_owned(),
                event.actor.kind().to_owned(),
                event.actor.id().to_owned(),
                event.document.clone().unwrap_or_default(),
                event.outcome.kind().to_owned(),
                policy.to_owned(),
                reason.to_owned(),
                event.source.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                event.source.user_agent.clone().unwrap_or_default(),
                event.source.node.clone().unwrap_or_default(),
                details,
                entry.prev_hash.to_hex(),
                entry.hash.to_hex(),
            ];
            write_csv_row(&cells, out, false);
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the audit trail failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Writing the output failed.
    #[error("writing the export failed: {0}")]
    Write(#[from] std::io::Error),
}

/// Streams every entry matching `query` (its cursor and limit set the
/// start and page size) to `out`; `progress` is told the entries written
/// after each page. Returns how many were written.
pub async fn export(
    log: &AuditLog,
    mut query: AuditQuery,
    format: ExportFormat,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ExportError> {
    let mut chunk = Vec::with_capacity(64 * 1024);
    if format == ExportFormat::Csv {
        csv_header(&mut chunk);
    }
    let mut written = 0u64;
    if query.limit == 0 {
        query.limit = crate::store::MAX_PAGE;
    }
    loop {
        let page = log.search(&query).await?;
        for entry in &page.entries {
            encode_entry(format, entry, &mut chunk);
        }
        written += page.entries.len() as u64;
        out.write_all(&chunk)?;
        chunk.clear();
        progress(written);
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_csv_row(
            &["a", "b,c", "say \"hi\"", "two\nlines", "=1+1"],
            &mut out,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",=1+1\r\n"
        );
        let mut out = Vec::new();
        write_csv_row(&["=1+1", "-x", "ok"], &mut out, true);
        assert_eq!(String::from_utf8(out).unwrap(), "'=1+1,'-x,ok\r\n");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("jsonl".parse(), Ok(ExportFormat::JsonLines));
        assert_eq!("csv".parse(), Ok(ExportFormat::Csv));
        assert!("xml".parse::<ExportFormat>().is_err());
    }
}
