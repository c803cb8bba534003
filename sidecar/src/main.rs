//! The `proxy-acme` command: parses arguments, sets up logging, maps errors
//! to exit codes. Everything else lives in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use proxy_acme::commands::operate as cli;
use proxy_acme::config::Config;
use proxy_acme::{daemon, schedule};

/// Exit code for a bad configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "proxy-acme", version, about = "ACME certificates for Envoy and nginx")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true, env = "PROXY_ACME_CONFIG", default_value = "/etc/proxy-acme/proxy-acme.toml")]
    config: PathBuf,
    /// Log lines for people (`human`) or one JSON object per line (`json`).
    #[arg(long, global = true, env = "PROXY_ACME_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Obtain, store, deploy and renew the configured certificates.
    Run,
    /// Validate the configuration and exit (0 valid, 64 invalid).
    Check {
        /// Also reach each CA (directory, trust, EAB, profile), write the
        /// store and the sockets' directories; exit 1 if any check fails.
        #[arg(long)]
        online: bool,
    },
    /// List certificates: names, expiry, next renewal and why, last error.
    Certs,
    /// Renew a certificate now (the daemon must be running).
    Renew {
        name: String,
        /// Renew even when the certificate is not due, or was revoked.
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
        /// Order from the resolver's staging directory (`staging_server`)
        /// with a throwaway account, and report each step; nothing is stored
        /// or deployed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the running daemon read its configuration file again (as SIGHUP
    /// does): certificates added, removed or changed take effect.
    Reload,
    /// Revoke a certificate at the CA and stop deploying it.
    Revoke {
        name: String,
        /// RFC 5280 reason code (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation, ...).
        #[arg(long)]
        reason: Option<u8>,
    },
    /// Print nginx server blocks for every configured certificate.
    NginxConfig,
    /// Print the dns-persist-01 TXT records to create, once, for
    /// certificate NAME (zone-file lines); registers the resolver's account
    /// first if it has none yet.
    DnsPersistRecord {
        /// A configured certificate's name.
        name: String,
    },
    /// Write every certificate's current files (file SDS, nginx) and exit.
    Prepare,
    /// Beside nginx: reload it when certificate files in a directory change
    /// (checked first; needs no configuration file).
    Watch {
        /// The directory the sidecar writes (`[nginx] directory`).
        #[arg(long)]
        dir: PathBuf,
        /// nginx master's pid file (the reload is a SIGHUP).
        #[arg(long, default_value = "/run/nginx.pid")]
        pid_file: PathBuf,
        /// Check command, split on spaces (no shell); "" disables it.
        #[arg(long, default_value = "nginx -t -q")]
        check: String,
        /// Reload command, split on spaces (no shell), instead of the pid file.
        #[arg(long)]
        reload: Option<String>,
        /// Changes within this many milliseconds share one reload.
        #[arg(long, default_value_t = 500)]
        debounce_ms: u64,
    },
    /// Print a shell completion script (`proxy-acme completions bash >
    /// /etc/bash_completion.d/proxy-acme`).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `proxy-acme man | man -l -`.
    Man,
    /// Account operations.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Import certificates (and P-256 accounts) from Traefik or certbot, so
    /// the daemon serves them without ordering new ones.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// Traefik's acme.json (`certificatesResolvers.<name>.acme.storage`).
    Traefik {
        path: PathBuf,
        /// The Traefik resolver to import (needed when the file holds several).
        #[arg(long)]
        resolver: Option<String>,
    },
    /// certbot's configuration directory (the one holding `live/`, e.g. /etc/letsencrypt).
    Certbot { path: PathBuf },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Replace the account key of a resolver's account at the CA.
    Rollover {
        /// Resolver name in the configuration.
        resolver: String,
    },
}

fn main() -> ExitCode {
    proxy_acme::serve::door::limit_arenas();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PROXY_ACME_LOG")
        // notify says at info that it could not remove the inotify watch of
        // a directory the kernel already dropped (every swapped version).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,notify=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Human => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }

    // Neither needs a configuration file.
    // Built in memory, then written: a closed pipe (`| head`) ends the
    // command quietly instead of panicking inside the generator.
    let printed = match cli.command {
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "proxy-acme", &mut text);
            Some(Ok(text))
        }
        Command::Man => {
            let mut text = Vec::new();
            Some(clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut text).map(|()| text))
        }
        _ => None,
    };
    if let Some(printed) = printed {
        use std::io::Write;
        return match printed.and_then(|text| std::io::stdout().write_all(&text)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("proxy-acme: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Watch { dir, pid_file, check, reload, debounce_ms } = &cli.command {
        let split = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let options = proxy_acme::commands::watch::WatchOptions {
            dir: dir.clone(),
            pid_file: pid_file.clone(),
            check: split(check),
            reload: reload.as_deref().map(split),
            debounce: std::time::Duration::from_millis(*debounce_ms),
        };
        return match tokio::runtime::Runtime::new().map_err(|e| e.to_string()) {
            Ok(runtime) => match runtime.block_on(proxy_acme::commands::watch::watch(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("proxy-acme: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("proxy-acme: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::load_valid(&cli.config) {
        Ok(config) => config,
        Err(e) => return config_error(&cli.config, &e),
    };
    if let Command::NginxConfig = cli.command {
        print!("{}", proxy_acme::commands::nginx_config::render(&config));
        return ExitCode::SUCCESS;
    }
    if let Command::Check { online } = cli.command {
        println!(
            "{}: ok ({} resolvers, {} certificates)",
            cli.config.display(),
            config.resolvers.len(),
            config.certificates.len()
        );
        if !online {
            return ExitCode::SUCCESS;
        }
        let lines = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(proxy_acme::commands::online::check(&config)),
            Err(e) => {
                eprintln!("proxy-acme: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        for line in &lines {
            println!("{line}");
        }
        return if lines.iter().all(|l| l.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-acme: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check { .. }
            | Command::NginxConfig
            | Command::Watch { .. }
            | Command::Completions { .. }
            | Command::Man => Ok(()),
            Command::Run => daemon::run(config, Arc::new(schedule::SystemClock)).await.map_err(|e| e.to_string()),
            Command::Certs => cli::certs(&config).await.map_err(|e| e.to_string()),
            Command::Prepare => proxy_acme::commands::prepare::prepare(&config).await.map_err(|e| e.to_string()),
            Command::Renew { name, force, dry_run } => {
                cli::renew(&config, &name, force, dry_run).await.map_err(|e| e.to_string())
            }
            Command::Revoke { name, reason } => cli::revoke(&config, &name, reason).await.map_err(|e| e.to_string()),
            Command::Reload => cli::reload(&config).await.map_err(|e| e.to_string()),
            Command::DnsPersistRecord { name } => {
                let records =
                    proxy_acme::commands::persist_record::records(&config, &name).await.map_err(|e| e.to_string())?;
                for record in records {
                    println!("{record}");
                }
                Ok(())
            }
            Command::Account { command: AccountCommand::Rollover { resolver } } => {
                cli::rollover(&config, &resolver).await.map_err(|e| e.to_string())
            }
            Command::Import { source } => {
                let source = match source {
                    ImportSource::Traefik { path, resolver } => {
                        proxy_acme::commands::import::Source::Traefik { path, resolver }
                    }
                    ImportSource::Certbot { path } => proxy_acme::commands::import::Source::Certbot { dir: path },
                };
                let summary =
                    proxy_acme::commands::import::import(&config, &source).await.map_err(|e| e.to_string())?;
                print!("{}", summary.render());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy-acme: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(path: &Path, e: &proxy_acme::config::ConfigError) -> ExitCode {
    // One line, control characters escaped (`ConfigError::in_file`).
    eprintln!("proxy-acme: {}", e.in_file(path));
    ExitCode::from(EXIT_CONFIG)
}
