//! A job's terminal (`ControlMsg::RunJobTty`: `openclaw shell`, `run -t`).
//!
//! The agent opens a pseudo-terminal pair ([`open`]) and gives the slave
//! side to the job as its stdin, stdout and stderr; the spawn helper's
//! child ([`crate::spawn`], or the exec shim, [`crate::jail::shim_main`])
//! makes it its controlling terminal in a session of its own. The agent keeps the master: what it reads
//! there is the job's output (all on stdout), what arrives on the job's
//! input stream is written there ([`Master::write_all`]), and a resize is
//! set on it ([`Master::resize`]; the kernel sends SIGWINCH to the
//! terminal's foreground process group). Everything here is safe Rust
//! through `rustix`.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

/// The agent's side of a job's terminal. Reads and writes are blocking
/// calls on tokio's blocking threads (`tokio::fs::File`), each direction
/// on a descriptor of its own, so a read that waits never holds up input.
pub struct Master {
    reader: Mutex<tokio::fs::File>,
    writer: Mutex<tokio::fs::File>,
    /// For resizes.
    ctl: OwnedFd,
}

/// A new terminal pair of `cols`x`rows` (0: left as the kernel makes it):
/// the master, and the slave to hand to the job.
pub fn open(cols: u16, rows: u16) -> io::Result<(Master, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    // NOCTTY: the agent never takes the job's terminal as its own; the
    // shim does, after setsid.
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = |fd: OwnedFd| tokio::fs::File::from_std(std::fs::File::from(fd));
    let m = Master {
        reader: Mutex::new(file(master.try_clone()?)),
        writer: Mutex::new(file(master.try_clone()?)),
        ctl: master,
    };
    m.resize(cols, rows)?;
    Ok((m, slave))
}

impl Master {
    /// Sets the terminal's size; 0 in either leaves it as it is.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        if cols == 0 || rows == 0 {
            return Ok(());
        }
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        Ok(rustix::termios::tcsetwinsize(&self.ctl, ws)?)
    }

    /// Reads what the job wrote to its terminal. `Ok(0)` when every slave
    /// side is closed (the kernel says EIO then: the session ended).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut r = self.reader.lock().await;
        loop {
            match r.read(buf).await {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    /// Writes all of `data` to the terminal (what was typed), waiting
    /// while the terminal's input queue is full.
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(data).await?;
        w.flush().await
    }
}

/// The login shell of `uid` from the user database; `/bin/sh` for a uid
/// with no account (one of `job_uids`) or no shell named.
pub fn login_shell(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.shell.to_string_lossy().into_owned())
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_slave_writes_the_master_reads_and_sizes_apply() {
        let (m, slave) = open(100, 30).unwrap();
        let ws = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (100, 30));
        m.resize(120, 40).unwrap();
        let ws = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
        rustix::io::write(&slave, b"hi\n").unwrap();
        let mut buf = [0u8; 64];
        let n = m.read(&mut buf).await.unwrap();
        // The terminal's line discipline turns \n into \r\n.
        assert_eq!(&buf[..n], b"hi\r\n");
        drop(slave);
        assert_eq!(
            m.read(&mut buf).await.unwrap(),
            0,
            "a closed slave ends the output"
        );
    }
}
