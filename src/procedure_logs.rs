//! The node's procedure log: the lines procedures write with
//! `ordo_sdk::log!`, and one line for every call that aborted after it
//! started, tagged with the transaction's sequence number, procedure,
//! module and fuel used. `ordo logs` reads it (protocol `Logs`).
//!
//! The engine hands the lines out with each outcome; they are the same on
//! every replica but outside every hash, so this store may forget them: it
//! keeps the newest lines within [`PROCEDURE_LOG_STORE_BYTES_MAX`] and
//! [`PROCEDURE_LOG_STORE_LINES_MAX`], in memory. A restart keeps the lines
//! of the transactions it re-executes (the log after the snapshot), since
//! running them again writes the same lines.
//!
//! Only the executor thread writes, only when a batch produced lines; a
//! reader copies one page under the lock.

use std::collections::VecDeque;

use ordo_client::protocol::{LOG_PAGE_LINES_MAX, ProcedureLogLine};
use ordo_engine::{Outcome, TxOutcome};
use ordo_sequencer::entry::Entry;
use parking_lot::Mutex;

/// Bytes of lines (text plus [`LINE_OVERHEAD_BYTES`] each) the store
/// keeps; the oldest go first.
pub const PROCEDURE_LOG_STORE_BYTES_MAX: usize = 16 << 20;
/// Lines the store keeps, whatever their size.
pub const PROCEDURE_LOG_STORE_LINES_MAX: usize = 200_000;
/// Bytes of text one page of `ordo logs` carries, about; a page always
/// holds at least one whole transaction.
pub const LOG_PAGE_BYTES_MAX: usize = 1 << 20;
/// What a line costs besides its text: its fields and the queue slot.
const LINE_OVERHEAD_BYTES: usize = 96;

#[derive(Default)]
pub struct ProcedureLogs {
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    lines: VecDeque<ProcedureLogLine>,
    bytes: usize,
}

fn line_bytes(line: &ProcedureLogLine) -> usize {
    LINE_OVERHEAD_BYTES + line.message.len() + line.procedure.len() + line.module.len()
}

/// What to read: [`ProcedureLogs::page`]'s filter.
pub struct LogQuery<'a> {
    pub since_seq: u64,
    pub procedure: Option<&'a str>,
    pub level_max: u8,
    pub limit: u32,
}

/// One page, with where the next starts and the oldest kept transaction.
pub struct LogPage {
    pub lines: Vec<ProcedureLogLine>,
    pub next_seq: u64,
    pub oldest_seq: u64,
}

impl ProcedureLogs {
    /// Keeps the lines of `outcomes`, the outcomes of `entries`, in log
    /// order (copies: the callers get their outcomes whole). Takes the
    /// lock only if there is something to keep.
    pub fn record(&self, entries: &[Entry], outcomes: &[TxOutcome]) {
        let mut store = None;
        for (entry, tx) in entries.iter().zip(outcomes) {
            let Some(logs) = &tx.logs else { continue };
            let procedure = match entry {
                Entry::Invoke(invocation) | Entry::InvokeChecked { invocation, .. } => {
                    invocation.procedure.as_str()
                }
                _ => continue,
            };
            let store = store.get_or_insert_with(|| self.store.lock());
            let line = |level: u8, message: String, abort_kind: Option<String>| ProcedureLogLine {
                seq: tx.seq,
                procedure: procedure.to_string(),
                module: logs.module.clone(),
                level,
                message,
                fuel_used: tx.fuel_used,
                abort_kind,
            };
            for written in &logs.lines {
                store.push(line(written.level as u8, written.message.clone(), None));
            }
            if logs.dropped > 0 {
                store.push(line(
                    ordo_engine::LogLevel::Warn as u8,
                    format!(
                        "{} more lines not kept: one call keeps at most {} lines and {} bytes of log",
                        logs.dropped,
                        ordo_engine::PROCEDURE_LOG_LINES_PER_CALL_MAX,
                        ordo_engine::PROCEDURE_LOG_BYTES_PER_CALL_MAX
                    ),
                    None,
                ));
            }
            if let Outcome::Aborted(abort) = &tx.outcome {
                store.push(line(
                    ordo_engine::LogLevel::Error as u8,
                    abort.message.clone(),
                    Some(abort.kind.as_str().to_string()),
                ));
            }
        }
    }

    /// The lines `query` selects, whole transactions only, oldest first.
    /// `position` is the node's executed position: with nothing left to
    /// read, `next_seq` moves past it.
    pub fn page(&self, query: &LogQuery<'_>, position: u64) -> LogPage {
        let limit = query.limit.clamp(1, LOG_PAGE_LINES_MAX) as usize;
        let store = self.store.lock();
        let oldest_seq = store.lines.front().map_or(position + 1, |line| line.seq);
        let start = store
            .lines
            .partition_point(|line| line.seq < query.since_seq);
        let mut lines = Vec::new();
        let mut bytes = 0;
        // Lines can be newer than `position` (a batch's lines are kept as
        // it runs), so the cursor also moves past every line looked at.
        let mut next_seq = query.since_seq.max(position + 1);
        let mut current = None;
        for line in store.lines.range(start..) {
            if current != Some(line.seq) {
                // A new transaction: stop here if the page is full.
                if lines.len() >= limit || bytes >= LOG_PAGE_BYTES_MAX {
                    next_seq = line.seq;
                    break;
                }
                current = Some(line.seq);
                next_seq = next_seq.max(line.seq + 1);
            }
            if line.level > query.level_max
                || query
                    .procedure
                    .is_some_and(|wanted| wanted != line.procedure)
            {
                continue;
            }
            bytes += line_bytes(line);
            lines.push(line.clone());
        }
        LogPage {
            lines,
            next_seq,
            oldest_seq,
        }
    }
}

impl Store {
    fn push(&mut self, line: ProcedureLogLine) {
        if self.lines.back().is_some_and(|last| last.seq > line.seq) {
            // Only a node that went back in the log (it cannot) would do
            // this; keep the store sorted for `page` rather than mix.
            self.lines.clear();
            self.bytes = 0;
        }
        self.bytes += line_bytes(&line);
        self.lines.push_back(line);
        while self.bytes > PROCEDURE_LOG_STORE_BYTES_MAX
            || self.lines.len() > PROCEDURE_LOG_STORE_LINES_MAX
        {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= line_bytes(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, procedure: &str, level: u8, message: &str) -> ProcedureLogLine {
        ProcedureLogLine {
            seq,
            procedure: procedure.to_string(),
            module: "m".to_string(),
            level,
            message: message.to_string(),
            fuel_used: 7,
            abort_kind: None,
        }
    }

    fn query(since_seq: u64, limit: u32) -> LogQuery<'static> {
        LogQuery {
            since_seq,
            procedure: None,
            level_max: 5,
            limit,
        }
    }

    #[test]
    fn pages_hold_whole_transactions_and_resume_where_they_stopped() {
        let logs = ProcedureLogs::default();
        {
            let mut store = logs.store.lock();
            for seq in 1..=5 {
                store.push(line(seq, "p", 3, "a"));
                store.push(line(seq, "p", 3, "b"));
            }
        }
        // A limit of 3 lines still returns both lines of the second
        // transaction it starts.
        let page = logs.page(&query(1, 3), 5);
        assert_eq!(page.lines.len(), 4);
        assert_eq!(page.next_seq, 3);
        assert_eq!(page.oldest_seq, 1);
        let page = logs.page(&query(page.next_seq, 1000), 5);
        assert_eq!(
            page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [3, 3, 4, 4, 5, 5]
        );
        // Nothing left: the cursor moves past the node's position.
        assert_eq!(page.next_seq, 6);
        let page = logs.page(&query(6, 1000), 9);
        assert!(page.lines.is_empty());
        assert_eq!(page.next_seq, 10);
    }

    #[test]
    fn filters_by_procedure_and_level() {
        let logs = ProcedureLogs::default();
        {
            let mut store = logs.store.lock();
            store.push(line(1, "p", 1, "error"));
            store.push(line(1, "p", 4, "debug"));
            store.push(line(2, "q", 2, "warn"));
        }
        let page = logs.page(
            &LogQuery {
                since_seq: 0,
                procedure: Some("p"),
                level_max: 3,
                limit: 100,
            },
            2,
        );
        assert_eq!(page.lines.len(), 1);
        assert_eq!(page.lines[0].message, "error");
    }

    #[test]
    fn the_store_forgets_its_oldest_lines_at_its_byte_limit() {
        let logs = ProcedureLogs::default();
        let big = "x".repeat(64 << 10);
        let lines = 2 * PROCEDURE_LOG_STORE_BYTES_MAX / big.len();
        {
            let mut store = logs.store.lock();
            for seq in 1..=lines as u64 {
                store.push(line(seq, "p", 3, &big));
            }
            assert!(store.bytes <= PROCEDURE_LOG_STORE_BYTES_MAX);
            assert_eq!(
                store.bytes,
                store.lines.iter().map(line_bytes).sum::<usize>()
            );
        }
        let page = logs.page(&query(0, 1000), lines as u64);
        assert!(page.oldest_seq > lines as u64 / 2, "{}", page.oldest_seq);
        assert_eq!(page.lines[0].seq, page.oldest_seq);
        // A page stops near its byte budget, and says where to go on.
        assert!(page.lines.len() <= LOG_PAGE_BYTES_MAX / big.len() + 1);
        assert_eq!(page.next_seq, page.lines.last().unwrap().seq + 1);
        let newest = logs.page(&query(lines as u64, 1000), lines as u64);
        assert_eq!(newest.lines.len(), 1);
        assert_eq!(newest.lines[0].seq, lines as u64);
    }
}
