//! The process's own log: `tracing` events to stderr, as text or one JSON
//! object per line, filtered by `RUST_LOG`.
//!
//! `RUST_LOG` takes `tracing_subscriber`'s `Targets` syntax: a level
//! (`debug`), or comma-separated `target=level` pairs
//! (`ordo=debug,openraft=info`). Without it, `ordo serve` logs `info` and
//! above from ordo and `warn` and above from its libraries; the other
//! commands (which print their own results) only warnings and errors.
//! A `RUST_LOG` that does not parse is reported and the default is used.
//!
//! Events a client or peer can cause in a loop (refused and closed
//! connections, overload refusals, bad Raft peers) go through
//! `ordo_sequencer::rate_limited::RateLimitedLog`, the one rate limiter,
//! which passes at most one line per interval to the log.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-01T21:00:00.123456Z  INFO ordo::node: message key=value`.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`).
    Json,
}

/// The filter when `RUST_LOG` is not set: `ordo serve`'s.
pub const SERVE_FILTER_DEFAULT: &str = "warn,ordo=info,ordo_sequencer=info,ordo_engine=info";
/// The filter of the other commands when `RUST_LOG` is not set.
pub const COMMAND_FILTER_DEFAULT: &str = "warn";

/// Installs the process's subscriber; call once, first thing.
pub fn init(format: LogFormat, default_filter: &str) {
    let default: Targets = default_filter.parse().expect("the default filter parses");
    let mut unparsed = None;
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match text.parse::<Targets>() {
            Ok(filter) => filter,
            Err(err) => {
                unparsed = Some((text, err));
                default
            }
        },
        _ => default,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
    if let Some((text, err)) = unparsed {
        tracing::warn!("RUST_LOG={text:?} does not parse ({err}); using the default filter");
    }
}
