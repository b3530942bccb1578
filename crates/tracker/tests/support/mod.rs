//! Helpers shared by the tracker client tests' small HTTP servers.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Reads a request head (up to 4 KiB) through its blank line; `None` if the connection ends,
/// fails or fills the buffer first.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return None,
            Ok(m) => n += m,
        }
    }
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}
