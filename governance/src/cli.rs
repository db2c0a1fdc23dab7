//! The command-line operations, as library functions the server's binary
//! wires to subcommands:
//!
//! | command | function |
//! |---|---|
//! | `sync-server audit verify [--workspace W]` | [`verify`] (exit status 1 unless [`VerifyReport::ok`]) |
//! | `sync-server audit export --format jsonl\|csv [filters]` | [`export`] |
//! | `sync-server audit public-key` | [`public_key`] |
//! | `sync-server report gdpr-access --user U --format json\|csv\|html` | [`report`] with [`ReportRequest::GdprAccess`] |
//! | `sync-server report gdpr-erasure-plan --user U …` | [`report`] with [`ReportRequest::ErasurePlan`] |
//! | `sync-server report access-review --from T --to T [--workspace W] …` | [`report`] with [`ReportRequest::AccessReview`] |
//! | `sync-server retention sweep` | [`sweep`] |
//!
//! Each writes its result to `out` (a file or stdout) and draws a progress
//! spinner on stderr when asked to (and stderr is a terminal). Each one is
//! itself audited in the `@server` chain, with `actor` as the operator.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::audit::{
    Action, Actor, AuditError, AuditEvent, AuditLog, AuditQuery, ExportError, ExportFormat,
    SERVER_SCOPE, VerifyReport, VerifyScope,
};
use crate::compliance::{
    ComplianceError, ComplianceSource, ReportFormat, access_review, gdpr_access, plan_erasure,
    render,
};
use crate::retention::{HistoryPruner, RetentionError, SweepReport};

/// Why a command failed (not: found problems; those are in its report).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading or writing the audit trail failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Building a report failed.
    #[error(transparent)]
    Compliance(#[from] ComplianceError),
    /// The retention sweep failed.
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Write(#[from] std::io::Error),
}

impl From<ExportError> for CliError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Audit(e) => CliError::Audit(e),
            ExportError::Write(e) => CliError::Write(e),
        }
    }
}

/// How a command shows it is working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A spinner on stderr (hidden automatically when it is not a terminal).
    Stderr,
    /// Nothing (tests, scripts).
    Hidden,
}

fn spinner(progress: Progress) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        match progress {
            Progress::Stderr => ProgressDrawTarget::stderr(),
            Progress::Hidden => ProgressDrawTarget::hidden(),
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn audit_cli(
    log: &AuditLog,
    actor: &Actor,
    action: Action,
    details: serde_json::Value,
) -> Result<(), CliError> {
    let event =
        AuditEvent::new(action, actor.clone(), SERVER_SCOPE, log.clock().now_ms()).details(details);
    log.append(event).await?;
    Ok(())
}

/// Verifies the chains in `scope` and writes a summary per chain, every
/// problem found, and a last line starting `OK` or `FAILED` (naming the
/// first bad entry).
pub async fn verify(
    log: &AuditLog,
    scope: &VerifyScope,
    actor: &Actor,
    out: &mut (dyn Write + Send),
    progress: Progress,
) -> Result<VerifyReport, CliError> {
    let bar = spinner(progress);
    let report = log
        .verify(scope, &mut |ws, n| {
            bar.set_message(format!("{ws}: {n} entries"))
        })
        .await?;
    bar.finish_and_clear();
    let mut entries = 0;
    for chain in &report.chains {
        entries += chain.entries;
        let state = if chain.problems.is_empty() {
            "ok".to_owned()
        } else {
            format!(
                "{} problems",
                chain.problems.len() as u64 + chain.more_problems
            )
        };
        writeln!(
            out,
            "{}: {} entries through {}, {} checkpoints, {} after the last checkpoint{}: {state}",
            chain.workspace,
            chain.entries,
            chain.last_seq,
            chain.checkpoints,
            chain.unattested,
            if chain.pruned_through > 0 {
                format!(", pruned through {}", chain.pruned_through)
            } else {
                String::new()
            },
        )?;
        for problem in &chain.problems {
            writeln!(out, "  {problem}")?;
        }
    }
    match report.first_bad() {
        None => writeln!(
            out,
            "OK: {} chains, {entries} entries verified",
            report.chains.len()
        )?,
        Some(first) => writeln!(out, "FAILED: first bad entry: {first}")?,
    }
    out.flush()?;
    audit_cli(
        log,
        actor,
        Action::AuditVerify,
        serde_json::json!({
            "scope": match scope { VerifyScope::All => "all".to_owned(), VerifyScope::Workspace(w) => w.clone() },
            "ok": report.ok(),
            "chains": report.chains.len(),
            "entries": entries,
            "first_bad": report.first_bad().map(ToString::to_string),
        }),
    )
    .await?;
    Ok(report)
}

/// Exports the entries matching `query` in `format`; returns how many.
pub async fn export(
    log: &AuditLog,
    query: AuditQuery,
    format: ExportFormat,
    actor: &Actor,
    out: &mut (dyn Write + Send),
    progress: Progress,
) -> Result<u64, CliError> {
    let filters = serde_json::json!({
        "workspace": query.workspace,
        "actor": query.actor,
        "document": query.document,
        "actions": query.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "from_ms": query.from_ms,
        "to_ms": query.to_ms,
    });
    let bar = spinner(progress);
    let written = crate::audit::export(log, query, format, out, &mut |n| {
        bar.set_message(format!("{n} entries exported"));
    })
    .await?;
    bar.finish_and_clear();
    audit_cli(
        log,
        actor,
        Action::AuditExport,
        serde_json::json!({ "format": format.to_string(), "entries": written, "filters": filters }),
    )
    .await?;
    Ok(written)
}

/// Writes the public key auditors verify checkpoints with (64 hex digits)
/// and its id.
pub fn public_key(log: &AuditLog, out: &mut dyn Write) -> Result<(), CliError> {
    writeln!(out, "{}", log.keys().public_key_hex())?;
    writeln!(out, "# key id {}", log.keys().key_id())?;
    Ok(())
}

/// A report to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportRequest {
    /// Everything stored about a user.
    GdprAccess {
        /// The user.
        user: String,
    },
    /// What erasing a user would do (nothing is erased).
    ErasurePlan {
        /// The user.
        user: String,
    },
    /// Who had which role, over a period.
    AccessReview {
        /// Only this workspace.
        workspace: Option<String>,
        /// Start (ms since the epoch).
        from_ms: u64,
        /// End (exclusive).
        to_ms: u64,
    },
}

/// Generates a report and writes it in `format`.
pub async fn report(
    log: &AuditLog,
    source: &dyn ComplianceSource,
    request: &ReportRequest,
    format: ReportFormat,
    actor: &Actor,
    out: &mut (dyn Write + Send),
    progress: Progress,
) -> Result<(), CliError> {
    let bar = spinner(progress);
    bar.set_message("collecting");
    let mut bytes = Vec::new();
    let details = match request {
        ReportRequest::GdprAccess { user } => {
            let r = gdpr_access(user, source, log).await?;
            render(&r, format, &mut bytes);
            serde_json::json!({ "report": "gdpr_access", "user": user, "audit_entries": r.audit_entries.len() })
        }
        ReportRequest::ErasurePlan { user } => {
            let r = plan_erasure(user, actor.id(), source, log).await?;
            render(&r, format, &mut bytes);
            serde_json::json!({ "report": "gdpr_erasure_plan", "subject": r.pseudonym })
        }
        ReportRequest::AccessReview {
            workspace,
            from_ms,
            to_ms,
        } => {
            let r = access_review(source, log, workspace.as_deref(), *from_ms, *to_ms).await?;
            render(&r, format, &mut bytes);
            serde_json::json!({
                "report": "soc2_access_review", "workspace": workspace,
                "from_ms": from_ms, "to_ms": to_ms, "unaudited_changes": r.unaudited_changes,
            })
        }
    };
    bar.finish_and_clear();
    out.write_all(&bytes)?;
    out.flush()?;
    let mut details = details;
    details["format"] = format.to_string().into();
    audit_cli(log, actor, Action::ReportGenerate, details).await
}

/// Runs the retention sweep now and writes what it did, one line per
/// workspace.
pub async fn sweep(
    log: &AuditLog,
    history: &dyn HistoryPruner,
    out: &mut (dyn Write + Send),
) -> Result<SweepReport, CliError> {
    let report = crate::retention::sweep(log, log.clock().now_ms(), history).await?;
    for ws in &report.workspaces {
        writeln!(
            out,
            "{}: {}",
            ws.workspace,
            serde_json::to_string(&ws.audit).expect("reports serialize")
        )?;
    }
    out.flush()?;
    Ok(report)
}
