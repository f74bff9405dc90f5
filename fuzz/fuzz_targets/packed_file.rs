//! Arbitrary bytes as a packed file, and as the end of one fetched by the
//! updater (of a file claimed to be a little longer): trailer and metadata
//! parsing must return `Ok(None)`, `Ok(Some)` or `Err`, never panic,
//! whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payload_tools::{Metadata, Trailer};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 64 {
        let mut block = [0u8; 64];
        block.copy_from_slice(&data[data.len() - 64..]);
        let _ = Trailer::from_bytes(&block);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Metadata::parse(text, std::path::Path::new("fuzz"));
    }
    let path = std::path::Path::new("fuzz");
    for claimed_extra in [0u64, 1, 4096] {
        let _ = payload_tools::PackedFile::read_tail(path, data.len() as u64 + claimed_extra, data);
    }
    let Ok(mut file) = tempfile::tempfile() else { return };
    if std::io::Write::write_all(&mut file, data).is_err() {
        return;
    }
    let _ = payload_tools::PackedFile::from_file(file, std::path::Path::new("fuzz"));
});
