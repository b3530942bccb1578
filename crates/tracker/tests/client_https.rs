//! https trackers: a TLS tracker on 127.0.96.10 whose certificate is signed by a CA the test
//! makes with the openssl CLI; the client trusts it only through `ClientConfig::ca_file`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::{InfoHash, PeerId};
use sluice_tracker::client::{Client, ClientConfig, ClientError, Fetched, GetLimits};
use sluice_tracker::{AnnounceRequest, Event, TrackerUrl};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

mod support;
use support::read_head;

const HOST: &str = "127.0.96.10";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (ca.pem) and a leaf for `HOST` signed by it (leaf.pem, leaf.key) in a new folder.
fn make_certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Sluice test CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir.path(), &ca);
    let san = format!("subjectAltName=IP:{HOST}");
    let subject = format!("/CN={HOST}");
    let mut leaf = vec!["req", "-x509"];
    leaf.extend(ec);
    leaf.extend(["-keyout", "leaf.key", "-out", "leaf.pem", "-subj", &subject, "-CA", "ca.pem", "-CAkey", "ca.key"]);
    leaf.extend(["-addext", &san, "-addext", "basicConstraints=critical,CA:FALSE"]);
    leaf.extend(["-addext", "extendedKeyUsage=serverAuth"]);
    openssl(dir.path(), &leaf);
    dir
}

/// A TLS server on `addr` answering every request with `body`; returns its address.
async fn https_tracker(certs: &Path, addr: &str, body: Vec<u8>) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("leaf.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                // A client refusing our certificate ends the handshake: nothing to answer.
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                if read_head(&mut s).await.is_none() {
                    return;
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    local
}

fn client(ca_file: Option<PathBuf>) -> Client {
    Client::new(ClientConfig { loopback_only: true, ca_file, ..ClientConfig::default() })
}

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xbb; 20]),
        peer_id: PeerId(*b"-SL0100-000000000001"),
        port: 7001,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: Event::Started,
        numwant: None,
        key: 2,
    }
}

fn reply() -> Vec<u8> {
    let mut body = b"d8:intervali600e5:peers6:".to_vec();
    body.extend_from_slice(&[127, 0, 96, 20, 0x1b, 0x59]);
    body.push(b'e');
    body
}

#[tokio::test]
async fn https_announce_and_get_with_the_given_ca() {
    let certs = make_certificates();
    let addr = https_tracker(certs.path(), &format!("{HOST}:0"), reply()).await;
    let c = client(Some(certs.path().join("ca.pem")));
    let url = TrackerUrl::parse(&format!("https://{addr}/announce")).unwrap();
    let r = c.announce(&url, &request(), None).await.unwrap();
    assert_eq!(r.peers, ["127.0.96.20:7001".parse::<SocketAddr>().unwrap()]);
    assert_eq!(r.interval, Duration::from_secs(600));

    let limits = GetLimits { max_body: 1024, timeout: Duration::from_secs(10) };
    let body = c.get(&format!("https://{addr}/file.torrent"), limits).await.unwrap();
    assert_eq!(body, Fetched::Body(reply().into()));
    let small = GetLimits { max_body: 8, ..limits };
    assert!(matches!(c.get(&format!("https://{addr}/x"), small).await, Err(ClientError::TooLarge(8))));
    assert!(matches!(c.get("udp://127.0.96.10:1/", limits).await, Err(ClientError::NotHttp(_))));
}

#[tokio::test]
async fn an_untrusted_or_misnamed_certificate_is_a_clear_tls_error() {
    let certs = make_certificates();
    let addr = https_tracker(certs.path(), &format!("{HOST}:0"), reply()).await;
    let url = TrackerUrl::parse(&format!("https://{addr}/announce")).unwrap();

    // Only the system's roots: the test CA is unknown.
    let e = client(None).announce(&url, &request(), None).await.unwrap_err();
    assert!(matches!(&e, ClientError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("invalid peer certificate: UnknownIssuer"), "{e}");

    // The right CA, but the certificate names another address than the one dialled.
    let other = https_tracker(certs.path(), "127.0.96.11:0", reply()).await;
    let url = TrackerUrl::parse(&format!("https://{other}/announce")).unwrap();
    let e = client(Some(certs.path().join("ca.pem"))).announce(&url, &request(), None).await.unwrap_err();
    assert!(e.to_string().contains("certificate not valid for name"), "{e}");

    // A CA file without certificates.
    std::fs::write(certs.path().join("empty.pem"), "not a certificate\n").unwrap();
    let e = client(Some(certs.path().join("empty.pem"))).announce(&url, &request(), None).await.unwrap_err();
    assert!(e.to_string().contains("no usable CA certificate"), "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_the_tls_handshake_is_given_up_on() {
    // Accepts, then reads and says nothing, as a plain HTTP server waiting for a request does.
    let listener = tokio::net::TcpListener::bind(format!("{HOST}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let c = Client::new(ClientConfig {
        loopback_only: true,
        tls_handshake_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    // The exchange as a whole may take a minute: the handshake's own limit ends it.
    let limits = GetLimits { max_body: 1024, timeout: Duration::from_secs(60) };
    let e = c.get(&format!("https://{addr}/file.torrent"), limits).await.unwrap_err();
    assert!(matches!(&e, ClientError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("no TLS handshake within 300 ms"), "{e}");
}
