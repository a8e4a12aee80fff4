//! Masking of personal ID numbers and mobile phone numbers before text reaches a log line, an
//! error message or a stored error row; the one list of secret-looking key names.

/// ID numbers keep the region (6) and the last four; mobiles keep 3 + 4.
///
/// A hand-written scan over runs of ASCII digits, not a regex: `\b` in a Unicode regex counts
/// 汉字, letters and `_` as word characters, so `身份证610431198603210047` or
/// `id_13812345678` slipped through. What decides is only the digit run itself: a run of
/// exactly 18 digits, or 17 digits followed by `X`/`x` (and no digit after it), is an ID number; a run of exactly 11
/// digits starting 13–19 is a mobile (also as `+86` followed by the 11 digits). A run that is
/// part of a longer digit run (a Cd_Batch's date and sequence, an amount) is left alone.
pub fn mask_pii(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // `copied` is the byte offset up to which `text` is already in `out`.
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let run = &text[start..i];
        // A Cd_Batch starts with the unit's USCC, whose check character may be X: there the
        // X is followed by the date's digits.
        let x_check = run.len() == 17
            && matches!(b.get(i), Some(b'X' | b'x'))
            && !b.get(i + 1).is_some_and(u8::is_ascii_digit);
        let masked = if run.len() == 18 {
            Some(format!("{}********{}", &run[..6], &run[14..]))
        } else if x_check {
            i += 1; // the X is the check character and stays
            Some(format!("{}********{}", &run[..6], &text[start + 14..i]))
        } else if is_mobile(run) {
            Some(format!("{}****{}", &run[..3], &run[7..]))
        } else if run.len() == 13 && start > 0 && b[start - 1] == b'+' && run.starts_with("86") {
            is_mobile(&run[2..]).then(|| format!("{}****{}", &run[..5], &run[9..]))
        } else {
            None
        };
        if let Some(m) = masked {
            out.push_str(&text[copied..start]);
            out.push_str(&m);
            copied = i;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_mobile(run: &str) -> bool {
    let b = run.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
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

/// Words that make a key name look like it holds a secret: a value under such a key is never
/// printed (connection-string parameters, config lines in a TOML error). `url` is here
/// because `database.url` may carry a password; `key` covers the SM4 key, `apikey`,
/// `secret_key` and friends. Matching is by substring, so `sslpassword` and
/// `authorization_env` count too: showing too little is the safe side.
const SECRET_WORDS: [&str; 9] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "url",
    "dsn",
];

/// Whether a key (a TOML key, a query parameter, a DSN keyword) looks like it holds a secret.
pub fn is_secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_ids_and_mobiles_in_any_context() {
        for (input, want) in [
            // The cases the regex version handled.
            ("id 610431198603210047 ok", "id 610431********0047 ok"),
            ("11010519491231002X", "110105********002X"),
            ("11010519491231002x", "110105********002x"),
            ("tel 13812345678.", "tel 138****5678."),
            ("no pii here", "no pii here"),
            ("", ""),
            // Chinese characters on one or both sides.
            ("身份证610431198603210047", "身份证610431********0047"),
            (
                "身份证610431198603210047有误",
                "身份证610431********0047有误",
            ),
            ("号码11010519491231002X错", "号码110105********002X错"),
            ("电话13812345678请核对", "电话138****5678请核对"),
            ("的值'13812345678'不在", "的值'138****5678'不在"),
            // Letters and `_` on either side.
            ("id_610431198603210047", "id_610431********0047"),
            ("id610431198603210047abc", "id610431********0047abc"),
            ("tel13812345678x", "tel138****5678x"),
            ("_13812345678_", "_138****5678_"),
            ("11010519491231002Xabc", "110105********002Xabc"),
            // Punctuation, start and end of text, full-width punctuation.
            ("610431198603210047", "610431********0047"),
            ("13812345678", "138****5678"),
            ("(610431198603210047)", "(610431********0047)"),
            ("a^13812345678^b", "a^138****5678^b"),
            ("“13812345678”，", "“138****5678”，"),
            ("k=13812345678&x=1", "k=138****5678&x=1"),
            // Several in one text.
            (
                "610431198603210047与13812345678",
                "610431********0047与138****5678",
            ),
            // +86 prefix.
            ("+8613812345678", "+86138****5678"),
            ("8613812345678", "8613812345678"),
            // Part of a longer digit run: left alone.
            (
                "batch 91620100296583830Q2026112200001",
                "batch 91620100296583830Q2026112200001",
            ),
            (
                "批次916201002965838301202611220000",
                "批次916201002965838301202611220000",
            ),
            ("6104311986032100471", "6104311986032100471"),
            (
                "batch 91620100296583830X2026112200001",
                "batch 91620100296583830X2026112200001",
            ),
            ("138123456789", "138123456789"),
            ("4213812345678", "4213812345678"),
            // Not a mobile prefix, too short, or a 17-digit run without X.
            ("12812345678", "12812345678"),
            ("1381234567", "1381234567"),
            ("61043119860321004", "61043119860321004"),
            ("61043119860321004Y", "61043119860321004Y"),
            // Full-width digits are not ASCII digits; non-ASCII text passes through intact.
            ("１３８１２３４５６７８", "１３８１２３４５６７８"),
            ("金额 1.5 元", "金额 1.5 元"),
        ] {
            assert_eq!(mask_pii(input), want, "{input}");
        }
    }

    #[test]
    fn masking_twice_changes_nothing() {
        let once = mask_pii("身份证610431198603210047电话13812345678");
        assert_eq!(mask_pii(&once), once);
    }

    #[test]
    fn masks_single_values() {
        assert_eq!(mask_value("610431198603210047"), "610431********0047");
        assert_eq!(mask_value("13812345678"), "138****5678");
        assert_eq!(mask_value("123"), "***");
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "Password",
            "PWD",
            "sslpassword",
            "token",
            "token_file",
            "key",
            "secret_key",
            "apikey",
            "authorization",
            "url",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "host", "user", "dbname", "sslmode", "name", "schedule", "level",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
