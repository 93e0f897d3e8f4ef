//! What each fuzz target does with its input. The same functions run under
//! libFuzzer (`fuzz/`, nightly, `cargo fuzz run NAME`) and, on stable, in
//! this crate's smoke test over the committed corpora plus mutated inputs,
//! so a regression in any decoder is caught without nightly.
//!
//! Every function must return for every input, without panicking,
//! aborting, or allocating past the frame limit.

use proto::{
    ControlMsg, EnrollReply, EnrollRequest, Heartbeat, JobCtl, JobEvent, JobFrame, JobPlan, Open,
    Request, Response,
};

/// The names of the targets, as `fuzz/fuzz_targets/NAME.rs` and the corpus
/// folders `fuzz/corpus/NAME/` call them.
pub const TARGETS: &[&str] = &[
    "frame",
    "messages",
    "token",
    "csr",
    "chat_grammar",
    "gateway_toml",
    "node_toml",
    "moltbot_toml",
    "wecom_frame",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "frame" => frame(data),
        "messages" => messages(data),
        "token" => token(data),
        "csr" => csr(data),
        "chat_grammar" => chat_grammar(data),
        "gateway_toml" => gateway_toml(data),
        "node_toml" => node_toml(data),
        "moltbot_toml" => moltbot_toml(data),
        "wecom_frame" => wecom_frame(data),
        _ => {}
    }
}

/// The frame splitter and header parser, as every stream reader uses them.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    // Split as many frames as the input holds, with the two limits in use.
    for limit in [16 * 1024, proto::MAX_FRAME_LEN] {
        while let Ok(Some((_msg, used))) = proto::frame::try_split::<Open>(rest, limit) {
            rest = &rest[used..];
        }
        rest = data;
    }
    if let Some(h) = data.first_chunk::<4>() {
        let _ = proto::frame::parse_header(*h, proto::MAX_FRAME_LEN);
    }
    if let Some(p) = data.first_chunk::<{ proto::frame::DATA_PREFIX_LEN }>() {
        let _ = proto::frame::parse_data_prefix(*p);
    }
}

/// Every message type that crosses the wire, decoded from the same bytes;
/// what decodes must encode again.
pub fn messages(data: &[u8]) {
    fn one<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
        if let Ok(m) = proto::codec::decode::<T>(data) {
            let _ = proto::codec::encode(&m);
        }
    }
    one::<EnrollRequest>(data);
    one::<EnrollReply>(data);
    one::<Open>(data);
    one::<Request>(data);
    one::<Response>(data);
    one::<ControlMsg>(data);
    one::<Heartbeat>(data);
    one::<JobFrame>(data);
    one::<JobCtl>(data);
    one::<JobEvent>(data);
    one::<JobPlan>(data);
    one::<proto::FanEvent>(data);
}

/// The join token parser.
pub fn token(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pki::JoinToken::parse(text);
    }
}

/// The CSR checks the gateway applies to an enrollment or a renewal.
pub fn csr(data: &[u8]) {
    let _ = pki::check_csr(data, "worker-gpu-01");
    if let Ok(c) = pki::check_csr(data, "fuzz") {
        let _ = c.fingerprint.len();
    }
}

/// The chat grammar on any text, and the identity rules chat ids go through.
pub fn chat_grammar(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let ctx = chat::Context {
        nodes: vec!["worker-gpu-01".into(), "worker-cpu-01".into()],
        jobs: vec![("training".into(), vec!["train model".into()])],
        roles: vec!["gpu".into(), "cpu".into()],
        interpreters: chat::Context::default_interpreters(),
    };
    let _ = chat::parse(&text, &ctx);
    let _ = chat::parse(&moltbot::plain_text(&text), &ctx);
    let mut tail = chat::OutputTail::new(4096);
    tail.push(proto::OutStream::Stderr, data);
    let _ = tail.last(20);
    let _ = proto::identity::check_chat_identity_in("slack:T0LAB", &text);
    let _ = proto::identity::validate_identity_pattern(&text);
    let _ = proto::env::check(&["*".to_string()], &text, &text);
    let _ = proto::names::printable(&text, 64);
    let _ = proto::redact::url(&text);
    let _ = proto::redact::urls_in(&text);
}

/// gateway.toml.
pub fn gateway_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gateway::Config::parse(text);
    }
}

/// node.toml.
pub fn node_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = toml::from_str::<mesh::home::NodeConfig>(text);
    }
}

/// moltbot.toml, with tokens given as the environment would.
pub fn moltbot_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let env = |k: &str| match k {
            "SLACK_BOT_TOKEN" => Some("xoxb-fuzz".to_string()),
            "SLACK_APP_TOKEN" => Some("xapp-fuzz".to_string()),
            _ => None,
        };
        let _ = moltbot::Config::parse(text, &env);
        let _ = moltbot::config::check_file_mode(0o644, text);
    }
}

/// A WeCom long-connection frame as the bot reads it, the text it would
/// hand the grammar, and wecom.toml.
pub fn wecom_frame(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(wecom::frames::Inbound::Message { msg, .. }) = wecom::frames::parse(&text)
        && let Some(t) = msg.text
    {
        let _ = wecom::frames::strip_mention(&t);
    }
    let _ = wecom::frames::parse_key(&text);
    let _ = wecom::frames::fit(&text);
    let env = |k: &str| match k {
        "WECOM_BOT_ID" => Some("bot".to_string()),
        "WECOM_BOT_SECRET" => Some("secret".to_string()),
        _ => None,
    };
    let _ = wecom::Config::parse(&text, &env);
}

/// Valid inputs for target `name`, for seeding its corpus and the smoke test.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let frame = |m: &Open| proto::frame::encode(m).unwrap_or_default();
    let msg = |r: Request| proto::codec::encode(&Open::Request(r)).unwrap_or_default();
    match name {
        "frame" => vec![
            frame(&Open::Heartbeat),
            frame(&Open::Job { job_id: 7 }),
            frame(&Open::Request(Request::Whoami)),
            proto::frame::data_header(1, 42, 3)
                .map(|h| {
                    let mut v = h.to_vec();
                    v.extend_from_slice(b"abc");
                    v
                })
                .unwrap_or_default(),
        ],
        "messages" => vec![
            msg(Request::JobSubmit(proto::JobSpec {
                node: Some("worker-gpu-01".into()),
                argv: vec!["python".into(), "train.py".into()],
                env: vec![("OMP_NUM_THREADS".into(), "4".into())],
                on_behalf_of: Some("slack:T0LAB/U1".into()),
                ..Default::default()
            })),
            msg(Request::JobApprove {
                id: 3,
                plan_digest: Some("sha256:00".into()),
                on_behalf_of: Some("slack:T0LAB/U0BOSS".into()),
            }),
            proto::codec::encode(&EnrollRequest::Poll {
                request_id: "abc".into(),
            })
            .unwrap_or_default(),
            proto::codec::encode(&JobFrame::Exit {
                code: 0,
                timed_out: false,
                cancelled: false,
                killed: 2,
            })
            .unwrap_or_default(),
            proto::codec::encode(&Heartbeat::default()).unwrap_or_default(),
        ],
        "token" => pki::JoinToken::generate([7; 32], "127.0.0.1:7443")
            .map(|t| vec![t.encode().into_bytes()])
            .unwrap_or_default(),
        "csr" => pki::generate_key()
            .ok()
            .and_then(|k| pki::make_csr("worker-gpu-01", &k.key_pem).ok())
            .into_iter()
            .collect(),
        "chat_grammar" => [
            "@moltbot run training on worker-gpu-01",
            "<@U1> run `make -j4 &amp;&amp; make test` on worker-cpu-01",
            "run training (gpu)",
            "start experiment exp42",
            "approve 17",
            "deny 17 because the GPUs are booked",
            "slack:T0LAB/U024BE7LH",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        "gateway_toml" => vec![
            gateway::Config::template("gw", "127.0.0.1:7443", None).into_bytes(),
            b"[policy]\ndefault = \"approve\"\napprovers = [\"slack:T1/U1\"]\n[[policy.rules]]\ncommands = [\"rm\"]\naction = \"deny\"\n".to_vec(),
        ],
        "node_toml" => vec![
            b"name = \"worker-gpu-01\"\ngateway = \"127.0.0.1:7443\"\nlabels = [\"gpu\"]\nrun_as = \"openclaw-job\"\njob_uids = \"61000-61999\"\n[policy]\nallowed_cwds = [\"/srv/lab\"]\nenv_allow = [\"CUDA_*\"]\n".to_vec(),
        ],
        "moltbot_toml" => vec![moltbot::Config::template().replace(
            "allowed_users = []",
            "allowed_users = [\"U1\"]",
        )
        .into_bytes()],
        "wecom_frame" => [
            r#"{"cmd":"aibot_msg_callback","headers":{"req_id":"r1"},"body":{"msgid":"m1","aibotid":"b","chatid":"g1","chattype":"group","from":{"userid":"zhangsan"},"msgtype":"text","text":{"content":"@moltbot run training on worker-gpu-01"}}}"#,
            r#"{"cmd":"aibot_event_callback","headers":{"req_id":"r2"},"body":{"msgid":"e1","chatid":"g1","from":{"userid":"boss"},"msgtype":"event","event":{"eventtype":"template_card_event","template_card_event":{"event_key":"approve:7","task_id":"job7_1"}}}}"#,
            r#"{"headers":{"req_id":"p1"},"errcode":846608,"errmsg":"expired"}"#,
            "allowed_users = [\"zhangsan\"]\napprovals = \"card\"\nstream_limit = \"1m\"\n",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a fixed, dependency-free source of mutations.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
        }
    }

    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..=rng.below(4) {
            match rng.below(5) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = [0, 0xff, 0x7f, 0x80, b'"', b'[', b'\n'][rng.below(7)];
                }
                2 => v.truncate(rng.below(v.len() + 1)),
                3 => {
                    let i = rng.below(v.len() + 1);
                    let b = (rng.next() & 0xff) as u8;
                    v.insert(i, b);
                }
                _ => {
                    if !v.is_empty() {
                        let a = rng.below(v.len());
                        let b = rng.below(v.len());
                        let (lo, hi) = (a.min(b), a.max(b));
                        let chunk = v[lo..hi].to_vec();
                        v.extend_from_slice(&chunk);
                    }
                }
            }
        }
        v
    }

    fn corpus(name: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(name);
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push(b);
                }
            }
        }
        out
    }

    #[test]
    fn every_target_survives_its_corpus_and_mutations_on_stable() {
        for name in TARGETS {
            let mut inputs = corpus(name);
            let from_corpus = inputs.len();
            inputs.extend(seeds(name));
            assert!(!inputs.is_empty(), "{name} has no inputs");
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let base = inputs.clone();
            for _ in 0..1500 {
                let pick = &base[rng.below(base.len())];
                inputs.push(mutate(&mut rng, pick));
            }
            for _ in 0..200 {
                let len = rng.below(256);
                inputs.push((0..len).map(|_| (rng.next() & 0xff) as u8).collect());
            }
            for input in &inputs {
                run(name, input);
            }
            eprintln!(
                "{name}: {} inputs ({from_corpus} from the corpus)",
                inputs.len()
            );
        }
    }
}
