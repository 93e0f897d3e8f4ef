use super::terminal::finish;
use super::*;

// --- secrets in messages ----------------------------------------------------------

#[test]
fn attack_a_malformed_state_url_never_echoes_its_password() {
    // (URL, the secret in it): userinfo, query and fragment passwords,
    // spelled every way, in URLs that fail the check, fail to parse or
    // fail to connect.
    let urls = [
        (
            "postgres://u@127.0.0.1:1/db?password=PwQ1zz&bogus=1",
            "PwQ1zz",
        ),
        (
            "postgres://u@127.0.0.1:1/db?pass%77ord=PwQ2zz&bogus=1",
            "PwQ2zz",
        ),
        ("postgres://u@127.0.0.1:1/db?%2570assword=PwQ3zz", "PwQ3zz"),
        ("postgres://u@127.0.0.1:1/db?sslpassword=PwQ4zz", "PwQ4zz"),
        ("postgres://u@127.0.0.1:1/db?password&PwQ5zz", "PwQ5zz"),
        ("postgres://u@127.0.0.1:1/db?PwQ6zz", "PwQ6zz"),
        ("postgres://u@127.0.0.1:1/db#password=PwQ7zz", "PwQ7zz"),
        ("postgres://u:PwQ8zz@127.0.0.1:99999/db", "PwQ8zz"),
        ("postgres://u:Pw@Q9zz@127.0.0.1:1/db?bogus", "Q9zz"),
        ("postgres://u:Pw/Q10zz@127.0.0.1:1/db", "Q10zz"),
        ("postgres://u:Pw?Q11zz@127.0.0.1:1/db", "Q11zz"),
        ("postgres://u:Pw Q12zz@127.0.0.1:1/db", "Q12zz"),
    ];
    let mut lab = Lab::new(BIN);
    let gw = lab.gw_home.clone();
    let cfg = gw.join("gateway.toml");
    let clean = std::fs::read_to_string(&cfg).unwrap();
    let backup = lab.dir().join("backup.tar");
    let mut runs = 0;
    let mut check = |what: &str, secret: &str, out: testkit::Out| {
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.contains(secret),
                "{what}: {stream} echoes the password {secret:?}:\n{text}"
            );
        }
        runs += 1;
        out
    };
    for (url, secret) in urls {
        // On the command line: init, join, migrate-state.
        let home = lab.home("init");
        let out = check(
            &format!("gateway init --state {url}"),
            secret,
            lab.run(
                &home,
                &[
                    "gateway",
                    "init",
                    "--listen",
                    "127.0.0.1:0",
                    "--name",
                    "g2",
                    "--state",
                    url,
                ],
            ),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        let home = lab.home("join");
        let out = check(
            &format!("gateway join --state {url}"),
            secret,
            lab.run(
                &home,
                &[
                    "gateway",
                    "join",
                    "--listen",
                    "127.0.0.1:0",
                    "--name",
                    "g3",
                    "--ca-from",
                    gw.to_str().unwrap(),
                    "--state",
                    url,
                ],
            ),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        let out = check(
            &format!("migrate-state --to {url}"),
            secret,
            lab.admin(&["gateway", "migrate-state", "--to", url]),
        );
        assert_ne!(out.code, 0, "{url}: {out:?}");
        // In gateway.toml: well-formed TOML, and a line TOML cannot parse
        // (its error quotes the line).
        for line in [format!("url = {url:?}"), format!("url = {url:?} oops")] {
            let text = clean.replacen("url = \"\"", &line, 1);
            assert_ne!(text, clean, "the [state] url edit matched");
            std::fs::write(&cfg, text).unwrap();
            let start = lab.spawn(&gw, &["gateway", "run"]);
            let out = check(&format!("gateway run with {line}"), secret, finish(start));
            assert_ne!(out.code, 0, "{line}: {out:?}");
            for args in [
                &["gateway", "status"][..],
                &["gateway", "status", "--json"],
                &["doctor"],
                &["doctor", "--json"],
                &["gateway", "backup", backup.to_str().unwrap()],
                &[
                    "gateway",
                    "migrate-state",
                    "--to",
                    "postgres://u@127.0.0.1:1/db",
                ],
            ] {
                check(&format!("{args:?} with {line}"), secret, lab.admin(args));
            }
        }
        std::fs::write(&cfg, &clean).unwrap();
    }
    assert_eq!(runs, urls.len() * (3 + 2 * 7));
    // The gateway still starts with its own config.
    lab.start_gateway();
}
