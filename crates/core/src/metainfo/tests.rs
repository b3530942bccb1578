use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::*;

/// `<len>:<s>`
fn bs(s: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", s.len()).into_bytes();
    out.extend_from_slice(s);
    out
}

/// Concatenates byte pieces.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn torrent_with_info(info: &[u8]) -> Vec<u8> {
    cat(&[b"d8:announce22:http://127.0.0.1:1/ann4:info", info, b"e"])
}

fn sha1(b: &[u8]) -> [u8; 20] {
    Sha1::digest(b).into()
}

fn err(bytes: &[u8]) -> String {
    Metainfo::from_bytes(bytes).unwrap_err().to_string()
}

fn assert_safe(meta: &Metainfo) {
    for f in &meta.files {
        assert!(!f.path.is_empty());
        for c in &f.path {
            assert!(!c.is_empty() && c != "." && c != "..", "{:?}", f.path);
            assert!(!c.contains(['/', '\\', '\0', ':']), "{:?}", f.path);
            assert!(!c.chars().any(char::is_control), "{:?}", f.path);
            assert!(c.len() <= 255);
        }
    }
}

#[test]
fn single_file() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let bytes =
        TorrentBuilder::single_file("movie.mkv", 32768, data.clone()).tracker("http://127.0.0.1:6969/announce").build();
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(meta.name, "movie.mkv");
    assert_eq!(meta.files, [FileEntry { path: vec!["movie.mkv".into()], length: 100_000, offset: 0, pad: false }]);
    assert_eq!(meta.lengths, Lengths::new(100_000, 32768, 4).unwrap());
    let expected: Vec<[u8; 20]> = data.chunks(32768).map(sha1).collect();
    assert_eq!(meta.piece_hashes, expected);
    assert_eq!(meta.info_hash, InfoHash(sha1(&meta.info_bytes)));
    assert_eq!(meta.trackers, [["http://127.0.0.1:6969/announce"]]);
    assert!(!meta.private);
}

#[test]
fn multi_file_with_alignment() {
    let builder = TorrentBuilder::new("album", 16384)
        .file(&["cd1", "01.flac"], vec![1u8; 20_000])
        .file_with(&["cover.jpg"], 5_000, |offset, buf| buf.iter_mut().zip(offset..).for_each(|(b, i)| *b = i as u8))
        .file(&["empty.txt"], vec![])
        .file(&["notes.txt"], b"hello".to_vec())
        .align_files()
        .private(true)
        .tier(["http://127.0.0.1:1/a", "http://127.0.0.1:2/a"])
        .tracker("udp://127.0.0.1:3");
    let meta = Metainfo::from_bytes(&builder.build()).unwrap();
    let summary: Vec<(String, u64, u64, bool)> =
        meta.files.iter().map(|f| (f.path.join("/"), f.offset, f.length, f.pad)).collect();
    assert_eq!(
        summary,
        [
            ("album/cd1/01.flac".into(), 0, 20_000, false),
            ("album/.pad/12768".into(), 20_000, 12_768, true),
            ("album/cover.jpg".into(), 32_768, 5_000, false),
            ("album/.pad/11384".into(), 37_768, 11_384, true),
            ("album/empty.txt".into(), 49_152, 0, false),
            ("album/notes.txt".into(), 49_152, 5, false),
        ]
    );
    assert!(meta.private);
    assert_eq!(meta.trackers, vec![vec!["http://127.0.0.1:1/a", "http://127.0.0.1:2/a"], vec!["udp://127.0.0.1:3"]]);
    let content = builder.content();
    assert_eq!(content.len() as u64, meta.lengths.total_length());
    assert_eq!(content[32_768 + 300], 44);
    let expected: Vec<[u8; 20]> = content.chunks(16384).map(sha1).collect();
    assert_eq!(meta.piece_hashes, expected);
}

#[test]
fn hybrid_is_read_through_its_v1_part() {
    let root_a = [0xaa; 32];
    let file_tree = cat(&[
        b"d",
        &bs(b"a.bin"),
        b"d0:d6:lengthi20000e11:pieces root",
        &bs(&root_a),
        b"ee",
        &bs(b"b.txt"),
        b"d0:d6:lengthi300eee",
        b"e",
    ]);
    let files = cat(&[
        b"l",
        b"d6:lengthi20000e4:pathl5:a.bineed4:attr1:p6:lengthi12768e4:pathl4:.pad5:12768ee",
        b"d6:lengthi300e4:pathl5:b.txteee",
    ]);
    let pieces = [0x11u8; 60];
    let info = cat(&[
        b"d9:file tree",
        &file_tree,
        b"5:files",
        &files,
        b"12:meta versioni2e4:name6:hybrid12:piece lengthi16384e6:pieces",
        &bs(&pieces),
        b"e",
    ]);
    let torrent = cat(&[b"d4:info", &info, b"12:piece layersd", &bs(&root_a), &bs(&[0x22; 64]), b"ee"]);
    let meta = Metainfo::from_bytes(&torrent).unwrap();
    assert_eq!(meta.info_hash, InfoHash(sha1(&info)));
    assert_eq!(meta.info_bytes, info);
    assert_eq!(meta.lengths, Lengths::new(16384 * 2 + 300, 16384, 3).unwrap());
    let pads: Vec<bool> = meta.files.iter().map(|f| f.pad).collect();
    assert_eq!(pads, [false, true, false]);
    assert_eq!(meta.files[2].path, ["hybrid", "b.txt"]);
    assert_eq!(meta.files[2].offset, 32768);
    assert!(meta.trackers.is_empty());
}

#[test]
fn v2_only_is_a_clear_error() {
    let info = b"d9:file treed5:a.bind0:d6:lengthi5eeee12:meta versioni2e4:name1:x12:piece lengthi16384ee";
    let bytes = torrent_with_info(info);
    assert_eq!(Metainfo::from_bytes(&bytes).unwrap_err(), MetainfoError::V2OnlyUnsupported);
    assert!(err(&bytes).contains("v2-only"));
}

#[test]
fn info_hash_is_over_the_raw_bytes() {
    // Unsorted keys and leading zeros: a canonical re-encoding would hash differently.
    let pieces = [7u8; 20];
    let info = cat(&[b"d4:name4:demo6:lengthi0100e6:pieces", &bs(&pieces), b"12:piece lengthi016384e7:privatei01ee"]);
    let meta = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    assert_eq!(meta.info_hash, InfoHash(sha1(&info)));
    let canonical = sluice_bencode::decode(&info).unwrap().to_owned_value().encode();
    assert_ne!(canonical, info);
    assert_ne!(meta.info_hash, InfoHash(sha1(&canonical)));
    assert_eq!(meta.lengths.total_length(), 100);
    assert!(meta.private);
}

#[test]
fn hostile_paths_are_sanitised() {
    let paths: &[&[&[u8]]] = &[
        &[b"..", b"..", b"etc", b"passwd"],
        &[b"/abs", b"", b".", b"x"],
        &[b"C:\\Windows", b"system32"],
        &[b"CON"],
        &[b"a\0b\x07"],
        &[b"dup.txt"],
        &[b"DUP.txt"],
        &[b"\xff\xfe.bin"],
    ];
    let mut files = b"l".to_vec();
    for p in paths {
        files.extend_from_slice(b"d6:lengthi1e4:pathl");
        p.iter().for_each(|c| files.extend(bs(c)));
        files.extend_from_slice(b"ee");
    }
    files.push(b'e');
    let pieces = [0u8; 20];
    let info = cat(&[b"d5:files", &files, b"4:name2:..12:piece lengthi16384e6:pieces", &bs(&pieces), b"e"]);
    let meta = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    assert_safe(&meta);
    let joined: Vec<String> = meta.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        joined,
        [
            "__/__/__/etc/passwd",
            "__/_abs/x",
            "__/C__Windows/system32",
            "__/_CON",
            "__/a_b_",
            "__/dup.txt",
            "__/DUP (2).txt",
            "__/\u{fffd}\u{fffd}.bin",
        ]
    );
    assert_eq!(meta.name, "__");
}

#[test]
fn utf8_twins_are_preferred() {
    let info = cat(&[
        b"d5:filesld6:lengthi3e4:pathl",
        &bs(b"\xe9t\xe9"),
        b"e10:path.utf-8l",
        &bs("été.mp3".as_bytes()),
        b"eee4:name",
        &bs(b"\xe9l\xe9"),
        b"10:name.utf-8",
        &bs("élé".as_bytes()),
        b"12:piece lengthi16384e6:pieces",
        &bs(&[0; 20]),
        b"e",
    ]);
    let meta = Metainfo::from_bytes(&torrent_with_info(&info)).unwrap();
    assert_eq!(meta.name, "élé");
    assert_eq!(meta.files[0].path, ["élé", "été.mp3"]);
}

#[test]
fn errors_name_the_field() {
    let pieces41 = cat(&[b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces", &bs(&[0; 41]), b"e"]);
    assert_eq!(err(&torrent_with_info(&pieces41)), "info.pieces length 41 is not a multiple of 20");

    let two_pieces = cat(&[b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces", &bs(&[0; 40]), b"e"]);
    assert_eq!(
        err(&torrent_with_info(&two_pieces)),
        "info: 2 piece hashes given, but 5 bytes at piece length 16384 need 1"
    );

    let empty_path = cat(&[
        b"d5:filesld6:lengthi1e4:pathl1:aeed6:lengthi1e4:pathl0:1:.eee",
        b"4:name1:x12:piece lengthi16384e6:pieces",
        &bs(&[0; 20]),
        b"e",
    ]);
    assert_eq!(err(&torrent_with_info(&empty_path)), "info.files[1].path is empty");

    let bad_length =
        cat(&[b"d5:filesld6:lengthi-1e4:pathl1:aeee4:name1:x12:piece lengthi16384e6:pieces", &bs(&[0; 20]), b"e"]);
    assert_eq!(err(&torrent_with_info(&bad_length)), "info.files[0].length -1 is negative");

    let no_pieces = b"d6:lengthi5e4:name1:x12:piece lengthi16384ee";
    assert_eq!(err(&torrent_with_info(no_pieces)), "info.pieces is missing");
    assert_eq!(err(b"d4:infoi1ee"), "info should be a dictionary, found an integer");
    assert_eq!(err(b"le"), "torrent should be a dictionary, found a list");
    assert_eq!(err(b"d4:info"), "not bencode: unexpected end of input at byte 7");
    let zero_piece = cat(&[b"d6:lengthi5e4:name1:x12:piece lengthi0e6:pieces", &bs(&[0; 20]), b"e"]);
    assert_eq!(err(&torrent_with_info(&zero_piece)), "info: piece length 0 is outside 1 byte ..= 128 MiB");
    let both = cat(&[b"d5:filesle6:lengthi5e4:name1:x12:piece lengthi1e6:pieces", &bs(&[0; 20]), b"e"]);
    assert_eq!(err(&torrent_with_info(&both)), "info has both length and files");
}

#[test]
fn announce_list_tiers() {
    let info = cat(&[b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces", &bs(&[0; 20]), b"e"]);
    let t = cat(&[b"d8:announce5:udp:a13:announce-listll5:udp:b5:udp:ael5:udp:bel0:ei7el5:udp:cee4:info", &info, b"e"]);
    let meta = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(meta.trackers, vec![vec!["udp:b", "udp:a"], vec!["udp:c"]]);
    let only_announce = cat(&[b"d8:announce5:udp:a13:announce-listle4:info", &info, b"e"]);
    assert_eq!(Metainfo::from_bytes(&only_announce).unwrap().trackers, [["udp:a"]]);
}

fn small_torrent() -> Vec<u8> {
    TorrentBuilder::new("t", 16384)
        .file(&["a", "b.bin"], vec![3u8; 20_000])
        .file(&["c.txt"], b"abc".to_vec())
        .align_files()
        .tracker("http://127.0.0.1:1/a")
        .build()
}

proptest! {
    #[test]
    fn never_panics_on_mutations(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = small_torrent();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(meta) = Metainfo::from_bytes(&bytes) {
            assert_safe(&meta);
        }
        bytes.truncate(cut.index(bytes.len()));
        prop_assert!(Metainfo::from_bytes(&bytes).is_err());
    }

    #[test]
    fn builder_round_trip(
        sizes in proptest::collection::vec(0u64..40_000, 1..6),
        piece_shift in 0u32..4,
        align in any::<bool>(),
    ) {
        prop_assume!(sizes.iter().sum::<u64>() > 0);
        let piece = 16384u32 << piece_shift;
        let mut b = TorrentBuilder::new("p", piece);
        for (i, &len) in sizes.iter().enumerate() {
            b = b.file_with(&[&format!("f{i}")], len, move |off, buf| buf.fill((off as usize + i) as u8));
        }
        if align {
            b = b.align_files();
        }
        let meta = Metainfo::from_bytes(&b.build()).unwrap();
        let mut offset = 0;
        for f in &meta.files {
            prop_assert_eq!(f.offset, offset);
            offset += f.length;
            if align && !f.pad && f.offset > 0 {
                prop_assert_eq!(f.offset % u64::from(piece), 0);
            }
        }
        prop_assert_eq!(offset, meta.lengths.total_length());
        let real: Vec<u64> = meta.files.iter().filter(|f| !f.pad).map(|f| f.length).collect();
        prop_assert_eq!(real, sizes);
        let content = b.content();
        let expected: Vec<[u8; 20]> = content.chunks(piece as usize).map(sha1).collect();
        prop_assert_eq!(meta.piece_hashes, expected);
    }
}

#[test]
fn from_info_matches_the_torrent() {
    let bytes = TorrentBuilder::single_file("a.bin", 16384, vec![7u8; 40_000]).tracker("http://127.0.0.1:1/x").build();
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    let again = Metainfo::from_info(&meta.info_bytes, &["udp://127.0.0.1:2".into()]).unwrap();
    assert_eq!(again.info_hash, meta.info_hash);
    assert_eq!(again.info_bytes, meta.info_bytes);
    assert_eq!(again.files, meta.files);
    assert_eq!(again.trackers, [["udp://127.0.0.1:2"]]);
    assert!(Metainfo::from_info(b"i1e", &[]).is_err());
    assert!(Metainfo::from_info(b"de", &[]).is_err());
    assert!(Metainfo::from_info(&[&meta.info_bytes[..], b"x"].concat(), &[]).is_err());
}

#[test]
fn a_fetched_dictionary_saves_as_a_torrent_with_the_same_info_hash() {
    let bytes = TorrentBuilder::single_file("clip.mp4", 16384, vec![7u8; 40_000]).build();
    let info = Metainfo::from_bytes(&bytes).unwrap().info_bytes;
    let trackers = ["http://127.0.0.1:1/announce".to_owned(), "udp://127.0.0.2:2".to_owned()];
    let fetched = Metainfo::from_info(&info, &trackers).unwrap();
    let saved = Metainfo::from_bytes(&fetched.torrent_file()).unwrap();
    assert_eq!(saved.info_hash, fetched.info_hash);
    assert_eq!(saved.info_bytes, info);
    assert_eq!(saved.trackers, [[trackers[0].clone()], [trackers[1].clone()]]);
    let bare = Metainfo::from_bytes(&Metainfo::from_info(&info, &[]).unwrap().torrent_file()).unwrap();
    assert_eq!((bare.info_hash, bare.trackers.len()), (fetched.info_hash, 0));
}
