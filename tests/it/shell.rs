//! Interactive sessions (`openclaw shell NODE`, `openclaw run -t`) through
//! a real gateway and node agent on 127.0.0.1, driven as a person would:
//! the CLI's stdin, stdout and stderr are the slave side of a pseudo-
//! terminal this test opens (its controlling terminal, through `setsid
//! -c`), and the test types into the master side and reads what the CLI
//! shows there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use testkit::{Lab, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_openclaw");
const T: Duration = Duration::from_secs(30);
const NODE: &str = "worker-cpu-01";

/// The CLI on a terminal of the test's.
struct Term {
    master: OwnedFd,
    shown: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    child: Child,
}

impl Term {
    /// `openclaw --home HOME ARGS...` on a new `cols`x`rows` terminal.
    fn open(home: &Path, args: &[&str], cols: u16, rows: u16) -> Term {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        set_size(&master, cols, rows);
        // setsid -c: a session of its own whose controlling terminal is
        // this one, so a resize sends it SIGWINCH as a terminal would.
        let child = Command::new("setsid")
            .arg("-c")
            .arg(BIN)
            .arg("--home")
            .arg(home)
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut file = std::fs::File::from(master.try_clone().unwrap());
        let into = shown.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the CLI (the last slave holder) is gone.
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            shown,
            reader: Some(reader),
            child,
        }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    /// Types `bytes`.
    fn send(&self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rustix::io::write(&self.master, rest).unwrap();
            rest = &rest[n..];
        }
    }

    /// Waits until the CLI has put the terminal in raw mode (the session
    /// runs): keys typed before that are the local terminal's, as they
    /// would be for a person.
    fn wait_raw(&self) {
        wait_until(T, "the CLI to make the terminal raw", || {
            let t = rustix::termios::tcgetattr(&self.master).unwrap();
            (!t.local_modes.contains(rustix::termios::LocalModes::ECHO)).then_some(())
        });
    }

    /// Waits until the terminal shows `needle`.
    fn expect(&self, needle: &str) {
        wait_until(T, &format!("the terminal to show {needle:?}"), || {
            self.shown().contains(needle).then_some(())
        });
    }

    /// Waits for the CLI's exit; returns its code and everything it showed.
    fn finish(mut self) -> (i32, Vec<u8>) {
        let deadline = std::time::Instant::now() + T;
        let st = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the CLI did not exit; the terminal shows: {:?}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let shown = self.shown.lock().unwrap().clone();
        (st.code().unwrap_or(-1), shown)
    }
}

fn set_size(master: &OwnedFd, cols: u16, rows: u16) {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(master, ws).unwrap();
}

/// The job id in the CLI's first line (`openclaw: job N on NODE`).
fn job_id(shown: &str) -> u64 {
    let at = shown.find("openclaw: job ").expect(shown) + "openclaw: job ".len();
    shown[at..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect(shown)
}

fn lab_with(edit: impl FnOnce(&mut String)) -> (Lab, testkit::Proc) {
    let mut lab = Lab::with_config(BIN, edit);
    lab.start_gateway();
    let (_, node) = lab.node_up(NODE, "cpu", 0);
    (lab, node)
}

#[test]
fn a_shell_session_passes_keys_sizes_and_its_exit_code_and_replays_as_shown() {
    let (lab, _node) = lab_with(|_| {});
    let term = Term::open(&lab.gw_home, &["shell", NODE], 80, 24);
    term.expect(&format!(" on {NODE}"));
    term.wait_raw();
    // A command's output (the typed line echoes as typed; only the shell
    // computes 42).
    term.send(b"PS1='$ '; echo out-$((6*7))\r");
    term.expect("out-42");
    // It is a terminal, of the size the local one has.
    term.send(b"stty size\r");
    term.expect("24 80");
    // A resize reaches the remote terminal: SIGWINCH here, a resize frame,
    // the node's TIOCSWINSZ.
    set_size(&term.master, 101, 33);
    wait_until(T, "the remote terminal to be 33x101", || {
        term.send(b"stty size\r");
        std::thread::sleep(Duration::from_millis(200));
        term.shown().contains("33 101").then_some(())
    });
    // Ctrl-C reaches the remote foreground process as SIGINT.
    term.send(b"sh -c 'trap \"echo caught-\\$((2+2)); exit 7\" INT; echo armed; while :; do sleep 0.1; done'\r");
    term.expect("armed\r\n");
    term.send(b"\x03");
    term.expect("caught-4");
    term.send(b"echo rc-$?\r");
    term.expect("rc-7");
    // A process that leaves the session behind ends with it.
    term.send(b"setsid sleep 7377 & echo started-$((1+1))\r");
    term.expect("started-2");
    assert!(!testkit::processes_with("sleep 7377").is_empty());
    term.send(b"exit 5\r");
    let (code, shown) = term.finish();
    let text = String::from_utf8_lossy(&shown).into_owned();
    assert_eq!(code, 5, "the remote exit code: {text}");
    wait_until(T, "the session's processes to be gone", || {
        testkit::processes_with("sleep 7377")
            .is_empty()
            .then_some(())
    });
    let id = job_id(&text);
    let job = lab.wait_job(id, "exited", T);
    assert_eq!(job["exit_code"], 5, "{job}");

    // The recording's output is what the terminal showed after the CLI's
    // own first line, byte for byte.
    let head_end = text.find(&format!(" on {NODE}\r\n")).unwrap() + NODE.len() + 6;
    let replay = lab.admin(&["job", "replay", &id.to_string(), "--raw"]).ok();
    assert!(
        replay.stdout.as_bytes() == &shown[head_end..],
        "replay differs from what was shown:\nreplay: {:?}\nshown:  {:?}",
        replay.stdout,
        String::from_utf8_lossy(&shown[head_end..])
    );
    assert!(replay.stdout.contains("out-42") && replay.stdout.contains("33 101"));
    // The recording is an asciicast v2 file next to the job's log.
    let cast = std::fs::read_to_string(lab.gw_home.join(format!("logs/{id}.cast"))).unwrap();
    assert!(
        cast.starts_with("{\"version\": 2, \"width\": 80, \"height\": 24"),
        "{cast}"
    );
    assert!(
        cast.contains("\"r\", \"101x33\""),
        "the resize is recorded: {cast}"
    );
    assert!(
        !cast.contains("\"i\","),
        "input is not recorded unless asked: {cast}"
    );
}

#[test]
fn run_t_gives_a_command_a_terminal_even_without_a_local_one() {
    let (lab, _node) = lab_with(|_| {});
    let term = Term::open(
        &lab.gw_home,
        &[
            "run",
            "-t",
            "--node",
            NODE,
            "--",
            "sh",
            "-c",
            "stty size; exit 3",
        ],
        50,
        20,
    );
    let (code, shown) = term.finish();
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("20 50\r"), "{text}");

    // Ctrl-C reaches a command that is no shell (nothing there takes the
    // terminal as its own but the node's shim), and its code comes back.
    let term = Term::open(
        &lab.gw_home,
        &[
            "run",
            "-t",
            "--node",
            NODE,
            "--",
            "sh",
            "-c",
            "trap 'echo caught-$((3+3)); exit 7' INT; echo armed; while :; do sleep 0.1; done",
        ],
        80,
        24,
    );
    term.expect("armed\r\n");
    term.wait_raw();
    term.send(b"\x03");
    term.expect("caught-6");
    let (code, shown) = term.finish();
    assert_eq!(code, 7, "{}", String::from_utf8_lossy(&shown));

    // No local terminal: the job still gets one, as with ssh -tt.
    let out = Command::new(BIN)
        .arg("--home")
        .arg(&lab.gw_home)
        .args([
            "run",
            "-t",
            "--node",
            NODE,
            "--",
            "sh",
            "-c",
            "test -t 0 && tty",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.starts_with("/dev/pts/"), "{out:?}");
}

/// A `user` credential named `name`; returns its home.
fn member(lab: &mut Lab, name: &str) -> std::path::PathBuf {
    let home = lab.home(name);
    lab.admin(&[
        "client",
        "create",
        name,
        "--role",
        "user",
        "--out",
        home.to_str().unwrap(),
    ])
    .ok();
    home
}

/// `openclaw --home HOME shell NODE` with no terminal: (code, stderr).
fn shell_without_terminal(home: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(["shell", NODE, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn attack_policy_chat_bots_and_revocation_close_shells() {
    let (mut lab, _node) = lab_with(|cfg| {
        // A rule at the end of [policy], before the next table.
        let with = cfg.replace(
            "\n[limits]\n",
            "\n[[policy.shell_rules]]\nusers = [\"user:mallory\"]\nshell = \"deny\"\n\n\
             [[policy.shell_rules]]\nusers = [\"user:carol\"]\nshell = \"approve\"\n\n[limits]\n",
        );
        assert_ne!(&with, cfg, "the edit matched");
        *cfg = with;
    });
    let alice = member(&mut lab, "alice");
    let mallory = member(&mut lab, "mallory");
    // A member under policy: alice may, mallory's rule denies her, and the
    // denial names the rule.
    assert_eq!(shell_without_terminal(&alice).0, 0);
    let (code, err) = shell_without_terminal(&mallory);
    assert_eq!(code, 252, "{err}");
    assert!(err.contains("shell rule 1"), "{err}");
    // "approve": the session waits, its requester attached, for an
    // approver; approved, it runs.
    let carol = member(&mut lab, "carol");
    let waiting = Command::new(BIN)
        .arg("--home")
        .arg(&carol)
        .args(["shell", NODE, "--", "sh", "-c", "echo approved-$((5+5))"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = wait_until(T, "carol's session to await approval", || {
        lab.jobs()
            .into_iter()
            .find(|j| j["requester"] == "user:carol" && j["state"] == "awaiting-approval")
    });
    let id = held["id"].as_u64().unwrap().to_string();
    lab.admin(&["job", "approve", &id]).ok();
    let out = waiting.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout.contains("approved-10"), "{out:?}");

    // A chat bot never opens one, whatever policy says.
    let bot = lab.bot("moltbot", "slack:T0123ABCD");
    let (code, err) = shell_without_terminal(&bot);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("may not call job.shell"), "{err}");

    // A revoked credential is cut off: its session ends on the node.
    let term = Term::open(&alice, &["shell", NODE], 80, 24);
    term.wait_raw();
    term.send(b"echo live-$((3*3)); exec sleep 7388\r");
    term.expect("live-9");
    let id = job_id(&term.shown());
    lab.admin(&["client", "revoke", "alice"]).ok();
    let (code, shown) = term.finish();
    assert_ne!(code, 0, "{}", String::from_utf8_lossy(&shown));
    lab.wait_job(id, "cancelled", T);
    wait_until(T, "the revoked session's process to be gone", || {
        testkit::processes_with("sleep 7388")
            .is_empty()
            .then_some(())
    });
}

#[test]
fn attack_a_denied_shell_policy_refuses_every_session() {
    let (lab, _node) = lab_with(|cfg| {
        let with = cfg.replace("shell = \"allow\"\n", "shell = \"deny\"\n");
        assert_ne!(&with, cfg, "the edit matched");
        *cfg = with;
    });
    let (code, err) = shell_without_terminal(&lab.gw_home);
    assert_eq!(code, 252, "{err}");
    assert!(err.contains("policy.shell"), "{err}");
    // Plain jobs still run.
    lab.run_job(&["--node", NODE, "--", "true"]).ok();
    let denied = lab
        .jobs()
        .into_iter()
        .find(|j| j["state"] == "denied")
        .expect("the denied session is on record");
    assert_eq!(denied["argv"], serde_json::json!(["true"]), "{denied}");
}

#[test]
fn the_dashboard_plays_a_session_recording_in_a_browser() {
    let Some((chrome, driver)) = testkit::webdriver::browser_tools() else {
        eprintln!(
            "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let (mut lab, _node) = lab_with(|_| {});
    let out = Command::new(BIN)
        .arg("--home")
        .arg(&lab.gw_home)
        .args([
            "run",
            "-t",
            "--node",
            NODE,
            "--",
            "sh",
            "-c",
            "echo play-$((8*8)); printf '\\033[31mred-text\\033[0m\\n'",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let id = job_id(&String::from_utf8_lossy(&out.stderr));
    let (d, url) = crate::dashboard::dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = crate::dashboard::printed_token(&d, &url);
    let profile = tempfile::tempdir().unwrap();
    let b = testkit::webdriver::Browser::start(&chrome, &driver, profile.path());
    b.goto(&format!("{url}/"));
    b.wait_text("the login form", T, |t| t.contains("Log in"));
    b.type_text("#token", &token);
    b.click("form[action='login'] button");
    b.wait_text("the overview", T, |t| t.contains("Jobs now"));
    b.goto(&format!("{url}/jobs/{id}"));
    b.wait_text("the job page", T, |t| t.contains("Session recording"));
    let ready = "return document.getElementById('recording').dataset.ready === '1';";
    wait_until(T, "the player to be ready", || {
        (b.eval(ready) == true).then_some(())
    });
    b.click("#rec-play");
    b.wait_text("the recording played", T, |t| t.contains(" played"));
    let screen = b.eval("return document.getElementById('rec-screen').textContent;");
    let screen = screen.as_str().unwrap_or_default();
    assert!(
        screen.contains("play-64\nred-text\n"),
        "the output, without its escape sequences: {screen:?}"
    );
    // A job that was no session has nothing to play, and says so.
    let plain = lab.detach(&["--node", NODE, "--", "true"]);
    lab.wait_job(plain, "exited", T);
    b.goto(&format!("{url}/jobs/{plain}"));
    b.wait_text("the job page", T, |t| t.contains("Session recording"));
    wait_until(T, "the player to be ready", || {
        (b.eval(ready) == true).then_some(())
    });
    b.click("#rec-play");
    b.wait_text("no recording", T, |t| {
        t.contains("this job has no recording")
    });
}

#[test]
fn a_session_whose_gateway_restarts_ends_instead_of_hanging() {
    let (mut lab, _node) = lab_with(|_| {});
    let term = Term::open(&lab.gw_home, &["shell", NODE], 80, 24);
    term.wait_raw();
    term.send(b"echo up-$((4*4)); exec sleep 7399\r");
    term.expect("up-16");
    let id = job_id(&term.shown());
    // Its input is not resumed after a restart: nothing typed could reach
    // it again, so the CLI ends the session rather than hang in raw mode.
    lab.stop_gateway(false);
    lab.start_gateway();
    let (code, shown) = term.finish();
    assert_eq!(code, 255, "{}", String::from_utf8_lossy(&shown));
    lab.wait_job(id, "cancelled", T);
    wait_until(T, "the session's process to be gone", || {
        testkit::processes_with("sleep 7399")
            .is_empty()
            .then_some(())
    });
}
