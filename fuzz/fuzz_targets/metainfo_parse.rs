//! Arbitrary bytes into the `.torrent` parser.
//!
//! Besides "no panic": an accepted torrent's files tile the content stream exactly, its
//! info-hash is the SHA-1 of bytes found verbatim in the input, and every path component is
//! one that cannot leave the output folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = Metainfo::from_bytes(data) else { return };
    assert!(data.windows(meta.info_bytes.len()).any(|w| w == meta.info_bytes.as_slice()));
    assert_eq!(meta.piece_hashes.len() as u64, u64::from(meta.lengths.num_pieces()));
    let mut offset = 0;
    for f in &meta.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
        assert!(!f.path.is_empty());
        for c in &f.path {
            assert!(!c.is_empty() && c != "." && c != "..");
            assert!(!c.contains(['/', '\\', '\0']) && !c.chars().any(char::is_control));
            assert!(c.len() <= 255);
        }
    }
    assert_eq!(offset, meta.lengths.total_length());
});
