//! The whole-file CRC-32 assembled from a packed file's parts equals the
//! CRC-32 of reading every byte (what `update.toml` announces).

mod common;

use payload_tools::PackedFile;

#[test]
fn whole_file_crc_from_parts_matches_reading_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, report) = common::pack_sample(dir.path(), 300_000);
    let packed = PackedFile::open(&output).expect("open").expect("packed");
    let (_, full) = payload_tools::rangeio::file_crc32(&packed.file, &output).expect("crc");
    assert_eq!(packed.whole_file_crc32().expect("crc"), full);
    assert_eq!(report.file_crc32, full);
}
