//! Hostile input over HTTP: 100,000 random and mutated payloads and header variations.
//! Every one is answered with a 4xx, the server never panics or hangs, and its memory stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use hush_ldp::NoiseRng;
use hush_report::{Catalog, Report};
use rand::{Rng, SeedableRng};
use support::{Collector, client, report, today};

const PAYLOADS: u64 = 100_000;

fn mutate(rng: &mut NoiseRng, valid: &[Vec<u8>], i: u64) -> Vec<u8> {
    let base = &valid[(rng.next_u32() as usize) % valid.len()];
    let mut b = base.clone();
    match i % 8 {
        // Bit flips.
        0 => {
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = rng.next_u32() as usize % b.len();
                b[at] ^= 1 << (rng.next_u32() % 8);
            }
        }
        // Truncation.
        1 => b.truncate(rng.next_u32() as usize % b.len()),
        // Wrong version byte.
        2 => b[0] = 2 + (rng.next_u32() % 250) as u8,
        // Huge length prefix right after the version byte (the batch length).
        3 => {
            b.truncate(1);
            b.push(0xFF);
            b.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        // Random bytes.
        4 => {
            let n = rng.next_u32() as usize % 300;
            b = (0..n).map(|_| rng.next_u32() as u8).collect();
        }
        // Valid bincode of the wrong shape: a batch of strings.
        5 => {
            let v: Vec<String> = vec!["hush".into(); 1 + rng.next_u32() as usize % 4];
            b = vec![1];
            b.extend(bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap());
        }
        // Trailing junk after a valid batch.
        6 => b.extend((0..1 + rng.next_u32() % 8).map(|_| rng.next_u32() as u8)),
        // Splice two batches.
        _ => {
            let other = &valid[(rng.next_u32() as usize) % valid.len()];
            let cut = rng.next_u32() as usize % b.len();
            b.truncate(cut);
            b.extend_from_slice(&other[other.len() / 2..]);
        }
    }
    b
}

#[test]
fn hostile_payloads_get_4xx_and_memory_stays_bounded() {
    // Both limits raised: this test is about what the decoder and validator do
    // with every payload, not about the rate limits that would answer most with 429.
    let c = Collector::start(
        "device_requests_per_minute = 100000000\nfailed_requests_per_minute = 100000000\n",
    );
    let token = c.token(&[]);
    let catalog = Catalog::builtin();
    let valid: Vec<Vec<u8>> = (0..20u64)
        .map(|i| {
            Report::encode_batch(&[
                report(&catalog, today() - 1 - i as u32, 2.0, i),
                report(&catalog, today() - 30 - i as u32, 2.0, 50 + i),
            ])
        })
        .collect();
    let pid = c.child.id();
    let threads = 4;
    let statuses: Vec<(u64, u64)> = std::thread::scope(|s| {
        (0..threads)
            .map(|t| {
                let (valid, token, url) = (&valid, &token, &c.url);
                s.spawn(move || {
                    let agent = client();
                    let mut rng = NoiseRng::seed_from_u64(t);
                    let (mut four, mut two) = (0, 0);
                    for i in (t..PAYLOADS).step_by(threads as usize) {
                        let body = mutate(&mut rng, valid, i);
                        // Header variations on a slice of the requests.
                        let mut req = agent.post(format!("{url}/v1/reports"));
                        req = match i % 13 {
                            0 => req.header("Authorization", "Bearer"),
                            1 => req.header("Authorization", &format!("Basic {token}")),
                            2 => req
                                .header("Authorization", &format!("Bearer {token}"))
                                .header("Content-Type", "text/plain"),
                            _ => req
                                .header("Authorization", &format!("Bearer {token}"))
                                .header("Content-Type", "application/octet-stream"),
                        };
                        match req.send(&body[..]) {
                            Ok(r) if (400..500).contains(&r.status().as_u16()) => four += 1,
                            // A mutation can leave a valid report (a flipped bit in the random id).
                            Ok(r) if r.status().as_u16() == 200 => two += 1,
                            Ok(r) => panic!("status {} for payload {i}", r.status()),
                            Err(e) => panic!("request {i} failed: {e}"),
                        }
                    }
                    (four, two)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
    });
    let four: u64 = statuses.iter().map(|s| s.0).sum();
    let two: u64 = statuses.iter().map(|s| s.1).sum();
    assert_eq!(four + two, PAYLOADS);
    assert!(
        two < PAYLOADS / 100,
        "only rare mutations stay valid: {two}"
    );
    // Still alive and well.
    let agent = client();
    assert_eq!(
        agent
            .get(format!("{}/healthz", c.url))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // Peak memory stayed small: no hostile length prefix was ever allocated.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm_kb < 256 * 1024, "collector peak RSS {hwm_kb} kB");
}
