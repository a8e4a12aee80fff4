//! Compares qianzhi's SM4-CBC encryption throughput with `openssl speed` on the same machine,
//! and times the short-value path the Gansu upstream takes (encrypt one value, then hex).
//!
//! Run with `cargo run --release --example sm4_speed`.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use qianzhi::crypto::{Padding, Sm4Cbc, TextEncoding};

const BUF: usize = 16 * 1024;
/// About the size of one encrypted Gansu value (a name, a code and a date run 10 to 60 bytes).
const VALUE: usize = 60;
const SECONDS: u64 = 3;

fn main() {
    let cipher = Sm4Cbc::new([0x11; 16], [0x22; 16], Padding::Pkcs7);
    let ours = bytes_per_sec(BUF, |plain| {
        black_box(cipher.encrypt(plain));
    });
    println!(
        "qianzhi SM4-CBC encrypt, 16 KiB buffers: {:>8.1} MB/s",
        ours / 1e6
    );
    // Short values: the cost per value, first the cipher alone and then with the hex text the
    // upstream sends, so the share of the text encoding is visible.
    let raw = best_ns_per_call(VALUE, |plain| {
        black_box(cipher.encrypt(plain));
    });
    let hex = best_ns_per_call(VALUE, |plain| {
        black_box(cipher.encrypt_to_string(plain, TextEncoding::Hex));
    });
    println!("{VALUE}-byte values, encrypt:            {raw:>8.0} ns/value");
    println!("{VALUE}-byte values, encrypt + hex:      {hex:>8.0} ns/value");

    let theirs = match openssl_speed() {
        Ok(bytes_per_sec) => bytes_per_sec,
        Err(why) => {
            println!("openssl comparison skipped: {why}");
            return;
        }
    };
    println!(
        "openssl speed -evp sm4-cbc, 16 KiB:       {:>8.1} MB/s",
        theirs / 1e6
    );
    println!("ratio: {:.0}%", 100.0 * ours / theirs);
}

/// Bytes of plaintext per second through `f` on `len`-byte inputs, padding and output
/// allocation included, as the daemon pays for them.
fn bytes_per_sec(len: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let plain = vec![0x5a; len];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        // Batches of calls so reading the clock does not dominate short values.
        for _ in 0..64 {
            f(black_box(&plain));
        }
        bytes += 64 * len as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

/// Nanoseconds per call of `f` on `len`-byte inputs in the least disturbed of many 20 ms
/// windows: on a machine shared with builds, the mean mostly measures the other processes.
fn best_ns_per_call(len: usize, mut f: impl FnMut(&[u8])) -> f64 {
    let plain = vec![0x5a; len];
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        let window = Instant::now();
        let mut calls = 0u32;
        while window.elapsed() < Duration::from_millis(20) {
            for _ in 0..64 {
                f(black_box(&plain));
            }
            calls += 64;
        }
        best = best.min(window.elapsed().as_secs_f64() * 1e9 / f64::from(calls));
    }
    best
}

fn openssl_speed() -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-evp", "sm4-cbc", "-bytes", "16384", "-seconds"])
        .arg(SECONDS.to_string())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The result line is "SM4-CBC   84634.72k" (the case varies by version), in 1000s of
    // bytes per second.
    stdout
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("sm4-cbc"))
        .find_map(|line| {
            line.split_whitespace()
                .last()?
                .strip_suffix('k')?
                .parse::<f64>()
                .ok()
        })
        .map(|k| k * 1000.0)
        .ok_or_else(|| format!("no sm4-cbc figure in openssl's output:\n{stdout}"))
}
