//! Check digits of the 统一社会信用代码 (GB 32100) and the 居民身份证号码 (GB 11643).

const USCC_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// Why a code failed, in words a DBA can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    Length(usize),
    Character(char),
    CheckDigit { expected: char, found: char },
    BirthDate,
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Length(n) => write!(f, "长度为 {n} 位，应为 18 位"),
            CheckError::Character(c) => write!(f, "含有不允许的字符 '{c}'"),
            CheckError::CheckDigit { expected, found } => {
                write!(f, "校验位错误：应为 {expected}，实为 {found}")
            }
            CheckError::BirthDate => write!(f, "出生日期不是有效日期"),
        }
    }
}

/// Each byte's value in [`USCC_ALPHABET`], or `NOT_USCC`.
const USCC_VALUE: [u8; 256] = {
    let mut t = [NOT_USCC; 256];
    let a = USCC_ALPHABET.as_bytes();
    let mut i = 0;
    while i < a.len() {
        t[a[i] as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_USCC: u8 = u8::MAX;

/// GB 32100: 18 characters from the 31-letter alphabet; check = (31 - Σ mod 31) mod 31.
/// Every row's codes pass through here: 18 ASCII bytes are checked as bytes, anything else
/// goes the way of characters, with the same answers.
pub fn uscc(code: &str) -> Result<(), CheckError> {
    let b = code.as_bytes();
    if b.len() != 18 || !code.is_ascii() {
        return uscc_chars(code);
    }
    let mut sum = 0;
    for (&c, w) in b[..17].iter().zip(USCC_WEIGHTS) {
        match USCC_VALUE[usize::from(c)] {
            NOT_USCC => return Err(CheckError::Character(char::from(c))),
            v => sum += u32::from(v) * w,
        }
    }
    let last = USCC_VALUE[usize::from(b[17])];
    if last == NOT_USCC {
        return Err(CheckError::Character(char::from(b[17])));
    }
    let check = (31 - sum % 31) % 31;
    if u32::from(last) != check {
        return Err(CheckError::CheckDigit {
            expected: char::from(USCC_ALPHABET.as_bytes()[check as usize]),
            found: char::from(b[17]),
        });
    }
    Ok(())
}

fn uscc_chars(code: &str) -> Result<(), CheckError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CheckError::Length(chars.len()));
    }
    let mut values = [0u32; 18];
    for (i, c) in chars.iter().enumerate() {
        values[i] = USCC_ALPHABET.find(*c).ok_or(CheckError::Character(*c))? as u32;
    }
    let sum: u32 = values[..17]
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(v, w)| v * w)
        .sum();
    let check = (31 - sum % 31) % 31;
    if values[17] != check {
        let expected = USCC_ALPHABET.as_bytes()[check as usize] as char;
        return Err(CheckError::CheckDigit {
            expected,
            found: chars[17],
        });
    }
    Ok(())
}

/// GB 11643: 17 digits, then Σ mod 11 indexes "10X98765432"; the birth date must exist.
/// 18 ASCII bytes are checked as bytes, anything else as characters, with the same answers.
pub fn id_card(code: &str) -> Result<(), CheckError> {
    let b = code.as_bytes();
    if b.len() != 18 || !code.is_ascii() {
        return id_card_chars(code);
    }
    let mut sum = 0;
    for (&c, w) in b[..17].iter().zip(ID_WEIGHTS) {
        if !c.is_ascii_digit() {
            return Err(CheckError::Character(char::from(c)));
        }
        sum += u32::from(c - b'0') * w;
    }
    // Digits 7–14 (all digits, checked above): yyyyMMdd as chrono's `%Y%m%d` reads them.
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
    if chrono::NaiveDate::from_ymd_opt(num(6..10) as i32, num(10..12), num(12..14)).is_none() {
        return Err(CheckError::BirthDate);
    }
    let expected = char::from(ID_CHECK[(sum % 11) as usize]);
    let found = char::from(b[17]);
    if found.to_ascii_uppercase() != expected {
        return Err(CheckError::CheckDigit { expected, found });
    }
    Ok(())
}

fn id_card_chars(code: &str) -> Result<(), CheckError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CheckError::Length(chars.len()));
    }
    let mut sum = 0u32;
    for (c, w) in chars[..17].iter().zip(ID_WEIGHTS) {
        sum += c.to_digit(10).ok_or(CheckError::Character(*c))? * w;
    }
    let birth: String = chars[6..14].iter().collect();
    if chrono::NaiveDate::parse_from_str(&birth, "%Y%m%d").is_err() {
        return Err(CheckError::BirthDate);
    }
    let expected = ID_CHECK[(sum % 11) as usize] as char;
    let found = chars[17].to_ascii_uppercase();
    if found != expected {
        return Err(CheckError::CheckDigit {
            expected,
            found: chars[17],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uscc_table() {
        let cases: &[(&str, Result<(), CheckError>)] = &[
            // Valid examples printed in the specs.
            ("91620100296583830Q", Ok(())),
            ("11620000MB199916XB", Ok(())),
            (
                "91620100296583830R",
                Err(CheckError::CheckDigit {
                    expected: 'Q',
                    found: 'R',
                }),
            ),
            (
                "11620000MB199916XA",
                Err(CheckError::CheckDigit {
                    expected: 'B',
                    found: 'A',
                }),
            ),
            ("91620100296583830", Err(CheckError::Length(17))),
            ("91620100296583830QQ", Err(CheckError::Length(19))),
            // I, O, S, V, Z are not in the alphabet.
            ("9162010029658383OQ", Err(CheckError::Character('O'))),
            ("91620100296583830q", Err(CheckError::Character('q'))),
        ];
        for (code, want) in cases {
            assert_eq!(&uscc(code), want, "{code}");
        }
    }

    #[test]
    fn id_card_table() {
        let cases: &[(&str, Result<(), CheckError>)] = &[
            ("610431198603210047", Ok(())),
            ("11010519491231002X", Ok(())),
            ("11010519491231002x", Ok(())),
            (
                "610431198603210048",
                Err(CheckError::CheckDigit {
                    expected: '7',
                    found: '8',
                }),
            ),
            ("61043119860321004", Err(CheckError::Length(17))),
            (
                "61043119860321004A",
                Err(CheckError::CheckDigit {
                    expected: '7',
                    found: 'A',
                }),
            ),
            ("6104311986032A0047", Err(CheckError::Character('A'))),
            ("610431198602300040", Err(CheckError::BirthDate)),
        ];
        for (code, want) in cases {
            assert_eq!(&id_card(code), want, "{code}");
        }
    }

    /// The byte paths answer exactly as the character paths (the original code) for every
    /// printable ASCII character at every position of valid and invalid codes.
    #[test]
    fn byte_paths_answer_as_the_character_paths() {
        for base in [
            "91620100296583830Q",
            "11620000MB199916XB",
            "610431198603210047",
            "11010519491231002X",
            "000000000000000000",
            "999999999999999999",
        ] {
            for at in 0..18 {
                for c in b' '..=b'~' {
                    let mut code = base.as_bytes().to_vec();
                    code[at] = c;
                    let code = String::from_utf8(code).unwrap();
                    assert_eq!(uscc(&code), uscc_chars(&code), "{code}");
                    assert_eq!(id_card(&code), id_card_chars(&code), "{code}");
                }
            }
        }
        // Dates in the ID number: every month and day, leap years included.
        for y in ["1900", "2000", "2024", "2023", "0000"] {
            for m in 0..=13 {
                for d in 0..=32 {
                    let code = format!("610431{y}{m:02}{d:02}0047");
                    assert_eq!(id_card(&code), id_card_chars(&code), "{code}");
                }
            }
        }
    }

    #[test]
    fn id_check_digit_recomputed_from_formula() {
        // Σ(a_i·w_i) for 61043119860321004 computed by hand: mod 11 = 3 -> '7'.
        let digits = "61043119860321004";
        let sum: u32 = digits
            .chars()
            .zip(ID_WEIGHTS)
            .map(|(c, w)| c.to_digit(10).unwrap() * w)
            .sum();
        assert_eq!(ID_CHECK[(sum % 11) as usize], b'7');
    }
}
