//! Port mapping: asks the local network's gateway to forward the peer listen port (TCP for
//! peers, UDP for the DHT) to this host, so peers behind the same kind of NAT can still reach
//! us. Two protocols run side by side, each behind the [`Igd`] trait so the lease logic is
//! tested without a router:
//! - UPnP IGD: the gateway is found with SSDP (multicast 239.255.255.250:1900) and driven over
//!   SOAP by `igd-next`;
//! - NAT-PMP (RFC 6886, `sluice_natpmp` packets): UDP to port 5351 of the default route's
//!   gateway; a gateway that does not answer the first request is not asked again.
//!
//! Leases are finite (an hour) and renewed at half of what the gateway granted, so a crashed
//! Sluice leaves no mapping behind for long; a UPnP gateway that only takes permanent leases
//! gets one (lease 0) and no renewals. On stop the mappings are removed. Everything here is off
//! under loopback-only: SSDP and the gateway are off loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use igd_next::PortMappingProtocol;
use igd_next::aio::Gateway;
use igd_next::aio::tokio::Tokio;
use sluice_natpmp as natpmp;
use tokio::sync::watch;

use crate::NetPolicy;

/// What we ask the gateway for.
pub(crate) const LEASE: Duration = Duration::from_secs(3600);
/// After a failure (no gateway, refused), the next attempt.
const RETRY: Duration = Duration::from_secs(300);
/// Renewals never come closer than this, whatever lease a gateway grants.
const MIN_RENEWAL: Duration = Duration::from_secs(1);
const DESCRIPTION: &str = "Sluice";

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MapError {
    /// UPnP error 725: only a lease of 0 (permanent) is taken.
    OnlyPermanentLeases,
    Other(String),
}

/// The two actions we need of a gateway.
pub(crate) trait Igd: Send + Sync {
    /// For logs.
    const NAME: &'static str;

    /// Maps `local`'s port (the same external port); the lease granted.
    fn add_port(
        &self,
        protocol: PortMappingProtocol,
        local: SocketAddr,
        lease: Duration,
    ) -> impl Future<Output = Result<Duration, MapError>> + Send;
    fn remove_port(&self, protocol: PortMappingProtocol, port: u16) -> impl Future<Output = ()> + Send;
}

impl Igd for Gateway<Tokio> {
    const NAME: &'static str = "UPnP";

    async fn add_port(
        &self,
        protocol: PortMappingProtocol,
        local: SocketAddr,
        lease: Duration,
    ) -> Result<Duration, MapError> {
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        match Gateway::add_port(self, protocol, local.port(), local, secs, DESCRIPTION).await {
            Ok(()) => Ok(lease),
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

/// A NAT-PMP gateway: requests from `bind` (the address the mapping is for; unspecified: the
/// system picks), one UDP exchange each, retransmitted per `timeouts`.
#[derive(Debug, Clone)]
pub(crate) struct NatPmp {
    pub(crate) gateway: SocketAddr,
    pub(crate) bind: IpAddr,
    pub(crate) timeouts: Vec<Duration>,
}

impl NatPmp {
    pub(crate) fn new(gateway: SocketAddr, bind: IpAddr) -> Self {
        // 250 ms to 2 s: a gateway that speaks NAT-PMP answers at once; RFC 6886's full
        // 64 s of retries would only delay the UPnP-only case's log line.
        Self { gateway, bind, timeouts: (0..4).map(natpmp::retransmit_timeout).collect() }
    }

    /// One request and the gateway's reply to it (a connected socket hears only the gateway).
    async fn exchange(&self, request: natpmp::Request) -> Result<natpmp::Response, MapError> {
        let io = |e: std::io::Error| MapError::Other(e.to_string());
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(self.bind, 0)).await.map_err(io)?;
        socket.connect(self.gateway).await.map_err(io)?;
        let packet = request.encode();
        let mut buf = [0u8; 64];
        for &wait in &self.timeouts {
            socket.send(&packet).await.map_err(io)?;
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                // ICMP port unreachable: nothing listens there.
                let n = received.map_err(io)?;
                match natpmp::Response::decode(&buf[..n]) {
                    Ok(r) if answers(&request, &r) => return Ok(r),
                    Ok(_) => {}
                    Err(natpmp::PacketError::Refused(code)) => {
                        return Err(MapError::Other(format!("refused: {code:?}")));
                    }
                    Err(e) => tracing::debug!(error = %e, "NAT-PMP: ignoring a bad reply"),
                }
            }
        }
        Err(MapError::Other(format!("no reply from {}", self.gateway)))
    }
}

/// Whether `response` is the reply to `request` (same opcode, same internal port).
fn answers(request: &natpmp::Request, response: &natpmp::Response) -> bool {
    match (request, response) {
        (natpmp::Request::ExternalAddress, natpmp::Response::ExternalAddress { .. }) => true,
        (
            natpmp::Request::Map { protocol: p, internal_port: i, .. },
            natpmp::Response::Map { protocol: q, internal_port: j, .. },
        ) => p == q && i == j,
        _ => false,
    }
}

fn natpmp_protocol(p: PortMappingProtocol) -> natpmp::Protocol {
    match p {
        PortMappingProtocol::TCP => natpmp::Protocol::Tcp,
        PortMappingProtocol::UDP => natpmp::Protocol::Udp,
    }
}

impl Igd for NatPmp {
    const NAME: &'static str = "NAT-PMP";

    async fn add_port(
        &self,
        protocol: PortMappingProtocol,
        local: SocketAddr,
        lease: Duration,
    ) -> Result<Duration, MapError> {
        let port = local.port();
        let lifetime = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX).max(1);
        let request = natpmp::Request::Map {
            protocol: natpmp_protocol(protocol),
            internal_port: port,
            external_port: port,
            lifetime,
        };
        let natpmp::Response::Map { external_port, lifetime, .. } = self.exchange(request).await? else {
            return Err(MapError::Other("a reply of another kind".into()));
        };
        if lifetime == 0 {
            return Err(MapError::Other("the gateway granted no lifetime".into()));
        }
        if external_port != port {
            tracing::info!(?protocol, port, external_port, "NAT-PMP: the gateway forwards another external port");
        }
        Ok(Duration::from_secs(u64::from(lifetime)))
    }

    async fn remove_port(&self, protocol: PortMappingProtocol, port: u16) {
        let request = natpmp::Request::Map {
            protocol: natpmp_protocol(protocol),
            internal_port: port,
            external_port: 0,
            lifetime: 0,
        };
        if let Err(e) = self.exchange(request).await {
            tracing::debug!(error = ?e, ?protocol, port, "NAT-PMP: removing the mapping failed");
        }
    }
}

/// Whether the session maps its listen port: asked to, listening, and not loopback-only.
pub(crate) fn wanted(port_mapping: bool, policy: NetPolicy, listen: Option<SocketAddr>) -> bool {
    port_mapping && !policy.loopback_only && listen.is_some_and(|a| !a.ip().is_loopback())
}

/// Maps `local` (TCP and UDP, same external port) on `gateway` and keeps it mapped: renews at
/// half the lease granted, retries after [`RETRY`] on failure. Returns when `stop` resolves,
/// after removing the mappings.
pub(crate) async fn keep_mapped<G: Igd>(gateway: &G, local: SocketAddr, stop: impl Future<Output = ()>) {
    let protocols = [PortMappingProtocol::TCP, PortMappingProtocol::UDP];
    let mut lease = LEASE;
    let mut mapped = false;
    let work = async {
        loop {
            let mut failed = None;
            let mut granted = lease;
            for p in protocols {
                let mut result = gateway.add_port(p, local, lease).await;
                if result == Err(MapError::OnlyPermanentLeases) && !lease.is_zero() {
                    lease = Duration::ZERO;
                    result = gateway.add_port(p, local, lease).await;
                }
                match result {
                    Ok(g) => granted = granted.min(g),
                    Err(e) => failed = Some(e),
                }
            }
            let wait = match failed {
                None => {
                    if !mapped {
                        tracing::info!(
                            port = local.port(),
                            lease_secs = granted.as_secs(),
                            "{}: listen port mapped",
                            G::NAME
                        );
                    }
                    mapped = true;
                    if lease.is_zero() {
                        std::future::pending::<()>().await;
                    }
                    (granted / 2).max(MIN_RENEWAL)
                }
                Some(e) => {
                    tracing::info!(error = ?e, "{}: mapping the listen port failed; retrying later", G::NAME);
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

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps `listen`'s port mapped through UPnP and NAT-PMP (each where the network has it) until
/// `stop`.
pub(crate) async fn run(listen: SocketAddr, stop: watch::Receiver<bool>) {
    let ssdp = || {
        let mut options = igd_next::SearchOptions::default();
        if let IpAddr::V4(v4) = listen.ip()
            && !v4.is_unspecified()
        {
            options.bind_addr = SocketAddr::new(listen.ip(), 0);
        }
        options
    };
    let natpmp = async {
        let routes = tokio::fs::read_to_string("/proc/net/route").await.unwrap_or_default();
        match natpmp::default_gateway(&routes) {
            Some(gw) => run_natpmp(listen, SocketAddr::from((gw, natpmp::PORT)), stop.clone()).await,
            None => tracing::debug!("NAT-PMP: no default IPv4 gateway"),
        }
    };
    tokio::join!(run_upnp(listen, ssdp, stop.clone()), natpmp);
}

/// Finds the UPnP gateway with an SSDP search (`search` gives its options) and keeps `listen`'s
/// port mapped until `stop`; retries the search after [`RETRY`].
pub(crate) async fn run_upnp(
    listen: SocketAddr,
    search: impl Fn() -> igd_next::SearchOptions,
    stop: watch::Receiver<bool>,
) {
    let find = async {
        loop {
            match igd_next::aio::tokio::search_gateway(search()).await {
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
        f = find => f,
        () = stopped(stop.clone()) => None,
    };
    if let Some((gw, local)) = found {
        keep_mapped(&gw, local, stopped(stop)).await;
    }
}

/// Asks the NAT-PMP `gateway` for its external address; if it answers, keeps `listen`'s port
/// mapped there until `stop`.
pub(crate) async fn run_natpmp(listen: SocketAddr, gateway: SocketAddr, stop: watch::Receiver<bool>) {
    let Some(local) = local_toward(listen, gateway).await else {
        tracing::info!(%gateway, "NAT-PMP: no local address toward the gateway");
        return;
    };
    let client = NatPmp::new(gateway, local.ip());
    let probe = tokio::select! {
        r = client.exchange(natpmp::Request::ExternalAddress) => r,
        () = stopped(stop.clone()) => return,
    };
    match probe {
        Ok(natpmp::Response::ExternalAddress { address, .. }) => {
            tracing::info!(%gateway, external = %address, "NAT-PMP: gateway found");
            keep_mapped(&client, local, stopped(stop)).await;
        }
        Ok(_) => {}
        Err(e) => tracing::info!(%gateway, error = ?e, "NAT-PMP: the gateway does not speak it; not used"),
    }
}

/// The address the gateway should forward to: `listen` if it names one, else the address this
/// host uses toward the gateway (a connected UDP socket sends nothing).
async fn local_toward(listen: SocketAddr, gateway: SocketAddr) -> Option<SocketAddr> {
    if !listen.ip().is_unspecified() {
        return Some(listen);
    }
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).await.ok()?;
    socket.connect(gateway).await.ok()?;
    Some(SocketAddr::new(socket.local_addr().ok()?.ip(), listen.port()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn loopback_only_or_no_port_mapping_disables_mapping() {
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
        const NAME: &'static str = "fake";

        async fn add_port(&self, p: PortMappingProtocol, _: SocketAddr, lease: Duration) -> Result<Duration, MapError> {
            self.calls.lock().unwrap().push((tokio::time::Instant::now(), format!("add {p} {}", lease.as_secs())));
            if self.permanent_only && !lease.is_zero() {
                return Err(MapError::OnlyPermanentLeases);
            }
            Ok(lease)
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

    type Seen = std::sync::Arc<Mutex<Vec<String>>>;

    enum Transport {
        Udp,
        /// One HTTP/1.1 request per connection.
        Http,
    }

    /// The request handling all fake gateways share: listens on `ip` and gives each request
    /// (a datagram, or a whole HTTP request) with its sender to `answer`, which notes what it
    /// saw in the log and returns the reply, if any. Returns the address and the log.
    async fn fake_gateway<A>(ip: &str, transport: Transport, answer: A) -> (SocketAddr, Seen)
    where
        A: Fn(&[u8], SocketAddr, &mut Vec<String>) -> Option<Vec<u8>> + Send + 'static,
    {
        use tokio::io::AsyncWriteExt;
        let seen = Seen::default();
        let log = seen.clone();
        let answer = move |request: &[u8], from| answer(request, from, &mut log.lock().unwrap());
        let addr = match transport {
            Transport::Udp => {
                let socket = tokio::net::UdpSocket::bind((ip, 0)).await.unwrap();
                let addr = socket.local_addr().unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                        if let Some(reply) = answer(&buf[..n], from) {
                            let _ = socket.send_to(&reply, from).await;
                        }
                    }
                });
                addr
            }
            Transport::Http => {
                let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move {
                    while let Ok((mut s, from)) = listener.accept().await {
                        let Some(request) = read_http_request(&mut s).await else { continue };
                        if let Some(reply) = answer(&request, from) {
                            let _ = s.write_all(&reply).await;
                        }
                    }
                });
                addr
            }
        };
        (addr, seen)
    }

    /// The head and the Content-Length bytes of body that follow; `None` if the peer closes first.
    async fn read_http_request(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return Some(request);
                }
            }
        }
    }

    fn xml_reply(xml: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )
        .into_bytes()
    }

    /// Waits (up to 10 s) until the log holds `enough`.
    async fn wait_for(seen: &Seen, enough: impl Fn(&[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !enough(&seen.lock().unwrap()) {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A gateway's SOAP control endpoint on `ip` that records each request's action and
    /// lease, refusing finite leases with UPnP error 725 (as some routers do) when
    /// `permanent_only`. GETs are answered with its device description ([`ROOT_DESC`]) or
    /// service description ([`SCPD`]).
    async fn fake_soap_gateway(ip: &str, permanent_only: bool) -> (SocketAddr, Seen) {
        fake_gateway(ip, Transport::Http, move |request, _, seen| {
            let text = String::from_utf8_lossy(request);
            let (head, body) = text.split_once("\r\n\r\n")?;
            if let Some(path) = head.strip_prefix("GET ").and_then(|r| r.split(' ').next()) {
                seen.push(format!("get {path}"));
                return Some(xml_reply(if path.ends_with("scpd.xml") { SCPD } else { ROOT_DESC }));
            }
            let lease = body.split("<NewLeaseDuration>").nth(1).and_then(|r| r.split('<').next()).unwrap_or("-");
            let action = if body.contains("DeletePortMapping") { "delete" } else { "add" };
            seen.push(format!("{action} {lease}"));
            let inner = match (action, lease) {
                ("add", l) if l == "0" || !permanent_only => "<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"/>".to_owned(),
                ("add", _) => "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail></s:Fault>".to_owned(),
                _ => "<u:DeletePortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"/>".to_owned(),
            };
            Some(xml_reply(&format!(
                "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{inner}</s:Body></s:Envelope>"
            )))
        })
        .await
    }

    #[tokio::test]
    async fn igd_next_talks_to_a_fake_gateway_and_falls_back_to_a_permanent_lease() {
        let (addr, seen) = fake_soap_gateway("127.0.0.61", true).await;
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

    const ROOT_DESC: &str = "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl</controlURL><SCPDURL>/scpd.xml</SCPDURL></service></serviceList></device></deviceList></device></deviceList></device></root>";

    const SCPD: &str = "<?xml version=\"1.0\"?><scpd xmlns=\"urn:schemas-upnp-org:service-1-0\"><actionList><action><name>AddPortMapping</name><argumentList><argument><name>NewRemoteHost</name><direction>in</direction></argument><argument><name>NewExternalPort</name><direction>in</direction></argument><argument><name>NewProtocol</name><direction>in</direction></argument><argument><name>NewInternalPort</name><direction>in</direction></argument><argument><name>NewInternalClient</name><direction>in</direction></argument><argument><name>NewEnabled</name><direction>in</direction></argument><argument><name>NewPortMappingDescription</name><direction>in</direction></argument><argument><name>NewLeaseDuration</name><direction>in</direction></argument></argumentList></action><action><name>DeletePortMapping</name><argumentList><argument><name>NewRemoteHost</name><direction>in</direction></argument><argument><name>NewExternalPort</name><direction>in</direction></argument><argument><name>NewProtocol</name><direction>in</direction></argument></argumentList></action></actionList></scpd>";

    /// An SSDP responder on `ip` (unicast: tests cannot multicast) answering each M-SEARCH
    /// with `location`; returns its address and the search targets it was asked for.
    async fn fake_ssdp(ip: &str, location: String) -> (SocketAddr, Seen) {
        fake_gateway(ip, Transport::Udp, move |datagram, _, seen| {
            let text = String::from_utf8_lossy(datagram);
            if !text.starts_with("M-SEARCH * HTTP/1.1") {
                return None;
            }
            let st = text
                .lines()
                .find_map(|l| l.strip_prefix("ST:").or_else(|| l.strip_prefix("st:")))
                .unwrap_or_default()
                .trim()
                .to_owned();
            seen.push(st.clone());
            Some(format!(
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {st}\r\nUSN: uuid:sluice-test::{st}\r\nEXT:\r\nSERVER: test UPnP/1.1\r\nLOCATION: {location}\r\n\r\n"
            ).into_bytes())
        })
        .await
    }

    #[tokio::test]
    async fn ssdp_discovery_finds_the_gateway_and_maps_through_it() {
        let (soap, seen) = fake_soap_gateway("127.0.96.1", false).await;
        let (ssdp, searched) = fake_ssdp("127.0.96.1", format!("http://{soap}/rootDesc.xml")).await;
        let listen: SocketAddr = "127.0.96.2:6881".parse().unwrap();
        let search = move || {
            let mut options = igd_next::SearchOptions::default();
            options.bind_addr = "127.0.96.2:0".parse().unwrap();
            options.broadcast_address = ssdp;
            // igd-next distrusts loopback LOCATIONs unless told.
            options.allowed_gateway_ips = vec![soap.ip()];
            options.timeout = Some(Duration::from_secs(5));
            options
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_upnp(listen, search, stop_rx));
        wait_for(&seen, |seen| seen.iter().filter(|c| c.starts_with("add")).count() >= 2).await;
        stop.send_replace(true);
        task.await.unwrap();
        assert!(searched.lock().unwrap().iter().any(|st| st.contains("InternetGatewayDevice")));
        let got = seen.lock().unwrap().clone();
        assert_eq!(got, ["get /rootDesc.xml", "get /scpd.xml", "add 3600", "add 3600", "delete -", "delete -"]);
    }

    /// A NAT-PMP gateway on `ip` granting `lifetime` seconds (refusing maps with
    /// NotAuthorized when `None`); records each request with its sender's address.
    async fn fake_natpmp(ip: &str, lifetime: Option<u32>) -> (SocketAddr, Seen) {
        fake_gateway(ip, Transport::Udp, move |datagram, from, seen| {
            let request = natpmp::Request::decode(datagram).unwrap();
            let reply = match (request, lifetime) {
                (natpmp::Request::ExternalAddress, _) => {
                    seen.push(format!("external from {}", from.ip()));
                    natpmp::Response::ExternalAddress { epoch: 1, address: Ipv4Addr::new(203, 0, 113, 9) }.encode()
                }
                (natpmp::Request::Map { protocol, internal_port, external_port, lifetime: asked }, granted) => {
                    seen.push(format!("map {protocol:?} {internal_port}->{external_port} {asked} from {}", from.ip()));
                    match granted {
                        Some(granted) => natpmp::Response::Map {
                            protocol,
                            epoch: 1,
                            internal_port,
                            external_port,
                            lifetime: granted.min(asked),
                        }
                        .encode(),
                        None => natpmp::encode_refusal(&request, natpmp::ResultCode::NotAuthorized, 1),
                    }
                }
            };
            Some(reply)
        })
        .await
    }

    #[tokio::test]
    async fn natpmp_maps_both_protocols_renews_at_half_the_granted_lifetime_and_deletes_on_stop() {
        let (gateway, seen) = fake_natpmp("127.0.96.3", Some(2)).await;
        let listen: SocketAddr = "127.0.96.4:6881".parse().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_natpmp(listen, gateway, stop_rx));
        // Granted 2 s: renewed after 1 s.
        wait_for(&seen, |seen| seen.len() >= 5).await;
        stop.send_replace(true);
        task.await.unwrap();
        let got = seen.lock().unwrap().clone();
        let want = [
            "external from 127.0.96.4",
            "map Tcp 6881->6881 3600 from 127.0.96.4",
            "map Udp 6881->6881 3600 from 127.0.96.4",
            "map Tcp 6881->6881 3600 from 127.0.96.4",
            "map Udp 6881->6881 3600 from 127.0.96.4",
            "map Tcp 6881->0 0 from 127.0.96.4",
            "map Udp 6881->0 0 from 127.0.96.4",
        ];
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn natpmp_refusals_and_silent_gateways_are_errors() {
        let (gateway, _) = fake_natpmp("127.0.96.3", None).await;
        let client = NatPmp::new(gateway, "127.0.96.4".parse().unwrap());
        let local: SocketAddr = "127.0.96.4:6881".parse().unwrap();
        let e = client.add_port(PortMappingProtocol::TCP, local, LEASE).await.unwrap_err();
        assert_eq!(e, MapError::Other("refused: NotAuthorized".into()));

        // Nothing listens: the port-unreachable ends the probe at once, and nothing is mapped.
        let closed = tokio::net::UdpSocket::bind("127.0.96.3:0").await.unwrap().local_addr().unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        tokio::time::timeout(Duration::from_secs(2), run_natpmp(local, closed, stop_rx)).await.unwrap();

        // Silent: each attempt times out.
        let silent = tokio::net::UdpSocket::bind("127.0.96.3:0").await.unwrap();
        let client = NatPmp {
            timeouts: vec![Duration::from_millis(50); 2],
            ..NatPmp::new(silent.local_addr().unwrap(), local.ip())
        };
        let e = client.exchange(natpmp::Request::ExternalAddress).await.unwrap_err();
        assert!(matches!(e, MapError::Other(m) if m.starts_with("no reply")));
    }
}
