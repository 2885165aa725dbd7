//! Every exit code of the `handler` executable, in one table.
//!
//! | code | the server (`handler`, `handler serve`)              | a client command (`submit`, `watch`, `collect`, ...) |
//! |------|------------------------------------------------------|------------------------------------------------------|
//! | 0    | stopped on request (Ctrl-C, SIGTERM), standalone only | the job completed, or the command did what it was asked without waiting |
//! | 1    | failed while running, or stopped under the host      | the job failed                                       |
//! | 2    | a setting is missing or unusable (the message names it) | the job was cancelled                             |
//! | 3    | —                                                    | bad usage, nothing listening, or the API refused the call |
//!
//! The Functions host restarts a handler that exits non-zero and never one that exits 0, so
//! under the host the server never exits 0: whoever stopped it, the app must come back.

use std::process::ExitCode;

use crate::jobs::JobStatus;

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerExit {
    /// Stopped on request in standalone mode.
    Stopped = 0,
    /// Failed, or stopped while under the host (which must restart it).
    Failed = 1,
    /// A setting is missing or unusable.
    BadSettings = 2,
}

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandExit {
    /// The job completed, or the command did what it was asked without waiting for an end.
    Success = 0,
    JobFailed = 1,
    JobCancelled = 2,
    /// Bad usage, nothing listening, or the API refused the call.
    Trouble = 3,
}

impl CommandExit {
    /// What a job's status means for the exit code. A job still going is not a failure.
    pub fn for_status(status: JobStatus) -> Self {
        match status {
            JobStatus::Failed => CommandExit::JobFailed,
            JobStatus::Cancelled => CommandExit::JobCancelled,
            JobStatus::Queued | JobStatus::Running | JobStatus::Completed => CommandExit::Success,
        }
    }
}

impl From<ServerExit> for ExitCode {
    fn from(exit: ServerExit) -> Self {
        ExitCode::from(exit as u8)
    }
}

impl From<CommandExit> for ExitCode {
    fn from(exit: CommandExit) -> Self {
        ExitCode::from(exit as u8)
    }
}
