//! Malformed .torrent files make `sluice download` and `sluice seed` fail cleanly: non-zero exit,
//! a message on stderr, no panic, and nothing written outside the output directory.

mod common;

use common::*;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

const BLOCK: u8 = 16;
const PORT: u16 = 21600;

/// Just enough bencode to build well- and ill-formed metainfo; dictionary keys are sorted.
enum B {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<B>),
    Dict(Vec<(&'static str, B)>),
}

impl B {
    fn s(text: &str) -> B {
        B::Str(text.as_bytes().to_vec())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::Str(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            B::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.encode(out));
                out.push(b'e');
            }
            B::Dict(entries) => {
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_by_key(|(k, _)| *k);
                out.push(b'd');
                for (k, v) in sorted {
                    B::s(k).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn metainfo(piece_length: i64, hashes: usize, files: Vec<(Vec<&str>, i64)>) -> B {
    let files = files
        .into_iter()
        .map(|(path, len)| {
            B::Dict(vec![("length", B::Int(len)), ("path", B::List(path.into_iter().map(B::s).collect()))])
        })
        .collect();
    B::Dict(vec![
        ("announce", B::s("http://127.0.0.1:1/announce")),
        (
            "info",
            B::Dict(vec![
                ("name", B::s("bad")),
                ("piece length", B::Int(piece_length)),
                ("pieces", B::Str(vec![7u8; 20 * hashes])),
                ("files", B::List(files)),
            ]),
        ),
    ])
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let good = metainfo(16384, 3, vec![(vec!["a.bin"], 40_000)]).bytes();
    let mut odd_pieces = metainfo(16384, 3, vec![(vec!["a.bin"], 40_000)]);
    if let B::Dict(top) = &mut odd_pieces
        && let Some((_, B::Dict(info))) = top.iter_mut().find(|(k, _)| *k == "info")
        && let Some((_, pieces)) = info.iter_mut().find(|(k, _)| *k == "pieces")
    {
        *pieces = B::Str(vec![7u8; 59]);
    }
    vec![
        ("empty", Vec::new()),
        ("garbage", b"\x00\xffthis is not bencode at all\x13\x37".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("huge-length-prefix", b"d4:infod6:pieces99999999999:abc".to_vec()),
        ("not-a-dict", B::List(vec![B::Int(1)]).bytes()),
        // 40 000 bytes in 16 KiB pieces needs 3 hashes, not 5 or 1.
        ("too-many-pieces", metainfo(16384, 5, vec![(vec!["a.bin"], 40_000)]).bytes()),
        ("too-few-pieces", metainfo(16384, 1, vec![(vec!["a.bin"], 40_000)]).bytes()),
        ("pieces-not-multiple-of-20", odd_pieces.bytes()),
        ("zero-piece-length", metainfo(0, 3, vec![(vec!["a.bin"], 40_000)]).bytes()),
        ("negative-length", metainfo(16384, 1, vec![(vec!["a.bin"], -5)]).bytes()),
    ]
}

/// Torrents whose file paths try to climb out of the output directory. Sluice may reject them or
/// sanitise the paths, but must never touch anything outside `--out`.
fn escaping_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("dotdot-path", metainfo(16384, 3, vec![(vec!["..", "..", "evil.bin"], 40_000)]).bytes()),
        ("nested-dotdot-path", metainfo(16384, 3, vec![(vec!["sub", "..", "..", "..", "evil.bin"], 40_000)]).bytes()),
        ("separator-in-component", metainfo(16384, 3, vec![(vec!["../../evil.bin"], 40_000)]).bytes()),
    ]
}

fn run_expecting_failure(label: &str, args: Vec<OsString>, dir: &Path) {
    let mut sluice = spawn_sluice(label, &args, dir);
    let status = sluice.wait_exit(Duration::from_secs(30));
    let stderr = sluice.stderr();
    assert!(!status.success(), "{label}: sluice accepted it; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{label}: sluice panicked:\n{stderr}");
    assert!(!stderr.trim().is_empty(), "{label}: no message on stderr");
    eprintln!("{label}: {status}: {}", tail(&stderr, 3));
}

/// Either a clean failure, or (paths sanitised) a download that starts up; it is then killed.
fn run_confined(label: &str, args: Vec<OsString>, dir: &Path) {
    let mut sluice = spawn_sluice(label, &args, dir);
    let settled = wait_until(Duration::from_secs(30), || {
        sluice.try_status().is_some() || sluice.stderr().contains("listening on")
    });
    assert!(settled, "{label}: neither failed nor started:\n{}", sluice.stderr());
    let stderr = sluice.stderr();
    assert!(!stderr.contains("panicked"), "{label}: sluice panicked:\n{stderr}");
    match sluice.try_status() {
        Some(status) => {
            assert!(!status.success(), "{label}: exited 0 without downloading");
            assert!(!stderr.trim().is_empty(), "{label}: no message on stderr");
            eprintln!("{label}: rejected: {}", tail(&stderr, 3));
        }
        None => {
            sluice.kill9();
            eprintln!("{label}: accepted with sanitised paths");
        }
    }
}

#[test]
fn malformed_torrents_are_rejected_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("a/b/c");
    let out = work.join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");

    let mut all = cases();
    all.push(("missing-file", Vec::new()));
    let escaping = escaping_cases();
    let first_escaping = all.len();
    all.extend(escaping);
    for (i, (label, bytes)) in all.into_iter().enumerate() {
        let torrent = work.join(format!("{label}.torrent"));
        if label != "missing-file" {
            std::fs::write(&torrent, bytes).expect("write torrent");
        }
        let port = PORT + u16::try_from(i).expect("few cases");
        let download = vec![
            "download".into(),
            torrent.clone().into(),
            "--out".into(),
            out.clone().into(),
            "--listen".into(),
            addr(BLOCK, 1, port).into(),
            "--peer".into(),
            addr(BLOCK, 2, port).into(),
            "--loopback-only".into(),
        ];
        if i >= first_escaping {
            run_confined(&format!("download-{label}"), download, tmp.path());
            continue;
        }
        run_expecting_failure(&format!("download-{label}"), download, tmp.path());
        let seed = vec![
            "seed".into(),
            torrent.into(),
            "--data".into(),
            out.clone().into(),
            "--listen".into(),
            addr(BLOCK, 3, port).into(),
            "--loopback-only".into(),
        ];
        run_expecting_failure(&format!("seed-{label}"), seed, tmp.path());
    }

    // Nothing may escape the output directory.
    for escaped in [work.join("evil.bin"), tmp.path().join("a/b/evil.bin"), tmp.path().join("a/evil.bin")] {
        assert!(!escaped.exists(), "{escaped:?} was written outside --out");
    }
}
