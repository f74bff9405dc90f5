//! The one field of a Windows program's PE header that `pack` reads and
//! writes: the subsystem, which tells Windows whether to give the program a
//! console window (console, 3) or not (GUI, 2).
//!
//! - [`read_subsystem`]: the subsystem of a program's first bytes, or
//!   `None` when they are not a Windows program at all (no `MZ`).
//! - [`set_subsystem`]: the same walk, then the field rewritten in place.
//!
//! The bytes come from the user's app and stub, so they are parsed as
//! untrusted: every offset is checked against the buffer before it is
//! read, and anything that starts like a Windows program but breaks the
//! layout (an `e_lfanew` out of bounds, no `PE\0\0`, an optional header
//! too short or of an unknown kind) is a typed [`PeError`], never a panic
//! or a guess. Layout: the PE/COFF specification, "MS-DOS stub",
//! "Signature", "COFF file header" and "Optional header (image only)".

/// The console subsystem (`IMAGE_SUBSYSTEM_WINDOWS_CUI`).
pub const SUBSYSTEM_CONSOLE: u16 = 3;
/// The GUI subsystem (`IMAGE_SUBSYSTEM_WINDOWS_GUI`).
pub const SUBSYSTEM_GUI: u16 = 2;

/// How many bytes from the start of a file hold every header this module
/// reads, at most: callers read this much of a file, not all of it.
/// `e_lfanew` beyond it is refused (linkers put it below 0x200).
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Offset of `e_lfanew` in the MS-DOS header.
const E_LFANEW_AT: usize = 0x3c;
/// The MS-DOS header's length: `e_lfanew` cannot point inside it.
const DOS_HEADER_LEN: usize = 0x40;
/// `PE\0\0`.
const PE_SIGNATURE: &[u8; 4] = b"PE\0\0";
const COFF_HEADER_LEN: usize = 20;
/// Offset of `SizeOfOptionalHeader` in the COFF header.
const SIZE_OF_OPTIONAL_HEADER_AT: usize = 16;
const MAGIC_PE32: u16 = 0x10b;
const MAGIC_PE32_PLUS: u16 = 0x20b;
/// Offset of `Subsystem` in the optional header, the same for PE32 and
/// PE32+ (the fields that differ in size come after it).
const SUBSYSTEM_AT: usize = 68;

/// Why bytes that start like a Windows program cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeError {
    #[error("its MS-DOS header is cut short ({len} bytes)")]
    ShortDosHeader { len: usize },
    #[error("its PE header offset {offset:#x} is outside the first {limit} bytes")]
    HeaderOutOfBounds { offset: u64, limit: usize },
    #[error("no PE signature at offset {offset:#x}")]
    NoSignature { offset: usize },
    #[error("its optional header ({size} bytes) is too short to hold the subsystem")]
    ShortOptionalHeader { size: u16 },
    #[error("its optional header has the unknown magic {magic:#06x} (not PE32 or PE32+)")]
    UnknownMagic { magic: u16 },
}

/// The subsystem of the program whose first bytes are `bytes` (at most
/// [`MAX_HEADER_LEN`] are looked at): `Ok(None)` if it is not a Windows
/// program (it does not start with `MZ`).
pub fn read_subsystem(bytes: &[u8]) -> Result<Option<u16>, PeError> {
    Ok(subsystem_offset(bytes)?.map(|at| u16_at(bytes, at)))
}

/// Rewrites the subsystem of the Windows program in `bytes`; returns the
/// one it had. `Ok(None)`, and nothing changed, if it is not a Windows
/// program. The header checksum is left as it is: Windows checks it only
/// for drivers and boot-time DLLs, and linkers leave it 0 for programs.
pub fn set_subsystem(bytes: &mut [u8], subsystem: u16) -> Result<Option<u16>, PeError> {
    let Some(at) = subsystem_offset(bytes)? else {
        return Ok(None);
    };
    let old = u16_at(bytes, at);
    bytes[at..at + 2].copy_from_slice(&subsystem.to_le_bytes());
    Ok(Some(old))
}

/// Where the subsystem field is, every offset on the way checked.
fn subsystem_offset(bytes: &[u8]) -> Result<Option<usize>, PeError> {
    if !bytes.starts_with(b"MZ") {
        return Ok(None);
    }
    let limit = bytes.len().min(MAX_HEADER_LEN);
    if limit < DOS_HEADER_LEN {
        return Err(PeError::ShortDosHeader { len: bytes.len() });
    }
    let e_lfanew = u32::from_le_bytes([
        bytes[E_LFANEW_AT],
        bytes[E_LFANEW_AT + 1],
        bytes[E_LFANEW_AT + 2],
        bytes[E_LFANEW_AT + 3],
    ]);
    // Everything up to the subsystem field must fit in what we may read;
    // u64 arithmetic, so a hostile offset cannot wrap around.
    let out_of_bounds = PeError::HeaderOutOfBounds {
        offset: u64::from(e_lfanew),
        limit,
    };
    let optional_at = u64::from(e_lfanew) + (PE_SIGNATURE.len() + COFF_HEADER_LEN) as u64;
    if (e_lfanew as usize) < DOS_HEADER_LEN || optional_at + SUBSYSTEM_AT as u64 + 2 > limit as u64
    {
        return Err(out_of_bounds);
    }
    // Both fit in `limit` (checked above), which is a usize.
    let pe_at = e_lfanew as usize;
    let optional_at = optional_at as usize;
    if &bytes[pe_at..pe_at + 4] != PE_SIGNATURE {
        return Err(PeError::NoSignature { offset: pe_at });
    }
    let size = u16_at(bytes, pe_at + 4 + SIZE_OF_OPTIONAL_HEADER_AT);
    if usize::from(size) < SUBSYSTEM_AT + 2 {
        return Err(PeError::ShortOptionalHeader { size });
    }
    match u16_at(bytes, optional_at) {
        MAGIC_PE32 | MAGIC_PE32_PLUS => Ok(Some(optional_at + SUBSYSTEM_AT)),
        magic => Err(PeError::UnknownMagic { magic }),
    }
}

/// The little-endian u16 at `at`; callers have checked `at + 2 <= len`.
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ header: MS-DOS header, `PE\0\0` at `e_lfanew`, COFF
    /// header, and an optional header of the usual size.
    fn image(e_lfanew: u32, magic: u16, subsystem: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[E_LFANEW_AT..E_LFANEW_AT + 4].copy_from_slice(&e_lfanew.to_le_bytes());
        let pe = e_lfanew as usize;
        b[pe..pe + 4].copy_from_slice(PE_SIGNATURE);
        b[pe + 4..pe + 6].copy_from_slice(&0x8664u16.to_le_bytes());
        b[pe + 4 + SIZE_OF_OPTIONAL_HEADER_AT..pe + 4 + SIZE_OF_OPTIONAL_HEADER_AT + 2]
            .copy_from_slice(&240u16.to_le_bytes());
        let opt = pe + 24;
        b[opt..opt + 2].copy_from_slice(&magic.to_le_bytes());
        b[opt + SUBSYSTEM_AT..opt + SUBSYSTEM_AT + 2].copy_from_slice(&subsystem.to_le_bytes());
        b
    }

    #[test]
    fn reads_and_sets_the_subsystem_of_pe32_and_pe32_plus() {
        for magic in [MAGIC_PE32, MAGIC_PE32_PLUS] {
            let mut b = image(0x80, magic, SUBSYSTEM_CONSOLE);
            assert_eq!(read_subsystem(&b), Ok(Some(SUBSYSTEM_CONSOLE)));
            let before = b.clone();
            assert_eq!(
                set_subsystem(&mut b, SUBSYSTEM_GUI),
                Ok(Some(SUBSYSTEM_CONSOLE))
            );
            assert_eq!(read_subsystem(&b), Ok(Some(SUBSYSTEM_GUI)));
            let changed: Vec<usize> = (0..b.len()).filter(|&i| b[i] != before[i]).collect();
            assert_eq!(
                changed,
                [0x80 + 24 + SUBSYSTEM_AT],
                "only the field changes"
            );
        }
    }

    #[test]
    fn other_files_are_not_windows_programs() {
        for bytes in [
            &b""[..],
            b"M",
            b"\x7fELF\x02\x01\x01",
            b"#!/bin/sh\n",
            b"@echo off\r\n",
        ] {
            assert_eq!(read_subsystem(bytes), Ok(None));
            let mut copy = bytes.to_vec();
            assert_eq!(set_subsystem(&mut copy, SUBSYSTEM_GUI), Ok(None));
            assert_eq!(copy, bytes, "left alone");
        }
    }

    #[test]
    fn refuses_truncated_headers_at_every_length() {
        let b = image(0x80, MAGIC_PE32_PLUS, SUBSYSTEM_GUI);
        let whole = 0x80 + 24 + SUBSYSTEM_AT + 2;
        for len in 2..whole {
            let mut cut = b[..len].to_vec();
            assert!(read_subsystem(&cut).is_err(), "{len} bytes");
            assert!(
                set_subsystem(&mut cut, SUBSYSTEM_CONSOLE).is_err(),
                "{len} bytes"
            );
            assert_eq!(cut, b[..len], "left alone at {len} bytes");
        }
        assert_eq!(read_subsystem(&b[..whole]), Ok(Some(SUBSYSTEM_GUI)));
    }

    #[test]
    fn refuses_hostile_offsets() {
        for e_lfanew in [
            0,
            0x3c,
            u32::MAX,
            u32::MAX - 3,
            0x400 - 4,
            MAX_HEADER_LEN as u32,
        ] {
            let mut b = image(0x80, MAGIC_PE32_PLUS, SUBSYSTEM_GUI);
            b[E_LFANEW_AT..E_LFANEW_AT + 4].copy_from_slice(&e_lfanew.to_le_bytes());
            assert!(
                matches!(
                    read_subsystem(&b),
                    Err(PeError::HeaderOutOfBounds { .. } | PeError::NoSignature { .. })
                ),
                "e_lfanew {e_lfanew:#x}: {:?}",
                read_subsystem(&b)
            );
        }
        // A header past MAX_HEADER_LEN is refused even if the bytes are there.
        let far = MAX_HEADER_LEN as u32;
        let mut b = vec![0u8; MAX_HEADER_LEN * 2];
        b[..0x400].copy_from_slice(&image(0x80, MAGIC_PE32_PLUS, SUBSYSTEM_GUI));
        b[E_LFANEW_AT..E_LFANEW_AT + 4].copy_from_slice(&far.to_le_bytes());
        let pe = far as usize;
        b[pe..pe + 4].copy_from_slice(PE_SIGNATURE);
        assert!(matches!(
            read_subsystem(&b),
            Err(PeError::HeaderOutOfBounds { .. })
        ));
    }

    #[test]
    fn refuses_a_missing_signature_a_short_optional_header_and_an_unknown_magic() {
        let mut b = image(0x80, MAGIC_PE32_PLUS, SUBSYSTEM_GUI);
        b[0x82] = b'X';
        assert_eq!(
            read_subsystem(&b),
            Err(PeError::NoSignature { offset: 0x80 })
        );

        let mut b = image(0x80, MAGIC_PE32_PLUS, SUBSYSTEM_GUI);
        let size_at = 0x80 + 4 + SIZE_OF_OPTIONAL_HEADER_AT;
        b[size_at..size_at + 2].copy_from_slice(&69u16.to_le_bytes());
        assert_eq!(
            read_subsystem(&b),
            Err(PeError::ShortOptionalHeader { size: 69 })
        );

        let b = image(0x80, 0x107, SUBSYSTEM_GUI);
        assert_eq!(
            read_subsystem(&b),
            Err(PeError::UnknownMagic { magic: 0x107 })
        );
    }
}
