//! What the sidecar reports: its error at the boundary, its counters.

use crate::ports::PortError;
use crate::sidecar::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("log directory {dir}: {source}")]
    LogDir {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("uploading {key}: {source}")]
    Upload {
        key: String,
        #[source]
        source: PortError,
    },
    #[error("not shipped: {0}")]
    LeftBehind(String),
}

/// Counters for the periodic summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub bytes: u64,
    pub chunks: u64,
    pub failed_attempts: u64,
    /// Cuts that ended inside a line (drain, line time-out, rotation, a huge
    /// event): each split one line into two events, and was logged.
    pub forced_cuts: u64,
    /// Flushes made before the interval by an urgent event (an error).
    pub early_flushes: u64,
    /// Passes stopped because the state directory could not be written.
    pub state_failures: u64,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes seen and not shipped remain.
    pub left: bool,
    /// Bytes shipped by this pass.
    pub shipped: u64,
}
