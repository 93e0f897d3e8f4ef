use super::*;

#[test]
fn template_parses_to_defaults() {
    let cfg = Config::parse(&Config::template("gw-1", "0.0.0.0:7443", None)).unwrap();
    assert_eq!(cfg.name, "gw-1");
    assert_eq!(cfg.listen, "0.0.0.0:7443");
    assert_eq!(cfg.pending_ttl, Duration::from_secs(86_400));
    assert_eq!(cfg.dead_after, Duration::from_secs(3));
    assert_eq!(cfg.node_cert_ttl, Duration::from_secs(30 * 86_400));
    assert_eq!(cfg.state.url, None, "SQLite by default");
    assert_eq!(cfg.state.pool_size, 4);
    assert_eq!(cfg.udp_payload_max, 1452);
    // The file names the default env_allow exactly as the code does.
    assert_eq!(
        cfg.policy.env_allow,
        proto::env::DEFAULT_ALLOW
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn state_url_is_postgres_without_a_password() {
    for (url, ok) in [
        ("postgres://openclaw@db:5432/openclaw", true),
        (
            "postgresql://openclaw@127.0.0.1/openclaw?sslmode=require",
            true,
        ),
        ("postgres://db/openclaw", true),
        ("postgres://openclaw:hunter2@db/openclaw", false),
        ("postgres://openclaw@db/openclaw?password=hunter2", false),
        (
            "postgres://openclaw@db/openclaw?sslmode=disable&PASSWORD=hunter2",
            false,
        ),
        ("postgres://openclaw@db/openclaw?pass%77ord=hunter2", false),
        ("postgres://openclaw@db/openclaw?sslpassword=hunter2", false),
        ("postgres://openclaw@db/openclaw#password=hunter2", false),
        (
            "postgres://openclaw@db/openclaw?%2570assword=hunter2",
            false,
        ),
        (
            "postgres://openclaw@db/openclaw?sslmode=require&target_session_attrs=read-write",
            true,
        ),
        ("postgres:///openclaw", false),
        ("postgres://@/x", false),
        ("sqlite:///var/lib/state.db", false),
        ("mysql://db/x", false),
    ] {
        let text = format!("[state]\nurl = \"{url}\"\n");
        let got = Config::parse(&text);
        assert_eq!(got.is_ok(), ok, "{url}: {got:?}");
        if let Err(e) = got {
            assert!(e.starts_with("state.url"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
    // A line TOML cannot parse is quoted in its error, redacted.
    for bad in [
        "[state]\nurl = \"postgres://u:hunter2@db/x\" junk\n",
        "[state]\nurl = \"postgres://u@db/x?password=hunter2\n",
        "[state]\nurl = postgres://u:hunter2@db/x\n",
        "[state]\nurll = 'postgres://u:hun ter2@db/x'\n",
    ] {
        let e = Config::parse(bad).unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("hun ter2"), "{e}");
    }
    let cfg = Config::parse("[state]\nurl = \"\"\npool_size = 1000\n").unwrap();
    assert_eq!((cfg.state.url, cfg.state.pool_size), (None, 64));
    assert!(
        Config::parse("[state]\npasword_file = \"x\"\n").is_err(),
        "typo refused"
    );
}

#[test]
fn advertise_must_be_host_and_port() {
    for (a, ok) in [
        ("gw.example.org:7443", true),
        ("10.1.2.3:7443", true),
        ("[2001:db8::1]:7443", true),
        ("gw.example.org", false),
        ("gw.example.org:0", false),
        ("gw.example.org:70000", false),
        (":7443", false),
        ("[not-v6]:7443", false),
        ("gw example:7443", false),
        ("gw/../x:7443", false),
    ] {
        let text = format!("[gateway]\nadvertise = \"{a}\"\n");
        let r = Config::parse(&text);
        assert_eq!(r.is_ok(), ok, "{a}: {:?}", r.as_ref().err());
        if let Err(e) = r {
            assert!(e.starts_with("gateway.advertise: "), "{e}");
            assert!(e.contains("is not HOST:PORT"), "{e}");
        }
    }
    let cfg = Config::parse(&Config::template("gw", "0.0.0.0:7443", Some("gw.lab:7443"))).unwrap();
    assert_eq!(cfg.advertise.as_deref(), Some("gw.lab:7443"));
}

#[test]
fn named_jobs_and_aliases() {
    let cfg = Config::parse(
        "[jobs.training]\ncommand = [\"python\", \"train.py\"]\nrole = \"gpu\"\naliases = [\"Train Model\"]\ntimeout = \"12h\"",
    )
    .unwrap();
    let (name, job) = cfg.named_job("train model").unwrap();
    assert_eq!(name, "training");
    assert_eq!(job.timeout, Some(Duration::from_secs(43_200)));
    assert!(cfg.named_job("training").is_some());
    assert!(cfg.named_job("nope").is_none());
}

#[test]
fn empty_file_is_defaults() {
    let cfg = Config::parse("").unwrap();
    assert_eq!(cfg.listen, DEFAULT_LISTEN);
}

#[test]
fn udp_payload_max_is_read_from_the_file() {
    let cfg = Config::parse("[gateway]\nudp_payload_max = 1452").unwrap();
    assert_eq!(cfg.udp_payload_max, 1452);
}

#[test]
fn bad_files_are_clear_errors() {
    let cases = [
        ("[gateway]\nlisten = 5", "listen"),
        ("[gateway]\nlistn = \"x\"", "listn"),
        ("[liveness]\ndead_after = \"soon\"", "dead_after"),
        (
            "[liveness]\nheartbeat_interval = \"2s\"\ndead_after = \"3s\"",
            "twice",
        ),
        ("[gateway]\nname = \"Bad Name\"", "gateway.name"),
        (
            "[gateway]\nudp_payload_max = 1199",
            "gateway.udp_payload_max = 1199 is outside 1200..6550",
        ),
        (
            "[gateway]\nudp_payload_max = 6551",
            "gateway.udp_payload_max = 6551 is outside",
        ),
        (
            "[gateway]\nudp_payload_max = -1",
            "gateway.udp_payload_max = -1 is outside",
        ),
        ("[gateway]\nudp_payload_max = \"big\"", "udp_payload_max"),
        ("not toml [", ""),
        ("[policy]\nrun_on_gateway = true", "never runs jobs"),
        ("[policy]\ndefault = \"maybe\"", "policy.default"),
        (
            "[jobs.x]\ncommand = []\nrole = \"gpu\"",
            "command must not be empty",
        ),
        ("[jobs.x]\ncommand = [\"a\"]", "exactly one of role or node"),
        (
            "[[policy.rules]]\naction = \"nope\"",
            "policy.rules[0].action",
        ),
        (
            "[[policy.files]]\nfiles = \"maybe\"",
            "policy.files[0].files",
        ),
        (
            "[[policy.files]]\ndirection = \"sideways\"\nfiles = \"deny\"",
            "policy.files[0].direction",
        ),
        (
            "[jobs.x]\ncommand = [\"a\"]\nrole = \"gpu\"\nenv = { LD_PRELOAD = \"x\" }",
            "LD_PRELOAD",
        ),
    ];
    for (text, want) in cases {
        let err = Config::parse(text).unwrap_err();
        assert!(err.contains(want), "{text}: {err}");
    }
}
#[test]
fn file_rules_parse_with_their_direction() {
    let cfg = Config::parse(
        "[[policy.files]]\nnodes = [\"secure-*\"]\nusers = [\"user:*\"]\ndirection = \"upload\"\nfiles = \"deny\"\n\
         [[policy.files]]\nfiles = \"allow\"\n",
    )
    .unwrap();
    assert_eq!(
        cfg.policy.files,
        vec![
            FileRule {
                nodes: vec!["secure-*".into()],
                users: vec!["user:*".into()],
                direction: Some(proto::files::Direction::ToNode),
                files: Action::Deny,
            },
            FileRule {
                nodes: vec![],
                users: vec![],
                direction: None,
                files: Action::Allow,
            },
        ]
    );
    assert!(Config::parse("").unwrap().policy.files.is_empty());
}

#[test]
fn output_that_a_failover_would_lose_is_refused() {
    let state = |extra: &str| {
        Config::parse(&format!(
            "[gateway]\nname = \"gw\"\nlisten = \"127.0.0.1:0\"\n[state]\n{extra}"
        ))
        .map(|c| c.state)
    };
    let pg = true;
    // The default: the database with PostgreSQL, files with SQLite.
    assert_eq!(
        output_store(pg, &state("").unwrap()),
        Ok(OutputStore::Database)
    );
    assert_eq!(
        output_store(!pg, &state("").unwrap()),
        Ok(OutputStore::Files)
    );
    // Files-only on PostgreSQL: refused unless logs_dir is declared shared.
    let files = state("output = \"files\"").unwrap();
    let e = output_store(pg, &files).unwrap_err();
    assert!(
        e.contains("logs_dir_shared = true") && e.contains("standby"),
        "{e}"
    );
    let shared = state("output = \"files\"\nlogs_dir_shared = true").unwrap();
    assert_eq!(output_store(pg, &shared), Ok(OutputStore::Files));
    // The database needs PostgreSQL.
    let db = state("output = \"database\"").unwrap();
    assert!(
        output_store(!pg, &db)
            .unwrap_err()
            .contains("needs PostgreSQL")
    );
    assert_eq!(output_store(pg, &db), Ok(OutputStore::Database));
    assert!(
        state("output = \"s3\"")
            .unwrap_err()
            .contains("state.output")
    );
}
