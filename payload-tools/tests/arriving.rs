//! Reading a packed file the way the updater does: its trailer and
//! metadata from its last bytes alone, and its payload checked while the
//! file is still being written.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Condvar, Mutex};

use payload_tools::PackedFile;
use payload_tools::extract::check_arriving;
use payload_tools::rangeio::Arrival;

#[test]
fn the_end_of_a_file_gives_its_trailer_and_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, _) = common::pack_sample(dir.path(), 300_000);
    let bytes = std::fs::read(&output).expect("read");
    let packed = PackedFile::open(&output).expect("open").expect("packed");
    let len = bytes.len() as u64;
    let (trailer, metadata) = PackedFile::read_tail(&output, len, &bytes[bytes.len() - 4096..])
        .expect("tail")
        .expect("packed");
    assert_eq!(trailer, packed.trailer);
    assert_eq!(metadata, packed.metadata);
    // Too short to hold the metadata, shorter than a trailer, or not the
    // end of a packed file at all.
    assert!(PackedFile::read_tail(&output, len, &bytes[bytes.len() - 70..]).is_err());
    assert!(PackedFile::read_tail(&output, len, &bytes[bytes.len() - 10..]).is_err());
    let plain = vec![0u8; 4096];
    assert!(matches!(
        PackedFile::read_tail(&output, 10_000, &plain),
        Ok(None)
    ));
}

/// The writer's side of a file being written: how many bytes it holds.
#[derive(Default)]
struct Growing {
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Growing {
    fn set(&self, len: u64, ended: bool) {
        *self.state.lock().expect("lock") = (len, ended);
        self.changed.notify_all();
    }
}

impl Arrival for Growing {
    fn wait_beyond(&self, offset: u64) -> io::Result<u64> {
        let mut state = self.state.lock().expect("lock");
        loop {
            if state.0 > offset {
                return Ok(state.0);
            }
            if state.1 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "ended"));
            }
            state = self.changed.wait(state).expect("wait");
        }
    }
}

/// Writes `bytes` into a new file in small pieces (all of it, or only the
/// first `stop_at` bytes) while the payload is checked; returns the check.
fn check_while_writing(bytes: &[u8], stop_at: usize) -> payload_tools::Result<u64> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("download");
    let mut writer = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .expect("create");
    let reader = File::open(&path).expect("open");
    let len = bytes.len() as u64;
    let tail = &bytes[bytes.len() - 4096..];
    let (trailer, metadata) = PackedFile::read_tail(&path, len, tail)
        .expect("tail")
        .expect("packed");
    let packed = PackedFile::from_parts(reader, &path, len, trailer, metadata).expect("parts");
    let growing = Growing::default();
    std::thread::scope(|scope| {
        let checker = scope.spawn(|| check_arriving(&packed, 2, &growing));
        let mut written = 0;
        for piece in bytes[..stop_at].chunks(7_777) {
            writer.write_all(piece).expect("write");
            written += piece.len() as u64;
            growing.set(written, false);
        }
        growing.set(written, true);
        checker.join().expect("checker").map(|report| report.bytes)
    })
}

#[test]
fn a_payload_is_checked_while_it_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (output, _) = common::pack_sample(dir.path(), 3_000_000);
    let bytes = std::fs::read(&output).expect("read");
    let unpacked = check_while_writing(&bytes, bytes.len()).expect("checked");
    assert_eq!(unpacked, 3_000_000 + 10);

    // A download that stops half way fails the check instead of hanging.
    assert!(check_while_writing(&bytes, bytes.len() / 2).is_err());

    // A damaged payload byte fails it.
    let mut damaged = bytes.clone();
    damaged[1_000_000] ^= 0x40;
    assert!(check_while_writing(&damaged, damaged.len()).is_err());
}
