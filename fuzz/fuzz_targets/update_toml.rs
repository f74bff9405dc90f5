//! Arbitrary text as `update.toml`: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payload_tools::manifest::UpdateManifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = UpdateManifest::parse(text) {
            // What parses must survive a round trip.
            assert_eq!(UpdateManifest::parse(&m.to_toml()).ok(), Some(m));
        }
    }
});
