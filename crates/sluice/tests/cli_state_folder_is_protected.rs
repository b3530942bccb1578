//! A torrent whose files would land in Sluice's own state folder (by default `OUT/.sluice`) is
//! refused: it could otherwise plant a forged resume journal for another torrent.

mod common;

use common::*;
use std::time::Duration;

use sluice_core::metainfo::TorrentBuilder;

#[test]
fn torrent_writing_into_the_state_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let torrent = TorrentBuilder::new(".sluice", 16 * 1024).file(&["0123.resume"], vec![7u8; 1000]).build();
    let torrent_path = tmp.path().join("evil.torrent");
    std::fs::write(&torrent_path, torrent).expect("write torrent");
    let out = tmp.path().join("out");
    let args = ["download", torrent_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--peer", "127.0.0.1:9"];
    let mut p = spawn_sluice("sluice-download", &args, tmp.path());
    let status = p.wait_exit(Duration::from_secs(30));
    let stderr = p.stderr();
    assert!(!status.success(), "accepted a torrent that writes into the state folder:\n{stderr}");
    assert!(stderr.contains("state folder"), "unclear error:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
