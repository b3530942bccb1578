//! NAT-PMP (RFC 6886): what a client sends its gateway to have a port forwarded, and the
//! gateway's replies. No I/O: the node's port mapping task sends these over UDP.
//!
//! Our own few lines rather than a crate: the protocol is four fixed-size packets, and the
//! crates that speak it either build C (to find the gateway) or bring a runtime of their own.
//! Everything a gateway sends is untrusted: [`Response::decode`] checks the version, opcode
//! and length, and turns a non-zero result code into a typed error.
//!
//! The gateway is the host's default IPv4 router ([`default_gateway`] reads Linux's
//! `/proc/net/route` text), listening on UDP [`PORT`].

use std::net::Ipv4Addr;
use std::time::Duration;

/// The gateway's NAT-PMP port.
pub const PORT: u16 = 5351;
/// The only version this speaks (a PCP gateway answers version 0 requests in version 0).
pub const VERSION: u8 = 0;
/// The lifetime RFC 6886 recommends asking for.
pub const RECOMMENDED_LIFETIME: Duration = Duration::from_secs(7200);

const OP_EXTERNAL_ADDRESS: u8 = 0;
const OP_MAP_UDP: u8 = 1;
const OP_MAP_TCP: u8 = 2;
const REPLY: u8 = 128;

/// How long to wait for the reply to attempt `n` (0-based): 250 ms doubling (RFC 6886 §3.1).
pub fn retransmit_timeout(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(8))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl Protocol {
    fn opcode(self) -> u8 {
        match self {
            Protocol::Udp => OP_MAP_UDP,
            Protocol::Tcp => OP_MAP_TCP,
        }
    }
}

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    ExternalAddress,
    /// Forward `external_port` (a suggestion; 0: any) to `internal_port` for `lifetime`
    /// seconds; lifetime 0 (with external port 0) deletes the mapping.
    Map {
        protocol: Protocol,
        internal_port: u16,
        external_port: u16,
        lifetime: u32,
    },
}

/// A gateway's successful reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    ExternalAddress {
        /// Seconds since the gateway's mapping table was (re)started.
        epoch: u32,
        address: Ipv4Addr,
    },
    Map {
        protocol: Protocol,
        epoch: u32,
        internal_port: u16,
        /// The port the gateway actually forwards (it may differ from the one suggested).
        external_port: u16,
        /// Seconds granted (may be less than asked).
        lifetime: u32,
    },
}

/// A gateway's non-zero result code (RFC 6886 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    UnsupportedVersion,
    NotAuthorized,
    NetworkFailure,
    OutOfResources,
    UnsupportedOpcode,
    Other(u16),
}

impl ResultCode {
    fn from_u16(n: u16) -> Self {
        match n {
            1 => ResultCode::UnsupportedVersion,
            2 => ResultCode::NotAuthorized,
            3 => ResultCode::NetworkFailure,
            4 => ResultCode::OutOfResources,
            5 => ResultCode::UnsupportedOpcode,
            n => ResultCode::Other(n),
        }
    }

    fn to_u16(self) -> u16 {
        match self {
            ResultCode::UnsupportedVersion => 1,
            ResultCode::NotAuthorized => 2,
            ResultCode::NetworkFailure => 3,
            ResultCode::OutOfResources => 4,
            ResultCode::UnsupportedOpcode => 5,
            ResultCode::Other(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("{0} bytes: too short for its opcode")]
    Short(usize),
    #[error("version {0} (only NAT-PMP version 0 is spoken)")]
    Version(u8),
    #[error("unknown opcode {0}")]
    Opcode(u8),
    #[error("the gateway refused: {0:?}")]
    Refused(ResultCode),
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Request::ExternalAddress => vec![VERSION, OP_EXTERNAL_ADDRESS],
            Request::Map { protocol, internal_port, external_port, lifetime } => {
                let mut out = vec![VERSION, protocol.opcode(), 0, 0];
                out.extend_from_slice(&internal_port.to_be_bytes());
                out.extend_from_slice(&external_port.to_be_bytes());
                out.extend_from_slice(&lifetime.to_be_bytes());
                out
            }
        }
    }

    /// What a gateway reads; for test gateways and fuzzing.
    pub fn decode(b: &[u8]) -> Result<Request, PacketError> {
        let [version, op, rest @ ..] = b else { return Err(PacketError::Short(b.len())) };
        if *version != VERSION {
            return Err(PacketError::Version(*version));
        }
        let protocol = match *op {
            OP_EXTERNAL_ADDRESS => return Ok(Request::ExternalAddress),
            OP_MAP_UDP => Protocol::Udp,
            OP_MAP_TCP => Protocol::Tcp,
            op => return Err(PacketError::Opcode(op)),
        };
        let [_, _, i0, i1, e0, e1, l0, l1, l2, l3, ..] = *rest else { return Err(PacketError::Short(b.len())) };
        Ok(Request::Map {
            protocol,
            internal_port: u16::from_be_bytes([i0, i1]),
            external_port: u16::from_be_bytes([e0, e1]),
            lifetime: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }
}

impl Response {
    /// Decodes a gateway's reply; a non-zero result code is [`PacketError::Refused`].
    pub fn decode(b: &[u8]) -> Result<Response, PacketError> {
        let [version, op, r0, r1, s0, s1, s2, s3, rest @ ..] = b else { return Err(PacketError::Short(b.len())) };
        if *version != VERSION {
            return Err(PacketError::Version(*version));
        }
        let op = op.checked_sub(REPLY).ok_or(PacketError::Opcode(*op))?;
        if !matches!(op, OP_EXTERNAL_ADDRESS | OP_MAP_UDP | OP_MAP_TCP) {
            return Err(PacketError::Opcode(op + REPLY));
        }
        let result = u16::from_be_bytes([*r0, *r1]);
        if result != 0 {
            return Err(PacketError::Refused(ResultCode::from_u16(result)));
        }
        let epoch = u32::from_be_bytes([*s0, *s1, *s2, *s3]);
        let protocol = match op {
            OP_EXTERNAL_ADDRESS => {
                let [a, b2, c, d, ..] = *rest else { return Err(PacketError::Short(b.len())) };
                return Ok(Response::ExternalAddress { epoch, address: Ipv4Addr::new(a, b2, c, d) });
            }
            OP_MAP_UDP => Protocol::Udp,
            _ => Protocol::Tcp,
        };
        let [i0, i1, e0, e1, l0, l1, l2, l3, ..] = *rest else { return Err(PacketError::Short(b.len())) };
        Ok(Response::Map {
            protocol,
            epoch,
            internal_port: u16::from_be_bytes([i0, i1]),
            external_port: u16::from_be_bytes([e0, e1]),
            lifetime: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }

    /// What a gateway sends; for test gateways.
    pub fn encode(&self) -> Vec<u8> {
        let (op, epoch) = match *self {
            Response::ExternalAddress { epoch, .. } => (OP_EXTERNAL_ADDRESS, epoch),
            Response::Map { protocol, epoch, .. } => (protocol.opcode(), epoch),
        };
        let mut out = vec![VERSION, REPLY + op, 0, 0];
        out.extend_from_slice(&epoch.to_be_bytes());
        match *self {
            Response::ExternalAddress { address, .. } => out.extend_from_slice(&address.octets()),
            Response::Map { internal_port, external_port, lifetime, .. } => {
                out.extend_from_slice(&internal_port.to_be_bytes());
                out.extend_from_slice(&external_port.to_be_bytes());
                out.extend_from_slice(&lifetime.to_be_bytes());
            }
        }
        out
    }
}

/// A refusal as a gateway sends it (for test gateways): the reply to `request` with `code`.
pub fn encode_refusal(request: &Request, code: ResultCode, epoch: u32) -> Vec<u8> {
    let op = match request {
        Request::ExternalAddress => OP_EXTERNAL_ADDRESS,
        Request::Map { protocol, .. } => protocol.opcode(),
    };
    let mut out = vec![VERSION, REPLY + op];
    out.extend_from_slice(&code.to_u16().to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.resize(if op == OP_EXTERNAL_ADDRESS { 12 } else { 16 }, 0);
    out
}

/// The default IPv4 route's gateway in the text of Linux's `/proc/net/route` (destination and
/// mask 0, flags up + gateway; addresses in the kernel's little-endian hex). The route with the
/// lowest metric wins.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, gateway, flags, metric, mask) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(6)?, f.get(7)?);
            let flags = hex(flags)?;
            let default = hex(dest)? == 0 && hex(mask)? == 0 && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY;
            let gateway = Ipv4Addr::from(hex(gateway)?.to_le_bytes());
            (default && !gateway.is_unspecified()).then_some((metric.parse::<u32>().ok()?, gateway))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gateway)| gateway)
}

#[cfg(test)]
mod tests;
