//! `openclaw job artifacts N [--get NAME] [-o DIR|-]` (issue 23): list a
//! job's artifacts, fetch one, or fetch them all. A fetched file is
//! written under a temporary name in the target directory and renamed only
//! once its size and SHA-256 match what the gateway recorded, so a broken
//! fetch never leaves a partial file under the final name.

use std::path::{Path, PathBuf};

use client::Client;
use proto::{JobArtifacts, Request, Response};

use crate::commands::CliError;
use crate::exit;
use crate::jobs_cli::run_error;
use crate::output;

/// What `job artifacts` was asked to do.
pub struct Ask {
    /// The job.
    pub id: u64,
    /// Fetch only this artifact.
    pub get: Option<String>,
    /// Where fetched files go (`-`: stdout, with `--get`).
    pub output: Option<String>,
    /// Machine-readable listing.
    pub json: bool,
}

/// `openclaw job artifacts`.
pub async fn artifacts(client: &Client, ask: Ask) -> Result<(), CliError> {
    if let Some(name) = &ask.get {
        return match ask.output.as_deref() {
            Some("-") => {
                let mut out = RawStdout;
                client
                    .fetch_artifact(ask.id, name, None, &mut out)
                    .await
                    .map_err(run_error)?;
                Ok(())
            }
            dir => {
                let dir = PathBuf::from(dir.unwrap_or("."));
                let path = fetch_into(client, ask.id, name, &dir).await?;
                crate::term::out(&format!("{}\n", path.display()));
                Ok(())
            }
        };
    }
    let list = list(client, ask.id).await?;
    if let Some(dir) = &ask.output {
        if dir == "-" {
            return Err(CliError::new(
                exit::USAGE,
                "-o - writes one artifact to stdout: name it with --get NAME",
            ));
        }
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            CliError::new(exit::FAILURE, format!("cannot make {}: {e}", dir.display()))
        })?;
        let stored: Vec<&str> = list
            .files
            .iter()
            .filter(|a| a.is_stored())
            .map(|a| a.name.as_str())
            .collect();
        if let Some((a, b)) = flat_clash(&stored) {
            return Err(CliError::new(
                exit::USAGE,
                format!(
                    "artifacts {a} and {b} would both be written as {} in {}; fetch them one at a time: openclaw job artifacts {} --get NAME -o FILE",
                    proto::artifact::flat_name(a),
                    dir.display(),
                    ask.id
                ),
            ));
        }
        for a in list.files.iter().filter(|a| a.is_stored()) {
            let path = fetch_into(client, ask.id, &a.name, &dir).await?;
            crate::term::out(&format!("{}\n", path.display()));
        }
        return Ok(());
    }
    if ask.json {
        return crate::term::out_json(&list)
            .map_err(|e| CliError::new(exit::FAILURE, e.to_string()));
    }
    crate::term::out(&text(&list));
    Ok(())
}

/// Standard output for an artifact's bytes, untouched (as `job logs`
/// writes a job's output: [`crate::term::raw_out`]).
struct RawStdout;

impl tokio::io::AsyncWrite for RawStdout {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        crate::term::raw_out(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The job's artifacts, from the gateway.
pub async fn list(client: &Client, id: u64) -> Result<JobArtifacts, CliError> {
    match client
        .call(Request::JobArtifacts {
            id,
            on_behalf_of: None,
        })
        .await
        .map_err(run_error)?
    {
        Response::Artifacts(a) => Ok(a),
        r => Err(CliError::new(
            exit::FAILURE,
            format!("unexpected reply {r:?}"),
        )),
    }
}

/// The listing as a table, then the job's note. Pure.
pub fn text(list: &JobArtifacts) -> String {
    let mut out = String::new();
    if list.files.is_empty() {
        out.push_str(&format!(
            "job {} has no artifacts{}\n",
            list.job,
            if list.patterns.is_empty() {
                " (it named none: openclaw run --artifact PATTERN)".to_string()
            } else {
                format!(" matching {}", list.patterns.join(" "))
            }
        ));
    } else {
        let rows: Vec<Vec<String>> = list
            .files
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.size.to_string(),
                    if a.is_stored() {
                        a.sha256.clone()
                    } else {
                        format!("{}: {}", a.state, a.note)
                    },
                ]
            })
            .collect();
        out.push_str(&output::table(&["NAME", "SIZE", "SHA256"], &rows));
    }
    if let Some(note) = &list.note {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

/// The lines `job show` adds for a job's artifacts. Pure.
pub fn show_lines(list: &JobArtifacts) -> String {
    if list.patterns.is_empty() {
        return String::new();
    }
    let mut out = format!("artifacts:   {}\n", list.patterns.join(" "));
    for a in &list.files {
        if a.is_stored() {
            out.push_str(&format!(
                "  {}  {} bytes  sha256:{}\n",
                a.name, a.size, a.sha256
            ));
        } else {
            out.push_str(&format!("  {}  {}: {}\n", a.name, a.state, a.note));
        }
    }
    if let Some(note) = &list.note {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

/// Two artifact names that flatten to the same file name in `-o DIR`
/// (`a/b` and `a_b`), if any: the second would replace the first. Pure.
fn flat_clash<'a>(names: &[&'a str]) -> Option<(&'a str, &'a str)> {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for n in names {
        if let Some(first) = seen.insert(proto::artifact::flat_name(n), n) {
            return Some((first, n));
        }
    }
    None
}

/// Fetches artifact `name` of job `id` into `dir`, atomically: a hidden
/// temporary file, renamed once its checksum matched. Returns the path.
async fn fetch_into(client: &Client, id: u64, name: &str, dir: &Path) -> Result<PathBuf, CliError> {
    proto::artifact::check_name(name).map_err(|e| CliError::new(exit::USAGE, e))?;
    let file = proto::artifact::flat_name(name);
    let target = dir.join(&file);
    let temp = dir.join(format!(".{file}.openclaw-part-{}", std::process::id()));
    let mut out = create_temp(&temp).await?;
    let got = client.fetch_artifact(id, name, None, &mut out).await;
    drop(out);
    if let Err(e) = got {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(run_error(e));
    }
    tokio::fs::rename(&temp, &target).await.map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!(
                "cannot move {} to {}: {e}",
                temp.display(),
                target.display()
            ),
        )
    })?;
    Ok(target)
}

/// Creates the temporary file new (`O_EXCL`, private): a link or a file
/// someone planted under its predictable name in a shared directory is
/// never followed or written through.
async fn create_temp(temp: &Path) -> Result<tokio::fs::File, CliError> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .await
        .map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!(
                    "cannot create {}: {e}; if it is left from an earlier fetch, remove it",
                    temp.display()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_flatten_to_one_file_are_caught_before_a_fetch() {
        assert_eq!(flat_clash(&["out/a.bin", "b.bin"]), None);
        assert_eq!(
            flat_clash(&["out/a.bin", "out_a.bin"]),
            Some(("out/a.bin", "out_a.bin"))
        );
        assert_eq!(flat_clash(&[]), None);
    }

    #[tokio::test]
    async fn a_planted_temporary_name_is_never_written_through() {
        #![allow(clippy::unwrap_used, clippy::panic)]
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let temp = tmp.path().join(".a.bin.openclaw-part-7");
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        let Err(e) = create_temp(&temp).await else {
            panic!("a planted link was opened")
        };
        assert!(e.message.contains("remove it"), "{}", e.message);
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        // A fresh name is created, private.
        let fresh = tmp.path().join(".b.bin.openclaw-part-7");
        let Ok(made) = create_temp(&fresh).await else {
            panic!("a fresh temporary name was refused")
        };
        drop(made);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn the_listing_says_why_a_file_is_missing() {
        let list = JobArtifacts {
            job: 4,
            patterns: vec!["*.bin".into()],
            note: Some("node n1 runs an older agent".into()),
            files: vec![
                proto::ArtifactInfo {
                    name: "a.bin".into(),
                    size: 3,
                    sha256: "ab".into(),
                    state: "stored".into(),
                    note: String::new(),
                },
                proto::ArtifactInfo {
                    name: "big.bin".into(),
                    size: 9,
                    sha256: String::new(),
                    state: "refused".into(),
                    note: "over the cap".into(),
                },
            ],
        };
        let t = text(&list);
        assert!(t.contains("a.bin") && t.contains("ab"), "{t}");
        assert!(t.contains("refused: over the cap"), "{t}");
        assert!(t.contains("note: node n1 runs an older agent"), "{t}");
        let s = show_lines(&list);
        assert!(s.starts_with("artifacts:   *.bin\n"), "{s}");
        let none = JobArtifacts {
            job: 5,
            ..JobArtifacts::default()
        };
        assert!(text(&none).contains("job 5 has no artifacts (it named none"));
        assert_eq!(show_lines(&none), "");
    }
}
