//! A node's artifact upload at the gateway (issue 23), driven by a fake
//! node that breaks the rules a real one keeps: a file over the cap is
//! refused before any byte moves, a wrong checksum is refused, and bytes
//! past a file's declared size cut the upload without being written.

use proto::{
    ArtifactFrame, ArtifactReply, ControlMsg, Follow, JobOption, JobRequest, Open, Request,
    Response,
};

use super::{secs, spec};
use crate::harness::{Harness, set};

const LIMIT: usize = 1 << 20;

fn sha(b: &[u8]) -> String {
    pki::hex(&pki::sha256(b))
}

#[tokio::test(start_paused = true)]
async fn attack_an_upload_past_its_caps_or_its_declared_size_is_refused_and_never_written() {
    let h = Harness::with_toml(|t| {
        set(
            t,
            "artifact_max_file_bytes = 268435456",
            "artifact_max_file_bytes = 1000",
        );
        set(t, "jobs = \"90d\"", "jobs = \"1h\"");
        set(t, "interval = \"1h\"", "interval = \"10m\"");
    })
    .await;
    let mut node = h.node("worker-cpu-01", 0).await;
    node.beat_every(secs(1));
    let req = Request::JobRequest(JobRequest {
        spec: spec("worker-cpu-01", &["train"]),
        follow: Follow::Detached,
        options: vec![JobOption::Artifact("*.bin".into())],
    });
    let id = match h.call(req).await {
        Response::Job(info) => info.id,
        other => panic!("{other:?}"),
    };
    // The node is told the patterns and the caps beside the plan.
    let d = loop {
        if let ControlMsg::RunJobWith(d) = node.next_control().await {
            break d;
        }
    };
    assert_eq!(d.plan.job_id, id);
    assert_eq!(d.artifacts.patterns, ["*.bin"]);
    assert_eq!(d.artifacts.max_file_bytes, 1000);
    let mut job = node.attach(id).await;
    job.started().await;
    super::wait_state(&h, id, proto::JobState::Running).await;

    let (mut send, mut recv) = node.peer.open_bi().await;
    mesh::write_frame(&mut send, &Open::Artifacts { job_id: id })
        .await
        .unwrap();
    let mut say = async |f: ArtifactFrame| mesh::write_frame(&mut send, &f).await.unwrap();
    let file = |name: &str, size: u64, sum: String| ArtifactFrame::File {
        name: name.into(),
        size,
        sha256: sum,
    };
    // Over the cap: refused before a byte moves.
    say(file("huge.bin", 1001, sha(b"x"))).await;
    // Within it, good.
    say(file("ok.bin", 3, sha(b"abc"))).await;
    say(ArtifactFrame::Chunk(b"abc".to_vec())).await;
    // A wrong checksum.
    say(file("bad.bin", 3, sha(b"abc"))).await;
    say(ArtifactFrame::Chunk(b"abd".to_vec())).await;
    // A name that leaves the directory.
    say(file("../up.bin", 3, sha(b"abc"))).await;
    // More bytes than declared.
    say(file("liar.bin", 4, sha(b"abcd"))).await;
    say(ArtifactFrame::Chunk(vec![b'z'; 900])).await;
    // The node has nothing more to say: whatever the gateway did, its
    // answers end.
    send.finish();
    let mut replies = Vec::new();
    while let Ok(Some(r)) = mesh::read_frame::<ArtifactReply>(&mut recv, LIMIT).await {
        replies.push(r);
    }
    let words: Vec<String> = replies
        .iter()
        .map(|r| match r {
            ArtifactReply::Skip { reason } => format!("skip: {reason}"),
            ArtifactReply::Refused { reason } => format!("refused: {reason}"),
            ArtifactReply::Rejected { reason } => format!("rejected: {reason}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(words.len(), 8, "{words:#?}");
    assert!(
        words[0].starts_with("skip: it is 1001 bytes; [limits] artifact_max_file_bytes is 1000"),
        "{words:#?}"
    );
    assert_eq!(words[1..3], ["Send", "Stored"], "{words:#?}");
    assert_eq!(words[3], "Send", "{words:#?}");
    assert!(
        words[4].starts_with("refused: its checksum did not match"),
        "{words:#?}"
    );
    assert!(
        words[5].starts_with("skip: '../up.bin' is not a relative path"),
        "{words:#?}"
    );
    assert_eq!(words[6], "Send", "{words:#?}");
    assert!(
        words[7].starts_with("rejected: a file sent more than the 4 bytes it declared"),
        "{words:#?}"
    );

    // Only the good file is on disk; nothing of the liar's bytes.
    let dir = h.shared.logs_dir.join(format!("{id}.artifacts"));
    let mut on_disk: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, [("2".to_string(), 3)], "{on_disk:?}");

    let list = match h
        .call(Request::JobArtifacts {
            id,
            on_behalf_of: None,
        })
        .await
    {
        Response::Artifacts(a) => a,
        other => panic!("{other:?}"),
    };
    let states: Vec<(String, String)> = list
        .files
        .iter()
        .map(|a| (a.name.clone(), a.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("huge.bin".to_string(), "refused".to_string()),
            ("ok.bin".into(), "stored".into()),
            ("bad.bin".into(), "refused".into()),
            ("../up.bin".into(), "refused".into()),
            ("liar.bin".into(), "refused".into()),
        ]
    );
    assert!(
        list.note
            .as_deref()
            .is_some_and(|n| n.contains("more than the 4 bytes it declared")),
        "{list:?}"
    );

    // They go with the job at retention: the files and the rows.
    job.exit(0).await;
    super::wait_state(&h, id, proto::JobState::Exited).await;
    h.within(
        "the job's artifacts are pruned",
        secs(3 * 3600),
        async || !dir.exists(),
    )
    .await;
    let rows = h
        .shared
        .store
        .call(move |tx| tx.artifacts(id))
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

/// A node that opens several upload streams for one job at once: each
/// would count only its own bytes against `artifact_max_job_bytes`, and
/// together keep that many times the cap on the gateway's disk.
#[tokio::test(start_paused = true)]
async fn attack_two_uploads_of_one_job_at_once_never_pass_the_job_cap() {
    let h = Harness::with_toml(|t| {
        set(
            t,
            "artifact_max_file_bytes = 268435456",
            "artifact_max_file_bytes = 1000",
        );
        set(
            t,
            "artifact_max_job_bytes = 1073741824",
            "artifact_max_job_bytes = 1000",
        );
    })
    .await;
    let mut node = h.node("worker-cpu-01", 0).await;
    node.beat_every(secs(1));
    let req = Request::JobRequest(JobRequest {
        spec: spec("worker-cpu-01", &["train"]),
        follow: Follow::Detached,
        options: vec![JobOption::Artifact("*.bin".into())],
    });
    let id = match h.call(req).await {
        Response::Job(info) => info.id,
        other => panic!("{other:?}"),
    };
    while !matches!(node.next_control().await, ControlMsg::RunJobWith(_)) {}
    let mut job = node.attach(id).await;
    job.started().await;
    super::wait_state(&h, id, proto::JobState::Running).await;

    let body = vec![b'x'; 1000];
    let over = ArtifactFrame::File {
        name: "huge.bin".into(),
        size: 2000,
        sha256: sha(b"x"),
    };
    let skipped = ArtifactFrame::Skipped {
        name: "a-link.bin".into(),
        reason: "a link".into(),
    };
    let file = |name: &str| ArtifactFrame::File {
        name: name.into(),
        size: 1000,
        sha256: sha(&body),
    };
    macro_rules! reply {
        ($recv:expr) => {
            mesh::read_frame::<ArtifactReply>(&mut $recv, LIMIT)
                .await
                .ok()
                .flatten()
        };
    }
    // Stream A: a file over the cap, refused: A's upload is under way.
    let (mut a_send, mut a_recv) = node.peer.open_bi().await;
    mesh::write_frame(&mut a_send, &Open::Artifacts { job_id: id })
        .await
        .unwrap();
    mesh::write_frame(&mut a_send, &over).await.unwrap();
    assert!(
        matches!(reply!(a_recv), Some(ArtifactReply::Skip { .. })),
        "A"
    );
    // Stream B, while A is open: two skipped names (so its files take
    // other numbers than A's), then a file over the cap. Its answer says
    // whether the gateway took it too.
    let (mut b_send, mut b_recv) = node.peer.open_bi().await;
    mesh::write_frame(&mut b_send, &Open::Artifacts { job_id: id })
        .await
        .unwrap();
    for f in [&skipped, &skipped, &over] {
        mesh::write_frame(&mut b_send, f).await.unwrap();
    }
    let b_first = reply!(b_recv);
    // A sends its file: kept.
    mesh::write_frame(&mut a_send, &file("a.bin"))
        .await
        .unwrap();
    mesh::write_frame(&mut a_send, &ArtifactFrame::Chunk(body.clone()))
        .await
        .unwrap();
    assert!(matches!(reply!(a_recv), Some(ArtifactReply::Send)));
    assert!(matches!(reply!(a_recv), Some(ArtifactReply::Stored)));
    // B sends its own, if it is still heard.
    if matches!(b_first, Some(ArtifactReply::Skip { .. })) {
        let _ = mesh::write_frame(&mut b_send, &file("b.bin")).await;
        let _ = mesh::write_frame(&mut b_send, &ArtifactFrame::Chunk(body.clone())).await;
        let _ = reply!(b_recv);
        let _ = reply!(b_recv);
    } else {
        assert!(
            matches!(&b_first, Some(ArtifactReply::Rejected { reason }) if reason.contains("already being uploaded")),
            "{b_first:?}"
        );
    }
    let dir = h.shared.logs_dir.join(format!("{id}.artifacts"));
    let kept: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(kept <= 1000, "{kept} bytes kept for a job capped at 1000");
    assert!(kept > 0, "one of the uploads is kept");
}
