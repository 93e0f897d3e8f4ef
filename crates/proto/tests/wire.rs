//! Golden encodings of the session and enrollment messages. The wire is
//! bincode, whose enum tags are variant positions: reordering, removing or
//! inserting a variant anywhere but at the end silently changes what an
//! older peer reads. These bytes were recorded from protocol 2
//! (`openclaw/1` and `openclaw/2` share them; protocol 3, `openclaw/3`,
//! appended the messages of a job's standard input); every later version must
//! still encode and decode them exactly, which is what lets the gateway
//! serve the previous ALPN (`proto::ALPN_SESSION_PREVIOUS`).
//!
//! A message added later gets its own line (run with OPENCLAW_BLESS=1 to
//! append missing lines; existing lines are never rewritten).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proto::*;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire.golden");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A named message: how to encode it, and whether bytes decode to it.
type Sample = (
    &'static str,
    Box<dyn Fn() -> Vec<u8>>,
    Box<dyn Fn(&[u8]) -> bool>,
);

/// A sample of every message kind that crosses a version boundary.
fn samples() -> Vec<Sample> {
    macro_rules! s {
        ($name:expr, $t:ty, $v:expr) => {
            (
                $name,
                Box::new(|| codec::encode::<$t>(&$v).unwrap()) as Box<dyn Fn() -> Vec<u8>>,
                Box::new(|b: &[u8]| codec::decode::<$t>(b).map(|d| d == $v).unwrap_or(false))
                    as Box<dyn Fn(&[u8]) -> bool>,
            )
        };
    }
    fn hello() -> NodeHello {
        NodeHello {
            protocol: 2,
            agent_version: "0.1.0".into(),
            gpus: 2,
            gpus_simulated: false,
            max_jobs: 8,
        }
    }
    vec![
        s!("open.control", Open, Open::Control(hello())),
        s!("open.heartbeat", Open, Open::Heartbeat),
        s!("open.request.whoami", Open, Open::Request(Request::Whoami)),
        s!(
            "open.request.node_list",
            Open,
            Open::Request(Request::NodeList)
        ),
        s!(
            "open.request.job_run",
            Open,
            Open::Request(Request::JobRun(JobSpec {
                node: Some("worker-gpu-01".into()),
                argv: vec!["nvidia-smi".into()],
                ..JobSpec::default()
            }))
        ),
        s!("open.job", Open, Open::Job { job_id: 7 }),
        s!(
            "request.job_cancel",
            Request,
            Request::JobCancel {
                id: 3,
                on_behalf_of: None
            }
        ),
        s!("request.time", Request, Request::Time),
        s!(
            "request.ca_rotate",
            Request,
            Request::CaRotate {
                step: CaStep::Rotate,
                force: false
            }
        ),
        s!("request.trust", Request, Request::Trust),
        s!("request.lab_summary", Request, Request::LabSummary),
        s!(
            "request.node_release",
            Request,
            Request::NodeRelease {
                name: "train-01".into()
            }
        ),
        s!(
            "response.lab_summary",
            Response,
            Response::LabSummary(LabSummary {
                nodes: vec![("healthy".into(), 2), ("offline".into(), 1)],
                gpus_free: 3,
                gpus_busy: 1,
                gpus_unhealthy: 0,
                jobs: vec![("exited".into(), 5)],
                pending: vec![],
            })
        ),
        s!(
            "request.node_history",
            Request,
            Request::NodeHistory {
                names: vec!["worker-gpu-01".into()]
            }
        ),
        s!(
            "response.node_history",
            Response,
            Response::NodeHistory(vec![NodeHistory {
                name: "worker-gpu-01".into(),
                every_secs: 15,
                samples: vec![GpuSample {
                    at: 1_700_000_000,
                    gpus: vec![GpuPoint {
                        index: 0,
                        util_pct: 97,
                        temp_c: 71,
                        mem_used_mib: 40_000
                    }]
                }]
            }])
        ),
        s!(
            "response.trust",
            Response,
            Response::Trust {
                cas_der: vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]]
            }
        ),
        s!(
            "control.trust",
            ControlMsg,
            ControlMsg::Trust {
                cas_der: vec![vec![0x30, 0x00], vec![0x30, 0x01, 0x00]]
            }
        ),
        s!(
            "response.identity",
            Response,
            Response::Identity {
                name: "admin".into(),
                role: Role::Admin,
                namespace: None
            }
        ),
        s!(
            "response.error",
            Response,
            Response::Error(ApiError::new(ErrorCode::NotFound, "no node named x"))
        ),
        s!(
            "response.error.unsatisfiable",
            Response,
            Response::Error(ApiError::new(
                ErrorCode::Unsatisfiable,
                "no gpu node has 3 GPUs"
            ))
        ),
        s!(
            "response.time",
            Response,
            Response::Time {
                unix_ms: 1_700_000_000_000
            }
        ),
        s!(
            "control.welcome",
            ControlMsg,
            ControlMsg::Welcome {
                heartbeat_interval_ms: 1000,
                gateway: "gw".into()
            }
        ),
        s!(
            "heartbeat",
            Heartbeat,
            Heartbeat {
                seq: 1,
                load1_milli: 250,
                mem_used: 1 << 30,
                mem_total: 4 << 30,
                running_jobs: 1,
                gpus: vec![],
                gpu_source: "none".into(),
                gpu_error: None,
            }
        ),
        s!(
            "job_frame.started",
            JobFrame,
            JobFrame::Started {
                pid: 4242,
                gpus: vec![0]
            }
        ),
        s!(
            "job_frame.exit",
            JobFrame,
            JobFrame::Exit {
                code: 3,
                timed_out: false,
                cancelled: false,
                killed: 1
            }
        ),
        s!(
            "job_ctl.ack",
            JobCtl,
            JobCtl::Ack {
                stdout: 10,
                stderr: 2
            }
        ),
        s!("job_ctl.done", JobCtl, JobCtl::Done),
        // Protocol 3: a job's standard input.
        s!(
            "open.request.job_run_input",
            Open,
            Open::Request(Request::JobRunInput(JobSpec {
                node: Some("worker-gpu-01".into()),
                argv: vec!["sha256sum".into()],
                ..JobSpec::default()
            }))
        ),
        s!("open.job_input", Open, Open::JobInput { job_id: 7 }),
        s!(
            "control.run_job_input",
            ControlMsg,
            ControlMsg::RunJobInput(JobPlan {
                job_id: 7,
                node: "worker-gpu-01".into(),
                argv: vec!["sha256sum".into()],
                cwd: None,
                env: vec![],
                timeout_secs: None,
                gpus: 0,
                kill_grace_secs: 10,
                run_as: None,
            })
        ),
        // Protocol 3 (issue 27): per-GPU health, unknown readings, which
        // GPUs a job held, a GPU failing under a job.
        s!(
            "heartbeat_v3",
            HeartbeatV3,
            HeartbeatV3 {
                beat: Heartbeat {
                    seq: 2,
                    gpus: vec![GpuTelemetry {
                        index: 0,
                        name: "NVIDIA H100 80GB HBM3".into(),
                        uuid: "GPU-1".into(),
                        mem_used: GPU_UNKNOWN_BYTES,
                        mem_total: GPU_UNKNOWN_BYTES,
                        util_pct: GPU_UNKNOWN,
                        temp_c: GPU_UNKNOWN,
                        job: None,
                        simulated: false,
                    }],
                    gpu_source: "nvml".into(),
                    ..Heartbeat::default()
                },
                health: vec![
                    GpuHealth::Unhealthy("lost: GPU is lost".into()),
                    GpuHealth::Healthy,
                    GpuHealth::Mig,
                ],
            }
        ),
        s!(
            "job_frame.gpus_held",
            JobFrame,
            JobFrame::GpusHeld {
                gpus: vec![HeldGpu {
                    index: 1,
                    uuid: "GPU-1".into(),
                    name: "NVIDIA H100 80GB HBM3".into()
                }]
            }
        ),
        s!(
            "job_frame.gpu_fault",
            JobFrame,
            JobFrame::GpuFault {
                reason: "GPU 0 (GPU-1) lost".into()
            }
        ),
        s!(
            "request.job_gpus",
            Request,
            Request::JobGpus {
                id: 9,
                on_behalf_of: None
            }
        ),
        s!(
            "response.job_gpus",
            Response,
            Response::JobGpus(vec![HeldGpu {
                index: 0,
                uuid: "GPU-1".into(),
                name: "H100".into()
            }])
        ),
        s!(
            "request.job_request",
            Request,
            Request::JobRequest(JobRequest {
                spec: JobSpec {
                    node: Some("worker-gpu-01".into()),
                    argv: vec!["python".into(), "train.py".into()],
                    ..JobSpec::default()
                },
                follow: Follow::AttachedWithInput,
                options: vec![
                    JobOption::Artifact("ckpt/*.pt".into()),
                    JobOption::Project("vision".into()),
                    JobOption::Priority(-3),
                    JobOption::Preemptible,
                ],
            })
        ),
        s!(
            "control.gateways",
            ControlMsg,
            ControlMsg::Gateways {
                addrs: vec!["10.0.0.2:7443".into(), "10.0.0.1:7443".into()]
            }
        ),
        s!("request.gateway_set", Request, Request::GatewaySet),
        s!(
            "request.gateway_leave",
            Request,
            Request::GatewayLeave {
                name: "gw-b".into()
            }
        ),
        s!(
            "response.gateway_set",
            Response,
            Response::GatewaySet(vec!["10.0.0.2:7443".into()])
        ),
        s!(
            "request.gpu_health",
            Request,
            Request::GpuHealth {
                names: vec!["gpu-a".into()]
            }
        ),
        s!(
            "response.gpu_health",
            Response,
            Response::GpuHealth(vec![(
                "gpu-a".into(),
                vec![GpuHealth::Unhealthy("lost".into()), GpuHealth::Healthy]
            )])
        ),
        // Protocol 3 (issue 23): copying files (`openclaw cp`).
        s!(
            "request.copy",
            Request,
            Request::Copy(files::CopyRequest {
                node: "worker-gpu-01".into(),
                op: files::FileOp::Put {
                    path: "/srv/lab/f".into(),
                    into_dir: Some("f".into()),
                    mode: Some(0o644),
                    mtime: Some(1_700_000_000),
                    resume: true,
                },
            })
        ),
        s!(
            "control.copy",
            ControlMsg,
            ControlMsg::Copy {
                id: 3,
                op: files::FileOp::Get {
                    path: "/srv/lab/f".into(),
                    offset: 5,
                },
            }
        ),
        s!(
            "open.copy",
            Open,
            Open::Copy {
                id: 3,
                error: Some("no".into())
            }
        ),
        s!(
            "file_msg.ready",
            files::FileMsg,
            files::FileMsg::Ready {
                path: "/srv/lab/f".into(),
                size: 9,
                mode: 0o600,
                mtime: 7,
                offset: 2,
                prefix: [1; 32],
            }
        ),
        s!(
            "file_msg.entry",
            files::FileMsg,
            files::FileMsg::Entry(files::Entry {
                name: "a/b".into(),
                kind: files::EntryKind::Symlink("../c".into()),
                mode: 0o777,
                mtime: -1,
                size: 4,
            })
        ),
        s!(
            "file_msg.data",
            files::FileMsg,
            files::FileMsg::Data(vec![0, 1, 2])
        ),
        s!(
            "control.run_job_with",
            ControlMsg,
            ControlMsg::RunJobWith(JobDispatch {
                plan: JobPlan {
                    job_id: 7,
                    node: "n1".into(),
                    argv: vec!["true".into()],
                    cwd: None,
                    env: vec![],
                    timeout_secs: None,
                    gpus: 0,
                    kill_grace_secs: 5,
                    run_as: None,
                },
                input: false,
                artifacts: ArtifactSpec {
                    patterns: vec!["ckpt/*.pt".into()],
                    max_file_bytes: 1 << 28,
                    max_job_bytes: 1 << 30,
                },
            })
        ),
        s!("open.artifacts", Open, Open::Artifacts { job_id: 7 }),
        s!(
            "artifact.frames",
            Vec<ArtifactFrame>,
            vec![
                ArtifactFrame::File {
                    name: "ckpt/last.pt".into(),
                    size: 3,
                    sha256: "ab".into()
                },
                ArtifactFrame::Chunk(vec![1, 2, 3]),
                ArtifactFrame::Skipped {
                    name: "link".into(),
                    reason: "a symlink".into()
                },
                ArtifactFrame::Done,
                ArtifactFrame::Note {
                    reason: "gone".into()
                },
            ]
        ),
        s!(
            "artifact.replies",
            Vec<ArtifactReply>,
            vec![
                ArtifactReply::Send,
                ArtifactReply::Skip {
                    reason: "cap".into()
                },
                ArtifactReply::Stored,
                ArtifactReply::Refused {
                    reason: "sum".into()
                },
                ArtifactReply::Finished,
                ArtifactReply::Rejected {
                    reason: "no".into()
                },
            ]
        ),
        s!(
            "request.job_artifacts",
            Request,
            Request::JobArtifacts {
                id: 7,
                on_behalf_of: None
            }
        ),
        s!(
            "request.artifact_get",
            Request,
            Request::ArtifactGet {
                id: 7,
                name: "metrics.json".into(),
                on_behalf_of: Some("U1".into())
            }
        ),
        s!(
            "response.artifacts",
            Response,
            Response::Artifacts(JobArtifacts {
                job: 7,
                patterns: vec!["*.json".into()],
                note: None,
                files: vec![ArtifactInfo {
                    name: "metrics.json".into(),
                    size: 2,
                    sha256: "ab".into(),
                    state: "stored".into(),
                    note: String::new(),
                }],
            })
        ),
        s!(
            "request.usage",
            Request,
            Request::Usage {
                since_secs: 604_800,
                by: UsageBy::Project,
                on_behalf_of: Some("slack:T1/U1".into()),
            }
        ),
        s!(
            "response.usage",
            Response,
            Response::Usage(UsageReport {
                since: 1_000,
                until: 605_800,
                by: UsageBy::Gpu,
                lines: vec![UsageLine {
                    key: "H100".into(),
                    gpu_seconds: 7_200,
                    jobs: 2,
                    wait_seconds: 30,
                }],
                days: vec![UsageDay {
                    day: 86_400,
                    key: "H100".into(),
                    gpu_seconds: 7_200,
                }],
                own_only: true,
                queue: vec![QueuePoint {
                    at: 3_600,
                    waiting: 4,
                    mean_wait_secs: 90,
                }],
            })
        ),
        s!(
            "response.artifact",
            Response,
            Response::Artifact(ArtifactInfo::default())
        ),
        s!(
            "request.queue",
            Request,
            Request::Queue { on_behalf_of: None }
        ),
        s!(
            "response.queue",
            Response,
            Response::Queue(QueueReport {
                now: 5_000,
                entries: vec![QueueEntry {
                    position: 1,
                    id: 42,
                    requester: "user:bob".into(),
                    project: Some("vision".into()),
                    gpus: 1,
                    priority: -2,
                    created_at: 4_000,
                    reason: "no free GPU".into(),
                    estimated_start: Some(6_000),
                }],
                total: 3,
            })
        ),
        // Interactive sessions (issue 23): a job on a terminal, its
        // recording.
        s!(
            "open.request.job_run_tty",
            Open,
            Open::Request(Request::JobRunTty {
                spec: JobSpec {
                    node: Some("worker-gpu-01".into()),
                    ..JobSpec::default()
                },
                tty: tty::Tty {
                    term: "xterm-256color".into(),
                    cols: 80,
                    rows: 24
                }
            })
        ),
        s!(
            "control.run_job_tty",
            ControlMsg,
            ControlMsg::RunJobTty {
                plan: JobPlan {
                    job_id: 7,
                    node: "worker-gpu-01".into(),
                    argv: vec![],
                    cwd: None,
                    env: vec![],
                    timeout_secs: None,
                    gpus: 0,
                    kill_grace_secs: 10,
                    run_as: None,
                },
                tty: tty::Tty {
                    term: "xterm".into(),
                    cols: 120,
                    rows: 40
                }
            }
        ),
        s!(
            "request.job_recording",
            Request,
            Request::JobRecording { id: 7, offset: 0 }
        ),
        s!(
            "response.recording",
            Response,
            Response::Recording {
                data: b"{}\n".to_vec(),
                total: 3
            }
        ),
        s!(
            "enroll.poll",
            EnrollRequest,
            EnrollRequest::Poll {
                request_id: "req-1".into()
            }
        ),
    ]
}

#[test]
fn messages_encode_and_decode_as_recorded() {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    let recorded: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .collect();
    let bless = std::env::var_os("OPENCLAW_BLESS").is_some();
    let mut missing = Vec::new();
    for (name, encode, decodes) in samples() {
        let now = hex(&encode());
        match recorded.iter().find(|(n, _)| *n == name) {
            Some((_, was)) => {
                assert_eq!(
                    &now, was,
                    "{name}: the encoding changed, so peers of the previous version would misread it; \
                     append new variants at the end of their enum instead"
                );
                assert!(
                    decodes(&unhex(was)),
                    "{name}: the recorded bytes no longer decode to it"
                );
            }
            None => missing.push(format!("{name} {now}")),
        }
    }
    if bless && !missing.is_empty() {
        let mut out = text.clone();
        for m in &missing {
            out.push_str(m);
            out.push('\n');
        }
        std::fs::write(GOLDEN, out).unwrap();
    } else {
        assert!(
            missing.is_empty(),
            "no recorded encoding for {missing:?}; run with OPENCLAW_BLESS=1 to record them"
        );
    }
}
