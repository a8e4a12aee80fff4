//! Switches the PostgreSQL, MySQL and ODBC end-to-end suites on when their server variables are set
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
    // The ODBC suites need the `odbc` feature as well as their variable.
    let odbc = std::env::var_os("CARGO_FEATURE_ODBC").is_some();
    for (var, cfg) in [
        ("QIANZHI_TEST_ODBC_PG", "qianzhi_test_odbc_pg"),
        ("QIANZHI_TEST_ODBC_MYSQL", "qianzhi_test_odbc_mysql"),
    ] {
        println!("cargo::rerun-if-env-changed={var}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if odbc && std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
