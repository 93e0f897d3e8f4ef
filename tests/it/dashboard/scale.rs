use super::*;

/// 1,000 nodes with 2 simulated GPUs each: the pages stay paged (50 nodes,
/// 100 GPU cards), the overview counts all of them from one summary, and
/// following the "next" links of the GPU and node lists visits every node
/// once; a node's own page shows its GPUs.
#[test]
fn the_dashboard_pages_a_thousand_gpu_nodes() {
    let mut lab = Lab::with_config(BIN, |cfg| {
        *cfg = cfg
            .replace("rate_per_minute = 60", "rate_per_minute = 100000")
            .replace("heartbeat_interval = \"1s\"", "heartbeat_interval = \"5s\"")
            .replace("dead_after = \"3s\"", "dead_after = \"15s\"");
    });
    lab.start_gateway();
    let token = lab.token(&[
        "--auto-approve",
        "--uses",
        "1000",
        "--labels",
        "sim",
        "--max-gpus",
        "2",
    ]);
    let addr = std::fs::read_to_string(lab.gw_home.join("gateway.addr")).unwrap();
    let opts = SwarmOptions {
        nodes: 1000,
        gpus: 2,
        keep_alive: (Duration::from_secs(5), Duration::from_secs(15)),
        ..Default::default()
    };
    let (swarm, _) = Swarm::start(
        &lab.dir().join("swarm"),
        addr.trim(),
        &token,
        &opts,
        Duration::from_secs(300),
    )
    .unwrap();
    let (d, url) = dashboard(&mut lab, &["--listen", "127.0.0.1:0"]);
    let token = printed_token(&d, &url);
    let (host, b_) = (authority(&url).to_string(), base(&url).to_string());
    let get = |path: &str| {
        raw(
            &url,
            &format!(
                "GET {b_}{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            ),
        )
    };

    let overview = wait_until(T, "every GPU in the overview", || {
        let p = get("/");
        p.contains("<dd id=\"gpus-free\">2000</dd>").then_some(p)
    });
    assert!(overview.contains("1000 nodes</a> by health"), "{overview}");

    let mut seen = Vec::new();
    let mut path = "/gpus".to_string();
    loop {
        let page = get(&path);
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        let cards = page.matches("<article class=\"gpu").count();
        assert!(cards <= 100, "{path}: {cards} cards on one page");
        for chunk in page.split("aria-label=\"").skip(1) {
            if let Some(name) = chunk
                .split(" GPU 0\"")
                .next()
                .filter(|n| n.starts_with("sim-") && !n.contains('"'))
            {
                seen.push(name.to_string());
            }
        }
        match page.split("href=\"gpus?after=").nth(1) {
            Some(rest) => path = format!("/gpus?after={}", rest.split('"').next().unwrap()),
            None => break,
        }
    }
    assert_eq!(
        seen, swarm.names,
        "every node once, in name order, 50 a page"
    );

    // The node list, paged the same way: one row per node.
    let mut listed = Vec::new();
    let mut path = "/nodes".to_string();
    loop {
        let page = get(&path);
        assert!(page.starts_with("HTTP/1.1 200"), "{path}: {page}");
        let rows = page.matches("<tr><td class=\"node\">").count();
        assert!(rows <= 50, "{path}: {rows} rows on one page");
        for chunk in page
            .split("<tr><td class=\"node\"><a href=\"nodes/")
            .skip(1)
        {
            listed.push(chunk.split('"').next().unwrap().to_string());
        }
        assert_eq!(
            page.matches("2 free of 2 (simulated)").count(),
            rows,
            "{path}"
        );
        match page.split("href=\"nodes?after=").nth(1) {
            Some(rest) => path = format!("/nodes?after={}", rest.split('"').next().unwrap()),
            None => break,
        }
    }
    assert_eq!(listed, swarm.names, "every node once, in name order");
    let one = get(&format!("/nodes/{}", swarm.names[999]));
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    assert_eq!(one.matches("<article class=\"gpu").count(), 2, "{one}");
}
