//! The whole-file CRC-32 assembled from a packed file's parts equals the
//! CRC-32 of reading every byte (what `update.toml` announces).

use payload_tools::PackedFile;
use payload_tools::pack::{NoProgress, PackOptions, pack};

#[test]
fn whole_file_crc_from_parts_matches_reading_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("bin")).expect("mkdir");
    std::fs::write(app.join("bin/app"), b"#!/bin/sh\n").expect("write");
    std::fs::write(app.join("data"), vec![7u8; 300_000]).expect("write");
    let stub = dir.path().join("stub");
    std::fs::write(&stub, vec![1u8; 5000]).expect("write");
    let output = dir.path().join("out.bin");
    let report = pack(
        &PackOptions {
            input: app,
            output: output.clone(),
            stub,
            entry: Some("bin/app".into()),
            name: "t".into(),
            version: "1".into(),
            level: 3,
            threads: 1,
            update: None,
        },
        &mut NoProgress,
    )
    .expect("pack");
    let packed = PackedFile::open(&output).expect("open").expect("packed");
    let (_, full) = payload_tools::rangeio::file_crc32(&packed.file, &output).expect("crc");
    assert_eq!(packed.whole_file_crc32().expect("crc"), full);
    assert_eq!(report.file_crc32, full);
}
