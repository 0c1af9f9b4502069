//! The `reins` binary: parses the command line, sets up logging and telemetry, runs [`reins::cli`].

use clap::Parser;

/// A decision allocates and frees many small objects across the runtime's threads (request, Cedar
/// values, JSON); glibc's allocator spent a fifth of the server's CPU on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = reins::cli::Cli::parse();
    // Before telemetry: an HTTPS collector's client needs the TLS provider.
    reins::crypto::install_crypto_provider();
    let telemetry = match reins::telemetry::init(cli.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = reins::cli::run(cli).await;
    // Flushing blocks on the exporters: keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
