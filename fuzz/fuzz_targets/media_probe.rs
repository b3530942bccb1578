//! Arbitrary bytes as a whole media file, every need the prober states answered from them.
//!
//! Besides "no panic": every need is a non-empty range inside the file, every answered need is
//! one read and the reads stay within the bound, the critical ranges are sorted, disjoint and
//! inside the file, and feeding whole 4 KiB pieces instead of exact ranges changes the answer
//! only when a read or walk bound was what ended the probe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_media::{MAX_READS, Need, Probe, ProbeError, Prober};

fuzz_target!(|file: &[u8]| {
    let exact = run(file, None);
    let pieces = run(file, Some(4096));
    let bound = |p: &Probe| matches!(p.fallback, Some(ProbeError::TooManyReads | ProbeError::TooManyElements));
    if !bound(&exact) && !bound(&pieces) {
        assert_eq!(exact, pieces);
    }
});

fn run(file: &[u8], piece: Option<u64>) -> Probe {
    let len = file.len() as u64;
    let mut p = Prober::new(len, Some("mp4"));
    let mut needs = 0u32;
    let probe = loop {
        match p.next_need() {
            Need::Done(probe) => break probe,
            Need::Read(r) => {
                assert!(r.start < r.end && r.end <= len);
                needs += 1;
                assert!(needs <= MAX_READS);
                let r = match piece {
                    Some(n) => r.start / n * n..r.end.div_ceil(n).saturating_mul(n).min(len),
                    None => r,
                };
                p.feed(r.start, &file[r.start as usize..r.end as usize]);
            }
        }
    };
    assert_eq!(needs, p.reads());
    for w in probe.critical.windows(2) {
        assert!(w[0].end < w[1].start);
    }
    assert!(probe.critical.iter().all(|r| r.start < r.end && r.end <= len));
    probe
}
