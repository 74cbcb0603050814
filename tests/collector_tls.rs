//! HTTPS end to end: a collector serving TLS with a certificate from a private CA,
//! and an agent that trusts that CA through `ca_cert` (and refuses without it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

mod support;

use std::time::Duration;

use support::{Collector, agent_config, enroll, make_certificates, run_replay, terminate};

#[test]
#[ignore = "needs the openssl command (installed by .ci/run)"]
fn agents_upload_over_verified_tls() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let collector = Collector::start(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\nperiod_seconds = 1\nfailed_requests_per_minute = 3\n",
        certs.path().join("server.pem").display(),
        certs.path().join("server.key").display()
    ));
    assert!(
        collector.url.starts_with("https://127.0.0.1:"),
        "{}",
        collector.url
    );
    let token = collector.token(&[]);

    // Without the private CA, certificate verification refuses the collector.
    let untrusting = tempfile::tempdir().unwrap();
    let out = enroll(untrusting.path(), &collector.url, &token);
    assert!(!out.status.success(), "enrolled without trusting the CA");

    // With it, enrollment and uploads work.
    let ca = certs.path().join("ca.pem");
    let home = agent_config(&format!("ca_cert = \"{}\"\n", ca.display()));
    let out = enroll(home.path(), &collector.url, &token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replay = home.path().join("replay.txt");
    std::fs::write(&replay, "0 key letter\n100 click left\n").unwrap();
    let mut agent = run_replay(home.path(), &replay);
    std::thread::sleep(Duration::from_secs(4));
    assert!(terminate(&mut agent).success());
    let stored = support::query_u64(&collector.database(), "SELECT COUNT(*) FROM reports");
    assert!(stored >= 2, "only {stored} reports arrived over TLS");

    // The TLS path knows the client's address too: failures are limited per address.
    let https = hush_agent::uploader::http_agent(Some(&ca)).unwrap();
    let status = |path: &str| {
        https
            .get(format!("{}{path}", collector.url))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        [status("/nope"), status("/nope"), status("/nope")],
        [404; 3]
    );
    assert_eq!(status("/healthz"), 429);
}
