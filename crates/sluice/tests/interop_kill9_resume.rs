//! A download killed with SIGKILL part-way resumes from its saved state: the restarted run reports
//! the pieces it already has and fetches only (about) the rest.

mod common;

use common::*;
use std::time::Duration;

const BLOCK: u8 = 15;
const PORT: u16 = 21500;

#[test]
fn kill9_then_restart_resumes_without_refetching_verified_pieces() {
    let Some(tmp) = interop_tempdir("interop_kill9_resume") else {
        return;
    };
    let piece_length = 128 * 1024;
    let fx = make_torrent(
        tmp.path(),
        &TorrentSpec { name: "kill9", size: 32 * MIB + 5_000, seed: 15, files: 4, piece_length, hybrid: false },
    );
    let total = fx.total_size();
    // Capped so the first run is still going when we kill it.
    let seeder = LtSeeder::start(
        &fx,
        &peer_addr(BLOCK, 2, PORT),
        &SeedOpts { upload_rate: Some(6 * MIB), ..SeedOpts::default() },
        tmp.path(),
    );

    let out = out_dir(tmp.path());
    let download = DownloadCmd::new(&fx, &out, &addr(BLOCK, 1, PORT)).peers([&seeder]);

    let mut first = download.spawn("sluice-run1", tmp.path());
    let reached =
        wait_until(Duration::from_secs(120), || seeder.uploaded() * 10 >= total * 4 || first.try_status().is_some());
    assert!(
        reached && first.try_status().is_none(),
        "first run should still be downloading at ~40% (sent {} of {total}); stderr:\n{}",
        seeder.uploaded(),
        tail(&first.stderr(), 40)
    );
    first.kill9();
    let sent_before_kill = seeder.uploaded();
    if let Some(n) = number_in_line(&first.stderr(), "resume: ", " verified pieces") {
        assert_eq!(n, 0, "a fresh download has nothing to resume");
    }

    let mut second = download.spawn("sluice-run2", tmp.path());
    let stderr = expect_success(&mut second, Duration::from_secs(240));
    fx.assert_copied_to(&out);

    let resumed = number_in_line(&stderr, "resume: ", " verified pieces")
        .unwrap_or_else(|| panic!("no 'resume: N verified pieces' line:\n{stderr}"));
    let downloaded = number_in_line(&stderr, "downloaded: ", " bytes")
        .unwrap_or_else(|| panic!("no 'downloaded: B bytes' line:\n{stderr}"));
    eprintln!(
        "total {total}, sent before kill {sent_before_kill}, resumed {resumed} pieces, \
         second run downloaded {downloaded}"
    );
    assert!(resumed > 0, "the second run should resume verified pieces");
    assert!(downloaded < total, "the second run re-downloaded everything ({downloaded} of {total})");
    // Verified pieces are not fetched again; allow a few pieces of end-game duplicates.
    let verified_bytes = (resumed * piece_length).min(total);
    assert!(
        downloaded + verified_bytes <= total + 4 * piece_length,
        "downloaded {downloaded} bytes although {resumed} pieces ({verified_bytes} bytes) were \
         already verified, of {total}"
    );
}
