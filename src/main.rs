//! Entry point: parse the command line and hand over to `cli`.

// Mapping and serialising allocate many small strings per row; mimalloc handles that
// pattern markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    qianzhi::cli::main_entry().await
}
