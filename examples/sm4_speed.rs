//! Compares qianzhi's SM4-CBC encryption throughput with `openssl speed` on the same machine.
//!
//! Run with `cargo run --release --example sm4_speed`.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use qianzhi::crypto::{Padding, Sm4Cbc};

const BUF: usize = 16 * 1024;
const SECONDS: u64 = 3;

fn main() {
    let ours = our_speed();
    println!(
        "qianzhi SM4-CBC encrypt, 16 KiB buffers: {:>8.1} MB/s",
        ours / 1e6
    );

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

/// Bytes of plaintext per second, padding and output allocation included, as the daemon pays
/// for them.
fn our_speed() -> f64 {
    let cipher = Sm4Cbc::new([0x11; 16], [0x22; 16], Padding::Pkcs7);
    let plain = vec![0x5a; BUF];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        black_box(cipher.encrypt(black_box(&plain)));
        bytes += BUF as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
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
