use super::*;

const S: u64 = 1_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_micros(secs * S)
}

fn tiers(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter().map(|t| t.iter().map(|u| format!("http://{u}/announce")).collect()).collect()
}

fn host(r: &Request) -> String {
    r.tracker.host.to_string()
}

fn reply(interval: u64) -> AnnounceReply {
    AnnounceReply { interval: Duration::from_secs(interval), ..AnnounceReply::default() }
}

fn announcer(t: &[&[&str]]) -> Announcer {
    Announcer::new(&tiers(t), ScheduleConfig::default(), 1, at(0))
}

#[test]
fn started_first_then_regular_announces_at_the_interval() {
    let mut a = announcer(&[&["a"]]);
    assert_eq!(a.poll_timeout(), Some(at(0)));
    let r = a.poll_request(at(0)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::Started));
    assert_eq!(a.poll_request(at(0)), None, "one announce in flight at a time");
    assert_eq!(a.poll_timeout(), None);
    a.announced(r.id, &reply(300), at(1));
    assert_eq!(a.poll_timeout(), Some(at(301)));
    assert_eq!(a.poll_request(at(300)), None);
    let r = a.poll_request(at(301)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::None));
}

#[test]
fn intervals_are_clamped() {
    let mut a = announcer(&[&["a"]]);
    let r = a.poll_request(at(0)).unwrap();
    a.announced(r.id, &reply(1), at(0));
    assert_eq!(a.poll_timeout(), Some(at(60)));
    let r = a.poll_request(at(60)).unwrap();
    a.announced(r.id, &reply(1 << 30), at(60));
    assert_eq!(a.poll_timeout(), Some(at(60 + 7200)));
}

#[test]
fn failures_walk_the_tier_then_the_next_tier_and_the_answering_tracker_is_promoted() {
    let mut a = announcer(&[&["a", "b"], &["c"]]);
    let first = a.poll_request(at(0)).unwrap();
    a.failed(first.id, at(0));
    let second = a.poll_request(at(0)).unwrap();
    assert_ne!(host(&first), host(&second));
    assert_ne!(host(&second), "c", "the rest of tier 1 comes before tier 2");
    a.failed(second.id, at(0));
    let third = a.poll_request(at(0)).unwrap();
    assert_eq!(host(&third), "c");
    assert_eq!(third.kind, RequestKind::Announce(Event::Started));
    a.announced(third.id, &reply(600), at(1));

    // At the next announce, tier 1's backoffs (15 s) are long over: BEP 12 starts from tier 1.
    let next = a.poll_request(at(601)).unwrap();
    assert_eq!(host(&next), host(&first));
    a.failed(next.id, at(601));
    let next = a.poll_request(at(601)).unwrap();
    assert_eq!(host(&next), host(&second));
    a.announced(next.id, &reply(600), at(601));
    let order: Vec<Vec<String>> = a.tiers().iter().map(|t| t.iter().map(|u| u.host.to_string()).collect()).collect();
    assert_eq!(order, vec![vec![host(&second), host(&first)], vec!["c".to_string()]]);
}

#[test]
fn when_every_tracker_fails_the_backoff_doubles_up_to_its_cap() {
    let mut a = announcer(&[&["a"]]);
    let mut now = at(0);
    let mut waits = Vec::new();
    for _ in 0..10 {
        let r = a.poll_request(now).unwrap();
        a.failed(r.id, now);
        assert_eq!(a.poll_request(now), None);
        let next = a.poll_timeout().unwrap();
        waits.push(next.saturating_since(now).as_secs());
        now = next;
    }
    assert_eq!(waits, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    let r = a.poll_request(now).unwrap();
    a.announced(r.id, &reply(100), now);
    let r = a.poll_request(now + Duration::from_secs(100)).unwrap();
    a.failed(r.id, now);
    a.poll_request(now);
    assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(15)), "success resets the backoff");
}

#[test]
fn completed_is_sent_once_right_away() {
    let mut a = announcer(&[&["a"]]);
    let r = a.poll_request(at(0)).unwrap();
    a.announced(r.id, &reply(1800), at(0));
    a.completed(at(10));
    let r = a.poll_request(at(10)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::Completed));
    a.failed(r.id, at(10));
    // The tracker is backing off: completed waits for it, and is still owed.
    assert_eq!(a.poll_request(at(10)), None);
    let retry = a.poll_timeout().unwrap();
    let r = a.poll_request(retry).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::Completed));
    a.announced(r.id, &reply(1800), retry);
    let r = a.poll_request(retry + Duration::from_secs(1800)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::None));
}

#[test]
fn a_tracker_that_never_heard_started_gets_it_before_completed() {
    let mut a = announcer(&[&["a"]]);
    a.completed(at(0));
    let r = a.poll_request(at(0)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::Started));
    a.announced(r.id, &reply(1800), at(1));
    let r = a.poll_request(at(1)).unwrap();
    assert_eq!(r.kind, RequestKind::Announce(Event::Completed));
}

#[test]
fn stop_tells_every_tracker_that_knows_us() {
    let mut a = announcer(&[&["a"], &["b"], &["c"]]);
    let r = a.poll_request(at(0)).unwrap();
    a.failed(r.id, at(0));
    let r = a.poll_request(at(0)).unwrap();
    assert_eq!(host(&r), "b");
    a.announced(r.id, &reply(60), at(0));
    // An announce in flight when stopping is abandoned; its late answer changes nothing.
    let late = a.poll_request(at(60)).unwrap();
    a.stop();
    assert!(!a.is_stopped());
    assert_eq!(a.poll_timeout(), None);
    let stop = a.poll_request(at(61)).unwrap();
    assert_eq!((host(&stop), stop.kind), ("b".to_string(), RequestKind::Announce(Event::Stopped)));
    assert_eq!(a.poll_request(at(61)), None);
    a.announced(late.id, &reply(60), at(61));
    a.completed(at(61));
    assert!(!a.is_stopped());
    a.announced(stop.id, &reply(60), at(62));
    assert!(a.is_stopped());
    assert_eq!(a.poll_request(at(100)), None);
}

#[test]
fn stop_before_any_answer_sends_nothing() {
    let mut a = announcer(&[&["a"]]);
    let _ = a.poll_request(at(0)).unwrap();
    a.stop();
    assert_eq!(a.poll_request(at(0)), None);
    assert!(a.is_stopped());
}

#[test]
fn need_peers_respects_the_min_interval() {
    let mut a = announcer(&[&["a"]]);
    let r = a.poll_request(at(0)).unwrap();
    let rep = AnnounceReply { min_interval: Some(Duration::from_secs(120)), ..reply(1800) };
    a.announced(r.id, &rep, at(0));
    a.need_peers(at(5));
    assert_eq!(a.poll_timeout(), Some(at(120)));
    a.need_peers(at(500));
    assert_eq!(a.poll_timeout(), Some(at(120)), "already due earlier");
    let r = a.poll_request(at(120)).unwrap();
    a.announced(r.id, &reply(1800), at(120));
    a.need_peers(at(200));
    assert_eq!(a.poll_timeout(), Some(at(200)), "no min interval given: the default, 60 s, has passed");
}

#[test]
fn tiers_are_shuffled_within_but_never_across() {
    let t = tiers(&[&["a", "b", "c", "d", "e"], &["f", "g"]]);
    let mut firsts = std::collections::HashSet::new();
    for seed in 0..32 {
        let a = Announcer::new(&t, ScheduleConfig::default(), seed, at(0));
        let order = a.tiers();
        assert_eq!(order.len(), 2);
        let mut tier0: Vec<String> = order[0].iter().map(|u| u.host.to_string()).collect();
        firsts.insert(tier0[0].clone());
        tier0.sort();
        assert_eq!(tier0, ["a", "b", "c", "d", "e"]);
    }
    assert!(firsts.len() > 2, "shuffling picks different first trackers: {firsts:?}");
}

#[test]
fn bad_and_duplicate_urls_are_left_out() {
    let t = vec![vec!["http://a/announce".to_string(), "gopher://x".into(), "http://a:80/announce".into()]];
    let a = Announcer::new(&t, ScheduleConfig::default(), 0, at(0));
    assert_eq!(a.tiers().concat().len(), 1);
    assert_eq!(a.skipped().len(), 1);
    let empty = Announcer::new(&[], ScheduleConfig::default(), 0, at(0));
    assert!(empty.is_empty());
    assert_eq!(empty.poll_timeout(), None);
}

#[test]
fn scrape_on_demand_goes_to_the_preferred_tracker() {
    let mut a = announcer(&[&["a"], &["b"]]);
    let r = a.poll_request(at(0)).unwrap();
    a.failed(r.id, at(0));
    let r = a.poll_request(at(0)).unwrap();
    a.announced(r.id, &AnnounceReply { seeders: Some(3), ..reply(1800) }, at(0));
    a.request_scrape();
    let s = a.poll_request(at(1)).unwrap();
    assert_eq!((host(&s), s.kind), ("b".to_string(), RequestKind::Scrape));
    a.scraped(s.id, ScrapeStats { seeders: 4, completed: 5, leechers: 6 });
    let swarm = a.swarm();
    assert_eq!(swarm.seeders, Some(3));
    assert_eq!(swarm.scrape.map(|s| s.completed), Some(5));
}
