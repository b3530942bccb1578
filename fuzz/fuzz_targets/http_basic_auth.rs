//! Arbitrary bytes into the access gate: the `Authorization` parser and the route rules.
//!
//! Input: a request target (path and query) up to the first newline, then the
//! `Authorization` value. Besides "no panic": parsed credentials verify against an account
//! made of them (when they can be written as an account line), and a request with them is
//! allowed wherever it goes, while the same request without them is allowed only when it is
//! allowed with wrong ones.
#![no_main]

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use sluice_http::access::{AccessPolicy, Accounts, Credentials, Decision, IpFilter};

fuzz_target!(|data: &[u8]| {
    let (target, auth) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let creds = Credentials::parse(auth);
    let account = creds.as_ref().ok().and_then(|c| {
        let user = std::str::from_utf8(&c.user).ok()?;
        let password = std::str::from_utf8(&c.password).ok()?;
        let line = format!("{user}:{password}");
        (user.trim() == user && !user.starts_with('#') && !line.contains(['\n', '\r'])).then_some(line)
    });
    let valid = account.as_deref().and_then(|line| Accounts::parse(line).ok());
    let made = valid.is_some();
    let accounts = valid.unwrap_or_else(|| Accounts::parse("fuzz:fuzz").expect("account"));
    let header = HeaderValue::from_bytes(auth).ok();
    if made {
        assert!(accounts.verify(creds.as_ref().expect("parsed")));
        assert!(header.is_none() || accounts.verify_header(header.as_ref()));
    }
    let Ok(uri) = Uri::try_from(target) else { return };
    let policy = AccessPolicy {
        ips: IpFilter::default(),
        accounts: Some(accounts),
        known: Arc::new(|h| h.0[0] & 1 == 0),
        guesses: Arc::default(),
    };
    // Four wrong passwords at most per input: below the burst, so none is refused as a guess.
    let now = Instant::now();
    for method in [Method::GET, Method::HEAD, Method::POST, Method::OPTIONS] {
        let anonymous = policy.decide(None, &method, &uri, None, now);
        let wrong = policy.decide(None, &method, &uri, Some(&HeaderValue::from_static("Basic eDp5")), now);
        if account.as_deref() != Some("x:y") {
            assert_eq!(anonymous, wrong);
        }
        assert_ne!(anonymous, Decision::Forbidden);
        if made && header.is_some() {
            assert_eq!(policy.decide(None, &method, &uri, header.as_ref(), now), Decision::Allow);
        }
    }
});
