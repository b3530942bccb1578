//! Arbitrary bytes as the JSON bodies the APIs take: TorrServer's `/torrents`, `/viewed`,
//! `/cache` and `/settings` (its `sets` decoded as `BTSets`, then sanitized) and Sluice's
//! `PATCH /api/v1/settings`; every link in them goes through the link parser.
//!
//! Besides "no panic": sanitized settings are in the ranges the server relies on, and a
//! settings patch that passes its check applies within them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_http::api::{MAX_DISCONNECT_TIMEOUT, MAX_METADATA_TIMEOUT, Settings, SettingsPatch};
use sluice_http::torrserver::types::{
    CacheRequest, SettingsRequest, TorrentsRequest, ViewedRequest, decode,
};
use sluice_http::torrserver::{BTSets, Link};

fuzz_target!(|data: &[u8]| {
    if let Ok(patch) = serde_json::from_slice::<SettingsPatch>(data)
        && patch.check().is_ok()
    {
        let mut s = Settings { disconnect_timeout: 30, metadata_timeout: 60, focus: true, focus_cap: 0 };
        patch.apply(&mut s);
        assert!((1..=MAX_DISCONNECT_TIMEOUT).contains(&s.disconnect_timeout));
        assert!((1..=MAX_METADATA_TIMEOUT).contains(&s.metadata_timeout));
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(r) = decode::<TorrentsRequest>(value.clone(), TorrentsRequest::KEYS) {
        let _ = Link::parse(&r.link);
        let _ = Link::parse(&r.hash);
    }
    if let Ok(r) = decode::<ViewedRequest>(value.clone(), ViewedRequest::KEYS) {
        let _ = Link::parse(&r.hash);
    }
    if let Ok(r) = decode::<CacheRequest>(value.clone(), CacheRequest::KEYS) {
        let _ = Link::parse(&r.hash);
    }
    if let Ok(r) = decode::<SettingsRequest>(value.clone(), SettingsRequest::KEYS)
        && let Some(sets) = r.sets
        && let Ok(mut b) = BTSets::from_request(sets)
    {
        b.sanitize();
        assert!(b.cache_size > 0 && b.connections_limit > 0 && b.torrent_disconnect_timeout > 0);
        assert!((5..=100).contains(&b.reader_read_a_head) && (0..=100).contains(&b.preload_cache));
        assert!(b.download_rate_limit >= 0 && b.upload_rate_limit >= 0);
        assert!((0..=65535).contains(&b.peers_listen_port));
        // What the server hands back: it must serialize.
        serde_json::to_vec(&b).expect("sanitized settings serialize");
    }
    // The whole value as a settings object, as `BTSets::from_request` sees `sets`.
    if let Ok(mut b) = BTSets::from_request(value) {
        b.sanitize();
        assert!((5..=100).contains(&b.reader_read_a_head));
    }
});
