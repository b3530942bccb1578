//! BEP 10 extended handshake.

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

#[allow(unused_variables)]
impl ExtendedHandshake {
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        unimplemented!()
    }
    /// Appends the bencoded dictionary (no framing).
    pub fn encode(&self, out: &mut Vec<u8>) {
        unimplemented!()
    }
}
