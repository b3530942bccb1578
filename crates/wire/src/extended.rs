//! BEP 10 extended handshake: the bencoded dictionary sent as extended message 0.
//!
//! Decoding is lenient in the way the extension protocol expects: keys we do not know are
//! ignored, and so is any known key whose value has the wrong type or is out of range (an
//! `m` entry outside 0..=255, a port of 0, a negative `reqq`, a `yourip` that is neither 4
//! nor 16 bytes). A peer that sends one odd field still gets a working connection; only a
//! payload that is not a bencoded dictionary at all is an error. Bytes after the dictionary
//! are ignored too. Encoding goes through the canonical bencode encoder, so keys are sorted.

use sluice_bencode::{Dict, Value};

use crate::WireError;

/// BEP 10 extended handshake (extended message id 0).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake {
    /// Extension name → the id the sender wants to receive it as (0 = disabled).
    pub extensions: Vec<(String, u8)>,
    /// `p`: the sender's listen port.
    pub listen_port: Option<u16>,
    /// `v`: client name and version.
    pub client: Option<String>,
    /// `reqq`: requests the sender queues at most.
    pub reqq: Option<u32>,
    /// `metadata_size` (BEP 9).
    pub metadata_size: Option<u64>,
    /// `yourip`: our address as the sender sees it (4 or 16 bytes).
    pub your_ip: Option<Vec<u8>>,
}

impl ExtendedHandshake {
    /// Decodes the payload of extended message 0 (after the extended id byte). Extension
    /// names that are not UTF-8 are skipped; a repeated name keeps its first id; `v` is
    /// decoded lossily, since not every client sends UTF-8.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let (root, _) =
            sluice_bencode::decode_prefix(payload).map_err(|e| WireError::BadExtendedHandshake(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(WireError::BadExtendedHandshake(format!("expected a dictionary, found {}", root.kind())));
        }
        let int = |key: &[u8]| root.get(key).and_then(Value::as_int);

        let mut extensions: Vec<(String, u8)> = Vec::new();
        for (name, id) in root.get(b"m").and_then(Value::as_dict).unwrap_or_default() {
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let Some(id) = id.as_int().and_then(|i| u8::try_from(i).ok()) else {
                continue;
            };
            if extensions.iter().all(|(n, _)| n != name) {
                extensions.push((name.to_owned(), id));
            }
        }
        Ok(Self {
            extensions,
            listen_port: int(b"p").and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0),
            client: root.get(b"v").and_then(Value::as_bytes).map(|v| String::from_utf8_lossy(v).into_owned()),
            reqq: int(b"reqq").and_then(|r| u32::try_from(r).ok()),
            metadata_size: int(b"metadata_size").and_then(|s| u64::try_from(s).ok()),
            your_ip: root
                .get(b"yourip")
                .and_then(Value::as_bytes)
                .filter(|ip| matches!(ip.len(), 4 | 16))
                .map(<[u8]>::to_vec),
        })
    }

    /// Appends the bencoded dictionary (no framing). `m` is always present, as BEP 10
    /// expects; the other keys only when set.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut m = Dict::new();
        for (name, id) in &self.extensions {
            m.insert(name, *id);
        }
        let mut dict = Dict::new().with("m", m);
        if let Some(p) = self.listen_port {
            dict.insert("p", p);
        }
        if let Some(v) = &self.client {
            dict.insert("v", v.as_str());
        }
        if let Some(r) = self.reqq {
            dict.insert("reqq", r);
        }
        if let Some(size) = self.metadata_size {
            // Sizes beyond i64 cannot be bencoded; no real metadata comes near.
            if let Ok(size) = i64::try_from(size) {
                dict.insert("metadata_size", size);
            }
        }
        if let Some(ip) = &self.your_ip {
            dict.insert("yourip", ip.as_slice());
        }
        dict.encode_into(out);
    }

    /// The id the sender wants `name` messages sent with, if it supports the extension
    /// (an id of 0 means it was disabled).
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.extensions.iter().find(|(n, _)| n == name).map(|&(_, id)| id).filter(|&id| id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ExtendedHandshake {
        ExtendedHandshake {
            extensions: vec![("ut_metadata".into(), 3), ("ut_pex".into(), 1)],
            listen_port: Some(6881),
            client: Some("Sluice 0.1".into()),
            reqq: Some(250),
            metadata_size: Some(31_235),
            your_ip: Some(vec![127, 0, 0, 1]),
        }
    }

    #[test]
    fn encodes_canonically() {
        let mut out = vec![b'!'];
        sample().encode(&mut out);
        assert_eq!(
            out,
            b"!d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e\
              4:reqqi250e1:v10:Sluice 0.16:yourip4:\x7f\x00\x00\x01e"
                .to_vec()
        );
        let mut empty = Vec::new();
        ExtendedHandshake::default().encode(&mut empty);
        assert_eq!(empty, b"d1:mdee");
    }

    #[test]
    fn round_trips() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(ExtendedHandshake::decode(&out), Ok(sample()));
    }

    #[test]
    fn decodes_a_typical_foreign_handshake() {
        let payload = b"d1:ei0e1:md11:ut_metadatai2e6:ut_pexi0e11:lt_donthavei7ee\
                        13:metadata_sizei4096e1:pi51413e4:reqqi512e1:v15:qBittorrent 5.0\
                        6:yourip16:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x7f\x00\x00\x01e";
        let hs = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(hs.extensions, [("ut_metadata".into(), 2), ("ut_pex".into(), 0), ("lt_donthave".into(), 7)]);
        assert_eq!(hs.extension_id("ut_metadata"), Some(2));
        assert_eq!(hs.extension_id("ut_pex"), None);
        assert_eq!(hs.extension_id("ut_holepunch"), None);
        assert_eq!(hs.listen_port, Some(51413));
        assert_eq!(hs.client.as_deref(), Some("qBittorrent 5.0"));
        assert_eq!(hs.reqq, Some(512));
        assert_eq!(hs.metadata_size, Some(4096));
        assert_eq!(hs.your_ip.as_ref().map(Vec::len), Some(16));
    }

    #[test]
    fn ignores_wrongly_typed_or_out_of_range_keys() {
        let payload = b"d1:md1:ai256e1:bi-1e1:c1:x1:di5e1:di6e2:\xff\xffi1ee\
                        13:metadata_sizei-5e1:pi70000e4:reqq3:abc1:vi1e6:yourip3:abce";
        let hs = ExtendedHandshake::decode(payload).unwrap();
        assert_eq!(hs, ExtendedHandshake { extensions: vec![("d".into(), 5)], ..Default::default() });
        let hs = ExtendedHandshake::decode(b"d1:mi1e1:pi0ee").unwrap();
        assert_eq!(hs, ExtendedHandshake::default());
        let hs = ExtendedHandshake::decode(b"d1:v2:\xe9te").unwrap();
        assert_eq!(hs.client.as_deref(), Some("\u{fffd}t"));
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let hs = ExtendedHandshake::decode(b"d1:pi1eexyz").unwrap();
        assert_eq!(hs.listen_port, Some(1));
    }

    #[test]
    fn rejects_what_is_not_a_dictionary() {
        for bad in [&b""[..], b"i1e", b"le", b"d1:p", b"x"] {
            assert!(matches!(ExtendedHandshake::decode(bad), Err(WireError::BadExtendedHandshake(_))), "{bad:?}");
        }
    }
}
