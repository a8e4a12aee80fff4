//! Test hooks named by `QIANZHI_FAILPOINT`: a process is made to crash, stop or misbehave at
//! one exact point so the e2e tests can prove what survives it. Unset in production.

/// Whether `QIANZHI_FAILPOINT` names this point.
pub fn active(name: &str) -> bool {
    std::env::var("QIANZHI_FAILPOINT").is_ok_and(|v| v == name)
}

/// Ends the process at this point, as a crash or kill -9 would.
pub fn exit(name: &str) {
    if active(name) {
        eprintln!("qianzhi: failpoint {name} reached, exiting without cleanup");
        std::process::exit(86);
    }
}

/// Stops the whole process at this point (SIGSTOP to itself: every thread, the lease renewal
/// included, as a long pause or a frozen VM would) until it receives SIGCONT.
pub fn stop(name: &str) {
    if active(name) {
        eprintln!("qianzhi: failpoint {name} reached, stopping until SIGCONT");
        // SAFETY: raise only sends a signal to this process.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
        eprintln!("qianzhi: failpoint {name}: continued");
    }
}
