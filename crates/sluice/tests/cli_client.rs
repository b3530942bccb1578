//! The client commands (`sluice add`, `stream`, `ls`, `rm`) against a real `sluice serve` whose
//! torrents come from a real libtorrent seeder: what a user types, what they see, and the bytes
//! a player gets from the printed URL.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const BLOCK: u8 = 88;

/// A finished client command.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `sluice <args> --server http://<http>`, to exit within a minute.
fn sluice(http: &str, args: &[&str], dir: &Path) -> Run {
    let out = dir.join("cli.stdout");
    let err = dir.join("cli.stderr");
    let mut child = Command::new(sluice_bin())
        .args(args)
        .args(["--server", &format!("http://{http}")])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn sluice");
    let mut status = None;
    let exited = wait_until(Duration::from_secs(60), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
    }
    let run = Run {
        ok: status.is_some_and(|s| s.success()),
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    };
    assert!(exited, "sluice {args:?} did not exit; stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "sluice {args:?} panicked:\n{}", run.stderr);
    run
}

fn expect_ok(http: &str, args: &[&str], dir: &Path) -> Run {
    let run = sluice(http, args, dir);
    assert!(run.ok, "sluice {args:?} failed:\n{}", run.stderr);
    run
}

/// The payload of `url` (an absolute http URL on `http`).
fn fetch(http: &str, url: &str) -> Vec<u8> {
    let path = url.strip_prefix(&format!("http://{http}")).unwrap_or_else(|| panic!("{url} is not on {http}"));
    let (status, head, body) =
        http_exchange(http, &format!("GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n"), b"");
    assert_eq!(status, 200, "{url}: {head}");
    body
}

/// A player: records its arguments, fetches its last one with curl into `<dir>/played`.
fn player_script(dir: &Path) -> String {
    let script = dir.join("player.sh");
    let body = format!(
        "#!/bin/sh\necho \"$@\" > '{d}/player.args'\nfor a; do last=$a; done\nexec curl -sSf -o '{d}/played' \"$last\"\n",
        d = dir.display()
    );
    fs::write(&script, body).expect("write player");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    script.display().to_string()
}

/// The payload of file `index` of an add's JSON, from the fixture's data.
fn file_bytes(fx: &Fixture, added: &Value, index: u64) -> Vec<u8> {
    let files = added["files"].as_array().expect("files");
    let file = files.iter().find(|f| f["index"] == index).expect("file of that index");
    fs::read(fx.data.join(file["path"].as_str().expect("path"))).expect("fixture file")
}

/// The file index in a stream URL `.../files/<i>/stream...`.
fn url_index(url: &str) -> u64 {
    let (_, rest) = url.split_once("/files/").expect("a stream URL");
    rest.split('/').next().expect("index").parse().expect("numeric index")
}

#[test]
fn add_a_torrent_file_then_stream_it_by_hash() {
    const PORT: u16 = 28800;
    let Some(tmp) = interop_tempdir("cli_client::file") else {
        return;
    };
    let dir = tmp.path();
    let spec =
        TorrentSpec { name: "clifile", size: 3 * MIB, seed: 88, files: 3, piece_length: 256 * 1024, hybrid: false };
    let fx = make_torrent(dir, &spec);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 2, PORT), &SeedOpts::default(), dir);
    let serve = Serve::start(BLOCK, PORT, dir);
    let http = serve.http.as_str();

    let torrent = fx.torrent.display().to_string();
    let run = expect_ok(http, &["add", &torrent, "--peer", &seeder.endpoint, "--json"], dir);
    let added: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("not JSON: {}", run.stdout));
    let hash = added["info_hash"].as_str().expect("info_hash").to_owned();
    assert_eq!(added["name"], "clifile");
    assert_eq!(added["files"].as_array().map(Vec::len), Some(3), "{added}");
    assert!(run.stderr.contains(&format!("added: {hash}")), "{}", run.stderr);

    // Without --file: the largest file (no video here); the URL alone on stdout.
    let run = expect_ok(http, &["stream", &hash], dir);
    let url = run.stdout.trim();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stderr.contains("already on the server"), "{}", run.stderr);
    let largest = added["files"].as_array().unwrap().iter().map(|f| f["length"].as_u64().unwrap()).max().unwrap();
    let index = url_index(url);
    let want = file_bytes(&fx, &added, index);
    assert_eq!(want.len() as u64, largest);
    assert!(fetch(http, url) == want, "streamed bytes differ from file {index}");

    // A player given with words: the URL comes last, the command waits for it.
    let player = format!("{} --fs", player_script(dir));
    expect_ok(http, &["stream", &hash, "--file", "0", "--player", &player], dir);
    let args = fs::read_to_string(dir.join("player.args")).expect("player ran");
    assert!(args.starts_with("--fs http://"), "{args}");
    assert!(fs::read(dir.join("played")).expect("played") == file_bytes(&fx, &added, 0));

    // Errors: no such file, a server's refusal, no server.
    let run = sluice(http, &["stream", &hash, "--file", "7"], dir);
    assert!(!run.ok && run.stderr.contains("has no file 7"), "{}", run.stderr);
    let run = sluice(http, &["add", "magnet:?xt=urn:btih:nothex"], dir);
    assert!(!run.ok && run.stderr.contains("error: server: "), "{}", run.stderr);
    let run = sluice(&addr(BLOCK, 9, 1), &["stream", &hash], dir);
    assert!(!run.ok && run.stderr.contains("cannot reach the Sluice server"), "{}", run.stderr);
}

#[test]
fn stream_a_magnet_with_peers_into_a_player() {
    const PORT: u16 = 28850;
    let Some(tmp) = interop_tempdir("cli_client::magnet") else {
        return;
    };
    let dir = tmp.path();
    let spec =
        TorrentSpec { name: "climag", size: 2 * MIB, seed: 89, files: 2, piece_length: 256 * 1024, hybrid: false };
    let fx = make_torrent(dir, &spec);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 3, PORT), &SeedOpts::default(), dir);
    let serve = Serve::start(BLOCK, PORT, dir);
    let http = serve.http.as_str();
    let magnet = magnet_for(&fx, &[&seeder.endpoint]);

    // Not added before: `stream` adds it, the metadata comes from the x.pe peer.
    let player = player_script(dir);
    let run = expect_ok(http, &["stream", &magnet, "--player", &player], dir);
    assert!(run.stdout.is_empty(), "the URL goes to the player: {}", run.stdout);
    let url = fs::read_to_string(dir.join("player.args")).expect("player ran").trim().to_owned();
    let hash = magnet.split("btih:").nth(1).unwrap()[..40].to_owned();
    assert!(url.contains(&format!("/api/v1/torrents/{hash}/files/")), "{url}");

    let run = expect_ok(http, &["add", &magnet, "--title", "Climag"], dir);
    assert!(run.stdout.starts_with(&hash), "{}", run.stdout);
    let added: Value = serde_json::from_str(&expect_ok(http, &["add", &magnet, "--json"], dir).stdout).expect("json");
    assert!(fs::read(dir.join("played")).expect("played") == file_bytes(&fx, &added, url_index(&url)));
}

#[test]
fn add_wait_ls_and_rm() {
    const PORT: u16 = 28900;
    let Some(tmp) = interop_tempdir("cli_client::ls_rm") else {
        return;
    };
    let dir = tmp.path();
    let spec =
        TorrentSpec { name: "clils", size: 2 * MIB, seed: 90, files: 2, piece_length: 256 * 1024, hybrid: false };
    let fx = make_torrent(dir, &spec);
    let seeder = LtSeeder::start(&fx, &peer_addr(BLOCK, 4, PORT), &SeedOpts::default(), dir);
    let serve = Serve::start(BLOCK, PORT, dir);
    let http = serve.http.as_str();
    let magnet = magnet_for(&fx, &[&seeder.endpoint]);

    let run = sluice(http, &["ls"], dir);
    assert!(run.ok && run.stdout.is_empty() && run.stderr.contains("no torrents"), "{}", run.stderr);
    let run = expect_ok(http, &["add", &magnet, "--wait"], dir);
    assert!(run.stderr.contains("complete: clils"), "{}", run.stderr);
    let hash = run.stdout.split_whitespace().next().expect("hash").to_owned();
    fx.assert_copied_to(&dir.join("served-data"));

    let run = expect_ok(http, &["ls"], dir);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].starts_with("HASH"), "{}", run.stdout);
    assert!(
        lines[1].starts_with(&hash[..8]) && lines[1].contains("100.0%") && lines[1].ends_with("clils"),
        "{}",
        run.stdout
    );
    let listed: Value = serde_json::from_str(&expect_ok(http, &["ls", "--json"], dir).stdout).expect("json");
    assert_eq!(listed["torrents"][0]["info_hash"], hash.as_str());

    let run = expect_ok(http, &["rm", &hash[..6], "--delete-files"], dir);
    assert!(run.stdout.starts_with(&format!("removed {hash}")), "{}", run.stdout);
    assert!(!dir.join("served-data").join("clils").exists(), "files deleted");
    let run = sluice(http, &["rm", &hash], dir);
    assert!(!run.ok && run.stderr.contains("unknown_torrent"), "{}", run.stderr);
    let run = sluice(http, &["rm", &hash[..6]], dir);
    assert!(!run.ok && run.stderr.contains("no torrent's info-hash starts with"), "{}", run.stderr);
}
