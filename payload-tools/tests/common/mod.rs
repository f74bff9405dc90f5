//! A small packed file for the integration tests of this crate.

use std::path::{Path, PathBuf};

use payload_tools::pack::{NoProgress, PackOptions, PackReport, pack};

/// Packs a two-file app (one file of `data_len` bytes of noise, which
/// does not compress) behind a fake 5,000-byte stub into `dir/out.bin`.
pub fn pack_sample(dir: &Path, data_len: usize) -> (PathBuf, PackReport) {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("bin")).expect("mkdir");
    std::fs::write(app.join("bin/app"), b"#!/bin/sh\n").expect("write");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let data: Vec<u8> = (0..data_len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    std::fs::write(app.join("data"), data).expect("write");
    let stub = dir.join("stub");
    std::fs::write(&stub, vec![1u8; 5000]).expect("write");
    let output = dir.join("out.bin");
    let report = pack(
        &PackOptions {
            input: app,
            output: output.clone(),
            stub,
            stub_bytes: None,
            entry: Some("bin/app".into()),
            name: "t".into(),
            version: "1".into(),
            argv0: Default::default(),
            level: 3,
            threads: 1,
            update: None,
            windows_subsystem: Default::default(),
            dictionary: Default::default(),
        },
        &mut NoProgress,
    )
    .expect("pack");
    (output, report)
}
