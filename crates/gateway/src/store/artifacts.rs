//! Job artifacts (issue 23): the patterns a job gave, and the rows of the
//! files its node uploaded. The bytes live in files under the logs
//! directory (`jobs/artifacts.rs`); this is only their index.

use super::sql::params;
use super::{StoreError, Tx, i, u};

/// How an artifact row ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactState {
    /// Its bytes are stored and their checksum checked.
    Stored,
    /// The gateway kept no bytes (over a cap, a bad checksum, a cut upload).
    Refused,
    /// The node did not collect it (a symlink, a device, over a cap).
    Skipped,
}

impl ArtifactState {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactState::Stored => "stored",
            ArtifactState::Refused => "refused",
            ArtifactState::Skipped => "skipped",
        }
    }
}

impl Tx<'_> {
    /// Records the artifact patterns job `id` gave.
    pub fn set_artifact_patterns(&self, id: u64, patterns: &[String]) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE jobs SET artifacts = ?2 WHERE id = ?1",
            params![i(id), patterns.join("\n")],
        )?;
        Ok(())
    }

    /// The artifact patterns job `id` gave (empty for none).
    pub fn artifact_patterns(&self, id: u64) -> Result<Vec<String>, StoreError> {
        let text = self.texts("SELECT artifacts FROM jobs WHERE id = ?1", params![i(id)])?;
        Ok(text
            .first()
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default())
    }

    /// Says why job `id` has no artifacts (or what went wrong collecting them).
    pub fn set_artifacts_note(&self, id: u64, note: &str) -> Result<(), StoreError> {
        self.0.exec(
            "UPDATE jobs SET artifacts_note = ?2 WHERE id = ?1",
            params![i(id), note],
        )?;
        Ok(())
    }

    /// Why job `id` has no artifacts, if it was said.
    pub fn artifacts_note(&self, id: u64) -> Result<Option<String>, StoreError> {
        let row = self.one(
            "SELECT artifacts_note FROM jobs WHERE id = ?1",
            params![i(id)],
        )?;
        match row {
            Some(r) => r.get(0),
            None => Ok(None),
        }
    }

    /// Forgets every artifact row of job `id` (a new upload replaces an
    /// earlier, broken one).
    pub fn clear_artifacts(&self, id: u64) -> Result<(), StoreError> {
        self.0
            .exec("DELETE FROM artifacts WHERE job = ?1", params![i(id)])?;
        Ok(())
    }

    /// Records one artifact of job `id`; `seq` names its stored file.
    pub fn put_artifact(
        &self,
        id: u64,
        seq: u64,
        a: &proto::ArtifactInfo,
    ) -> Result<(), StoreError> {
        self.0.exec(
            "INSERT INTO artifacts (job, seq, name, size, sha256, state, note) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                i(id),
                i(seq),
                a.name.as_str(),
                i(a.size),
                a.sha256.as_str(),
                a.state.as_str(),
                a.note.as_str()
            ],
        )?;
        Ok(())
    }

    /// Job `id`'s artifacts in the order they arrived, each with its `seq`.
    pub fn artifacts(&self, id: u64) -> Result<Vec<(u64, proto::ArtifactInfo)>, StoreError> {
        self.0
            .query(
                "SELECT seq, name, size, sha256, state, note FROM artifacts WHERE job = ?1 ORDER BY seq",
                params![i(id)],
            )?
            .iter()
            .map(|r| {
                Ok((
                    u(r.get(0)?),
                    proto::ArtifactInfo {
                        name: r.get(1)?,
                        size: u(r.get(2)?),
                        sha256: r.get(3)?,
                        state: r.get(4)?,
                        note: r.get(5)?,
                    },
                ))
            })
            .collect()
    }

    /// Deletes the artifact rows of jobs that no longer exist (after
    /// [`Tx::prune_jobs`]); returns how many.
    pub fn prune_artifacts(&self) -> Result<usize, StoreError> {
        self.0.exec(
            "DELETE FROM artifacts WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = artifacts.job)",
            params![],
        )
    }
}
