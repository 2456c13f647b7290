pub mod entry;
pub mod file_log;

pub use file_log::{FileLog, FileLogConfig, LogError, LogReader, Recovery};
