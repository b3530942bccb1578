//! Arbitrary bytes into the `/torrent/upload` multipart parser.
//!
//! Input: the `Content-Type` value up to the first newline, then the body. Besides "no
//! panic": every part's data is a slice of the body, there are at most `MAX_PARTS`, and a
//! body rebuilt from the parts with the same boundary parses back to the same parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_http::torrserver::multipart::{MAX_HEADER_BYTES, MAX_PARTS, boundary, parse};

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"multipart/form-data; boundary=B"[..], data),
    };
    let Ok(content_type) = std::str::from_utf8(content_type) else { return };
    let Ok(b) = boundary(content_type) else { return };
    let Ok(parts) = parse(body, b) else { return };
    assert!(parts.len() <= MAX_PARTS);
    let range = body.as_ptr_range();
    for p in &parts {
        let r = p.data.as_ptr_range();
        assert!(range.start <= r.start && r.end <= range.end);
    }

    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut rebuilt = Vec::new();
    for p in &parts {
        let filename = p.filename.as_deref().unwrap_or("");
        // Escaping could push a long header past the parser's cap.
        if (p.name.len() + filename.len()) * 2 > MAX_HEADER_BYTES / 2 || format!("{}{filename}", p.name).contains(['\r', '\n']) {
            return;
        }
        let mut head = format!("--{b}\r\nContent-Disposition: form-data; name=\"{}\"", quote(&p.name));
        if let Some(f) = &p.filename {
            head.push_str(&format!("; filename=\"{}\"", quote(f)));
        }
        rebuilt.extend_from_slice(head.as_bytes());
        rebuilt.extend_from_slice(b"\r\n\r\n");
        rebuilt.extend_from_slice(p.data);
        rebuilt.extend_from_slice(b"\r\n");
    }
    rebuilt.extend_from_slice(format!("--{b}--").as_bytes());
    let again = parse(&rebuilt, b).expect("a rebuilt body parses");
    assert_eq!(again, parts);
});
