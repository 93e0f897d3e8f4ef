//! `openclaw forward NODE [LOCAL:]PORT`: a local TCP port that reaches a
//! port on a node's loopback through the gateway, as `ssh -L` does. Each
//! accepted connection is one QUIC stream (`Request::Forward`); the node
//! connects only to ports its node.toml `forward_ports` lists.

use std::net::SocketAddr;
use std::sync::Arc;

use client::{Client, ClientError};
use mesh::Home;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::commands::CliError;
use crate::exit;
use crate::jobs_cli::run_error;
use crate::term::errln;

/// `PORT` or `LOCAL:PORT` as (local, remote); local 0 picks a free port.
pub fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "{text:?} is not [LOCAL:]PORT; e.g. 8888 (the same port here) or 9000:8888 (local 9000 to the node's 8888)"
        )
    };
    let (local, remote) = match text.split_once(':') {
        Some((l, r)) => (Some(l.parse::<u16>().map_err(|_| bad())?), r),
        None => (None, text),
    };
    let remote = remote
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    Ok((local.unwrap_or(remote), remote))
}

/// Serves the forward until Ctrl-C.
pub async fn run(home: &Home, node: String, ports: String, bind: String) -> Result<(), CliError> {
    let (local, port) = parse_ports(&ports).map_err(|e| CliError::new(exit::USAGE, e))?;
    let ip: std::net::IpAddr = bind.parse().map_err(|_| {
        CliError::new(
            exit::USAGE,
            format!("--bind {bind:?} is not an IP address; e.g. 127.0.0.1"),
        )
    })?;
    let client = Client::connect(home).await.map_err(run_error)?;
    // An unknown node fails now, not at the first connection.
    client
        .call(proto::Request::NodeShow { name: node.clone() })
        .await
        .map_err(run_error)?;
    let listener = TcpListener::bind(SocketAddr::new(ip, local))
        .await
        .map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("cannot listen on {ip}:{local}: {e}; pick another local port (LOCAL:PORT)"),
            )
        })?;
    let here = listener.local_addr().map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("cannot read the listening address: {e}"),
        )
    })?;
    if !ip.is_loopback() {
        errln!(
            "openclaw: listening on {here}, beyond loopback: anyone who can reach it reaches port {port} on {node}"
        );
    }
    errln!("openclaw: forwarding {here} to 127.0.0.1:{port} on {node}; Ctrl-C stops");
    let client = Arc::new(Mutex::new(client));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::signal::ctrl_c() => {
                errln!("openclaw: forward stopped");
                client.lock().await.close().await;
                return Ok(());
            }
        };
        let (tcp, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                errln!("openclaw: cannot accept a connection: {e}");
                continue;
            }
        };
        let (home, client, node) = (home.clone(), client.clone(), node.clone());
        tokio::spawn(async move {
            if let Err(e) = one(&home, &client, &node, port, tcp).await {
                errln!(
                    "openclaw: connection from {from} to {node}:{port}: {}",
                    crate::term::field(&e.to_string())
                );
            }
        });
    }
}

/// Carries one accepted connection; a lost gateway connection is made
/// again once.
async fn one(
    home: &Home,
    client: &Mutex<Client>,
    node: &str,
    port: u16,
    tcp: TcpStream,
) -> Result<(), ClientError> {
    let opened = {
        let c = client.lock().await;
        c.open_forward(node, port).await
    };
    let (send, recv) = match opened {
        Ok(s) => s,
        Err(ClientError::Connect { .. } | ClientError::Protocol(_)) => {
            let fresh = Client::connect(home).await?;
            let s = fresh.open_forward(node, port).await?;
            *client.lock().await = fresh;
            s
        }
        Err(e) => return Err(e),
    };
    let (up, down) = mesh::splice::splice(tcp, send, recv).await;
    match (up, down) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(e), _) | (_, Err(e)) => Err(ClientError::Protocol(format!(
            "the forwarded connection broke: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::parse_ports;

    #[test]
    fn ports_are_port_or_local_colon_port() {
        assert_eq!(parse_ports("8888"), Ok((8888, 8888)));
        assert_eq!(parse_ports("9000:8888"), Ok((9000, 8888)));
        assert_eq!(parse_ports("0:8888"), Ok((0, 8888)));
        // The highest local port is a port, not "none given".
        assert_eq!(parse_ports("65535:8888"), Ok((65535, 8888)));
        assert_eq!(parse_ports("65535"), Ok((65535, 65535)));
        for bad in ["", "0", ":", "x:80", "80:", "70000", "1:2:3", "-1"] {
            let e = parse_ports(bad).unwrap_err();
            assert!(e.contains("[LOCAL:]PORT"), "{bad}: {e}");
        }
    }
}
