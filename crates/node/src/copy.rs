//! The agent's half of `openclaw cp`: one copy stream per
//! `ControlMsg::Copy`. The agent never touches the files itself: it
//! starts the file child as the job user ([`crate::files`], through the
//! exec shim), opens an `Open::Copy` stream to the gateway (it still only
//! dials out) and splices the child's stdin and stdout onto it.

use std::time::Duration;

use proto::Open;
use proto::files::FileOp;
use tokio::io::AsyncWriteExt as _;

use crate::files::FileSpec;
use crate::jail::Identity;

/// How long the other direction may run on once the child is done.
const LINGER: Duration = Duration::from_secs(5);

/// Answers copy `id`: starts the file child and relays its stream.
pub async fn answer(
    conn: quinn::Connection,
    identity: Identity,
    allowed: Vec<String>,
    id: u64,
    op: FileOp,
) {
    let shown = proto::names::printable(op.path(), 200);
    let child = match spawn(&identity, allowed, op) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(id, path = %shown, "copy refused: {e}");
            if let Ok((mut send, _recv)) = conn.open_bi().await {
                let open = Open::Copy { id, error: Some(e) };
                if mesh::write_frame(&mut send, &open).await.is_ok() {
                    let _ = send.finish();
                }
            }
            return;
        }
    };
    let (mut send, recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(id, error = %e, "cannot open the copy's stream");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::Copy { id, error: None })
        .await
        .is_err()
    {
        return;
    }
    relay(child, send, recv, id, &shown).await;
}

fn spawn(
    identity: &Identity,
    allowed: Vec<String>,
    op: FileOp,
) -> Result<tokio::process::Child, String> {
    let user = match identity {
        Identity::Refuse(why) => {
            return Err(format!(
                "this node refuses copies as it refuses jobs: {why}"
            ));
        }
        Identity::Drop(u) => Some(u.clone()),
        Identity::AgentUser(_) => None,
    };
    let spec = FileSpec { op, allowed, user };
    let mut cmd = crate::jail::shim_command(crate::files::SPEC_VAR, &spec)?;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    cmd.spawn()
        .map_err(|e| format!("cannot start the file child: {e}"))
}

/// Child stdout onto the stream, the stream into child stdin; once the
/// child's output ends, the other way gets [`LINGER`] more.
async fn relay(
    mut child: tokio::process::Child,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    id: u64,
    shown: &str,
) {
    let (Some(mut out), Some(mut input)) = (child.stdout.take(), child.stdin.take()) else {
        return;
    };
    let down = async {
        let n = tokio::io::copy(&mut out, &mut send).await;
        let _ = send.finish();
        n
    };
    let up = async {
        let n = tokio::io::copy(&mut recv, &mut input).await;
        let _ = input.shutdown().await;
        drop(input);
        n
    };
    tokio::pin!(up);
    tokio::pin!(down);
    let (mut down_done, mut up_done) = (false, false);
    let mut moved = 0;
    loop {
        tokio::select! {
            d = &mut down, if !down_done => {
                down_done = true;
                moved = d.as_ref().map_or(0, |n| *n);
                if up_done { break; }
            }
            _ = &mut up, if !up_done => {
                up_done = true;
                if down_done { break; }
            }
            // The peer's side is dropped (stopped) with this function.
            () = tokio::time::sleep(LINGER), if down_done && !up_done => break,
        }
    }
    tracing::debug!(id, bytes = moved, "copy stream done");
    wait(child, id, shown).await;
}

async fn wait(mut child: tokio::process::Child, id: u64, shown: &str) {
    match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(Ok(status)) => tracing::info!(id, path = %shown, %status, "copy ended"),
        _ => {
            let _ = child.kill().await;
            tracing::info!(id, path = %shown, "copy child killed");
        }
    }
}
