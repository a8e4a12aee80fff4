//! Entry point: parse the command line and hand over to `cli`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    qianzhi::cli::main_entry().await
}
