//! The node side: enrolling with a join token, and the agent that holds a
//! mutually authenticated session with the gateway.

pub mod agent;
pub mod artifacts;
pub mod backoff;
pub mod copy;
pub mod enroll;
pub mod files;
pub mod forward;
pub mod gpuhealth;
pub mod group;
pub mod jail;
pub mod jobdir;
pub mod keyrings;
pub mod plan;
pub mod private_tmp;
pub mod pty;
pub mod runner;
pub mod simsmi;
pub mod spawn;
pub mod spawn_plan;
pub mod spool;
pub mod telemetry;
pub mod tree;

/// A node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad input from the user (token, name, labels).
    #[error("{0}")]
    Input(String),
    /// The home directory is unusable.
    #[error("{0}")]
    Home(String),
    /// The gateway refused us for good; retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// The gateway could not be reached in time.
    #[error("{0}")]
    Unreachable(String),
    /// Enrollment is still waiting for an admin.
    #[error("{0}")]
    StillPending(String),
}

impl From<mesh::home::HomeError> for NodeError {
    fn from(e: mesh::home::HomeError) -> Self {
        NodeError::Home(e.to_string())
    }
}
