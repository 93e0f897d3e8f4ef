//! What ends an attached `openclaw run` early: SIGINT (Ctrl-C), SIGTERM
//! (`timeout`, a service manager), SIGHUP (the terminal closed) or a
//! closed stdout (`| head -1`).
//!
//! ssh's remote command dies with its session, and so does a job with the
//! `openclaw run` that follows it: on any of these the CLI cancels its job
//! (or a fan-out's jobs), whatever state it is in (queued, awaiting
//! approval, starting or running), then exits with the conventional code,
//! 128 + the signal (130, 143, 129; 141 for the closed pipe). `--detach`
//! has no session to end, and `job logs --follow` only watches: neither
//! cancels anything.
//!
//! Once a handler is registered the signal no longer kills the process, so
//! a command that registers one must watch [`Interrupts::next`] in every
//! phase where it can wait (connecting included) and exit itself.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use client::Client;
use mesh::Home;

use crate::commands::CliError;
use crate::exit;

/// How long a start that a stop interrupted still waits for the gateway
/// to accept it, so what it started is cancelled rather than left behind.
const ACCEPT_WAIT: Duration = Duration::from_secs(5);

/// Why an attached run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A signal, by number.
    Signal(i32),
    /// Stdout's reader is gone.
    StdoutClosed,
    /// An interactive session's input was cut off (the gateway went away
    /// or restarted): nothing typed reaches it any more, so it ends.
    InputCut,
}

impl Stop {
    /// The exit code for it: 128 + the signal, as shells report a process
    /// the signal killed (141 for SIGPIPE).
    pub fn exit_code(self) -> u8 {
        match self {
            Stop::Signal(n) => u8::try_from(128 + n).unwrap_or(exit::FAILURE),
            Stop::StdoutClosed => exit::BROKEN_PIPE,
            Stop::InputCut => exit::RUN_CONNECTION,
        }
    }

    /// The error that ends the command with [`Stop::exit_code`] and
    /// `message` (empty: nothing more to say).
    pub fn error(self, message: impl Into<String>) -> CliError {
        CliError::new(self.exit_code(), message)
    }
}

/// The signals an attached run listens for, and the closed stdout.
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Registers the handlers (from then on these signals no longer kill
    /// the process; see the module docs).
    pub fn new() -> Result<Interrupts, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let reg = |kind: SignalKind| {
            signal(kind).map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("cannot watch for signals ({e}); run with --detach and cancel with 'openclaw job cancel ID'"),
                )
            })
        };
        Ok(Interrupts {
            int: reg(SignalKind::interrupt())?,
            term: reg(SignalKind::terminate())?,
            hup: reg(SignalKind::hangup())?,
        })
    }

    /// The next reason to stop. Cancel-safe: dropping it loses nothing.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Signal(2),
            _ = self.term.recv() => Stop::Signal(15),
            _ = self.hup.recv() => Stop::Signal(1),
            () = crate::term::stdout_gone() => Stop::StdoutClosed,
        }
    }

    /// Connects to the gateway, unless a stop comes first.
    pub async fn connect(&mut self, home: &Home) -> Result<Arc<Client>, CliError> {
        tokio::select! {
            c = Client::connect(home) => Ok(Arc::new(c.map_err(crate::jobs_cli::run_error)?)),
            stop = self.next() => Err(stop.error("")),
        }
    }

    /// Waits for `start` (a request the gateway accepts with ids). A stop
    /// while it waits gives it [`ACCEPT_WAIT`] more, so that what it
    /// started can be cancelled, and comes back beside its result;
    /// `unaccepted` is the error when the gateway never answered.
    pub async fn until_accepted<T>(
        &mut self,
        start: impl Future<Output = Result<T, CliError>>,
        unaccepted: &str,
    ) -> Result<(T, Option<Stop>), CliError> {
        tokio::pin!(start);
        tokio::select! {
            r = &mut start => Ok((r?, None)),
            stop = self.next() => match tokio::time::timeout(ACCEPT_WAIT, &mut start).await {
                Ok(Ok(t)) => Ok((t, Some(stop))),
                Ok(Err(e)) => Err(stop.error(e.message)),
                Err(_) => Err(stop.error(unaccepted)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(Stop::Signal(2).exit_code(), 130);
        assert_eq!(Stop::Signal(1).exit_code(), 129);
        assert_eq!(Stop::Signal(15).exit_code(), 143);
        assert_eq!(Stop::StdoutClosed.exit_code(), 141);
        assert_eq!(Stop::Signal(2).exit_code(), exit::RUN_CANCELLED);
    }
}
