//! Verification: recompute every chain from the stored entries and check
//! the signed statements about it.
//!
//! For each workspace it checks, in chain order:
//!
//! - the pruning anchor's signature; the chain then starts after it;
//! - every checkpoint's signature, and that the checkpoint each one names
//!   as its predecessor still exists;
//! - every entry: its position follows the previous one, its `prev_hash` is
//!   the previous entry's hash, its stored hash is the hash of what it
//!   holds, the search indexes agree with it, and where a checkpoint was
//!   signed at its position, the signed hash is its hash;
//! - at the end, that the chain reaches every checkpoint and the recorded
//!   head.
//!
//! A broken entry is classified by looking at its neighbours (an entry
//! whose `prev_hash` is a later entry's hash was moved; one whose successor
//! links past it was inserted), then checking resumes after it, so one
//! report lists every independent problem and names the first.
//!
//! What it cannot see: someone who can write the store *and* recompute
//! hashes can rewrite entries after the last checkpoint consistently, or
//! drop them together with the head record. The checkpoint interval bounds
//! that window; exporting checkpoints to a SIEM as they are made closes it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::Serialize;

use super::hash::{Digest, canonical_event, entry_hash};
use super::keys::{AuditKeys, Checkpoint};
use crate::store::{AuditStore, RawEntry, StoreError};

/// Entries read per store round trip.
const PAGE: usize = 1024;
/// How far ahead the classifier looks for a moved entry.
const LOOKAHEAD: usize = 64;
/// How many renumbered positions it tries to explain a removal.
const RENUMBER_SEARCH: u64 = 64;
/// Problems listed per chain; more are only counted.
const MAX_PROBLEMS: usize = 100;

/// What is wrong with an entry (or at its position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Its content (event, position or link) changed after it was hashed.
    Changed,
    /// Its stored hash was altered; the content is what was hashed.
    HashChanged,
    /// It is missing: the chain skips it, or its successor links to an
    /// entry that is not there.
    Removed,
    /// It sits at the wrong position: it links to an entry stored after it.
    Reordered,
    /// It was not appended by the server: the entry after it links past it.
    Inserted,
    /// The chain ends before an entry a checkpoint or the head record says
    /// was written.
    Truncated,
    /// A checkpoint signed a different hash for this entry: the chain was
    /// rewritten (and re-hashed) after the previous checkpoint.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify.
    BadSignature,
    /// A checkpoint is gone: the next checkpoint names it.
    CheckpointMissing,
    /// The pruning anchor's signature does not verify.
    BadAnchor,
    /// The entry cannot be parsed.
    Unreadable,
    /// The search indexes disagree with the entry, which would hide it
    /// from searches and reports.
    IndexMismatch,
}

impl ProblemKind {
    fn describe(self) -> &'static str {
        match self {
            ProblemKind::Changed => "changed",
            ProblemKind::HashChanged => "hash changed",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Truncated => "truncated",
            ProblemKind::CheckpointMismatch => "checkpoint mismatch",
            ProblemKind::BadSignature => "bad checkpoint signature",
            ProblemKind::CheckpointMissing => "checkpoint missing",
            ProblemKind::BadAnchor => "bad pruning anchor",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::IndexMismatch => "index mismatch",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The chain.
    pub workspace: String,
    /// The entry (or checkpoint) position that is bad.
    pub seq: u64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The evidence, for a human.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workspace {:?}, entry {}: {}: {}",
            self.workspace,
            self.seq,
            self.kind.describe(),
            self.detail
        )
    }
}

/// The result of verifying one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The chain.
    pub workspace: String,
    /// Entries checked.
    pub entries: u64,
    /// The last entry checked (the anchor's seq when none remain).
    pub last_seq: u64,
    /// Entries before this were pruned by retention (0: none).
    pub pruned_through: u64,
    /// Checkpoints with a valid signature.
    pub checkpoints: u64,
    /// The last valid checkpoint at or before `last_seq`.
    pub last_checkpoint: u64,
    /// Entries after the last valid checkpoint: protected by the hash chain
    /// only, until the next checkpoint is signed.
    pub unattested: u64,
    /// The problems, in chain order (at most 100).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more_problems: u64,
}

/// The result of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// One report per chain, by workspace.
    pub chains: Vec<ChainReport>,
}

impl VerifyReport {
    /// Whether every chain verified.
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.problems.is_empty())
    }

    /// The first bad entry: the earliest problem of the first chain (by
    /// workspace) that has one.
    pub fn first_bad(&self) -> Option<&Problem> {
        self.chains.iter().find_map(|c| c.problems.first())
    }

    /// Every problem listed.
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.chains.iter().flat_map(|c| c.problems.iter())
    }
}

/// Which chains to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every workspace's chain.
    All,
    /// One chain.
    Workspace(String),
}

struct Checker<'a> {
    workspace: &'a str,
    report: ChainReport,
    problems: Vec<Problem>,
    /// Valid checkpoints by seq.
    signed: BTreeMap<u64, Checkpoint>,
    expected_seq: u64,
    expected_prev: Digest,
    previous: Option<RawEntry>,
    head: Option<(u64, Digest)>,
    /// Positions named in a problem: links to them are not reported again.
    reported: BTreeSet<u64>,
    /// Stored hashes of the last entries checked, with their positions.
    recent: VecDeque<(Digest, u64)>,
}

impl Checker<'_> {
    fn problem(&mut self, seq: u64, kind: ProblemKind, detail: String) {
        self.reported.insert(seq);
        self.problems.push(Problem {
            workspace: self.workspace.to_owned(),
            seq,
            kind,
            detail,
        });
    }

    /// Whether `hash` is the hash of this content at a position a little
    /// before or after `seq`: an intact entry renumbered by an insertion
    /// or removal before it.
    fn renumbered(seq: u64, prev: &Digest, canonical: &str, hash: &Digest) -> Option<u64> {
        (1..=RENUMBER_SEARCH)
            .flat_map(|d| [seq.checked_add(d), seq.checked_sub(d)])
            .flatten()
            .filter(|s| *s > 0)
            .find(|s| entry_hash(*s, prev, canonical) == *hash)
    }

    /// Position of a recently checked entry whose stored hash is `hash`.
    fn recent_position(&self, hash: &Digest) -> Option<u64> {
        self.recent
            .iter()
            .find(|(h, _)| h == hash)
            .map(|(_, seq)| *seq)
    }

    fn check(&mut self, e: RawEntry, ahead: &[RawEntry]) {
        self.report.entries += 1;
        let s = self.expected_seq;
        if e.seq <= self.report.pruned_through {
            self.problem(
                e.seq,
                ProblemKind::Inserted,
                format!(
                    "it is stored at or before the pruning anchor (entries through {} were deleted)",
                    self.report.pruned_through
                ),
            );
            return;
        }
        if e.seq < s {
            self.problem(
                e.seq,
                ProblemKind::Reordered,
                format!("it is stored after entry {}", s - 1),
            );
            return;
        }
        let canonical = match serde_json::from_str(&e.event_json) {
            Ok(event) => canonical_event(&event),
            Err(error) => {
                self.problem(e.seq, ProblemKind::Unreadable, error.to_string());
                self.advance(e, None);
                return;
            }
        };
        let recomputed = entry_hash(e.seq, &e.prev_hash, &canonical);
        let before = self.problems.len();
        let mut resume = e.hash;
        if e.seq > s {
            let detail = match (s, e.seq - s) {
                (1, _) => format!(
                    "the chain starts at entry {} without a pruning anchor",
                    e.seq
                ),
                (_, 1) => format!("the chain goes from entry {} to entry {}", s - 1, e.seq),
                (_, n) => format!(
                    "{n} entries are missing: the chain goes from entry {} to entry {}",
                    s - 1,
                    e.seq
                ),
            };
            self.problem(s, ProblemKind::Removed, detail);
            if recomputed != e.hash {
                self.problem(
                    e.seq,
                    ProblemKind::Changed,
                    "its content does not match its hash".into(),
                );
            }
            self.advance(e, Some(resume));
            return;
        }
        let mut link_ok = e.prev_hash == self.expected_prev;
        if !link_ok {
            let earlier = self.recent_position(&e.prev_hash);
            if self
                .previous
                .as_ref()
                .is_some_and(|p| p.prev_hash == e.prev_hash && p.seq + 1 == s)
            {
                self.problem(
                    s - 1,
                    ProblemKind::Inserted,
                    format!(
                        "entry {s} links to entry {} directly, past it",
                        s.saturating_sub(2)
                    ),
                );
            } else if let Some(later) = ahead.iter().find(|a| a.hash == e.prev_hash) {
                self.problem(
                    s,
                    ProblemKind::Reordered,
                    format!(
                        "it links to the entry stored at position {}, which comes after it",
                        later.seq
                    ),
                );
            } else if let Some(position) = earlier {
                if self.reported.contains(&position) {
                    // The consequence of a move already reported.
                    link_ok = true;
                } else {
                    self.problem(
                        s,
                        ProblemKind::Reordered,
                        format!("it links to entry {position}, not to entry {}", s - 1),
                    );
                }
            } else if recomputed == e.hash
                || Self::renumbered(s, &e.prev_hash, &canonical, &e.hash).is_some()
            {
                self.problem(
                    s,
                    ProblemKind::Removed,
                    format!(
                        "the entry at position {s} links to an entry that is not entry {}: entries before it were removed",
                        s - 1
                    ),
                );
            } else {
                self.problem(
                    s,
                    ProblemKind::Changed,
                    "its link to the previous entry was altered".into(),
                );
            }
        }
        if link_ok && recomputed != e.hash {
            let truth = ahead
                .first()
                .filter(|n| n.seq == e.seq + 1)
                .map(|n| n.prev_hash)
                .or_else(|| self.signed.get(&e.seq).map(|c| c.hash))
                .or_else(|| self.head.filter(|(seq, _)| *seq == e.seq).map(|(_, h)| h));
            if truth == Some(recomputed) {
                self.problem(
                    s,
                    ProblemKind::HashChanged,
                    format!(
                        "its stored hash is {}, its content hashes to {recomputed}",
                        e.hash
                    ),
                );
                resume = recomputed;
            } else if let Some(position) = Self::renumbered(s, &e.prev_hash, &canonical, &e.hash) {
                if self.problems.is_empty() {
                    self.problem(
                        s,
                        ProblemKind::Reordered,
                        format!(
                            "it is stored at position {s} but was written at position {position}"
                        ),
                    );
                }
                // Otherwise: shifted by an insertion or removal already reported.
            } else {
                self.problem(
                    s,
                    ProblemKind::Changed,
                    "its content does not match its hash".into(),
                );
            }
        } else if link_ok && !e.index_ok {
            self.problem(
                s,
                ProblemKind::IndexMismatch,
                "the search index does not match the entry".into(),
            );
        }
        if let Some(cp) = self.signed.get(&e.seq)
            && cp.hash != resume
            && self.problems.len() == before
        {
            let (seq, prev) = (cp.seq, cp.prev_seq);
            self.problem(
                seq,
                ProblemKind::CheckpointMismatch,
                format!(
                    "the checkpoint signed a different hash: entries after checkpoint {prev} were rewritten"
                ),
            );
        }
        self.advance(e, Some(resume));
    }

    /// Moves past `e`, continuing the chain from `resume` (its stored hash
    /// unless it was found altered).
    fn advance(&mut self, e: RawEntry, resume: Option<Digest>) {
        let resume = resume.unwrap_or(e.hash);
        if self.recent.len() == LOOKAHEAD {
            self.recent.pop_front();
        }
        self.recent.push_back((e.hash, e.seq));
        self.report.last_seq = e.seq;
        self.expected_seq = e.seq + 1;
        self.expected_prev = resume;
        self.previous = Some(e);
    }
}

/// Verifies one chain; with `through`, only its entries up to that seq
/// (retention checks what it is about to delete). `progress` is told how
/// many entries were checked after each page.
pub async fn verify_chain(
    store: &dyn AuditStore,
    keys: &AuditKeys,
    workspace: &str,
    through: Option<u64>,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<ChainReport, StoreError> {
    let mut checker = Checker {
        workspace,
        report: ChainReport {
            workspace: workspace.to_owned(),
            ..ChainReport::default()
        },
        problems: Vec::new(),
        signed: BTreeMap::new(),
        expected_seq: 1,
        expected_prev: Digest::GENESIS,
        previous: None,
        head: store.head(workspace).await?.map(|h| (h.seq, h.hash)),
        reported: BTreeSet::new(),
        recent: VecDeque::new(),
    };
    if let Some(anchor) = store.anchor(workspace).await? {
        if let Err(why) = keys.verify_anchor(&anchor) {
            checker.problem(anchor.through_seq, ProblemKind::BadAnchor, why);
        }
        checker.report.pruned_through = anchor.through_seq;
        checker.report.last_seq = anchor.through_seq;
        checker.expected_seq = anchor.through_seq + 1;
        checker.expected_prev = anchor.hash;
    }
    let pruned = checker.report.pruned_through;
    let stored = store.checkpoints(workspace).await?;
    let stored_seqs: BTreeSet<u64> = stored.iter().map(|c| c.seq).collect();
    for cp in stored {
        if cp.seq <= pruned {
            continue;
        }
        match keys.verify_checkpoint(&cp) {
            Ok(()) if cp.workspace == workspace => {
                checker.signed.insert(cp.seq, cp);
            }
            Ok(()) => checker.problem(
                cp.seq,
                ProblemKind::BadSignature,
                format!("the checkpoint was signed for workspace {:?}", cp.workspace),
            ),
            Err(why) => checker.problem(cp.seq, ProblemKind::BadSignature, why),
        }
    }
    let missing: Vec<(u64, u64)> = checker
        .signed
        .values()
        .filter(|cp| cp.prev_seq > pruned && !stored_seqs.contains(&cp.prev_seq))
        .map(|cp| (cp.prev_seq, cp.seq))
        .collect();
    for (prev, seq) in missing {
        checker.problem(
            prev,
            ProblemKind::CheckpointMissing,
            format!("checkpoint {seq} follows checkpoint {prev}, which is gone"),
        );
    }
    checker.report.checkpoints = checker.signed.len() as u64;

    let mut window: VecDeque<RawEntry> = VecDeque::new();
    let mut next_from = 0;
    let mut exhausted = false;
    loop {
        while !exhausted && window.len() <= LOOKAHEAD {
            let page = store.read_chain(workspace, next_from, PAGE).await?;
            exhausted = page.len() < PAGE;
            if let Some(last) = page.last() {
                next_from = last.seq + 1;
            }
            window.extend(page);
            progress(checker.report.entries);
        }
        let Some(entry) = window.pop_front() else {
            break;
        };
        if through.is_some_and(|t| entry.seq > t) {
            break;
        }
        checker.check(entry, window.make_contiguous());
    }
    progress(checker.report.entries);

    let last = checker.report.last_seq;
    if through.is_none() {
        if let Some(cp) = checker
            .signed
            .range(last + 1..)
            .next()
            .map(|(_, cp)| cp.seq)
        {
            checker.problem(
                last + 1,
                ProblemKind::Truncated,
                format!(
                    "checkpoint {cp} attests entries up to {cp}; the chain ends at entry {last}"
                ),
            );
        } else if let Some((head, _)) = checker.head.filter(|(seq, _)| *seq > last) {
            checker.problem(
                last + 1,
                ProblemKind::Truncated,
                format!("the chain head records entry {head}; the chain ends at entry {last}"),
            );
        }
    }
    let last_checkpoint = checker
        .signed
        .range(..=last)
        .next_back()
        .map_or(0, |(seq, _)| *seq);
    checker.report.last_checkpoint = last_checkpoint;
    checker.report.unattested = last.saturating_sub(last_checkpoint.max(pruned));
    let mut problems = checker.problems;
    // In chain order; at one position, an index fault is the least of it
    // (an inserted entry usually has no index entries either).
    problems.sort_by_key(|p| (p.seq, p.kind == ProblemKind::IndexMismatch));
    checker.report.more_problems = problems.len().saturating_sub(MAX_PROBLEMS) as u64;
    problems.truncate(MAX_PROBLEMS);
    checker.report.problems = problems;
    Ok(checker.report)
}
