//! A `multipart/form-data` parser (RFC 7578) for `/torrent/upload`: untrusted bytes.
//!
//! The whole body is already in memory (the route caps its size), so parts are borrowed
//! slices of it: nothing here allocates in proportion to a length the client wrote. Part
//! count and header block size are capped. Only what the upload needs is understood: each
//! part's `Content-Disposition` `name` and `filename`; other part headers are skipped.
//! Fuzzed by `fuzz/fuzz_targets/multipart_parse.rs`.

/// Most parts one body may have.
pub const MAX_PARTS: usize = 64;
/// Longest header block of one part.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    /// Present for file parts.
    pub filename: Option<String>,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the content type is not multipart/form-data with a boundary")]
    NotMultipart,
    #[error("the boundary is empty, longer than 70 bytes or has bad characters")]
    BadBoundary,
    #[error("no opening boundary")]
    NoStart,
    #[error("a boundary line is not followed by CRLF")]
    BadDelimiter,
    #[error("a part's headers are longer than {MAX_HEADER_BYTES} bytes or not terminated")]
    Headers,
    #[error("a part header is not `name: value` text")]
    BadHeader,
    #[error("a part has no form-data Content-Disposition with a name")]
    NoDisposition,
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
    #[error("the body ends before the closing boundary")]
    Unterminated,
}

/// The boundary of a `Content-Type: multipart/form-data; boundary=...` value.
pub fn boundary(content_type: &str) -> Result<&str, MultipartError> {
    let mut params = content_type.split(';');
    let mime = params.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    let value = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim())
        .ok_or(MultipartError::NotMultipart)?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    // RFC 2046 §5.1.1: 1 to 70 of bchars, not ending in a space.
    let bchar = |c: u8| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c);
    if value.is_empty() || value.len() > 70 || value.ends_with(' ') || !value.bytes().all(bchar) {
        return Err(MultipartError::BadBoundary);
    }
    Ok(value)
}

/// Splits `body` into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    // The first delimiter may follow a preamble; later ones always follow a CRLF.
    let start = if body.starts_with(&delimiter) {
        0
    } else {
        find(body, &[b"\r\n", &delimiter[..]].concat()).ok_or(MultipartError::NoStart)? + 2
    };
    let mut rest = &body[start + delimiter.len()..];
    let close = [b"\r\n", &delimiter[..]].concat();
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if rest.is_empty() {
            return Err(MultipartError::Unterminated);
        }
        let padding = rest.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
        rest = rest[padding..].strip_prefix(b"\r\n").ok_or(MultipartError::BadDelimiter)?;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let head_end = find(&rest[..rest.len().min(MAX_HEADER_BYTES + 4)], b"\r\n\r\n");
        let n = head_end.ok_or(MultipartError::Headers)?;
        let (head, after) = (&rest[..n], &rest[n + 4..]);
        let (name, filename) = disposition(head)?;
        let end = find(after, &close).ok_or(MultipartError::Unterminated)?;
        parts.push(Part { name, filename, data: &after[..end] });
        rest = &after[end + close.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, tail) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = haystack.get(from..)?.iter().position(|&c| c == first) {
        let at = from + p;
        if haystack.get(at + 1..at + needle.len()) == Some(tail) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `name` and `filename` of the part's `Content-Disposition: form-data` header.
fn disposition(head: &[u8]) -> Result<(String, Option<String>), MultipartError> {
    let head = std::str::from_utf8(head).map_err(|_| MultipartError::BadHeader)?;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once(':').ok_or(MultipartError::BadHeader)?;
        if !key.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut params = Params { rest: value.trim() };
        let kind = params.token();
        if !kind.eq_ignore_ascii_case("form-data") {
            return Err(MultipartError::NoDisposition);
        }
        let (mut name, mut filename) = (None, None);
        while let Some((k, v)) = params.next_param()? {
            if k.eq_ignore_ascii_case("name") {
                name = Some(v);
            } else if k.eq_ignore_ascii_case("filename") {
                filename = Some(v);
            }
        }
        return name.map(|n| (n, filename)).ok_or(MultipartError::NoDisposition);
    }
    Err(MultipartError::NoDisposition)
}

/// `; key=value` parameters, values as tokens or quoted strings (backslash escapes).
struct Params<'a> {
    rest: &'a str,
}

impl Params<'_> {
    fn token(&mut self) -> &str {
        let n = self.rest.find(|c: char| c == ';' || c.is_whitespace()).unwrap_or(self.rest.len());
        let (t, rest) = self.rest.split_at(n);
        self.rest = rest.trim_start();
        t
    }

    fn next_param(&mut self) -> Result<Option<(String, String)>, MultipartError> {
        let Some(rest) = self.rest.strip_prefix(';') else {
            return if self.rest.is_empty() { Ok(None) } else { Err(MultipartError::BadHeader) };
        };
        let (key, rest) = rest.split_once('=').ok_or(MultipartError::BadHeader)?;
        let rest = rest.trim_start();
        let (value, rest) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err(MultipartError::BadHeader),
                        Some((i, '"')) => break i + 1,
                        Some((_, '\\')) => value.push(chars.next().ok_or(MultipartError::BadHeader)?.1),
                        Some((_, c)) => value.push(c),
                    }
                };
                (value, &quoted[end..])
            }
            None => {
                let n = rest.find(';').unwrap_or(rest.len());
                (rest[..n].trim_end().to_owned(), &rest[n..])
            }
        };
        self.rest = rest.trim_start();
        Ok(Some((key.trim().to_owned(), value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"save\"\r\n\r\ntrue\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".torrent\"\r\n\
Content-Type: application/x-bittorrent\r\n\r\nd4:infoe\r\n--XyZ\r\n\
Content-Disposition: form-data; name=title\r\n\r\n\r\n--XyZ--\r\nepilogue";

    #[test]
    fn parts_and_fields() {
        let b = boundary("multipart/form-data; charset=utf-8; boundary=\"XyZ\"").unwrap();
        let parts = parse(BODY, b).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0].name.as_str(), parts[0].filename.as_deref(), parts[0].data), ("save", None, &b"true"[..]));
        assert_eq!(parts[1].filename.as_deref(), Some("a \"b\".torrent"));
        assert_eq!(parts[1].data, b"d4:infoe");
        assert_eq!((parts[2].name.as_str(), parts[2].data), ("title", &b""[..]));
    }

    #[test]
    fn bad_bodies_are_typed_errors() {
        assert_eq!(boundary("application/json"), Err(MultipartError::NotMultipart));
        assert_eq!(boundary("multipart/form-data"), Err(MultipartError::NotMultipart));
        assert_eq!(boundary("multipart/form-data; boundary="), Err(MultipartError::BadBoundary));
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "a".repeat(71))),
            Err(MultipartError::BadBoundary)
        );
        assert_eq!(parse(b"nothing", "XyZ"), Err(MultipartError::NoStart));
        assert_eq!(parse(&BODY[..BODY.len() - 12], "XyZ"), Err(MultipartError::Unterminated));
        let in_file = BODY.windows(4).position(|w| w == b"d4:i").unwrap() + 2;
        assert_eq!(parse(&BODY[..in_file], "XyZ"), Err(MultipartError::Unterminated));
        assert_eq!(parse(&BODY[..BODY.len() - 20], "XyZ"), Err(MultipartError::Headers));
        assert_eq!(parse(b"--XyZ\r\nX: y\r\n\r\ndata\r\n--XyZ--", "XyZ"), Err(MultipartError::NoDisposition));
        assert_eq!(parse(b"--XyZjunk", "XyZ"), Err(MultipartError::BadDelimiter));
        let long = [&b"--XyZ\r\nA: "[..], &[b'a'; MAX_HEADER_BYTES + 10][..], b"\r\n\r\n"].concat();
        assert_eq!(parse(&long, "XyZ"), Err(MultipartError::Headers));
        let part = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n";
        let many = [&part.repeat(MAX_PARTS + 1)[..], b"--XyZ--"].concat();
        assert_eq!(parse(&many, "XyZ"), Err(MultipartError::TooManyParts));
        assert_eq!(parse(&[&part.repeat(2)[..], b"--XyZ--"].concat(), "XyZ").unwrap().len(), 2);
    }
}
