//! `--help` of qianzhi and of every subcommand: each command, option and about line in
//! Chinese with English beside ("中文 / English").

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_qianzhi"))
        .args(args)
        .env_remove("QIANZHI_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The entries of the Commands / Options / Arguments sections: (name or flags, help text),
/// with clap's `[env: ..]`, `[default: ..]` and `[possible values: ..]` notes left out. Handles
/// both layouts: help beside the flags, and help on the indented lines below them.
fn entries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_section = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent == 0 && !line.is_empty() {
            in_section = matches!(line, "Commands:" | "Options:" | "Arguments:");
            continue;
        }
        if !in_section || line.trim().is_empty() {
            continue;
        }
        if indent <= 6 {
            let t = line.trim_start();
            let (name, rest) = t.split_once("  ").unwrap_or((t, ""));
            out.push((name.to_string(), rest.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1 = format!("{} {}", last.1, line.trim()).trim().to_string();
        }
    }
    for (_, h) in &mut out {
        *h = strip_notes(h);
    }
    out
}

fn strip_notes(h: &str) -> String {
    let mut s = h.to_string();
    for note in ["[env: ", "[default: ", "[possible values: "] {
        while let Some(i) = s.find(note) {
            let j = s[i..].find(']').map(|j| i + j + 1).unwrap_or(s.len());
            s.replace_range(i..j, "");
        }
    }
    s.trim().to_string()
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// "中文 / English": Chinese before the first " / ", at least two English words after it.
fn bilingual(h: &str) -> bool {
    let Some((zh, en)) = h.split_once(" / ") else {
        return false;
    };
    let words = en
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 2)
        .count();
    zh.chars().any(is_cjk) && words >= 2
}

#[test]
fn the_helper_tells_bilingual_from_english_only() {
    assert!(bilingual("显示帮助 / Print help"));
    assert!(!bilingual("显示帮助 / 帮助 x"));
    assert!(!bilingual("Print help"));
    assert!(!bilingual("显示帮助"));
    assert!(!bilingual("Print help / 显示帮助"));
    let e = entries(
        "About\n\nOptions:\n  -c, --config <C>  配置 / Config file here [env: X=]\n      --listen <L>\n          监听地址 / Address to listen\n          \n          [default: 1]\n",
    );
    assert_eq!(
        e,
        vec![
            ("-c, --config <C>".into(), "配置 / Config file here".into()),
            ("--listen <L>".into(), "监听地址 / Address to listen".into()),
        ]
    );
}

#[test]
fn every_help_line_is_in_chinese_and_english() {
    let top = help(&["--help"]);
    let commands: Vec<String> = {
        let mut in_commands = false;
        top.lines()
            .filter_map(|l| {
                if !l.starts_with(' ') {
                    in_commands = l == "Commands:";
                    return None;
                }
                in_commands.then(|| l.split_whitespace().next().unwrap().to_string())
            })
            .collect()
    };
    for c in [
        "check", "migrate", "grants", "once", "run", "status", "simulate", "demo", "bench",
    ] {
        assert!(commands.iter().any(|x| x == c), "{c} missing: {top}");
    }
    let mut pages = vec![(vec!["--help".to_string()], top.clone())];
    for c in &commands {
        for flag in ["--help", "-h"] {
            let args = vec![c.clone(), flag.to_string()];
            let text = help(&args.iter().map(String::as_str).collect::<Vec<_>>());
            pages.push((args, text));
        }
    }
    for (args, text) in &pages {
        let about = text.lines().next().unwrap();
        assert!(bilingual(about), "{args:?} about: {about}");
        let e = entries(text);
        assert!(
            e.iter().any(|(n, _)| n.contains("--help")),
            "{args:?}: {text}"
        );
        for (name, h) in e {
            assert!(bilingual(&h), "{args:?}: {name} has help {h:?}");
        }
    }
    // The bench options come from its own argument struct: all of them are there.
    let bench = help(&["bench", "--help"]);
    for o in [
        "--database",
        "--rows",
        "--batch-size",
        "--upstream",
        "--per-call",
    ] {
        assert!(bench.contains(o), "{bench}");
    }
    assert!(help(&["--version"]).starts_with("qianzhi "));
}
