//! `GET /metrics` in Prometheus' text format.
//!
//! Streams and readers record into the `metrics` facade as things happen (time to first byte,
//! stalls, piece waits, data buffered ahead: see `sluice_http` and `sluice_node`); torrent and
//! engine figures are read from each torrent's progress when the endpoint is scraped, so
//! nothing is counted twice and an idle server does no metrics work.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sluice_core::InfoHash;
use sluice_node::Progress;

/// Bucket bounds, in seconds, of every histogram (first byte, stalls, piece waits).
const BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0];

/// What the endpoint reads the torrents from.
pub trait Torrents: Send + Sync + 'static {
    fn progress(&self) -> Vec<(InfoHash, Progress)>;
}

/// Installs the process-wide recorder (once per process) and returns the `/metrics` route.
pub fn router(torrents: Arc<dyn Torrents>) -> anyhow::Result<Router> {
    let handle = PrometheusBuilder::new().set_buckets(BUCKETS)?.install_recorder()?;
    Ok(Router::new().route("/metrics", get(render)).with_state((handle, torrents)))
}

async fn render(State((handle, torrents)): State<(PrometheusHandle, Arc<dyn Torrents>)>) -> impl IntoResponse {
    let all = torrents.progress();
    metrics::gauge!("sluice_torrents").set(all.len() as f64);
    for (hash, p) in all {
        let s = &p.stats;
        let t = [("torrent", hash.to_hex())];
        metrics::gauge!("sluice_torrent_downloaded_bytes", &t).set(s.downloaded as f64);
        metrics::gauge!("sluice_torrent_uploaded_bytes", &t).set(s.uploaded as f64);
        metrics::gauge!("sluice_torrent_download_rate_bytes", &t).set(s.download_rate as f64);
        metrics::gauge!("sluice_torrent_upload_rate_bytes", &t).set(s.upload_rate as f64);
        metrics::gauge!("sluice_torrent_verified_bytes", &t).set(s.bytes_have as f64);
        metrics::gauge!("sluice_torrent_pieces_verified", &t).set(f64::from(s.pieces_have));
        metrics::gauge!("sluice_torrent_pieces", &t).set(f64::from(s.pieces_total));
        metrics::gauge!("sluice_torrent_peers_connected", &t).set(s.peers_connected as f64);
        metrics::gauge!("sluice_torrent_peers_known", &t).set(s.peers_known as f64);
        metrics::gauge!("sluice_engine_buffered_bytes", &t).set(s.buffered_bytes as f64);
        metrics::gauge!("sluice_engine_pieces_reprioritised", &t).set(s.pieces_reprioritised as f64);
        metrics::gauge!("sluice_torrent_complete", &t).set(if p.complete { 1.0 } else { 0.0 });
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}
