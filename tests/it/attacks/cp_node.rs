//! A compromised node answering `openclaw cp`, driven by hand: what it
//! says about a file must bound what the CLI writes.

use proto::files::{FileMsg, FileOp};

use super::{BIN, T};
use testkit::Lab;

#[test]
fn attack_a_node_sending_more_than_the_size_it_declared_is_cut_off() {
    // The node says the file holds 4 bytes, then sends megabytes without
    // an end: the CLI stops at the first byte past the size, removes its
    // partial file and says so, instead of filling the local disk.
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-liar", "cpu");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (conn, mut control, _keep) = rt.block_on(crate::forward::hand_driven_node(&lab, &home));
    lab.wait_node("worker-liar", "connected", T);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("f");
    let gw = lab.gw_home.clone();
    let cp = lab.spawn(
        &gw,
        &["cp", "-q", "worker-liar:/srv/f", &target.to_string_lossy()],
    );
    let _held = rt.block_on(async {
        let (id, op) = loop {
            let msg: proto::ControlMsg = mesh::read_frame(&mut control, proto::MAX_FRAME_LEN)
                .await
                .unwrap()
                .unwrap();
            if let proto::ControlMsg::Copy { id, op } = msg {
                break (id, op);
            }
        };
        assert!(matches!(op, FileOp::Get { .. }), "{op:?}");
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        mesh::write_frame(&mut send, &proto::Open::Copy { id, error: None })
            .await
            .unwrap();
        let ready = FileMsg::Ready {
            path: "/srv/f".into(),
            size: 4,
            mode: 0o644,
            mtime: 0,
            offset: 0,
            prefix: [0; 32],
        };
        mesh::write_frame(&mut send, &ready).await.unwrap();
        let start: FileMsg = mesh::read_frame(&mut recv, proto::files::FRAME_LIMIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(start, FileMsg::Start { offset: 0 });
        let chunk = FileMsg::Data(vec![b'x'; proto::files::CHUNK]);
        for _ in 0..16 {
            if mesh::write_frame(&mut send, &chunk).await.is_err() {
                break;
            }
        }
        // No End: the stream stays open, as a node that goes on would.
        (send, recv)
    });
    let done = cp.wait(T);
    assert_ne!(done.code, 0, "{done:?}");
    assert!(
        done.stderr.contains("more than the 4 bytes"),
        "{}",
        done.stderr
    );
    assert!(!target.exists(), "a file was written under the name");
    assert!(
        !out.path().join(".f.openclaw-part").exists(),
        "the partial file was kept"
    );
}

#[test]
fn attack_a_verdict_padded_past_the_relay_peek_still_reaches_the_audit() {
    // A node ends a download with an error message longer than the 4 KiB
    // the gateway used to decode on the way through: the copy must be
    // audited as failed with the node's words, not "ended without a result".
    let mut lab = Lab::new(BIN);
    lab.start_gateway();
    let home = lab.enroll("worker-pad", "cpu");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (conn, mut control, _keep) = rt.block_on(crate::forward::hand_driven_node(&lab, &home));
    lab.wait_node("worker-pad", "connected", T);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("f");
    let gw = lab.gw_home.clone();
    let cp = lab.spawn(
        &gw,
        &["cp", "-q", "worker-pad:/srv/f", &target.to_string_lossy()],
    );
    let _held = rt.block_on(async {
        let id = loop {
            let msg: proto::ControlMsg = mesh::read_frame(&mut control, proto::MAX_FRAME_LEN)
                .await
                .unwrap()
                .unwrap();
            if let proto::ControlMsg::Copy { id, .. } = msg {
                break id;
            }
        };
        let (mut send, recv) = conn.open_bi().await.unwrap();
        mesh::write_frame(&mut send, &proto::Open::Copy { id, error: None })
            .await
            .unwrap();
        let message = format!("disk on fire {}", "!".repeat(20_000));
        mesh::write_frame(&mut send, &FileMsg::Error { message })
            .await
            .unwrap();
        let _ = send.finish();
        (send, recv)
    });
    let done = cp.wait(T);
    assert_ne!(done.code, 0, "{done:?}");
    assert!(done.stderr.contains("disk on fire"), "{}", done.stderr);
    let rows = wait_for_audit(&lab);
    assert!(
        rows.iter()
            .any(|r| r.contains("worker-pad") && r.contains("failed: disk on fire")),
        "{rows:?}"
    );
}

/// The `cp` audit rows, once the gateway has written one.
fn wait_for_audit(lab: &Lab) -> Vec<String> {
    testkit::wait_until(T, "the copy's audit row", || {
        let rows = crate::cp::audit(&lab.gw_home);
        (!rows.is_empty()).then_some(rows)
    })
}
