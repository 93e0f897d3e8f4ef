//! Job options ([`proto::JobOption`]), checked once at submit into what the
//! rest of the gateway reads. Pure: no store, no clock.

use proto::{ApiError, ErrorCode, JobOption, MAX_JOB_OPTIONS};

/// A submission's options, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Artifact patterns (`--artifact`), checked by
    /// [`proto::artifact::check_patterns`].
    pub artifacts: Vec<String>,
    /// The project to charge (`--project`); membership is checked at
    /// submit (`jobs/share.rs`), where the configuration is.
    pub project: Option<String>,
    /// The priority asked for (`--priority`), before the policy's cap.
    pub priority: i32,
    /// It may be stopped and queued again (`--preemptible`).
    pub preemptible: bool,
}

/// Checks a request's options. The match names every option, so a new
/// one cannot be ignored by accident: a job must not run without what its
/// requester asked for (an older gateway cannot decode a newer option, and
/// the requester is told the request was not understood).
pub fn check(options: &[JobOption]) -> Result<Options, ApiError> {
    if options.len() > MAX_JOB_OPTIONS {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "a job may carry at most {MAX_JOB_OPTIONS} options, this one has {}; \
                 give fewer --artifact patterns",
                options.len()
            ),
        ));
    }
    let mut out = Options::default();
    let mut priority_seen = false;
    let twice = |o: &JobOption| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("{} was given twice; give it once", o.flag()),
        )
    };
    for o in options {
        match o {
            JobOption::Project(p) => {
                proto::names::validate_name(p).map_err(|e| {
                    ApiError::new(ErrorCode::InvalidArgument, format!("--project: {e}"))
                })?;
                if out.project.replace(p.clone()).is_some() {
                    return Err(twice(o));
                }
            }
            JobOption::Priority(n) => {
                if std::mem::replace(&mut priority_seen, true) {
                    return Err(twice(o));
                }
                out.priority = *n;
            }
            JobOption::Preemptible => out.preemptible = true,
            JobOption::Artifact(p) => out.artifacts.push(p.clone()),
        }
    }
    proto::artifact::check_patterns(&out.artifacts)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_is_the_plain_submission() {
        assert_eq!(check(&[]), Ok(Options::default()));
    }

    #[test]
    fn accounts_options_are_read() {
        let o = check(&[
            JobOption::Project("vision".into()),
            JobOption::Priority(3),
            JobOption::Preemptible,
        ])
        .unwrap();
        assert_eq!(
            o,
            Options {
                artifacts: vec![],
                project: Some("vision".into()),
                priority: 3,
                preemptible: true,
            }
        );
        let e = check(&[JobOption::Project("Bad Name".into())]).unwrap_err();
        assert!(e.message.contains("--project"), "{}", e.message);
        let e = check(&[
            JobOption::Project("a".into()),
            JobOption::Project("b".into()),
        ])
        .unwrap_err();
        assert!(e.message.contains("given twice"), "{}", e.message);
    }

    #[test]
    fn too_many_options_are_refused_with_the_limit() {
        let many = vec![JobOption::Preemptible; MAX_JOB_OPTIONS + 1];
        let e = check(&many).unwrap_err();
        assert!(e.message.contains("at most 64"), "{}", e.message);
    }

    #[test]
    fn artifact_patterns_are_kept_and_bad_ones_refused() {
        let ok = check(&[
            JobOption::Artifact("ckpt/*.pt".into()),
            JobOption::Artifact("metrics.json".into()),
        ])
        .unwrap();
        assert_eq!(ok.artifacts, ["ckpt/*.pt", "metrics.json"]);
        for bad in ["/etc/shadow", "../up", "a\u{7}b"] {
            let e = check(&[JobOption::Artifact(bad.into())]).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
            assert!(e.message.contains("artifact pattern"), "{}", e.message);
        }
    }
}
