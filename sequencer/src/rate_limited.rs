//! Log lines that a hostile peer or client can cause, at a bounded rate.
//!
//! A flood of bad connections must not become a flood of stderr (one
//! such flood once wrote 200 MB in 9 s): each [`RateLimitedLog`] prints
//! at most one line per interval and counts the lines it held back.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    last_printed: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            state: Mutex::new(State {
                last_printed: None,
                suppressed: 0,
            }),
        }
    }

    /// Logs `line` (a `tracing` warning) unless a line was printed less than the
    /// interval ago; then it only counts it, and the next printed line
    /// says how many were held back.
    pub fn warn(&self, line: &str) {
        if let Some(line) = self.admit(line, Instant::now()) {
            tracing::warn!("{line}");
        }
    }

    /// [`RateLimitedLog::warn`] for a line that costs something to build:
    /// `line` runs only when the line is printed.
    pub fn warn_with(&self, line: impl FnOnce() -> String) {
        if !self.due(Instant::now()) {
            return;
        }
        let line = line();
        if let Some(line) = self.admit(&line, Instant::now()) {
            tracing::warn!("{line}");
        }
    }

    /// Whether a line offered now would be printed; counts it as held
    /// back if not.
    fn due(&self, now: Instant) -> bool {
        let mut state = self.state.lock();
        let due = state
            .last_printed
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            state.suppressed += 1;
        }
        due
    }

    /// The line to print at `now`, if any.
    fn admit(&self, line: &str, now: Instant) -> Option<String> {
        let mut state = self.state.lock();
        if state
            .last_printed
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            state.suppressed += 1;
            return None;
        }
        state.last_printed = Some(now);
        let suppressed = std::mem::take(&mut state.suppressed);
        Some(if suppressed == 0 {
            line.to_string()
        } else {
            format!("{line} (and {suppressed} similar lines held back)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_line_per_interval_and_counts_the_rest() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.admit("a", start).as_deref(), Some("a"));
        for step in 1..=1000 {
            assert_eq!(log.admit("b", start + Duration::from_millis(step)), None);
        }
        assert_eq!(
            log.admit("c", start + Duration::from_secs(11)).as_deref(),
            Some("c (and 1000 similar lines held back)")
        );
        assert_eq!(log.admit("d", start + Duration::from_secs(12)), None);
    }

    #[test]
    fn a_line_held_back_is_never_built_but_is_counted() {
        let log = RateLimitedLog::new(Duration::from_secs(3600));
        let built = std::cell::Cell::new(0);
        for _ in 0..100 {
            log.warn_with(|| {
                built.set(built.get() + 1);
                "overloaded".to_string()
            });
        }
        assert_eq!(built.get(), 1);
        assert_eq!(log.state.lock().suppressed, 99);
    }
}
