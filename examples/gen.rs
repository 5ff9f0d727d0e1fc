//! The project's log generator, for benchmarks and manual tests:
//!
//!     cargo run --release --example gen -- access 100M out.txt
//!     cargo run --release --example gen -- juli 10M catalina.2026-11-24.log
//!     cargo run --release --example gen -- access 1G chunk.gz --gzip
//!
//! Timestamps start a few hours ago, inside the window CloudWatch Logs accepts.
//! Output is streamed in 16 MiB blocks, so any size fits in little memory.

use std::io::Write;
use std::process::ExitCode;

const BLOCK: usize = 16 << 20;

fn parse_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, size, out, gzip) = match args.as_slice() {
        [k, s, o] => (k.as_str(), parse_size(s), o.as_str(), false),
        [k, s, o, flag] if flag == "--gzip" => (k.as_str(), parse_size(s), o.as_str(), true),
        _ => ("", None, "", false),
    };
    let (Some(size), true) = (size, matches!(kind, "access" | "juli")) else {
        eprintln!("usage: gen access|juli SIZE[K|M|G] OUT [--gzip]");
        return ExitCode::from(2);
    };
    match write(kind, size, out, gzip) {
        Ok(n) => {
            eprintln!("wrote {n} bytes of {kind} log to {out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen: {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(kind: &str, size: usize, out: &str, gzip: bool) -> std::io::Result<usize> {
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut sink: Box<dyn Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::new(1),
        ))
    } else {
        Box::new(file)
    };
    let mut start = (chrono::Utc::now() - chrono::Duration::hours(6)).naive_utc();
    let mut written = 0;
    let mut seed = 1;
    while written < size {
        let want = BLOCK.min(size - written);
        let block = match kind {
            "access" => logdrop::generate::access_log(want, seed, start),
            _ => logdrop::generate::juli_log(want, seed, start),
        };
        sink.write_all(&block)?;
        written += block.len();
        seed += 1;
        start += chrono::Duration::seconds(20);
    }
    sink.flush()?;
    drop(sink);
    Ok(written)
}
