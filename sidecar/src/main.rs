//! The `proxy-acme` command: parses arguments, sets up logging, maps errors
//! to exit codes. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use proxy_acme::config::Config;
use proxy_acme::{daemon, schedule};

/// Exit code for a bad configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "proxy-acme", version, about = "ACME certificates for Envoy and nginx")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Obtain, store, deploy and renew the configured certificates.
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, env = "PROXY_ACME_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (0 valid, 64 invalid).
    Check {
        #[arg(long, short, env = "PROXY_ACME_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROXY_ACME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match cli.command {
        Command::Check { config } => match Config::load_valid(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} resolvers, {} certificates)",
                    config.display(),
                    cfg.resolvers.len(),
                    cfg.certificates.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&config, &e),
        },
        Command::Run { config } => {
            let cfg = match Config::load_valid(&config) {
                Ok(cfg) => cfg,
                Err(e) => return config_error(&config, &e),
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("proxy-acme: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(daemon::run(cfg, Arc::new(schedule::SystemClock))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "proxy-acme stopped");
                    eprintln!("proxy-acme: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn config_error(path: &std::path::Path, e: &proxy_acme::config::ConfigError) -> ExitCode {
    eprintln!("proxy-acme: {}: {e}", path.display());
    ExitCode::from(EXIT_CONFIG)
}
