//! Arbitrary payloads behind a valid trailer and metadata: extraction into a
//! private folder must refuse or succeed, never panic, never write outside;
//! and the check (`Sink::Discard`, what `verify` and the updater run) must
//! reach the same verdict as the real unpack, unless the disk itself failed.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use payload_tools::PackedFile;
use payload_tools::extract::{Sink, extract};
use payload_tools::trailer::Trailer;

fuzz_target!(|data: &[u8]| {
    // The input is tar bytes; wrap them in one zstd frame of a packed file
    // so that every check before extraction passes and the tar reader and
    // the entry rules are what gets exercised.
    let Ok(frame) = zstd::bulk::compress(data, 1) else { return };
    let stub = b"stub";
    // Every entry takes a 512-byte header at least: this many entries is
    // never too few, so the entry rules, not the count, decide.
    let entry_count = (data.len() / 512).max(1);
    let metadata = format!(
        "format_version = 1\nname = \"f\"\nversion = \"1\"\nentry = \"e\"\nunpacked_size = 1048576\nentry_count = {entry_count}\nframes = [[{}, {}]]\n",
        frame.len(),
        data.len()
    );
    let trailer = Trailer {
        payload_offset: stub.len() as u64,
        payload_len: frame.len() as u64,
        metadata_offset: (stub.len() + frame.len()) as u64,
        metadata_len: metadata.len() as u64,
        payload_crc32: crc32(&frame),
        metadata_crc32: crc32(metadata.as_bytes()),
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("packed");
    let Ok(mut file) = std::fs::File::create(&path) else { return };
    let _ = file.write_all(stub);
    let _ = file.write_all(&frame);
    let _ = file.write_all(metadata.as_bytes());
    let _ = file.write_all(&trailer.to_bytes());
    drop(file);
    let Ok(Some(packed)) = PackedFile::open(&path) else { return };
    let dest = dir.path().join("out");
    let _ = std::fs::create_dir(&dest);
    let checked = extract(&packed, Sink::Discard, 1);
    let unpacked = extract(&packed, Sink::Disk(&dest), 1);
    match (&checked, &unpacked) {
        (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
        // The disk's own failure (full, a name it cannot hold): not a rule.
        (Ok(_), Err(payload_tools::Error::Io { .. })) => {}
        _ => panic!("the check and the unpack disagree: {checked:?} / {unpacked:?}"),
    }
    // Nothing may appear beside `out` and `packed`.
    let names: Vec<_> = std::fs::read_dir(dir.path()).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
    assert!(names.len() <= 2, "extraction wrote outside its folder: {names:?}");
});

fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}
