//! Criterion benchmark of the collector's storing path against the naive
//! store of the same reports, in the same run: the ratio is the
//! machine-independent figure (the README's loadgen line measures the whole
//! service, HTTP included).
//!
//! - `naive`: what one writes first: the same encoded reports inserted with
//!   bare rusqlite into the same two B-trees (report id, and (device,
//!   period)) with the collector's durability (WAL, `synchronous=FULL`) and
//!   page size, one transaction per 8 uploads, SQLite's automatic
//!   checkpoint; no checks and no aggregates.
//! - `writer`: `hush_collector::Writer`, as `/v1/reports` calls it after
//!   validation: waves of 8 uploads in flight of 8 reports each (loadgen's
//!   shape), group commit, the device check, the duplicate and period rules,
//!   the aggregate cells, and its checkpoints after the replies.
//!
//! `cargo bench --bench ingest`; throughput is per report. Each iteration's
//! devices are enrolled in its setup, untimed.

#![allow(clippy::expect_used)] // A benchmark that cannot build its inputs should stop loudly.

use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use hush_collector::loadgen::device_reports;
use hush_collector::{Catalogs, CollectorConfig, ValidReport, Writer, store, validate};
use hush_ldp::NoiseRng;
use hush_report::{Catalog, Report};
use rand::SeedableRng;

/// Uploads in flight, as `hush collector loadgen --concurrency 8`.
const IN_FLIGHT: usize = 8;
/// Reports per upload: one device's reports for the 8 open periods.
const PER_UPLOAD: usize = 8;
/// Uploads per measured iteration.
const UPLOADS: usize = 64;

/// One iteration's uploads: new devices, each with its reports for the open periods.
struct Batch {
    uploads: Vec<(i64, [u8; 32], Vec<ValidReport>)>,
}

fn reports_for_new_devices(
    db: &mut dyn store::Store,
    config: &CollectorConfig,
    catalogs: &Catalogs,
    rng: &mut NoiseRng,
) -> Batch {
    let catalog = Catalog::builtin();
    let current = config.clock().current;
    let mut uploads = Vec::with_capacity(UPLOADS);
    for d in 0..UPLOADS as u64 {
        let token = hush_collector::new_token_from_os(hush_collector::TokenKind::Device)
            .expect("os randomness");
        let id = db
            .add_device(&token, "bench", config.now(), true)
            .expect("device");
        let reports = device_reports(config, &catalog, current, d, PER_UPLOAD as u32, rng)
            .expect("reports")
            .into_iter()
            .map(|report| validate(report, catalogs, config, current).expect("valid report"))
            .collect();
        uploads.push((id, hush_collector::token_hash(&token), reports));
    }
    Batch { uploads }
}

fn naive_connection(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "page_size", store::PAGE_SIZE)
        .expect("page size");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE reports (id BLOB PRIMARY KEY, device INTEGER NOT NULL,
             period INTEGER NOT NULL, body BLOB NOT NULL) WITHOUT ROWID;
         CREATE UNIQUE INDEX reports_device_period ON reports (device, period);",
    )
    .expect("schema");
    conn
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = CollectorConfig {
        database: store::Database::Sqlite(dir.path().join("collector.sqlite")),
        ..CollectorConfig::default()
    };
    let catalogs = Catalogs::builtin();
    let mut setup = store::open(&config.database).expect("database");
    let mut rng = NoiseRng::seed_from_u64(17);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let writer =
        Writer::start(&config.database, config.group_commit, Default::default()).expect("writer");
    let naive = naive_connection(&dir.path().join("naive.sqlite"));

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements((UPLOADS * PER_UPLOAD) as u64));
    group.sample_size(20);
    group.bench_function("naive", |b| {
        b.iter_batched(
            || reports_for_new_devices(setup.as_mut(), &config, &catalogs, &mut rng),
            |batch| {
                // The same grouping the writer reaches with IN_FLIGHT uploads.
                for chunk in batch.uploads.chunks(IN_FLIGHT) {
                    naive.execute_batch("BEGIN IMMEDIATE").expect("begin");
                    let mut insert = naive
                        .prepare_cached(
                            "INSERT INTO reports (id, device, period, body) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .expect("statement");
                    for (device, _, reports) in chunk {
                        for valid in reports {
                            let report: &Report = &valid.report;
                            insert
                                .execute(rusqlite::params![
                                    &report.id().0[..],
                                    device,
                                    report.period(),
                                    report.encode()
                                ])
                                .expect("insert");
                        }
                    }
                    drop(insert);
                    naive.execute_batch("COMMIT").expect("commit");
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("writer", |b| {
        b.iter_batched(
            || reports_for_new_devices(setup.as_mut(), &config, &catalogs, &mut rng),
            |batch| {
                runtime.block_on(async {
                    let mut uploads = batch.uploads.into_iter();
                    loop {
                        // Started together, so the writer finds them in flight at once.
                        let wave: Vec<_> = uploads
                            .by_ref()
                            .take(IN_FLIGHT)
                            .map(|(device, token, reports)| {
                                let writer = writer.clone();
                                tokio::spawn(
                                    async move { writer.submit(device, token, reports).await },
                                )
                            })
                            .collect();
                        if wave.is_empty() {
                            break;
                        }
                        for handle in wave {
                            let outcome = handle.await.expect("task").expect("stored");
                            assert_eq!(outcome.accepted, PER_UPLOAD as u32);
                        }
                    }
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
