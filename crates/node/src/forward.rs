//! The node's half of a port forward (`openclaw forward`).
//!
//! The gateway asks over the control stream (`ControlMsg::Forward`); the
//! node connects to 127.0.0.1:PORT only if node.toml `forward_ports`
//! lists the port, then opens an `Open::Forward` stream (it still only
//! dials out) and copies bytes both ways until both directions end. A
//! refusal travels back on the same stream, naming the rule.

use std::time::Duration;

use mesh::home::NodePolicy;
use proto::Open;
use tokio::net::TcpStream;

/// How long connecting to the local port may take.
const CONNECT: Duration = Duration::from_secs(5);

/// Answers forward `id` to `port`: connects (if policy allows) and relays.
pub async fn answer(conn: quinn::Connection, node: String, policy: NodePolicy, id: u64, port: u16) {
    let tcp = match open_local(&node, &policy, port).await {
        Ok(tcp) => Some(tcp),
        Err(e) => {
            tracing::info!(id, port, "forward refused: {e}");
            if let Ok((mut send, _recv)) = conn.open_bi().await {
                let open = Open::Forward { id, error: Some(e) };
                if mesh::write_frame(&mut send, &open).await.is_ok() {
                    let _ = send.finish();
                }
            }
            None
        }
    };
    let Some(tcp) = tcp else { return };
    let (mut send, recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(id, port, error = %e, "cannot open the forward's stream");
            return;
        }
    };
    if mesh::write_frame(&mut send, &Open::Forward { id, error: None })
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(id, port, "forward open");
    let (tcp_read, tcp_write) = tcp.into_split();
    let (up, down) = mesh::splice::splice(tcp_read, tcp_write, recv, send).await;
    tracing::info!(
        id,
        port,
        to_gateway = up.as_ref().map_or(0, |n| *n),
        from_gateway = down.as_ref().map_or(0, |n| *n),
        "forward closed"
    );
}

/// Connects to 127.0.0.1:`port` if `policy` allows it.
async fn open_local(node: &str, policy: &NodePolicy, port: u16) -> Result<TcpStream, String> {
    if !policy.forward_allowed(port)? {
        return Err(format!(
            "port {port} is not in forward_ports in node {node}'s node.toml ([policy]) as its agent read it at start; add it there and restart the agent (a restart ends its running jobs)"
        ));
    }
    match tokio::time::timeout(CONNECT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(tcp)) => Ok(tcp),
        Ok(Err(e)) => Err(format!(
            "cannot connect to 127.0.0.1:{port} on node {node}: {e} (is the service listening there?)"
        )),
        Err(_) => Err(format!(
            "connecting to 127.0.0.1:{port} on node {node} took over {CONNECT:?}"
        )),
    }
}
