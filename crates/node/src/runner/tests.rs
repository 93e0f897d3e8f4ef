use super::*;

fn plan(argv: &[&str], cwd: Option<&str>) -> JobPlan {
    JobPlan {
        job_id: 7,
        node: "n".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: cwd.map(str::to_string),
        env: vec![("LD_PRELOAD".into(), "x".into()), ("A".into(), "1".into())],
        timeout_secs: None,
        gpus: 0,
        kill_grace_secs: 1,
        run_as: None,
    }
}

/// A job of `true` whose spool lives in `dir`, not started (pumps and
/// spools are driven by hand).
fn idle_job(dir: &std::path::Path) -> Arc<Job> {
    Job::new(
        proto::JobDispatch {
            plan: plan(&["true"], None),
            input: false,
            artifacts: proto::ArtifactSpec::default(),
        },
        None,
        dir,
    )
}

#[test]
fn node_policy_table() {
    let open = NodePolicy::default();
    let strict = NodePolicy {
        allowed_commands: vec!["python*".into(), "/usr/bin/*".into()],
        env_allow: vec!["A".into()],
        ..NodePolicy::default()
    };
    let off = NodePolicy {
        system_run: false,
        ..NodePolicy::default()
    };
    let mut clean = plan(&["rm", "-rf", "/"], None);
    clean.env.retain(|(k, _)| k == "A");
    assert!(check_policy(&open, "n", &clean).is_ok());
    let mut py = plan(&["python3", "t.py"], Some("/srv/lab/x"));
    py.env.retain(|(k, _)| k == "A");
    assert!(check_policy(&strict, "n", &py).is_ok());
    let e = check_policy(&strict, "n", &plan(&["bash"], Some("/srv/lab"))).unwrap_err();
    assert!(e.contains("does not allow the command"), "{e}");
    // A loader variable from the gateway is refused on the node too,
    // even with env_allow = ["*"].
    let e = check_policy(&open, "n", &plan(&["python3"], None)).unwrap_err();
    assert!(
        e.contains("LD_PRELOAD") && e.contains("refused by policy"),
        "{e}"
    );
    // So is a GPU-stack loader.
    let mut cuda = plan(&["python3"], None);
    cuda.env = vec![("CUDA_INJECTION64_PATH".into(), "/tmp/x.so".into())];
    let e = check_policy(&open, "n", &cuda).unwrap_err();
    assert!(
        e.contains("CUDA_INJECTION64_PATH") && e.contains("refused by policy"),
        "{e}"
    );
    let e = check_policy(&off, "n", &plan(&["true"], None)).unwrap_err();
    assert!(e.contains("system.run is disabled"), "{e}");
}

#[test]
fn cwds_are_whole_component_prefixes() {
    let allowed = vec!["/srv/lab".to_string()];
    let p = std::path::Path::new;
    assert!(cwd_allowed(&allowed, p("/srv/lab")));
    assert!(cwd_allowed(&allowed, p("/srv/lab/exp42")));
    assert!(!cwd_allowed(&allowed, p("/srv/lab-evil")));
    assert!(!cwd_allowed(&allowed, p("/srv")));
    assert!(!cwd_allowed(&allowed, p("/etc")));
    assert!(cwd_allowed(&[], p("/etc")));
}

#[test]
fn env_is_clean_and_identity_wins() {
    let user = crate::jail::JobUser {
        name: "lab".into(),
        uid: 1000,
        gid: 1000,
        home: "/home/lab".into(),
    };
    let mut pl = plan(&["x"], None);
    pl.env
        .push(("CUDA_VISIBLE_DEVICES".into(), "0,1,2,3".into()));
    pl.env
        .push(("CUDA_DEVICE_ORDER".into(), "FASTEST_FIRST".into()));
    let held = |i: u32, uuid: &str| proto::HeldGpu {
        index: i,
        uuid: uuid.into(),
        name: "H100".into(),
    };
    let sim = [held(0, "GPU-sim-ab-0000"), held(2, "GPU-sim-ab-0002")];
    let env = job_env(
        &pl,
        "worker-gpu-01",
        &crate::plan::visible_devices(&sim, false),
        &user,
        "lab",
        "/usr/bin:/bin",
    );
    assert!(env.iter().all(|(k, _)| k != "LD_PRELOAD"));
    assert!(env.contains(&("A".into(), "1".into())));
    assert!(env.contains(&("HOME".into(), "/home/lab".into())));
    assert!(env.contains(&("PATH".into(), "/usr/bin:/bin".into())));
    assert!(env.contains(&("OPENCLAW_JOB_ID".into(), "7".into())));
    assert!(env.contains(&("OPENCLAW_NODE".into(), "worker-gpu-01".into())));
    assert!(env.contains(&("USER".into(), "lab".into())));
    assert!(env.contains(&("LOGNAME".into(), "lab".into())));
    assert!(env.contains(&("TMPDIR".into(), "/tmp".into())));
    let cuda: Vec<_> = env
        .iter()
        .filter(|(k, _)| k == "CUDA_VISIBLE_DEVICES")
        .collect();
    assert_eq!(
        cuda,
        vec![&("CUDA_VISIBLE_DEVICES".to_string(), "0,2".to_string())]
    );
    // GPU indices are read in NVML's (PCI bus) order, whatever the plan says.
    let order: Vec<_> = env
        .iter()
        .filter(|(k, _)| k == "CUDA_DEVICE_ORDER")
        .collect();
    assert_eq!(
        order,
        vec![&("CUDA_DEVICE_ORDER".to_string(), "PCI_BUS_ID".to_string())]
    );
    // Real GPUs are named by UUID, which no order or renumbering changes;
    // one unknown UUID (a lost GPU's) falls back to indices.
    let real = [held(0, "GPU-aaa"), held(2, "GPU-ccc")];
    assert_eq!(
        crate::plan::visible_devices(&real, true),
        vec!["GPU-aaa".to_string(), "GPU-ccc".to_string()]
    );
    assert_eq!(
        crate::plan::visible_devices(&[held(0, "GPU-aaa"), held(2, "")], true),
        vec!["0".to_string(), "2".to_string()]
    );
    // A job with no GPUs sees none.
    let env = job_env(&plan(&["x"], None), "n", &[], &user, "lab", "/bin");
    assert!(env.contains(&("CUDA_VISIBLE_DEVICES".into(), String::new())));
}

#[test]
fn a_job_uid_is_its_own_login_name() {
    let user = crate::jail::JobUser {
        name: "nobody".into(),
        uid: 65534,
        gid: 65534,
        home: "/nonexistent".into(),
    };
    assert_eq!(login_name(&user, false), "nobody");
    // A uid of job_uids names no account: USER is the uid, so two jobs
    // never share /tmp/torchinductor_$USER and the like.
    let own = user.with_uid(61003, "/var/lib/openclaw/jobs-n-1/job-3");
    assert_eq!(login_name(&own, true), "61003");
    assert_ne!(
        login_name(&user.with_uid(61000, "/x"), true),
        login_name(&own, true)
    );
}

#[test]
fn gpus_are_never_shared() {
    let pool = GpuPool::new(2);
    let a = pool.take(1, 9).unwrap();
    let b = pool.take(1, 9).unwrap();
    assert_ne!(a.ids, b.ids);
    assert_eq!(pool.holders().len(), 2);
    assert!(pool.take(1, 9).is_none());
    drop(a);
    let c = pool.take(1, 9).unwrap();
    assert_eq!(c.ids, vec![0]);
    assert!(pool.take(2, 9).is_none());
    assert_eq!(pool.take(0, 9).unwrap().ids, Vec::<u32>::new());
}

#[test]
fn a_full_spool_waits_for_an_attached_gateway_and_spills_otherwise() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let job = idle_job(dir.path());
        let mb = bytes::Bytes::from(vec![b'x'; 1 << 20]);
        for _ in 0..crate::spool::MEM_CAP >> 20 {
            job.push(OutStream::Stdout, mb.clone()).await.unwrap();
        }
        let spill = dir.path().join(format!("{}.stdout", job.plan.job_id));
        // Attached and acking: the next write waits, nothing spills.
        job.set_attached(true);
        let pushed = tokio::time::timeout(
            Duration::from_millis(200),
            job.push(OutStream::Stdout, mb.clone()),
        )
        .await;
        assert!(pushed.is_err(), "it waited for an ack");
        assert!(!spill.exists(), "and did not spill");
        // An ack frees memory: the write goes on, still in memory.
        job.with(|j| {
            j.out[0].ack(1 << 20);
            j.last_ack = Instant::now();
        });
        job.changed.notify_waiters();
        job.push(OutStream::Stdout, mb.clone()).await.unwrap();
        assert!(!spill.exists());
        // A gateway that stopped acking: the job spills rather than block.
        job.with(|j| j.last_ack = Instant::now() - SPILL_AFTER_STALL);
        job.push(OutStream::Stdout, mb.clone()).await.unwrap();
        assert!(spill.exists(), "spilled after the stall");
        // Detached: it spills at once.
        job.set_attached(false);
        job.push(OutStream::Stdout, mb.clone()).await.unwrap();
        assert_eq!(
            job.with(|j| j.out[0].total()),
            (crate::spool::MEM_CAP >> 20) * (1 << 20) + 3 * (1 << 20)
        );
    });
}

#[test]
fn an_empty_job_directory_goes_at_once_and_a_full_one_on_drop() {
    let t = tempfile::tempdir().unwrap();
    let root = Arc::new(crate::jobdir::WorkRoot::prepare(&t.path().join("w"), true, "n1").unwrap());
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let empty = root.make(1, me.0, me.1).unwrap();
    assert!(root.job_path(1).is_dir());
    assert!(empty.remove_if_empty());
    assert!(!root.job_path(1).exists(), "removed before the drop");
    drop(empty);
    let full = root.make(2, me.0, me.1).unwrap();
    std::fs::write(root.job_path(2).join("f"), b"x").unwrap();
    assert!(
        !full.remove_if_empty(),
        "a directory with a file is not empty"
    );
    assert!(root.job_path(2).join("f").exists(), "nothing was removed");
    drop(full);
    assert!(
        !root.job_path(2).exists(),
        "the drop removes it with all in it"
    );
}

/// A pipe that returns one scripted chunk per read.
struct Script(std::collections::VecDeque<Vec<u8>>);

impl tokio::io::AsyncRead for Script {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(mut c) = self.0.pop_front() {
            let n = c.len().min(buf.remaining());
            buf.put_slice(&c[..n]);
            if n < c.len() {
                self.0.push_front(c.split_off(n));
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

#[test]
fn a_small_read_after_a_burst_does_not_pin_a_large_buffer() {
    // A hostile job grows the pump's reads to 256 KiB with a burst, then
    // writes a byte at a time: each byte must not hold a buffer of its
    // own in the spool (16 MiB of spooled bytes would be terabytes).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let job = idle_job(dir.path());
        let mut script: std::collections::VecDeque<Vec<u8>> = [16usize, 64, 256, 256]
            .iter()
            .map(|k| vec![b'a'; k << 10])
            .collect();
        let burst = script.iter().map(Vec::len).sum::<usize>() as u64;
        let small = 64u64;
        script.extend((0..small).map(|_| vec![b'x']));
        output::pump(
            Script(script),
            OutStream::Stdout,
            job.clone(),
            tokio::sync::watch::channel(false).1,
        )
        .await;
        // Every byte reached the spool once, in order.
        let mut got = Vec::new();
        let mut off = 0;
        loop {
            let cs = job.with(|j| j.out[0].read_from(off, u64::MAX)).unwrap();
            if cs.is_empty() {
                break;
            }
            for c in cs {
                off += c.len() as u64;
                got.push(c);
            }
        }
        assert_eq!(off, burst + small);
        let all: Vec<u8> = got.iter().flat_map(|c| c.iter().copied()).collect();
        assert!(all[..burst as usize].iter().all(|&b| b == b'a'));
        assert!(all[burst as usize..].iter().all(|&b| b == b'x'));
        // What the one-byte chunks hold once nothing else does.
        let tail: Vec<bytes::Bytes> = got.split_off(got.len() - small as usize);
        drop(got);
        job.with(|j| j.out[0].ack(burst + small));
        let mut pinned = 0;
        for c in tail {
            assert_eq!(c.len(), 1);
            if let Ok(m) = c.try_into_mut() {
                pinned += m.capacity();
            }
        }
        // At most one read buffer (256 KiB) that later output would fill,
        // never one per byte.
        assert!(
            pinned <= (256 << 10) + 2 * small as usize,
            "{small} bytes of output pin {pinned} bytes of buffers"
        );
    });
}

/// What `job`'s stdout spool holds from its first byte.
fn spooled(job: &Arc<Job>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let cs = job.with(|j| j.out[0].read_from(off, u64::MAX)).unwrap();
        if cs.is_empty() {
            return got;
        }
        for c in cs {
            off += c.len() as u64;
            got.extend_from_slice(&c);
        }
    }
}

#[test]
fn a_pipe_held_open_outside_the_job_does_not_keep_the_job_from_ending() {
    // A job hands its stdout to a process outside its tree (another job,
    // over a unix socket) and exits: the pipe never reaches end of file.
    // Once the job's processes are gone, what they wrote is spooled and
    // the pump stops when nothing more comes for a while, or, against a
    // writer that never pauses that long, a minute after the end.
    use tokio::io::AsyncWriteExt as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for trickle in [false, true] {
            let job = idle_job(dir.path());
            let (mut outside, pipe) = tokio::io::duplex(1 << 16);
            outside.write_all(b"before the end\n").await.unwrap();
            let mut pumps = output::Pumps::default();
            pumps.pipe(pipe, OutStream::Stdout, &job);
            // Still running: the pump waits as long as it takes.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            outside.write_all(b"while it runs\n").await.unwrap();
            let writer = tokio::spawn(async move {
                // A dot a second, for ever (the pump must stop all the same).
                if trickle {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if outside.write_all(b".").await.is_err() {
                            return;
                        }
                    }
                }
                // Held open, silent, far past the drain.
                tokio::time::sleep(Duration::from_secs(86_400)).await;
                drop(outside);
            });
            let done = tokio::time::timeout(Duration::from_secs(600), pumps.drain()).await;
            assert!(
                done.is_ok(),
                "trickle {trickle}: the pump still waits on a pipe held outside the job"
            );
            let got = spooled(&job);
            assert!(
                got.starts_with(b"before the end\nwhile it runs\n"),
                "trickle {trickle}: {got:?}"
            );
            if !trickle {
                assert_eq!(got, b"before the end\nwhile it runs\n", "every byte once");
            }
            // Its requester is told why, once, on stderr.
            let told: Vec<u8> = job
                .with(|j| j.out[1].read_from(0, u64::MAX))
                .unwrap()
                .iter()
                .flat_map(|c| c.iter().copied())
                .collect();
            assert_eq!(told, output::HELD_NOTE, "trickle {trickle}");
            writer.abort();
        }
    });
}
