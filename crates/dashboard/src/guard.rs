//! Who may use the dashboard: the token when bound beyond loopback, the
//! Host header against DNS rebinding, and CSRF checks for every change.
//! Pure decisions over request parts.

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No or wrong token: 401.
    Token,
    /// A Host header this dashboard does not answer to: 421.
    Host,
    /// A state change without the page's CSRF token or from another origin: 403.
    Csrf,
}

/// What a request carries that the guard reads.
#[derive(Debug, Default, Clone)]
pub struct Parts<'a> {
    /// `Host` header.
    pub host: Option<&'a str>,
    /// `Cookie` header.
    pub cookie: Option<&'a str>,
    /// `Authorization` header.
    pub authorization: Option<&'a str>,
    /// `Origin` header.
    pub origin: Option<&'a str>,
}

/// The cookie that carries the token after `/login`.
pub const COOKIE: &str = "openclaw_dashboard";

fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether `host` (a Host header) names this dashboard: the bound
/// address, or localhost / 127.0.0.1 / [::1] on the bound port.
pub fn host_ok(host: &str, bound: std::net::SocketAddr) -> bool {
    if host == bound.to_string() {
        return true;
    }
    let port = bound.port().to_string();
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) => (n, p),
        None => return false,
    };
    p == port && matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

/// Checks a request. `token`: the token every request needs (bound beyond
/// loopback), if any. `change`: the request changes state (POST), and then
/// `csrf_form` is the CSRF field it carried and `csrf` the page's.
pub fn check(
    parts: &Parts<'_>,
    bound: std::net::SocketAddr,
    token: Option<&str>,
    change: Option<(&str, &str)>,
) -> Result<(), Refusal> {
    match parts.host {
        Some(h) if host_ok(h, bound) => {}
        _ => return Err(Refusal::Host),
    }
    if let Some(token) = token {
        let bearer = parts.authorization.and_then(|a| a.strip_prefix("Bearer "));
        let cookie = parts.cookie.and_then(|c| cookie_value(c, COOKIE));
        let ok = [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|t| pki::constant_time_eq(t.as_bytes(), token.as_bytes()));
        if !ok {
            return Err(Refusal::Token);
        }
    }
    if let Some((sent, want)) = change {
        let origin_ok = match (parts.origin, parts.host) {
            (Some(o), Some(h)) => o == format!("http://{h}"),
            _ => false,
        };
        if !origin_ok || !pki::constant_time_eq(sent.as_bytes(), want.as_bytes()) {
            return Err(Refusal::Csrf);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let bound: std::net::SocketAddr =
            "127.0.0.1:7680".parse().unwrap_or_else(|_| unreachable!());
        let p = |host, cookie, auth, origin| Parts {
            host,
            cookie,
            authorization: auth,
            origin,
        };
        let ok = Some("127.0.0.1:7680");
        type Case<'a> = (
            Parts<'a>,
            Option<&'a str>,
            Option<(&'a str, &'a str)>,
            Result<(), Refusal>,
        );
        let cases: &[Case<'_>] = &[
            (p(ok, None, None, None), None, None, Ok(())),
            (
                p(Some("localhost:7680"), None, None, None),
                None,
                None,
                Ok(()),
            ),
            (
                p(Some("evil.example:7680"), None, None, None),
                None,
                None,
                Err(Refusal::Host),
            ),
            (
                p(Some("localhost:80"), None, None, None),
                None,
                None,
                Err(Refusal::Host),
            ),
            (p(None, None, None, None), None, None, Err(Refusal::Host)),
            (
                p(ok, None, None, None),
                Some("s3cret"),
                None,
                Err(Refusal::Token),
            ),
            (
                p(ok, Some("a=b; openclaw_dashboard=s3cret"), None, None),
                Some("s3cret"),
                None,
                Ok(()),
            ),
            (
                p(ok, Some("openclaw_dashboard=wrong"), None, None),
                Some("s3cret"),
                None,
                Err(Refusal::Token),
            ),
            (
                p(ok, None, Some("Bearer s3cret"), None),
                Some("s3cret"),
                None,
                Ok(()),
            ),
            (
                p(ok, None, None, Some("http://127.0.0.1:7680")),
                None,
                Some(("c", "c")),
                Ok(()),
            ),
            (
                p(ok, None, None, Some("http://evil.example")),
                None,
                Some(("c", "c")),
                Err(Refusal::Csrf),
            ),
            (
                p(ok, None, None, None),
                None,
                Some(("c", "c")),
                Err(Refusal::Csrf),
            ),
            (
                p(ok, None, None, Some("http://127.0.0.1:7680")),
                None,
                Some(("x", "c")),
                Err(Refusal::Csrf),
            ),
        ];
        for (i, (parts, token, change, want)) in cases.iter().enumerate() {
            assert_eq!(&check(parts, bound, *token, *change), want, "case {i}");
        }
    }
}
