//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the fuzz targets'
//! properties on every `cargo test`, so what the fuzzer once found stays fixed. The fuzzing
//! itself is `cargo fuzz run <target>` in `fuzz/` (see the README).

#[path = "../fuzz/src/lib.rs"]
mod properties;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            panic!("{target}: {} fails: {panic:?}", path.display());
        }
        inputs += 1;
    }
    assert!(inputs > 0, "{target}: the corpus is empty");
}

#[test]
fn routing_corpus() {
    replay("routing", properties::routing);
}

#[test]
fn id_codec_corpus() {
    replay("id_codec", properties::id_codec);
}

#[test]
fn json_rewrite_corpus() {
    replay("json_rewrite", properties::json_rewrite);
}

#[test]
fn seq_tokens_corpus() {
    replay("seq_tokens", properties::seq_tokens);
}

#[test]
fn multipart_corpus() {
    replay("multipart", properties::multipart);
}

#[test]
fn multipart_answer_corpus() {
    replay("multipart_answer", properties::multipart_answer);
}

#[test]
fn multipart_upload_corpus() {
    replay("multipart_upload", properties::multipart_upload);
}

#[test]
fn mango_corpus() {
    replay("mango", properties::mango);
}
