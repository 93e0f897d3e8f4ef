//! A fake peer gets no further than a QUIC one: the session decides who
//! it is from the certificate it presents and the state, as for every
//! peer (`session::serve`).

use proto::{CloseCode, ControlMsg, NodeHello, Open, Request, Response};

use super::secs;
use crate::harness::{FakePeer, Harness, frozen};

#[tokio::test(start_paused = true)]
async fn a_revoked_node_is_refused_and_a_connected_one_cut_off() {
    let h = Harness::start().await;
    let cert = h.enroll("worker-x", 0).await;
    let mut node = crate::harness::FakeNode::connect(&h, "worker-x", cert.clone(), 0).await;
    node.beat_every(secs(1));
    let revoked = h
        .call(Request::NodeRevoke {
            name: "worker-x".into(),
        })
        .await;
    assert!(!matches!(revoked, Response::Error(_)), "{revoked:?}");
    // The live connection is closed at once.
    let why = node.peer.close_reason().unwrap_or_default();
    assert!(
        why.contains(&CloseCode::Revoked.code().to_string()),
        "not closed as revoked: {why:?}"
    );
    // A new connection with the same certificate says hello and is
    // refused before its hello is read.
    let again = FakePeer::connect(&h, cert).await;
    let answer = frozen(async {
        let (mut send, mut recv) = again.open_bi().await;
        let hello = NodeHello {
            protocol: proto::PROTOCOL_VERSION,
            agent_version: "fake".into(),
            gpus: 0,
            gpus_simulated: true,
            max_jobs: 1,
        };
        let _ = mesh::write_frame(&mut send, &Open::Control(hello)).await;
        mesh::read_frame::<ControlMsg>(&mut recv, 64 * 1024).await
    })
    .await;
    assert!(
        !matches!(answer, Ok(Some(ControlMsg::Welcome { .. }))),
        "a revoked node was welcomed: {answer:?}"
    );
    let why = again.close_reason().unwrap_or_default();
    assert!(
        why.contains(&CloseCode::Revoked.code().to_string()),
        "not refused as revoked: {why:?}"
    );
}
