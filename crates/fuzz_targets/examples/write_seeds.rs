//! Writes each target's seeds into fuzz/corpus/NAME/ (run once before the
//! first `cargo fuzz run`): `cargo run -p fuzz_targets --example write_seeds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for name in fuzz_targets::TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in fuzz_targets::seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
