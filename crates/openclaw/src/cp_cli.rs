//! `openclaw cp SOURCE... DEST`: copies files to and from nodes through
//! the gateway, as scp does. One side is a node (`NODE:/path`), the other
//! local (or `-` for standard input or output). Each file, directory or
//! link is one stream (`cp_xfer`); up to [`WINDOW`] are in flight at
//! once, so a tree of small files costs no round trip each. Exit codes as
//! scp's: 0 when everything was copied, 1 otherwise, each failure said
//! with its path and what to do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use client::Client;
use mesh::Home;
use proto::files::{EntryKind, FileOp};
use tokio::task::JoinSet;

use crate::commands::CliError;
use crate::cp_xfer::{self, Moved, Opts, Sink, Source};
use crate::exit;
use crate::term::errln;

/// Copy streams in flight at once.
pub const WINDOW: usize = 16;

/// `openclaw cp`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Sources, then the destination: local paths, NODE:/path on a node,
    /// or - for standard input (a source) or standard output (the
    /// destination). One side must be a node.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<String>,
    /// Copy directories and everything in them; symbolic links are copied
    /// as links, never followed.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Keep modes and modification times (a download drops set-user-ID and set-group-ID bits).
    #[arg(short = 'p', long)]
    pub preserve: bool,
    /// Continue a file an interrupted copy left partial, from the last
    /// offset both sides hash the same.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar (it is shown only when stderr is a terminal).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// A local path.
    Local(PathBuf),
    /// An absolute path on a node.
    Remote {
        /// The node.
        node: String,
        /// Its path there.
        path: String,
    },
    /// `-`: standard input or output.
    Dash,
}

/// Reads one argument: `-`, `NODE:/abs/path`, or a local path. A colon
/// before any `/` makes it remote, as in scp (write `./a:b` for a local
/// file named `a:b`). Pure.
pub fn parse_loc(arg: &str) -> Result<Loc, String> {
    if arg == "-" {
        return Ok(Loc::Dash);
    }
    if let Some((node, path)) = arg.split_once(':')
        && !node.contains('/')
    {
        if node.is_empty() {
            return Err(format!(
                "{arg:?} names no node before ':'; write NODE:/path (or ./{arg} for a local file)"
            ));
        }
        proto::names::validate_name(node).map_err(|e| format!("{arg:?}: {e}"))?;
        if !path.starts_with('/') {
            return Err(format!(
                "{arg:?}: the node's path must be absolute (there is no home directory on the node): {node}:/srv/lab/{path}"
            ));
        }
        return Ok(Loc::Remote {
            node: node.to_string(),
            path: path.to_string(),
        });
    }
    Ok(Loc::Local(PathBuf::from(arg)))
}

/// The last component of a `/`-separated path, if it is one a copy may
/// create.
fn base(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|b| proto::files::valid_name(b))
}

fn join(dir: &str, name: &str) -> String {
    if name.is_empty() {
        return dir.to_string();
    }
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// One stream's work.
#[derive(Debug)]
enum Task {
    Put {
        src: PathBuf,
        remote: String,
        into: Option<String>,
    },
    PutStdin {
        remote: String,
    },
    Op(FileOp),
    Get {
        remote: String,
        local: PathBuf,
    },
    GetStdout {
        remote: String,
    },
}

impl Task {
    fn shown(&self, node: &str) -> String {
        match self {
            Task::Put { src, .. } => src.display().to_string(),
            Task::PutStdin { remote } | Task::GetStdout { remote } | Task::Get { remote, .. } => {
                format!("{node}:{remote}")
            }
            Task::Op(op) => format!("{node}:{}", op.path()),
        }
    }

    async fn run(
        self,
        client: &Client,
        node: &str,
        opts: Opts,
        moved: &Moved,
    ) -> Result<(), String> {
        match self {
            Task::Put { src, remote, into } => {
                cp_xfer::put(client, node, Source::File(&src), &remote, into, opts, moved)
                    .await
                    .map(|_| ())
            }
            Task::PutStdin { remote } => {
                cp_xfer::put(client, node, Source::Stdin, &remote, None, opts, moved)
                    .await
                    .map(|_| ())
            }
            Task::Op(op) => cp_xfer::simple(client, node, op).await.map(|_| ()),
            Task::Get { remote, local } => {
                cp_xfer::get(client, node, &remote, Sink::File(&local), opts, moved)
                    .await
                    .map(|_| ())
            }
            Task::GetStdout { remote } => {
                cp_xfer::get(client, node, &remote, Sink::Stdout, opts, moved)
                    .await
                    .map(|_| ())
            }
        }
    }
}

/// Runs `tasks` on `node`, [`WINDOW`] at a time; returns the failures.
async fn run_all(
    client: &Arc<Client>,
    node: &str,
    tasks: Vec<Task>,
    opts: Opts,
    moved: &Arc<Moved>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut set = JoinSet::new();
    let mut tasks = tasks.into_iter();
    loop {
        while set.len() < WINDOW {
            let Some(t) = tasks.next() else { break };
            let (client, node, moved) = (client.clone(), node.to_string(), moved.clone());
            set.spawn(async move {
                let shown = t.shown(&node);
                t.run(&client, &node, opts, &moved)
                    .await
                    .map_err(|e| (shown, e))
            });
        }
        match set.join_next().await {
            None => return failed,
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err((shown, e)))) => failed.push(format!("{shown}: {e}")),
            Some(Err(e)) => failed.push(format!("a copy task failed: {e}")),
        }
    }
}

/// `openclaw cp`.
/// [`run`], ending on SIGINT, SIGTERM or SIGHUP with a word on what is
/// left (the partial files stay for `--resume`) and the shell's code for
/// the signal (130, 143, 129), instead of dying silently.
pub async fn run_interruptible(home: &Home, args: CpArgs) -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let resume = args.resume;
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return run(home, args).await;
    };
    let (code, name) = tokio::select! {
        r = run(home, args) => return r,
        _ = int.recv() => (130, "SIGINT"),
        _ = term.recv() => (143, "SIGTERM"),
        _ = hup.recv() => (129, "SIGHUP"),
    };
    let again = if resume {
        "run the same command again to continue"
    } else {
        "run the same command with --resume to continue where each file stopped"
    };
    Err(CliError::new(
        code,
        format!(
            "cp stopped by {name}; what was copied is in place, partial files stay hidden beside their targets; {again}"
        ),
    ))
}

pub async fn run(home: &Home, args: CpArgs) -> Result<(), CliError> {
    let usage = |m: String| CliError::new(exit::USAGE, m);
    let mut locs = args
        .paths
        .iter()
        .map(|a| parse_loc(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let Some(dest) = locs.pop() else {
        return Err(usage("name a source and a destination".into()));
    };
    let opts = Opts {
        preserve: args.preserve,
        resume: args.resume,
        count_size: false,
    };
    let dashes = locs.iter().filter(|l| **l == Loc::Dash).count();
    if dashes > 0 && (locs.len() > 1 || dest == Loc::Dash) {
        return Err(usage(
            "- (standard input) must be the only source, copied to a node".into(),
        ));
    }
    let client = Arc::new(
        Client::connect(home)
            .await
            .map_err(|e| CliError::new(exit::FAILURE, crate::term::field(&e.to_string())))?,
    );
    let moved = Arc::new(Moved::default());
    let bar = crate::term::progress(args.quiet, moved.done.clone(), moved.total.clone());
    let (failed, copies) = match &dest {
        Loc::Remote { node, path } => {
            if locs.iter().any(|l| matches!(l, Loc::Remote { .. })) {
                return Err(usage(
                    "copies go between this machine and a node; copy node to node through a local directory".into(),
                ));
            }
            upload(&client, node, path, &locs, &args, opts, &moved).await?
        }
        Loc::Local(_) | Loc::Dash => {
            let mut failed = Vec::new();
            let mut copies = 0;
            for src in &locs {
                let Loc::Remote { node, path } = src else {
                    return Err(usage(
                        "one side must be a node: NODE:/path (e.g. openclaw cp ./data worker-gpu-01:/srv/lab/)".into(),
                    ));
                };
                let (f, n) = download(
                    &client,
                    node,
                    path,
                    &dest,
                    locs.len() > 1,
                    &args,
                    opts,
                    &moved,
                )
                .await;
                failed.extend(f);
                copies += n;
            }
            (failed, copies)
        }
    };
    drop(bar);
    client.close().await;
    for f in &failed {
        errln!("openclaw: cp: {}", crate::term::field(f));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(
            exit::FAILURE,
            format!(
                "{} of {copies} copies failed (each is said above); fix what it says and run the same command again (--resume continues big files)",
                failed.len()
            ),
        ))
    }
}

/// Directories first (each depth in turn), then files and links, then
/// (`-p`) the directories' times, which writing inside them changed.
async fn upload(
    client: &Arc<Client>,
    node: &str,
    dest: &str,
    sources: &[Loc],
    args: &CpArgs,
    opts: Opts,
    moved: &Arc<Moved>,
) -> Result<(Vec<String>, usize), CliError> {
    let mut failed = Vec::new();
    let many = sources.len() > 1;
    let any_dir = sources
        .iter()
        .any(|s| matches!(s, Loc::Local(p) if p.is_dir()));
    // A trailing slash says "into this directory", as for scp.
    let wants_dir = dest.len() > 1 && dest.ends_with('/');
    // Whether the destination is a directory on the node, when it matters.
    let dest_is_dir = if many || wants_dir || (any_dir && args.recursive) {
        match cp_xfer::simple(
            client,
            node,
            FileOp::Stat {
                path: dest.to_string(),
            },
        )
        .await
        {
            Ok(e) => e.first().is_some_and(|e| e.kind == EntryKind::Dir),
            Err(e) if e.contains("No such file") => false,
            Err(e) => return Err(CliError::new(exit::FAILURE, crate::term::field(&e))),
        }
    } else {
        false
    };
    if (many || wants_dir) && !dest_is_dir {
        let what = if many {
            "several sources"
        } else {
            "a destination ending in /"
        };
        return Err(CliError::new(
            exit::FAILURE,
            format!(
                "{node}:{dest} is not a directory; {what} go into an existing directory (make it first)"
            ),
        ));
    }
    let mut dirs: Vec<(usize, FileOp)> = Vec::new();
    let mut items = Vec::new();
    let mut times: Vec<(usize, FileOp)> = Vec::new();
    for src in sources {
        let path = match src {
            Loc::Dash => {
                items.push(Task::PutStdin {
                    remote: dest.to_string(),
                });
                continue;
            }
            Loc::Local(p) => p,
            Loc::Remote { .. } => continue,
        };
        let name: Option<String> = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .or_else(|| {
                std::fs::canonicalize(path)
                    .ok()
                    .and_then(|c| c.file_name().and_then(|n| n.to_str()).map(str::to_string))
            })
            .filter(|n| proto::files::valid_name(n));
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                failed.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let Some(name) = name else {
            failed.push(format!("{}: has no name a copy may create", path.display()));
            continue;
        };
        if meta.is_dir() {
            if !args.recursive {
                failed.push(format!(
                    "{} is a directory; add -r to copy it and everything in it",
                    path.display()
                ));
                continue;
            }
            let root = if dest_is_dir {
                join(dest, &name)
            } else {
                dest.to_string()
            };
            walk_local(
                path,
                &root,
                opts,
                &mut dirs,
                &mut items,
                &mut times,
                &mut failed,
            );
        } else if many {
            items.push(Task::Put {
                src: path.clone(),
                remote: join(dest, &name),
                into: None,
            });
        } else {
            items.push(Task::Put {
                src: path.clone(),
                remote: dest.to_string(),
                into: Some(name),
            });
        }
    }
    let copies = dirs.len() + items.len();
    let total: u64 = items
        .iter()
        .filter_map(|t| match t {
            Task::Put { src, .. } => std::fs::metadata(src).ok().map(|m| m.len()),
            _ => None,
        })
        .sum();
    moved.set_total(total);
    // Parents before children: one depth at a time.
    let depth_max = dirs.iter().map(|(d, _)| *d).max().unwrap_or(0);
    for depth in 0..=depth_max {
        let level: Vec<Task> = dirs
            .iter()
            .filter(|(d, _)| *d == depth)
            .map(|(_, op)| Task::Op(op.clone()))
            .collect();
        failed.extend(run_all(client, node, level, opts, moved).await);
    }
    failed.extend(run_all(client, node, items, opts, moved).await);
    times.sort_by_key(|t| std::cmp::Reverse(t.0));
    let times = times.into_iter().map(|(_, op)| Task::Op(op)).collect();
    failed.extend(run_all(client, node, times, opts, moved).await);
    Ok((failed, copies))
}

/// Lists a local tree without following links: its directories (with
/// their depth), files and links as tasks.
fn walk_local(
    top: &Path,
    root: &str,
    opts: Opts,
    dirs: &mut Vec<(usize, FileOp)>,
    items: &mut Vec<Task>,
    times: &mut Vec<(usize, FileOp)>,
    failed: &mut Vec<String>,
) {
    let mut stack = vec![(top.to_path_buf(), root.to_string(), 0usize)];
    while let Some((dir, remote, depth)) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&dir) {
            Ok(m) => m,
            Err(e) => {
                failed.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        use std::os::unix::fs::MetadataExt as _;
        let (mode, mtime) = (meta.mode() & 0o7777, meta.mtime());
        dirs.push((
            depth,
            FileOp::Mkdir {
                path: remote.clone(),
                mode: opts.preserve.then_some(mode),
                mtime: None,
            },
        ));
        if opts.preserve {
            times.push((
                depth,
                FileOp::Mkdir {
                    path: remote.clone(),
                    mode: Some(mode),
                    mtime: Some(mtime),
                },
            ));
        }
        let mut entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => {
                failed.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                failed.push(format!(
                    "{}: the name is not UTF-8; rename it",
                    path.display()
                ));
                continue;
            };
            if !proto::files::valid_name(&name) {
                failed.push(format!(
                    "{}: the name has a control character; rename it",
                    path.display()
                ));
                continue;
            }
            let r = join(&remote, &name);
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((path, r, depth + 1)),
                Ok(t) if t.is_file() => items.push(Task::Put {
                    src: path,
                    remote: r,
                    into: None,
                }),
                Ok(t) if t.is_symlink() => match std::fs::read_link(&path) {
                    Ok(target) => items.push(Task::Op(FileOp::Symlink {
                        path: r,
                        target: target.to_string_lossy().into_owned(),
                    })),
                    Err(e) => failed.push(format!("{}: {e}", path.display())),
                },
                Ok(_) => failed.push(format!(
                    "{}: not a regular file, directory or link (a device, FIFO or socket); skipped",
                    path.display()
                )),
                Err(e) => failed.push(format!("{}: {e}", path.display())),
            }
        }
    }
}

/// One remote source to a local destination. Returns the failures and
/// how many copies were tried.
#[allow(clippy::too_many_arguments)]
async fn download(
    client: &Arc<Client>,
    node: &str,
    path: &str,
    dest: &Loc,
    many: bool,
    args: &CpArgs,
    opts: Opts,
    moved: &Arc<Moved>,
) -> (Vec<String>, usize) {
    let shown = format!("{node}:{path}");
    let local = match dest {
        Loc::Dash if many => {
            return (
                vec!["standard output takes one file; name a directory for several".into()],
                1,
            );
        }
        Loc::Dash => {
            let t = vec![Task::GetStdout {
                remote: path.to_string(),
            }];
            let opts = Opts {
                count_size: true,
                ..opts
            };
            return (run_all(client, node, t, opts, moved).await, 1);
        }
        Loc::Local(p) => p.clone(),
        Loc::Remote { .. } => return (vec![], 0),
    };
    let Some(name) = base(path) else {
        return (vec![format!("{shown}: has no file name to copy to")], 1);
    };
    let into_dir = local.is_dir();
    // A trailing slash says "into this directory", as for scp.
    let wants_dir = local.as_os_str().to_string_lossy().ends_with('/');
    if (many || wants_dir) && !into_dir {
        return (
            vec![format!(
                "{}: is not a directory; {} go into an existing directory (make it first)",
                local.display(),
                if many {
                    "several sources"
                } else {
                    "a destination ending in /"
                }
            )],
            1,
        );
    }
    if !into_dir
        && let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return (
            vec![format!(
                "{}: its directory {} does not exist (make it first)",
                local.display(),
                parent.display()
            )],
            1,
        );
    }
    let target = if into_dir { local.join(name) } else { local };
    let listing = if args.recursive {
        match cp_xfer::simple(
            client,
            node,
            FileOp::Stat {
                path: path.to_string(),
            },
        )
        .await
        {
            Ok(e) if e.first().is_some_and(|e| e.kind == EntryKind::Dir) => {
                match cp_xfer::simple(
                    client,
                    node,
                    FileOp::List {
                        path: path.to_string(),
                    },
                )
                .await
                {
                    Ok(list) => Some(list),
                    Err(e) => return (vec![format!("{shown}: {e}")], 1),
                }
            }
            Ok(_) => None,
            Err(e) => return (vec![format!("{shown}: {e}")], 1),
        }
    } else {
        None
    };
    let Some(list) = listing else {
        let t = vec![Task::Get {
            remote: path.to_string(),
            local: target,
        }];
        let opts = Opts {
            count_size: true,
            ..opts
        };
        return (run_all(client, node, t, opts, moved).await, 1);
    };
    let mut failed = Vec::new();
    let mut tasks = Vec::new();
    let mut dirs_made: HashSet<String> = HashSet::new();
    let mut dir_times = Vec::new();
    moved.set_total(
        list.iter()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum(),
    );
    for e in &list {
        // The node's names are checked before any is joined to a local
        // path: whole components, each parent a directory it listed
        // before (never a link it listed), so nothing lands outside the
        // target, whatever the node says.
        let parts: Vec<&str> = if e.name.is_empty() {
            vec![]
        } else {
            e.name.split('/').collect()
        };
        if parts.iter().any(|p| !proto::files::valid_name(p)) {
            failed.push(format!(
                "{shown}: the node listed a bad name {:?}; skipped",
                e.name
            ));
            continue;
        }
        let parent = parts[..parts.len().saturating_sub(1)].join("/");
        if !e.name.is_empty() && !dirs_made.contains(&parent) {
            failed.push(format!(
                "{shown}/{}: listed before its directory; skipped",
                e.name
            ));
            continue;
        }
        let here = parts.iter().fold(target.clone(), |p, c| p.join(c));
        let remote = join(path, &e.name);
        match &e.kind {
            EntryKind::Dir => {
                let made = match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.is_dir() => Ok(()),
                    Ok(_) => Err("exists and is not a directory".to_string()),
                    Err(_) => std::fs::create_dir(&here).map_err(|e| e.to_string()),
                };
                match made {
                    Ok(()) => {
                        dirs_made.insert(e.name.clone());
                        if opts.preserve {
                            dir_times.push((parts.len(), here, e.mode, e.mtime));
                        }
                    }
                    Err(why) => failed.push(format!("{}: {why}", here.display())),
                }
            }
            EntryKind::File => tasks.push(Task::Get {
                remote,
                local: here,
            }),
            EntryKind::Symlink(t) => {
                // The same link there already (a copy run again) is fine.
                let same = || std::fs::read_link(&here).is_ok_and(|old| old == Path::new(t));
                if let Err(err) = std::os::unix::fs::symlink(t, &here)
                    && !same()
                {
                    failed.push(format!("{}: cannot make the link: {err}", here.display()));
                }
            }
            EntryKind::Other => failed.push(format!(
                "{shown}/{}: not a regular file, directory or link (a device, FIFO or socket); skipped",
                e.name
            )),
        }
    }
    let copies = list.len();
    failed.extend(run_all(client, node, tasks, opts, moved).await);
    dir_times.sort_by_key(|t| std::cmp::Reverse(t.0));
    for (_, dir, mode, mtime) in dir_times {
        if let Err(e) = cp_xfer::set_dir_attrs(&dir, mode, mtime) {
            failed.push(e);
        }
    }
    (failed, copies)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_are_local_remote_or_dash() {
        assert_eq!(parse_loc("-"), Ok(Loc::Dash));
        assert_eq!(
            parse_loc("worker-gpu-01:/srv/lab/f"),
            Ok(Loc::Remote {
                node: "worker-gpu-01".into(),
                path: "/srv/lab/f".into()
            })
        );
        assert_eq!(parse_loc("./a:b"), Ok(Loc::Local("./a:b".into())));
        assert_eq!(parse_loc("data"), Ok(Loc::Local("data".into())));
        let e = parse_loc("gpu:srv/f").unwrap_err();
        assert!(
            e.contains("absolute") && e.contains("gpu:/srv/lab/srv/f"),
            "{e}"
        );
        assert!(parse_loc(":/x").unwrap_err().contains("names no node"));
        assert!(parse_loc("bad name:/x").is_err());
    }

    #[test]
    fn names_and_joins() {
        assert_eq!(base("/srv/lab/f"), Some("f"));
        assert_eq!(base("/srv/lab/"), Some("lab"));
        assert_eq!(base("/"), None);
        assert_eq!(join("/srv/", "a/b"), "/srv/a/b");
        assert_eq!(join("/srv", ""), "/srv");
    }
}
