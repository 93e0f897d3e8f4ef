use super::*;

/// A node that drops to `nobody`, each job with a uid of its own.
pub(super) fn jailed_node(lab: &mut Lab) -> std::path::PathBuf {
    let home = lab.enroll("worker-jail", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    edit_file(
        &home.join("node.toml"),
        "# job_uids = \"61000-61999\"",
        "job_uids = \"61000-61999\"",
    );
    home
}

/// A lab with a jailed node running, or `None` (SKIPPED) without root.
fn running_jail() -> Option<(Lab, std::path::PathBuf, testkit::Proc)> {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return None;
    }
    let mut lab = lab_with(&[]);
    let home = jailed_node(&mut lab);
    let agent = lab.start_node(&home);
    lab.wait_node("worker-jail", "connected", T);
    Some((lab, home, agent))
}

#[test]
fn attack_job_cannot_read_the_node_key_or_spool() {
    let Some((lab, home, _agent)) = running_jail() else {
        return;
    };
    let out = lab
        .run_job(&["--node", "worker-jail", "--", "id", "-u"])
        .ok();
    let uid: u32 = out.stdout.trim().parse().unwrap();
    assert!((61000..62000).contains(&uid), "{uid}");
    // The lab's homes lie below the node's /tmp, which a job does not see
    // at all (its /tmp is its own); a home elsewhere is closed by its
    // modes, checked here from the node's side.
    for target in ["node.key", "spool", "node.toml"] {
        let path = home.join(target);
        let out = lab.run_job(&[
            "--node",
            "worker-jail",
            "--",
            "ls",
            "-la",
            path.to_str().unwrap(),
        ]);
        assert_ne!(out.code, 0, "{target}: {out:?}");
        let hidden = if ["/tmp", "/var/tmp", "/dev/shm"]
            .iter()
            .any(|t| home.starts_with(t))
        {
            "No such file or directory"
        } else {
            "Permission denied"
        };
        assert!(out.stderr.contains(hidden), "{out:?}");
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700, "the node's home is its own");
        assert_eq!(mode(&home.join("node.key")), 0o600);
        assert_eq!(mode(&home.join("spool")), 0o700);
    }
    let key = home.join("node.key");
    let out = lab.run_job(&["--node", "worker-jail", "--", "cat", key.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(!out.stdout.contains("PRIVATE KEY"), "{out:?}");
    // No way back up: setuid programs cannot raise it (no_new_privs).
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--",
            "grep",
            "NoNewPrivs",
            "/proc/self/status",
        ])
        .ok();
    assert!(out.stdout.contains('1'), "{}", out.stdout);
}

#[test]
fn attack_job_cannot_read_another_jobs_files() {
    let Some((lab, _home, _agent)) = running_jail() else {
        return;
    };
    // Job A keeps a secret in its private directory and waits.
    let a = lab.detach(&[
        "--node",
        "worker-jail",
        "--",
        "sh",
        "-c",
        "echo s3cret > secret.txt; pwd; sleep 20",
    ]);
    let a_dir = wait_until(T, "job A to print its directory", || {
        let out = lab.admin(&["job", "logs", &a.to_string()]).ok().stdout;
        out.lines().next().map(str::to_string)
    });
    let secret = format!("{a_dir}/secret.txt");
    let out = lab.run_job(&["--node", "worker-jail", "--", "cat", &secret]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("s3cret"));
    assert!(out.stderr.contains("Permission denied"), "{out:?}");
    lab.admin(&["job", "cancel", &a.to_string()]).ok();
}

#[test]
fn attack_a_job_runs_the_simulated_nvidia_smi_but_cannot_change_it() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    // A jailed node (each job its own uid) with simulated GPUs: the fake
    // nvidia-smi first on every job's PATH is the agent's, in its root.
    let mut lab = lab_with(&[]);
    let home = jailed_node(&mut lab);
    let _agent = lab.start_gpu_node(&home, 1);
    lab.wait_node("worker-jail", "connected", T);
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--gpus",
            "1",
            "--",
            "nvidia-smi",
            "-L",
        ])
        .ok();
    assert!(
        out.stdout
            .starts_with("GPU 0: Simulated GPU 80GB (UUID: GPU-sim-")
            && out.stdout.lines().count() == 1,
        "{}",
        out.stdout
    );
    // Another job cannot replace it, its device list or the directory, to
    // fool the jobs after it.
    let out = lab.run_job(&[
        "--node",
        "worker-jail",
        "--shell",
        "--",
        "d=$(dirname $(command -v nvidia-smi)); id -u;",
        "echo '[]' > $d/simulated-gpus.json; echo fake > $d/nvidia-smi; rm -f $d/nvidia-smi;",
        "touch $d/planted; mv $d $d.moved; ls $d",
    ]);
    // Each of the five writes is refused, and the directory holds what
    // the agent put there, nothing else.
    assert_eq!(
        out.stderr.matches("Permission denied").count(),
        5,
        "{out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let uid: u32 = lines[0].trim().parse().unwrap();
    assert!(
        (61000..62000).contains(&uid),
        "the job ran as its own uid: {uid}"
    );
    assert_eq!(lines[1..], ["nvidia-smi", "simulated-gpus.json"], "{out:?}");
    let out = lab
        .run_job(&[
            "--node",
            "worker-jail",
            "--gpus",
            "1",
            "--",
            "nvidia-smi",
            "-L",
        ])
        .ok();
    assert!(
        out.stdout.starts_with("GPU 0: Simulated GPU 80GB"),
        "{}",
        out.stdout
    );
}

/// Another local user: a uid that no account, job range or test uses.
const INTRUDER: u32 = 62000;

/// Whether this machine can run a process as [`INTRUDER`] (root, setpriv
/// and perl); prints SKIPPED with the reason when not.
fn can_play_intruder() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: playing another local user and dropping jobs to nobody need root");
        return false;
    }
    for tool in ["setpriv", "perl"] {
        if !have_tool(tool) {
            eprintln!("SKIPPED: {tool} is needed to run a process as another uid");
            return false;
        }
    }
    true
}

/// `args` run as `uid` (and its gid, no other groups), in the background.
fn spawn_as(lab: &mut Lab, uid: u32, args: &[&str]) -> testkit::Proc {
    let id = uid.to_string();
    let mut all = vec!["--reuid", &id, "--regid", &id, "--clear-groups", "--"];
    all.extend_from_slice(args);
    lab.spawn_cmd("setpriv", &all)
}

/// Directories and files a test made (or an attack may leave) outside its
/// lab, removed at the end however it ends.
struct Litter(Vec<std::path::PathBuf>);

impl Drop for Litter {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d).or_else(|_| std::fs::remove_file(d));
        }
    }
}

/// A directory owned by the intruder, mode `mode`.
fn intruders_dir(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(INTRUDER), Some(INTRUDER)).unwrap();
}

/// The intruder's loop: every `job-N` it can rename in the given roots is
/// moved aside and replaced by a symlink to its own directory (argv[0]).
const SWAPPER: &str = r#"
my ($evil, @roots) = @ARGV;
$| = 1;
print "swapping\n";
while (1) {
    for my $root (@roots) {
        opendir(my $d, $root) or next;
        for my $e (readdir $d) {
            next unless $e =~ /^job-\d+$/;
            my $p = "$root/$e";
            next if -l $p;
            symlink($evil, $p) if rename($p, "$p.orig");
        }
        closedir $d;
    }
    select(undef, undef, undef, 0.0002);
}
"#;

#[test]
fn attack_a_local_user_cannot_plant_the_job_directory() {
    if !can_play_intruder() {
        return;
    }
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-plant", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    // The intruder's own directory, where it wants jobs to run.
    let tmp = std::env::temp_dir();
    let evil = tmp.join(format!("openclaw-evil-{}", std::process::id()));
    let mut litter = Litter(vec![evil.clone()]);
    intruders_dir(&evil, 0o777);
    // The old default root was TMPDIR/openclaw-jobs-NAME-PID: the intruder
    // makes it, world-writable, for each of the next pids.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last..last + 3000 {
        let d = tmp.join(format!("openclaw-jobs-worker-plant-{pid}"));
        if std::fs::symlink_metadata(&d).is_err() {
            intruders_dir(&d, 0o777);
            litter.0.push(d);
        }
    }
    let agent = lab.start_node(&home);
    lab.wait_node("worker-plant", "connected", T);
    // The agent's pid is public (ps): the intruder races for the job
    // directories of both the old and the new default roots.
    let old_root = tmp.join(format!("openclaw-jobs-worker-plant-{}", agent.pid()));
    let root = Path::new("/var/lib/openclaw").join(format!("jobs-worker-plant-{}", agent.pid()));
    let swapper = spawn_as(
        &mut lab,
        INTRUDER,
        &[
            "perl",
            "-e",
            SWAPPER,
            evil.to_str().unwrap(),
            old_root.to_str().unwrap(),
            root.to_str().unwrap(),
        ],
    );
    wait_until(T, "the swapper's loop", || {
        std::fs::read_to_string(&swapper.stdout_path)
            .ok()
            .filter(|o| o.contains("swapping"))
    });
    for id in 1..=5u64 {
        let out = lab
            .run_job(&[
                "--node",
                "worker-plant",
                "--",
                "sh",
                "-c",
                "pwd -P; id -u; touch planted; stat -c '%u %a' . ..",
            ])
            .ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        let want = root.join(format!("job-{id}"));
        assert_eq!(
            lines.first().copied(),
            Some(want.to_str().unwrap()),
            "job {id} ran elsewhere: {out:?}"
        );
        let uid = lines[1];
        assert_eq!(lines[2], format!("{uid} 700"), "its own 0700 directory");
        assert_eq!(lines[3], "0 711", "in the agent's root, 0711");
        assert!(!want.exists(), "job {id}'s directory is removed at its end");
    }
    let planted: Vec<_> = std::fs::read_dir(&evil).unwrap().collect();
    assert!(planted.is_empty(), "a job ran in the intruder's directory");
}

#[test]
fn attack_a_work_dir_that_is_a_link_or_someone_elses_is_refused_at_start() {
    if !can_play_intruder() {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mut lab = lab_with(&[]);
    let home = lab.enroll("worker-wd", "cpu");
    edit_file(
        &home.join("node.toml"),
        "# run_as = \"openclaw-job\"",
        "run_as = \"nobody\"",
    );
    let cfg = home.join("node.toml");
    let d = lab.dir().to_path_buf();
    let real = d.join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, d.join("link")).unwrap();
    intruders_dir(&d.join("theirs"), 0o700);
    std::fs::create_dir(d.join("open")).unwrap();
    std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(d.join("shared")).unwrap();
    std::fs::set_permissions(d.join("shared"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut current = "# work_dir = \"/var/lib/openclaw/jobs\"".to_string();
    for (dir, why) in [
        ("link", "is a symbolic link"),
        ("theirs", &format!("owned by uid {INTRUDER}") as &str),
        ("open", "writable by group or others"),
        ("shared/jobs", "not sticky"),
    ] {
        let line = format!("work_dir = {:?}", d.join(dir).to_str().unwrap());
        edit_file(&cfg, &current, &line);
        current = line;
        let out = lab.start_node(&home).wait(T);
        assert_ne!(out.code, 0, "{dir}: {out:?}");
        assert!(
            out.stderr.contains(why) && out.stderr.contains("work_dir"),
            "{dir}: {}",
            out.stderr
        );
    }
    assert!(!d.join("shared/jobs").exists(), "nothing was made there");
    // A directory only root can write is used, with the agent's root in it.
    edit_file(
        &cfg,
        &current,
        &format!("work_dir = {:?}", real.to_str().unwrap()),
    );
    let agent = lab.start_node(&home);
    lab.wait_node("worker-wd", "connected", T);
    let out = lab
        .run_job(&["--node", "worker-wd", "--", "pwd", "-P"])
        .ok();
    let want = real.join(format!("jobs-worker-wd-{}/job-1", agent.pid()));
    assert_eq!(out.stdout.trim(), want.to_str().unwrap());
}

/// A node that drops to `nobody` with `job_uids` = `range` and `max_jobs`.
fn uid_node(lab: &mut Lab, name: &str, range: &str, max_jobs: u32) -> std::path::PathBuf {
    let home = lab.enroll(name, "cpu");
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# run_as = \"openclaw-job\"", "run_as = \"nobody\"");
    edit_file(
        &cfg,
        "# job_uids = \"61000-61999\"",
        &format!("job_uids = {range:?}"),
    );
    edit_file(&cfg, "max_jobs = 256", &format!("max_jobs = {max_jobs}"));
    home
}

/// The first line job `id` printed, once it has.
fn first_line(lab: &Lab, id: u64) -> String {
    wait_until(T, &format!("job {id} to print"), || {
        let out = lab.admin(&["job", "logs", &id.to_string()]).ok().stdout;
        out.lines().next().map(str::to_string)
    })
}

#[test]
fn attack_two_running_jobs_never_share_a_job_uid() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs needs root");
        return;
    }
    let mut lab = lab_with(&[]);
    // Exactly max_jobs uids; with uid = id % 3, jobs 1 and 4 would collide.
    let home = uid_node(&mut lab, "worker-uids", "63100-63102", 3);
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-uids", "connected", T);
    let hold = "id -u; sleep 30";
    let a = lab.detach(&[
        "--node",
        "worker-uids",
        "--env",
        "HF_TOKEN=hf_secret_job1",
        "--",
        "sh",
        "-c",
        hold,
    ]);
    let b = lab.detach(&[
        "--node",
        "worker-uids",
        "--env",
        "HF_TOKEN=hf_secret_job2",
        "--",
        "sh",
        "-c",
        hold,
    ]);
    assert_eq!((a, b), (1, 2));
    let (ua, ub) = (first_line(&lab, a), first_line(&lab, b));
    lab.run_job(&["--node", "worker-uids", "--", "true"]).ok();
    // Job 4 runs beside 1 and 2 (max_jobs at once) and hunts for secrets
    // in every environment it can read.
    let out = lab
        .run_job(&[
            "--node",
            "worker-uids",
            "--env",
            "HF_TOKEN=hf_secret_job4",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -o 'hf_secret_job[0-9]' | sort -u",
        ])
        .ok();
    assert_eq!(lab.job(a)["state"], "running");
    assert_eq!(lab.job(b)["state"], "running");
    let mut lines = out.stdout.lines();
    let ud = lines.next().unwrap().to_string();
    let uids: std::collections::BTreeSet<&str> = [ua.as_str(), ub.as_str(), ud.as_str()].into();
    assert_eq!(uids.len(), 3, "three running jobs, three uids: {uids:?}");
    for u in &uids {
        assert!((63100..=63102).contains(&u.parse::<u32>().unwrap()), "{u}");
    }
    let found: Vec<&str> = lines.collect();
    assert_eq!(
        found,
        vec!["hf_secret_job4"],
        "job 4 read another job's environment"
    );
    for id in [a, b] {
        lab.admin(&["job", "cancel", &id.to_string()]).ok();
        lab.wait_job(id, "cancelled", T);
    }
    // Their uids are free again once their processes are gone.
    let out = lab
        .run_job(&["--node", "worker-uids", "--", "id", "-u"])
        .ok();
    assert!(uids.contains(out.stdout.trim()), "{out:?}");
}

#[test]
fn attack_a_job_uid_still_held_by_a_process_is_not_handed_out() {
    if !can_play_intruder() {
        return;
    }
    let mut lab = lab_with(&[]);
    // A range smaller than max_jobs is refused at start.
    let home = uid_node(&mut lab, "worker-stray", "63200-63201", 3);
    let out = lab.start_node(&home).wait(T);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("job_uids = \"63200-63201\" has 2 uid(s) but [policy] max_jobs = 3"),
        "{}",
        out.stderr
    );
    edit_file(&home.join("node.toml"), "max_jobs = 3", "max_jobs = 2");
    // A process left running as 63201 (a job's, escaped; its agent died).
    let mut stray = spawn_as(&mut lab, 63201, &["sleep", "60.4242"]);
    wait_until(T, "the stray to run", || {
        (!processes_with("sleep 60.4242").is_empty()).then_some(())
    });
    let _agent = lab.start_node(&home);
    lab.wait_node("worker-stray", "connected", T);
    // Job 1 (1 % 2 = 63201 before) and job 2 get 63200, one after the other.
    for _ in 0..2 {
        let out = lab
            .run_job(&["--node", "worker-stray", "--", "id", "-u"])
            .ok();
        assert_eq!(out.stdout.trim(), "63200", "{out:?}");
    }
    // With 63200 held by a running job, job 4 has no uid: it fails and says why.
    let c = lab.detach(&[
        "--node",
        "worker-stray",
        "--",
        "sh",
        "-c",
        "id -u; sleep 30",
    ]);
    assert_eq!(first_line(&lab, c), "63200");
    let d = lab.detach(&["--node", "worker-stray", "--", "id", "-u"]);
    let job = lab.wait_job(d, "failed", T);
    let reason = job["reason"].as_str().unwrap();
    assert!(
        reason.contains("job_uids = \"63200-63201\"") && reason.contains("max_jobs = 2"),
        "{reason}"
    );
    // Once the stray is gone its uid is handed out again.
    stray.kill();
    wait_until(T, "the stray to go", || {
        processes_with("sleep 60.4242").is_empty().then_some(())
    });
    let out = lab
        .run_job(&["--node", "worker-stray", "--", "id", "-u"])
        .ok();
    assert_eq!(out.stdout.trim(), "63201", "{out:?}");
    lab.admin(&["job", "cancel", &c.to_string()]).ok();
}

/// Job A's part of the temp-files attack: a secret in every temporary
/// directory and in System V IPC (perl's builtins, when there is perl),
/// a marker for the node's /tmp, and two processes of the job that meet
/// in /dev/shm and in a shared memory segment.
const LEAVE_SECRETS: &str = r#"
umask 077
id -u
echo "$USER $LOGNAME $TMPDIR $(( $(stat -f -c '%b' /dev/shm) * $(stat -f -c '%S' /dev/shm) ))"
for d in /tmp /var/tmp /dev/shm /run/lock; do echo "key=$WANDB_API_KEY" 2>/dev/null > $d/victim-$(id -u); done
echo job-a > /tmp/openclaw-host-marker-MARK
cat /tmp/victim-* /var/tmp/victim-* /dev/shm/victim-* /run/lock/victim-* 2>/dev/null
(while [ ! -e /dev/shm/ping ]; do sleep 0.05; done; echo pong > /dev/shm/pong) &
echo ping > /dev/shm/ping
wait
echo "sibling: $(cat /dev/shm/pong)"
if command -v perl >/dev/null; then
  perl -e 'my $m = shmget(0x0c1a0001, 64, 01600) // die "shmget: $!"; shmwrite($m, "shm=$ENV{WANDB_API_KEY}", 0, 64) or die "shmwrite: $!";
           my $q = msgget(0x0c1a0002, 01600) // die "msgget: $!"; msgsnd($q, pack("l! a*", 1, "msg=$ENV{WANDB_API_KEY}"), 0) or die "msgsnd: $!"'
  perl -e 'my $m = shmget(0x0c1a0001, 0, 0) // die "shmget: $!"; shmread($m, my $b, 0, 64) or die; $b =~ s/\0+$//; print "sibling $b\n"'
else
  echo "no perl"
fi
"#;

/// Job B's part: everything it can find of A's.
const HUNT_SECRETS: &str = r#"
id -u
ls -A /tmp /var/tmp /dev/shm
cat /tmp/victim-* /var/tmp/victim-* /dev/shm/victim-* /run/lock/victim-* /dev/shm/* 2>/dev/null
# A user namespace of its own cannot unmount the job's tmpfs to see what
# lies beneath (the kernel locks mounts it inherits).
unshare -Urm sh -c 'umount -l /tmp /var/tmp /dev/shm; find /tmp /var/tmp /dev/shm -mindepth 1 -maxdepth 1' 2>/dev/null | sed 's/^/userns: /'
if command -v perl >/dev/null; then
  perl -e 'my $m = shmget(0x0c1a0001, 0, 0); if (defined $m) { shmread($m, my $b, 0, 64); print "found $b\n" } else { print "no shm\n" }
           my $q = msgget(0x0c1a0002, 0); if (defined $q) { msgrcv($q, my $b, 256, 0, 04000); print "found $b\n" } else { print "no msg\n" }'
fi
true
"#;

#[test]
fn attack_a_later_job_with_the_same_uid_cannot_read_an_earlier_jobs_temp_files() {
    if !is_root() {
        eprintln!("SKIPPED: dropping privileges for jobs and private mounts need root");
        return;
    }
    let mut lab = lab_with(&[]);
    // One uid: every job gets it, one after the other.
    let home = uid_node(&mut lab, "worker-reuse", "63300-63300", 1);
    // A size that bounds nothing is refused at start; a size is kept.
    let cfg = home.join("node.toml");
    edit_file(&cfg, "# job_tmp_size = \"50%\"", "job_tmp_size = \"0%\"");
    let out = lab.start_node(&home).wait(T);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("job_tmp_size = \"0%\"") && out.stderr.contains("1 to 100"),
        "{}",
        out.stderr
    );
    edit_file(&cfg, "job_tmp_size = \"0%\"", "job_tmp_size = \"64MiB\"");
    let agent = lab.start_node(&home);
    lab.wait_node("worker-reuse", "connected", T);
    assert!(
        agent.stderr().contains("every job gets its own /tmp"),
        "{}",
        agent.stderr()
    );
    let mark = std::process::id().to_string();
    let host_marker = Path::new("/tmp").join(format!("openclaw-host-marker-{mark}"));
    // Removed however the test ends (a node without the fix leaves them).
    let shared = Path::new("/tmp").join(format!("openclaw-cwd-{mark}"));
    let _litter = Litter(vec![
        shared.clone(),
        host_marker.clone(),
        "/tmp/victim-63300".into(),
        "/var/tmp/victim-63300".into(),
        "/dev/shm/victim-63300".into(),
        "/run/lock/victim-63300".into(),
    ]);
    let perl = have_tool("perl");
    if !perl {
        eprintln!("note: no perl, so System V shared memory and message queues are not checked");
    }
    eprintln!(
        "note: POSIX message queues are not checked (no standard tool makes one); they live in the IPC namespace too"
    );
    let a = lab
        .run_job(&[
            "--node",
            "worker-reuse",
            "--env",
            "WANDB_API_KEY=victim-secret-123",
            "--",
            "sh",
            "-c",
            &LEAVE_SECRETS.replace("MARK", &mark),
        ])
        .ok();
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert_eq!(lines[0], "63300", "{a:?}");
    // USER and LOGNAME name the job's own uid, and TMPDIR its own /tmp.
    // And /dev/shm holds job_tmp_size.
    assert_eq!(lines[1], format!("63300 63300 /tmp {}", 64 << 20), "{a:?}");
    // The job itself uses its temporary directories as before (and
    // /run/lock where the node has one).
    let keys = lines[2..]
        .iter()
        .take_while(|l| l.starts_with("key="))
        .count();
    assert!(
        (3..=4).contains(&keys)
            && lines[2..2 + keys]
                .iter()
                .all(|l| *l == "key=victim-secret-123"),
        "{a:?}"
    );
    // Two processes of one job share /dev/shm (NCCL, DataLoader workers)
    // and System V IPC.
    assert_eq!(lines[2 + keys], "sibling: pong", "{a:?}");
    if perl {
        assert_eq!(lines[3 + keys], "sibling shm=victim-secret-123", "{a:?}");
    }
    // Nothing of the job's reached the node's /tmp.
    assert!(
        !host_marker.exists(),
        "the job wrote {} on the node",
        host_marker.display()
    );
    for d in ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"] {
        assert!(!Path::new(d).join("victim-63300").exists(), "{d}");
    }
    // Job B gets the same uid and finds nothing of A's.
    let b = lab
        .run_job(&["--node", "worker-reuse", "--", "sh", "-c", HUNT_SECRETS])
        .ok();
    let lines: Vec<&str> = b.stdout.lines().collect();
    assert_eq!(lines[0], "63300", "the same uid again: {b:?}");
    assert!(!b.stdout.contains("victim-secret-123"), "{b:?}");
    assert!(!b.stdout.contains("victim-"), "{b:?}");
    // Its temporary directories are empty: ls prints only their names.
    assert_eq!(
        &lines[1..],
        if perl {
            &[
                "/dev/shm:",
                "",
                "/tmp:",
                "",
                "/var/tmp:",
                "no shm",
                "no msg",
            ][..]
        } else {
            &["/dev/shm:", "", "/tmp:", "", "/var/tmp:"][..]
        },
        "{b:?}"
    );
    // A --cwd below the node's /tmp stays where it is, and is all the job
    // sees of the node's /tmp.
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("data.txt"), "lab data\n").unwrap();
    let out = lab
        .run_job(&[
            "--node",
            "worker-reuse",
            "--cwd",
            shared.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "pwd; cat data.txt; ls -A /tmp",
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!("{}\nlab data\nopenclaw-cwd-{mark}\n", shared.display()),
        "{out:?}"
    );
}

/// Kernel key rings, from perl's `syscall` (keyutils' `keyctl` is rarely
/// installed): `leave` puts a secret in the inherited session key ring,
/// then, in a session of its own that links them (as an attacker would),
/// in the uid's user, user-session and persistent key rings; `hunt`
/// searches the same places and prints what it can read.
const KEYS: &str = r#"
require "syscall.ph";
my ($mode) = @ARGV;
my $t = "user";
sub leave { my ($ring, $d) = @_; my $p = "$d=$ENV{WANDB_API_KEY}"; my $r = syscall(&SYS_add_key, $t, $d, $p, length($p), $ring); print $r > 0 ? "added $d\n" : "refused $d\n" }
sub hunt { my ($ring, $d) = @_; my $id = syscall(&SYS_keyctl, 10, $ring, $t, $d, 0); if ($id > 0) { my $buf = "\0" x 256; my $n = syscall(&SYS_keyctl, 11, $id, $buf, 256); print $n > 0 ? "found " . substr($buf, 0, $n) . "\n" : "unreadable $d\n" } else { print "no $d\n" } }
my $f = $mode eq "leave" ? \&leave : \&hunt;
$f->(-3, "k-sess");
syscall(&SYS_keyctl, 1, 0) > 0 or die "new session: $!";
syscall(&SYS_keyctl, 8, -4, -3); syscall(&SYS_keyctl, 8, -5, -3);
$f->(-4, "k-user");
$f->(-5, "k-usess");
my $pers = syscall(&SYS_keyctl, 22, -1, -3);
if ($pers > 0) { $f->($pers, "k-pers") } else { print "no persistent key rings\n" }
"#;

#[test]
fn attack_jobs_cannot_hand_each_other_kernel_keys() {
    if !is_root() || !have_tool("perl") {
        eprintln!("SKIPPED: needs root to drop jobs to their uids, and perl to make keys");
        return;
    }
    let probe = std::process::Command::new("perl")
        .args(["-e", "require 'syscall.ph'"])
        .output()
        .unwrap();
    if !probe.status.success() {
        eprintln!("SKIPPED: perl has no syscall.ph (h2ph) to make keys with");
        return;
    }
    let mut lab = lab_with(&[]);
    // One uid: job B gets job A's.
    let home = uid_node(&mut lab, "worker-keys", "63320-63320", 1);
    // The agent holds a session key ring, as a systemd service
    // (KeyringMode=private) or a login shell does.
    let h = home.to_str().unwrap().to_string();
    let _agent = lab.spawn_cmd(
        "perl",
        &[
            "-e",
            "require 'syscall.ph'; syscall(&SYS_keyctl, 1, 0) > 0 or die \"join: $!\"; exec @ARGV or die",
            BIN,
            "--home",
            &h,
            "node",
            "run",
        ],
    );
    lab.wait_node("worker-keys", "connected", T);
    let a = lab
        .run_job(&[
            "--node",
            "worker-keys",
            "--env",
            "WANDB_API_KEY=victim-secret-123",
            "--",
            "perl",
            "-e",
            KEYS,
            "leave",
        ])
        .ok();
    let b = lab
        .run_job(&["--node", "worker-keys", "--", "perl", "-e", KEYS, "hunt"])
        .ok();
    assert!(
        !b.stdout.contains("victim-secret-123"),
        "job B read job A's keys: {b:?}"
    );
    let lines: Vec<&str> = a.stdout.lines().collect();
    // The session key ring every job inherits is closed to them; their
    // own uid's key rings work as before.
    assert_eq!(
        lines[..3],
        ["refused k-sess", "added k-user", "added k-usess"],
        "{a:?}"
    );
    assert!(
        ["added k-pers", "no persistent key rings"].contains(&lines[3]),
        "{a:?}"
    );
    let want = if lines[3] == "added k-pers" {
        "no k-pers"
    } else {
        "no persistent key rings"
    };
    assert_eq!(
        b.stdout.lines().collect::<Vec<_>>(),
        ["no k-sess", "no k-user", "no k-usess", want],
        "{b:?}"
    );
}

#[test]
fn a_node_that_cannot_make_mount_namespaces_says_so_and_still_runs_jobs() {
    if !is_root() || !have_tool("setpriv") {
        eprintln!("SKIPPED: needs root and setpriv to run the agent without CAP_SYS_ADMIN");
        return;
    }
    let mut lab = lab_with(&[]);
    let home = uid_node(&mut lab, "worker-nons", "63310-63310", 1);
    // Root without CAP_SYS_ADMIN, as in a container that refuses unshare.
    let bin = BIN.to_string();
    let h = home.to_str().unwrap().to_string();
    let agent = lab.spawn_cmd(
        "setpriv",
        &[
            "--bounding-set",
            "-sys_admin",
            "--inh-caps",
            "-sys_admin",
            "--",
            &bin,
            "--home",
            &h,
            "node",
            "run",
        ],
    );
    lab.wait_node("worker-nons", "connected", T);
    let said = agent.stderr();
    assert!(
        said.contains("JOBS GET NO PRIVATE TEMPORARY DIRECTORIES")
            && said.contains("a job can read what an earlier job with the same uid left there")
            && said.contains("CAP_SYS_ADMIN"),
        "{said}"
    );
    assert!(said.contains("unshare"), "the reason: {said}");
    // Jobs still run, as their own uid, with the node's /tmp.
    let seen = Path::new("/tmp").join(format!("openclaw-node-tmp-{}", std::process::id()));
    let _litter = Litter(vec![seen.clone()]);
    std::fs::write(&seen, "").unwrap();
    let out = lab
        .run_job(&[
            "--node",
            "worker-nons",
            "--",
            "sh",
            "-c",
            &format!("id -u; echo \"$USER $TMPDIR\"; ls {}", seen.display()),
        ])
        .ok();
    assert_eq!(
        out.stdout,
        format!("63310\n63310 /tmp\n{}\n", seen.display()),
        "{out:?}"
    );
}

#[test]
fn attack_daemons_and_setsid_do_not_outlive_their_job() {
    let mut lab = lab_with(&[]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 1);
    let out = lab
        .run_job(&[
            "--node",
            "worker-cpu-01",
            "--gpus",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 4241.5 & setsid sleep 4242.5 & (sleep 4243.5 &) ; echo started",
        ])
        .ok();
    assert_eq!(out.stdout, "started\n");
    assert!(
        processes_with("sleep 424").is_empty(),
        "{:?}",
        processes_with("sleep 424")
    );
    let job = lab.job(1);
    assert!(job["processes_killed"].as_u64().unwrap() >= 3, "{job}");
    // The GPU is free again: another job gets it at once.
    lab.run_job(&["--node", "worker-cpu-01", "--gpus", "1", "--", "true"])
        .ok();
}

#[test]
fn attack_timeout_and_cancel_kill_the_whole_tree() {
    // The job ignores SIGTERM; SIGKILL follows after kill_grace.
    let mut lab = lab_with(&[("kill_grace = \"10s\"", "kill_grace = \"1s\"")]);
    let _n = lab.node_up("worker-cpu-01", "cpu", 0);
    // Markers of this run only: other runs of this test on the machine
    // have other pids.
    let tag = std::process::id();
    lab.run_job(&[
        "--node",
        "worker-cpu-01",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        &format!("setsid sleep 4251.{tag} & sleep 4252.{tag}"),
    ])
    .fails_with(124, "");
    assert!(processes_with(&format!("sleep 4251.{tag}")).is_empty());
    assert!(processes_with(&format!("sleep 4252.{tag}")).is_empty());
    let id = lab.detach(&[
        "--node",
        "worker-cpu-01",
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; setsid sleep 4261.{tag} & sleep 4262.{tag}"),
    ]);
    // Cancel once the tree exists: `running` is reported at spawn, before
    // the shell has set its trap and started both sleeps.
    let running = |needle: String| {
        processes_with(&needle).into_iter().any(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .starts_with(&needle)
            })
        })
    };
    wait_until(T, "the job's process tree", || {
        (running(format!("sleep 4261.{tag}")) && running(format!("sleep 4262.{tag}"))).then_some(())
    });
    lab.admin(&["job", "cancel", &id.to_string()]).ok();
    let job = lab.wait_job(id, "cancelled", T);
    assert!(job["processes_killed"].as_u64().unwrap() >= 2, "{job}");
    assert!(processes_with(&format!("sleep 4261.{tag}")).is_empty());
    assert!(processes_with(&format!("sleep 4262.{tag}")).is_empty());
}
