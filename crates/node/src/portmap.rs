//! Port mapping: asks the local network's UPnP Internet Gateway Device to forward the peer
//! listen port (TCP for peers, UDP for the DHT) to this host, so peers behind the same kind of
//! NAT can still reach us. NAT-PMP/PCP are not spoken.
//!
//! The gateway is found with SSDP (multicast 239.255.255.250:1900) and driven over SOAP by
//! `igd-next`, behind the [`Igd`] trait so the lease logic is tested without a router. Leases
//! are finite (an hour) and renewed at half-life, so a crashed Sluice leaves no mapping behind
//! for long; a gateway that only takes permanent leases gets one (lease 0) and no renewals. On
//! stop the mappings are removed. Everything here is off under loopback-only: SSDP would leave
//! loopback.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::PortMappingProtocol;
use igd_next::aio::Gateway;
use igd_next::aio::tokio::Tokio;

use crate::NetPolicy;

/// What we ask the gateway for.
pub(crate) const LEASE: Duration = Duration::from_secs(3600);
/// After a failure (no gateway, refused), the next attempt.
const RETRY: Duration = Duration::from_secs(300);
const DESCRIPTION: &str = "Sluice";

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MapError {
    /// UPnP error 725: only a lease of 0 (permanent) is taken.
    OnlyPermanentLeases,
    Other(String),
}

/// The two SOAP actions we need of a gateway.
pub(crate) trait Igd: Send + Sync {
    fn add_port(
        &self,
        protocol: PortMappingProtocol,
        local: SocketAddr,
        lease: Duration,
    ) -> impl Future<Output = Result<(), MapError>> + Send;
    fn remove_port(&self, protocol: PortMappingProtocol, port: u16) -> impl Future<Output = ()> + Send;
}

impl Igd for Gateway<Tokio> {
    async fn add_port(
        &self,
        protocol: PortMappingProtocol,
        local: SocketAddr,
        lease: Duration,
    ) -> Result<(), MapError> {
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        match Gateway::add_port(self, protocol, local.port(), local, secs, DESCRIPTION).await {
            Ok(()) => Ok(()),
            Err(igd_next::AddPortError::OnlyPermanentLeasesSupported) => Err(MapError::OnlyPermanentLeases),
            Err(e) => Err(MapError::Other(e.to_string())),
        }
    }

    async fn remove_port(&self, protocol: PortMappingProtocol, port: u16) {
        if let Err(e) = Gateway::remove_port(self, protocol, port).await {
            tracing::debug!(error = %e, ?protocol, port, "UPnP: removing the mapping failed");
        }
    }
}

/// Whether the session maps its listen port: asked to, listening, and not loopback-only.
pub(crate) fn wanted(upnp: bool, policy: NetPolicy, listen: Option<SocketAddr>) -> bool {
    upnp && !policy.loopback_only && listen.is_some_and(|a| !a.ip().is_loopback())
}

/// Maps `local` (TCP and UDP, same external port) on `gateway` and keeps it mapped: renews at
/// half the lease, retries after [`RETRY`] on failure. Returns when `stop` resolves, after
/// removing the mappings.
pub(crate) async fn keep_mapped(gateway: &impl Igd, local: SocketAddr, stop: impl Future<Output = ()>) {
    let protocols = [PortMappingProtocol::TCP, PortMappingProtocol::UDP];
    let mut lease = LEASE;
    let mut mapped = false;
    let work = async {
        loop {
            let mut failed = None;
            for p in protocols {
                match gateway.add_port(p, local, lease).await {
                    Ok(()) => {}
                    Err(MapError::OnlyPermanentLeases) if !lease.is_zero() => {
                        lease = Duration::ZERO;
                        if let Err(e) = gateway.add_port(p, local, lease).await {
                            failed = Some(e);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let wait = match failed {
                None => {
                    if !mapped {
                        tracing::info!(port = local.port(), lease_secs = lease.as_secs(), "UPnP: listen port mapped");
                    }
                    mapped = true;
                    if lease.is_zero() {
                        std::future::pending::<()>().await;
                    }
                    lease / 2
                }
                Some(e) => {
                    tracing::info!(error = ?e, "UPnP: mapping the listen port failed; retrying later");
                    RETRY
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
    for p in protocols {
        gateway.remove_port(p, local.port()).await;
    }
}

/// Finds the gateway (SSDP from `listen`'s address when it is a specific one) and keeps
/// `listen`'s port mapped until `stop`; retries the search after [`RETRY`].
pub(crate) async fn run(listen: SocketAddr, stop: tokio::sync::watch::Receiver<bool>) {
    let stopped = {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    let search = async {
        loop {
            let mut options = igd_next::SearchOptions::default();
            if let IpAddr::V4(v4) = listen.ip()
                && !v4.is_unspecified()
            {
                options.bind_addr = SocketAddr::new(listen.ip(), 0);
            }
            match igd_next::aio::tokio::search_gateway(options).await {
                Ok(gw) => match local_toward(listen, gw.addr).await {
                    Some(local) => return Some((gw, local)),
                    None => tracing::info!("UPnP: no local address toward the gateway"),
                },
                Err(e) => tracing::info!(error = %e, "UPnP: no gateway found"),
            }
            tokio::time::sleep(RETRY).await;
        }
    };
    let found = tokio::select! {
        f = search => f,
        () = stopped => None,
    };
    if let Some((gw, local)) = found {
        let mut stop = stop;
        keep_mapped(&gw, local, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    }
}

/// The address the gateway should forward to: `listen` if it names one, else the address this
/// host uses toward the gateway (a connected UDP socket sends nothing).
async fn local_toward(listen: SocketAddr, gateway: SocketAddr) -> Option<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return Some(listen);
    }
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0)).await.ok()?;
    socket.connect(gateway).await.ok()?;
    Some(SocketAddr::new(socket.local_addr().ok()?.ip(), listen.port()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn loopback_only_or_no_upnp_disables_mapping() {
        let public: SocketAddr = "0.0.0.0:6881".parse().unwrap();
        let on = NetPolicy { loopback_only: false };
        let loopback = NetPolicy { loopback_only: true };
        assert!(wanted(true, on, Some(public)));
        assert!(!wanted(true, loopback, Some(public)));
        assert!(!wanted(false, on, Some(public)));
        assert!(!wanted(true, on, None));
        assert!(!wanted(true, on, Some("127.0.0.1:6881".parse().unwrap())));
    }

    /// Records calls; refuses finite leases when `permanent_only`.
    #[derive(Default)]
    struct FakeIgd {
        permanent_only: bool,
        calls: Mutex<Vec<(tokio::time::Instant, String)>>,
    }

    impl Igd for FakeIgd {
        async fn add_port(&self, p: PortMappingProtocol, _: SocketAddr, lease: Duration) -> Result<(), MapError> {
            self.calls.lock().unwrap().push((tokio::time::Instant::now(), format!("add {p} {}", lease.as_secs())));
            if self.permanent_only && !lease.is_zero() {
                return Err(MapError::OnlyPermanentLeases);
            }
            Ok(())
        }

        async fn remove_port(&self, p: PortMappingProtocol, port: u16) {
            self.calls.lock().unwrap().push((tokio::time::Instant::now(), format!("remove {p} {port}")));
        }
    }

    fn calls(igd: &FakeIgd, start: tokio::time::Instant) -> Vec<(u64, String)> {
        igd.calls.lock().unwrap().iter().map(|(t, c)| (t.duration_since(start).as_secs(), c.clone())).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn finite_lease_is_renewed_at_half_life_and_removed_on_stop() {
        let igd = FakeIgd::default();
        let start = tokio::time::Instant::now();
        let local: SocketAddr = "192.168.1.5:6881".parse().unwrap();
        keep_mapped(&igd, local, tokio::time::sleep(Duration::from_secs(4000))).await;
        let want: Vec<(u64, String)> = [
            (0, "add TCP 3600"),
            (0, "add UDP 3600"),
            (1800, "add TCP 3600"),
            (1800, "add UDP 3600"),
            (3600, "add TCP 3600"),
            (3600, "add UDP 3600"),
            (4000, "remove TCP 6881"),
            (4000, "remove UDP 6881"),
        ]
        .into_iter()
        .map(|(t, c)| (t, c.to_owned()))
        .collect();
        assert_eq!(calls(&igd, start), want);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gateway_taking_only_permanent_leases_gets_one_and_no_renewals() {
        let igd = FakeIgd { permanent_only: true, ..FakeIgd::default() };
        let start = tokio::time::Instant::now();
        let local: SocketAddr = "192.168.1.5:6881".parse().unwrap();
        keep_mapped(&igd, local, tokio::time::sleep(Duration::from_secs(10_000))).await;
        let got: Vec<String> = calls(&igd, start).into_iter().map(|(_, c)| c).collect();
        assert_eq!(got, ["add TCP 3600", "add TCP 0", "add UDP 0", "remove TCP 6881", "remove UDP 6881"]);
    }

    /// A gateway's SOAP control endpoint on 127.0.0.61 that records each request's action and
    /// lease, refusing finite leases with UPnP error 725 (as some routers do).
    async fn fake_soap_gateway() -> (SocketAddr, std::sync::Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.61:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break Some(body.to_owned());
                        }
                    }
                };
                let Some(body) = body else { continue };
                let lease = body.split("<NewLeaseDuration>").nth(1).and_then(|r| r.split('<').next()).unwrap_or("-");
                let action = if body.contains("DeletePortMapping") { "delete" } else { "add" };
                record.lock().unwrap().push(format!("{action} {lease}"));
                let inner = match (action, lease) {
                    ("add", "0") => "<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"/>".to_owned(),
                    ("add", _) => "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail></s:Fault>".to_owned(),
                    _ => "<u:DeletePortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"/>".to_owned(),
                };
                let xml = format!(
                    "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{inner}</s:Body></s:Envelope>"
                );
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (addr, seen)
    }

    #[tokio::test]
    async fn igd_next_talks_to_a_fake_gateway_and_falls_back_to_a_permanent_lease() {
        let (addr, seen) = fake_soap_gateway().await;
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let schema = [
            (
                "AddPortMapping".to_owned(),
                args(&[
                    "NewRemoteHost",
                    "NewExternalPort",
                    "NewProtocol",
                    "NewInternalPort",
                    "NewInternalClient",
                    "NewEnabled",
                    "NewPortMappingDescription",
                    "NewLeaseDuration",
                ]),
            ),
            ("DeletePortMapping".to_owned(), args(&["NewRemoteHost", "NewExternalPort", "NewProtocol"])),
        ]
        .into_iter()
        .collect();
        let gateway = Gateway {
            addr,
            root_url: format!("http://{addr}/"),
            control_url: "/ctl".into(),
            control_schema_url: "/scpd.xml".into(),
            control_schema: schema,
            service_type: "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
            provider: Tokio,
        };
        let local: SocketAddr = "127.0.0.62:6881".parse().unwrap();
        keep_mapped(&gateway, local, tokio::time::sleep(Duration::from_millis(500))).await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(got, ["add 3600", "add 0", "add 0", "delete -", "delete -"]);
    }
}
