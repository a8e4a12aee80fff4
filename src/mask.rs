//! Masking of personal ID numbers and mobile phone numbers before text reaches a log line.

use regex::Regex;
use std::sync::LazyLock;

static ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{6})\d{8}(\d{3}[0-9Xx])\b").expect("valid regex"));
static PHONE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(1[3-9]\d)\d{4}(\d{4})\b").expect("valid regex"));

/// 18-digit ID numbers keep the region and the last four; 11-digit mobiles keep 3 + 4.
pub fn mask_pii(text: &str) -> String {
    let once = ID_RE.replace_all(text, "${1}********${2}");
    PHONE_RE.replace_all(&once, "${1}****${2}").into_owned()
}

/// Mask a single value of a field known to hold an ID or phone number, whatever its shape.
pub fn mask_value(v: &str) -> String {
    let n = v.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let keep_head = if n >= 15 { 6 } else { 3.min(n / 3) };
    let head: String = v.chars().take(keep_head).collect();
    let tail: String = v.chars().skip(n - 4).collect();
    format!("{head}{}{tail}", "*".repeat(n - keep_head - 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        for (input, want) in [
            ("id 610431198603210047 ok", "id 610431********0047 ok"),
            ("11010519491231002X", "110105********002X"),
            ("tel 13812345678.", "tel 138****5678."),
            (
                "batch 91620100296583830Q2026112200001",
                "batch 91620100296583830Q2026112200001",
            ),
            ("no pii here", "no pii here"),
        ] {
            assert_eq!(mask_pii(input), want, "{input}");
        }
        assert_eq!(mask_value("610431198603210047"), "610431********0047");
        assert_eq!(mask_value("13812345678"), "138****5678");
        assert_eq!(mask_value("123"), "***");
    }
}
