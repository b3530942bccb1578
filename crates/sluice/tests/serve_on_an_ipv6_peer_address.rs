//! `sluice serve --peer-listen [::1]:0 --loopback-only` runs: the IPv4-only DHT and local
//! service discovery stay off for an IPv6 listen address (they used to bind 0.0.0.0, which
//! loopback-only refused, so the server did not start), and the log says so.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn serve_runs_with_an_ipv6_peer_listen_address() {
    let tmp = tempfile::tempdir().unwrap();
    let http = addr(22, 1, 0);
    let data = tmp.path().join("data");
    let args = ["serve", "--listen", &http, "--peer-listen", "[::1]:0", "--data-dir"];
    let mut args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    args.extend([data.into_os_string(), "--loopback-only".into()]);
    let mut server = spawn_sluice("serve-v6", &args, tmp.path());
    let up = |p: &Proc| p.stderr().contains("listening on [::1]:");
    wait_until(Duration::from_secs(20), || up(&server) || server.try_status().is_some());
    assert!(up(&server), "not listening on ::1:\n{}", tail(&server.stderr(), 20));
    server.assert_running();
    let log = server.stderr();
    assert!(log.contains("DHT off: it is IPv4 only"), "{log}");
}
