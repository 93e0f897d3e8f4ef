//! Path MTU discovery as the mesh configures it when `udp_payload_max`
//! raises it (opt-in; the default is quinn's 1,452): on loopback (MTU
//! 65,536) both directions of a connection grow their datagrams past
//! 1,452 bytes, which needs both the transports' upper bound and the
//! endpoints' announced payload limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn loopback_datagrams_grow_past_ethernet_size_both_ways() {
    // The peers check validity against the real clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let (ca_pem, ca_key) = pki::generate_ca("mtu", now).unwrap();
    let ca = pki::Ca::load(&ca_pem, &ca_key).unwrap();
    let (server, server_key) = ca.issue_server("mtu", 3600, now).unwrap();
    let ckey = pki::generate_key().unwrap();
    let ccert = ca
        .issue_client("mtu-client", proto::Role::Admin, &ckey.spki_der, 3600, now)
        .unwrap();
    let server_cfg = mesh::tls::server_config(
        &format!("{}{}", server.pem, ca_pem),
        &server_key,
        &ca_pem,
        Arc::new(mesh::RevokedSerials::default()),
        {
            let mut t = mesh::tls::server_transport(Duration::from_secs(10)).unwrap();
            mesh::tls::set_udp_payload_max(&mut t, mesh::tls::UDP_PAYLOAD_RANGE.1);
            t
        },
    )
    .unwrap();
    let endpoint = mesh::server_endpoint(server_cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        (endpoint, conn)
    });
    let client_cfg = mesh::tls::session_client_config(&ca_pem, &ccert.pem, &ckey.key_pem, {
        let mut t =
            mesh::tls::client_transport(Duration::from_secs(1), Duration::from_secs(10)).unwrap();
        mesh::tls::set_udp_payload_max(&mut t, mesh::tls::UDP_PAYLOAD_RANGE.1);
        t
    })
    .unwrap();
    let client = mesh::client_endpoint(addr).unwrap();
    let conn = client
        .connect_with(client_cfg, addr, proto::GATEWAY_SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    let (_endpoint, server_conn) = accept.await.unwrap();
    // Probes go out on their own once the handshake is confirmed; the
    // keep-alive gives quinn occasions to send them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut up, mut down) = (0, 0);
    while Instant::now() < deadline {
        up = conn.stats().path.current_mtu;
        down = server_conn.stats().path.current_mtu;
        if up > 1500 && down > 1500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        up > 1500 && down > 1500,
        "path MTU stayed at client→server {up}, server→client {down} bytes on loopback"
    );

    // A bulk transfer at that size: quinn sends 10 datagrams per system
    // call (GSO), and a batch over the kernel's 64 KiB is refused whole.
    // An upper bound that lets that happen loses every full batch, and
    // quinn then declares a black hole and drops back to 1,200 bytes.
    // As the gateway does once a node's certificate is checked: a new
    // peer may open no unidirectional streams.
    mesh::tls::widen_limits(&server_conn, proto::Role::Node, mesh::tls::NODE_WINDOW);
    let reader = tokio::spawn(async move {
        let mut recv = server_conn.accept_uni().await.unwrap();
        let mut got = 0usize;
        while let Some(c) = recv.read_chunk(1 << 20, true).await.unwrap() {
            got += c.bytes.len();
        }
        (server_conn, got)
    });
    let transfer = async {
        let mut send = conn.open_uni().await.unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..64 {
            send.write_all(&block).await.unwrap();
        }
        send.finish().unwrap();
        reader.await.unwrap()
    };
    let (_server_conn, got) = tokio::time::timeout(Duration::from_secs(120), transfer)
        .await
        .expect("64 MiB over loopback within 2 minutes");
    assert_eq!(got, 64 << 20);
    let path = conn.stats().path;
    assert_eq!(
        (path.black_holes_detected, path.current_mtu > 1500),
        (0, true),
        "after 64 MiB: path MTU {}, {} black holes, {} packets lost",
        path.current_mtu,
        path.black_holes_detected,
        path.lost_packets
    );
}

#[test]
fn the_upper_bound_is_clamped_to_what_udp_carries() {
    // Out-of-range bounds are clamped, not refused: node.toml's value is
    // checked with an error before it gets here.
    let mut t = quinn::TransportConfig::default();
    mesh::tls::set_udp_payload_max(&mut t, 0);
    assert!(format!("{t:?}").contains("upper_bound: 1200"), "{t:?}");
    mesh::tls::set_udp_payload_max(&mut t, u16::MAX);
    assert!(format!("{t:?}").contains("upper_bound: 6550"), "{t:?}");
}
