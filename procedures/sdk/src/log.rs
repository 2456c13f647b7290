//! Procedure logs: lines a procedure writes with [`log!`](crate::log!) (or
//! [`info!`](crate::info!) and its siblings), kept by the node that runs it
//! and shown by `ordo logs`.
//!
//! A line is tagged with the transaction's sequence number, procedure and
//! module. Logging never changes a transaction's outcome: lines are outside
//! the state hash, every replica keeps the same ones, and a node keeps only
//! its newest lines (a bounded store). One call keeps at most 16 lines and
//! 2 KiB of text; lines past that are counted, not kept. Every byte passed
//! costs fuel, kept or not.

use core::fmt;

use crate::host;

/// How much a line matters, most severe first: the levels of the `log`
/// crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    Error = ordo_schema::abi::log_level::ERROR,
    Warn = ordo_schema::abi::log_level::WARN,
    Info = ordo_schema::abi::log_level::INFO,
    Debug = ordo_schema::abi::log_level::DEBUG,
    Trace = ordo_schema::abi::log_level::TRACE,
}

/// Writes one line at `level`. The macros call this; use them instead.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    // A literal without arguments needs no allocation.
    let owned;
    let text: &str = match args.as_str() {
        Some(text) => text,
        None => {
            owned = alloc::fmt::format(args);
            &owned
        }
    };
    // SAFETY: the slice is valid for reads of its length.
    unsafe { host::log(level as i32, text.as_ptr(), host::len_i32(text.len())) }
}

/// Logs a line at a level: `log!(Level::Warn, "stock of {item} is low")`.
///
/// ```no_run
/// use ordo_sdk::log::Level;
/// ordo_sdk::log!(Level::Info, "moved {} cents", 500);
/// ```
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::write($level, ::core::format_args!($($arg)+))
    };
}

/// Logs a line at level error.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Error, $($arg)+) };
}

/// Logs a line at level warn.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Warn, $($arg)+) };
}

/// Logs a line at level info.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Info, $($arg)+) };
}

/// Logs a line at level debug.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Debug, $($arg)+) };
}

/// Logs a line at level trace.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::log::Level::Trace, $($arg)+) };
}
