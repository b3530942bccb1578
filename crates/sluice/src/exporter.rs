//! `GET /metrics` in Prometheus' text format.
//!
//! Streams and readers record into the `metrics` facade as things happen (time to first byte,
//! stalls, piece waits, data buffered ahead: see `sluice_http` and `sluice_node`); torrent and
//! catalog figures are read from the catalog's snapshots when the endpoint is scraped, so
//! nothing is counted twice and an idle server does no metrics work.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_catalog::Catalog;

/// Bucket bounds, in seconds, of every histogram (first byte, stalls, piece waits).
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Installs the process-wide recorder (once per process) and returns the `/metrics` route.
pub fn router(catalog: Catalog) -> anyhow::Result<Router> {
    let handle = PrometheusBuilder::new().set_buckets(BUCKETS)?.install_recorder()?;
    Ok(Router::new().route("/metrics", get(render)).with_state((handle, catalog)))
}

async fn render(State((handle, catalog)): State<(PrometheusHandle, Catalog)>) -> impl IntoResponse {
    let stats = catalog.stats();
    metrics::gauge!("sluice_torrents").set(stats.known as f64);
    metrics::gauge!("sluice_torrents_active").set(stats.active as f64);
    metrics::gauge!("sluice_torrents_capped").set(stats.capped as f64);
    metrics::gauge!("sluice_readers").set(stats.readers as f64);
    for s in catalog.list() {
        let t = [("torrent", s.info_hash.to_hex())];
        metrics::gauge!("sluice_torrent_stat", &t).set(f64::from(s.stat.code()));
        metrics::gauge!("sluice_torrent_downloaded_bytes", &t).set(s.downloaded as f64);
        metrics::gauge!("sluice_torrent_uploaded_bytes", &t).set(s.uploaded as f64);
        metrics::gauge!("sluice_torrent_download_rate_bytes", &t).set(s.download_rate as f64);
        metrics::gauge!("sluice_torrent_upload_rate_bytes", &t).set(s.upload_rate as f64);
        metrics::gauge!("sluice_torrent_verified_bytes", &t).set(s.bytes_have as f64);
        metrics::gauge!("sluice_torrent_pieces_verified", &t).set(f64::from(s.pieces_have));
        if let Some(info) = &s.info {
            metrics::gauge!("sluice_torrent_pieces", &t).set(f64::from(info.pieces));
        }
        metrics::gauge!("sluice_torrent_peers_connected", &t).set(s.peers_connected as f64);
        metrics::gauge!("sluice_torrent_peers_known", &t).set(s.peers_known as f64);
        metrics::gauge!("sluice_torrent_readers", &t).set(s.readers as f64);
        metrics::gauge!("sluice_torrent_complete", &t).set(if s.complete { 1.0 } else { 0.0 });
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}
