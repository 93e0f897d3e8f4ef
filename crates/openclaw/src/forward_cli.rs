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
        let parts: Vec<&str> = text.split(':').collect();
        let port = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
        // The ssh -L forms a newcomer types: LOCAL:HOST:PORT, and an
        // address before the local port.
        let hint = match parts.as_slice() {
            [l, _, r] if port(l) && port(r) => format!(
                "; the node's end is always its own 127.0.0.1, so there is no host part: {l}:{r}"
            ),
            [a, l, r] if port(l) && port(r) => format!(
                "; to listen on {a:?} here, say --bind {a} {l}:{r} (the node's end is always its own 127.0.0.1)"
            ),
            [a, r] if !a.is_empty() && a.parse::<u16>().is_err() && port(r) => {
                format!("; to listen on {a:?} here, say --bind {a} {r}")
            }
            _ => String::new(),
        };
        format!(
            "{text:?} is not [LOCAL:]PORT; e.g. 8888 (the same port here) or 9000:8888 (local 9000 to the node's 8888){hint}"
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

/// [`parse_ports`] of the second argument, saying so when the two were
/// given the other way round (`forward 8888 worker-gpu-01`).
pub fn parse_args(node: &str, ports: &str) -> Result<(u16, u16), String> {
    parse_ports(ports).map_err(|e| {
        if parse_ports(node).is_ok() {
            format!("{e}; the node comes first: openclaw forward {ports} {node}")
        } else {
            e
        }
    })
}

/// Why `forward` cannot listen on `ip:port`, and what to do instead.
fn listen_error(ip: std::net::IpAddr, port: u16, e: &std::io::Error) -> String {
    let next = match e.kind() {
        std::io::ErrorKind::AddrNotAvailable => {
            "--bind takes an address of this machine (127.0.0.1, the default, or one 'ip addr' lists)"
        }
        std::io::ErrorKind::PermissionDenied if port < 1024 => {
            "ports below 1024 need root here; pick a local port above 1023 (LOCAL:PORT, e.g. 8080:80)"
        }
        _ => "pick another local port (LOCAL:PORT; 0:PORT picks a free one)",
    };
    format!("cannot listen on {ip}:{port}: {e}; {next}")
}

/// Serves the forward until Ctrl-C.
pub async fn run(home: &Home, node: String, ports: String, bind: String) -> Result<(), CliError> {
    let (local, port) = parse_args(&node, &ports).map_err(|e| CliError::new(exit::USAGE, e))?;
    let ip: std::net::IpAddr = bind.parse().map_err(|_| {
        CliError::new(
            exit::USAGE,
            format!("--bind {bind:?} is not an IP address; e.g. 127.0.0.1"),
        )
    })?;
    let client = Client::connect(home).await.map_err(run_error)?;
    // An unknown node fails now, not at the first connection; an offline
    // one is said now, and each connection is tried as it comes.
    if let proto::Response::Node(n) = client
        .call(proto::Request::NodeShow { name: node.clone() })
        .await
        .map_err(run_error)?
        && n.connection != "connected"
    {
        errln!(
            "openclaw: warning: node {node} is {} now: connections are refused until it is back ('openclaw node list')",
            crate::term::field(&n.connection)
        );
    }
    let listener = TcpListener::bind(SocketAddr::new(ip, local))
        .await
        .map_err(|e| CliError::new(exit::FAILURE, listen_error(ip, local, &e)))?;
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
    let (tcp_read, tcp_write) = tcp.into_split();
    let (up, down) = mesh::splice::splice(tcp_read, tcp_write, recv, send).await;
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
        // The ssh -L forms say what to type instead.
        for (bad, want) in [
            ("8888:localhost:8888", "no host part: 8888:8888"),
            ("9000:127.0.0.1:8888", "no host part: 9000:8888"),
            ("0.0.0.0:9000:8888", "--bind 0.0.0.0 9000:8888"),
            ("localhost:8888", "--bind localhost 8888"),
        ] {
            let e = parse_ports(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
        assert!(!parse_ports("x:80:").unwrap_err().contains("--bind"));
    }

    #[test]
    fn swapped_arguments_say_the_node_comes_first() {
        let e = super::parse_args("8888", "worker-gpu-01").unwrap_err();
        assert!(
            e.ends_with("the node comes first: openclaw forward worker-gpu-01 8888"),
            "{e}"
        );
        assert!(
            !super::parse_args("gpu", "x")
                .unwrap_err()
                .contains("comes first")
        );
        assert_eq!(super::parse_args("gpu", "9000:8888"), Ok((9000, 8888)));
    }

    #[test]
    fn a_listen_error_says_what_to_change() {
        use std::io::{Error, ErrorKind};
        let ip = std::net::IpAddr::from([10, 9, 8, 7]);
        let e = |k| super::listen_error(ip, 80, &Error::from(k));
        assert!(e(ErrorKind::AddrNotAvailable).contains("--bind takes an address of this machine"));
        assert!(e(ErrorKind::PermissionDenied).contains("below 1024"));
        assert!(e(ErrorKind::AddrInUse).contains("pick another local port"));
    }
}
