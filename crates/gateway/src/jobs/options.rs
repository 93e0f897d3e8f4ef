//! Job options ([`proto::JobOption`]), checked once at submit into what the
//! rest of the gateway reads. Pure: no store, no clock.

use proto::{ApiError, ErrorCode, JobOption, MAX_JOB_OPTIONS};

/// A submission's options, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Artifact patterns (`--artifact`), checked by
    /// [`proto::artifact::check_patterns`].
    pub artifacts: Vec<String>,
}

/// Checks a request's options. Each option this gateway does not act on is
/// refused by name, never ignored: a job must not run without what its
/// requester asked for.
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
    for o in options {
        match o {
            JobOption::Artifact(p) => out.artifacts.push(p.clone()),
            JobOption::Project(_) | JobOption::Priority(_) | JobOption::Preemptible => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "this gateway does not support {} yet; upgrade the gateway or run without it",
                        o.flag()
                    ),
                ));
            }
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
