//! Switches the PostgreSQL and MySQL end-to-end suites on when their server variables are set
//! at build time, so a suite that is off shows up as "ignored" in `cargo test`, never as passed.

fn main() {
    for (var, cfg) in [
        ("QIANZHI_TEST_PG", "qianzhi_test_pg"),
        ("QIANZHI_TEST_MYSQL", "qianzhi_test_mysql"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
