//! The shipper's core against its baseline, measured in the same run:
//! `flate2` gunzip alone vs gunzip → split → timestamps → batches handed to
//! an in-memory sink. `scripts/bench-report.py` turns the estimates into the ratio.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logdrop::core::batch::DEFAULT_MAX_EVENT_BYTES;
use logdrop::core::events::Window;
use logdrop::core::keys::ChunkKey;
use logdrop::core::ranges::RangeSet;
use logdrop::shipper::pipeline::Pipeline;
use std::io::Read;

const MIB: usize = 1 << 20;
const READ: usize = 64 * 1024;

fn inputs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let start = (chrono::Utc::now() - chrono::Duration::hours(6)).naive_utc();
    vec![
        (
            "access",
            "localhost_access_log.2026-11-24.txt",
            logdrop::generate::access_log(64 * MIB, 1, start),
        ),
        (
            "juli",
            "localhost.2026-11-24.log",
            logdrop::generate::juli_log(64 * MIB, 2, start),
        ),
    ]
}

fn gunzip(gz: &[u8]) -> usize {
    let mut dec = flate2::read::MultiGzDecoder::new(gz);
    let mut buf = vec![0u8; READ];
    let mut total = 0;
    while let Ok(n) = dec.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += std::hint::black_box(n);
    }
    total
}

fn core(file: &str, plain_len: usize, gz: &[u8]) -> usize {
    let key = ChunkKey {
        prefix: "logs".into(),
        cluster: "bench".into(),
        task_id: "t".into(),
        file: file.into(),
        generation: 0,
        start: 0,
        end: plain_len as u64,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut p = Pipeline::new(
        &key,
        chrono_tz::Tz::UTC,
        DEFAULT_MAX_EVENT_BYTES,
        now,
        Window::at(now, None),
        RangeSet::default(),
    );
    let mut events = 0;
    for piece in gz.chunks(READ) {
        p.feed(bytes::Bytes::copy_from_slice(piece));
        while let Some(b) = p.next_batch().expect("valid gzip") {
            events += std::hint::black_box(&b).len();
            p.recycle(b);
        }
    }
    p.finish().expect("complete");
    while let Some(b) = p.next_batch().expect("complete") {
        events += b.len();
    }
    events
}

fn bench(c: &mut Criterion) {
    for (name, file, plain) in inputs() {
        let gz = logdrop::generate::gzip(&plain);
        let mut g = c.benchmark_group(format!("shipper_core_{name}"));
        g.throughput(Throughput::Bytes(plain.len() as u64));
        g.sample_size(10);
        g.bench_function("baseline_flate2_gunzip", |b| b.iter(|| gunzip(&gz)));
        g.bench_function("gunzip_split_timestamps_batch", |b| {
            b.iter(|| core(file, plain.len(), &gz))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
