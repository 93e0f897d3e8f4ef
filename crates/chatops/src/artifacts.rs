//! A job's artifacts in chat (issue 23): the final message lists them;
//! a platform that can take files (Slack) gets the small ones in the job's
//! thread, and every other one is named with the CLI command that fetches
//! it.

use chat::render::Markup;
use client::ClientError;
use proto::{JobArtifacts, JobInfo, Request, Response};

use crate::{Api, Engine, Origin, Surface};

/// Most artifacts a final message names one by one.
const SHOWN: usize = 10;

impl<S: Surface, G: Api> Engine<S, G> {
    /// Job `j`'s artifacts as `o`'s user may see them; `None` when it has
    /// none or the gateway cannot say (an older one answers an error).
    pub(crate) async fn artifacts_of(&self, o: &Origin, j: &JobInfo) -> Option<JobArtifacts> {
        let req = Request::JobArtifacts {
            id: j.id,
            on_behalf_of: Some(self.identity(&o.user)),
        };
        match self.gateway.call(req).await {
            Ok(Response::Artifacts(a)) if !a.patterns.is_empty() => Some(a),
            _ => None,
        }
    }

    /// Uploads the stored artifacts of `list` no larger than the surface
    /// takes into the job's thread; returns the names uploaded.
    pub(crate) async fn upload_artifacts(
        &self,
        o: &Origin,
        j: &JobInfo,
        list: &JobArtifacts,
    ) -> Vec<String> {
        let max = self.surface.artifact_upload_max();
        let mut sent = Vec::new();
        for a in list
            .files
            .iter()
            .filter(|a| a.is_stored() && a.size <= max)
            .take(SHOWN)
        {
            let who = Some(self.identity(&o.user));
            let bytes = match self.gateway.artifact(j.id, &a.name, who).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(job = j.id, artifact = %a.name, error = %e, "cannot fetch an artifact for chat");
                    continue;
                }
            };
            match self.surface.attach_artifact(o, j, &a.name, &bytes).await {
                Ok(()) => sent.push(a.name.clone()),
                Err(why) => {
                    tracing::info!(job = j.id, artifact = %a.name, %why, "not uploaded to chat");
                }
            }
        }
        sent
    }
}

/// The lines a final message adds for a job's artifacts: each stored one
/// with its size, uploaded ones marked, the others with the CLI command
/// that fetches them; those not kept with why. Pure.
pub fn lines(list: &JobArtifacts, uploaded: &[String], m: &dyn Markup) -> String {
    let stored: Vec<_> = list.files.iter().filter(|a| a.is_stored()).collect();
    let mut out = format!("\nArtifacts: {} kept", stored.len());
    let others = list.files.len() - stored.len();
    if others > 0 {
        out.push_str(&format!(", {others} not kept"));
    }
    for a in list.files.iter().take(SHOWN) {
        let name = m.escape(&a.name);
        if !a.is_stored() {
            out.push_str(&format!("\n• {name}: {} ({})", a.state, m.escape(&a.note)));
        } else if uploaded.contains(&a.name) {
            out.push_str(&format!("\n• {name} ({} bytes, attached)", a.size));
        } else {
            out.push_str(&format!(
                "\n• {name} ({} bytes): `openclaw job artifacts {} --get {}`",
                a.size,
                list.job,
                m.escape(&shell_word(&a.name))
            ));
        }
    }
    if list.files.len() > SHOWN {
        out.push_str(&format!(
            "\n… and {} more: `openclaw job artifacts {}`",
            list.files.len() - SHOWN,
            list.job
        ));
    }
    if let Some(note) = &list.note {
        out.push_str(&format!("\n{}", m.escape(note)));
    }
    out
}

/// `name` as one shell word (single-quoted unless plain).
fn shell_word(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        name.to_string()
    } else {
        format!("'{}'", name.replace('\'', "'\\''"))
    }
}

/// Fetches one artifact's bytes for chat (at most what a surface uploads).
pub(crate) async fn fetch(
    c: &client::Client,
    id: u64,
    name: &str,
    who: Option<String>,
) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.fetch_artifact(id, name, who, &mut out).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Plain;
    impl Markup for Plain {
        fn escape(&self, s: &str) -> String {
            s.replace('`', "'")
        }
        fn mention(&self, identity: &str) -> String {
            identity.to_string()
        }
    }

    #[test]
    fn the_final_lines_name_each_artifact_and_how_to_fetch_it() {
        let a = |name: &str, state: &str, note: &str| proto::ArtifactInfo {
            name: name.into(),
            size: 5,
            sha256: "ab".into(),
            state: state.into(),
            note: note.into(),
        };
        let list = JobArtifacts {
            job: 9,
            patterns: vec!["*".into()],
            note: None,
            files: vec![
                a("metrics.json", "stored", ""),
                a("ckpt/last pt", "stored", ""),
                a("big.bin", "refused", "over the cap"),
            ],
        };
        let t = lines(&list, &["metrics.json".to_string()], &Plain);
        assert!(t.contains("Artifacts: 2 kept, 1 not kept"), "{t}");
        assert!(t.contains("metrics.json (5 bytes, attached)"), "{t}");
        assert!(
            t.contains("`openclaw job artifacts 9 --get 'ckpt/last pt'`"),
            "{t}"
        );
        assert!(t.contains("big.bin: refused (over the cap)"), "{t}");
    }
}
