//! The `burrow` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use burrow::config::{Config, Overrides, ProcessEnv};

/// Serve a backend's handlers as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "burrow", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log lines as readable text (default) or as JSON objects, one per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BURROW_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    /// `burrow` alone is `burrow serve`.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on BURROW_LISTEN (default 0.0.0.0:8000) — the default.
    Serve(ServeArgs),
    /// Run only the SSH tunnel (SSH_FORWARD), in the foreground, like `ssh -N -L`.
    Tunnel(ConfigArgs),
    /// Apply migrations/*.sql to the database (through the tunnel), each once.
    Migrate(MigrateArgs),
    /// Run every start-up check (config, key, known_hosts, SSH login, forward,
    /// database, components) and print a checklist; exit 1 if any fails.
    Check(ServeArgs),
    /// Exit 0 if the running server on this machine is ready (for Docker's
    /// HEALTHCHECK): GET /_burrow/ready on BURROW_ADMIN_LISTEN.
    Healthcheck(ConfigArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone, Default)]
struct MigrateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// List each migration as applied, pending or changed; apply nothing.
    #[arg(long)]
    status: bool,
    /// Directory of the .sql files.
    #[arg(long, value_name = "DIR", default_value = burrow::migrate::DEFAULT_DIR)]
    dir: PathBuf,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// Config file (default: ./burrow.toml if it exists).
    #[arg(long, short, value_name = "FILE", env = "BURROW_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Config file (default: ./burrow.toml if it exists).
    #[arg(long, short, value_name = "FILE", env = "BURROW_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:8000 (overrides BURROW_LISTEN).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve paths under PREFIX with the component in FILE; repeatable.
    #[arg(long = "route", value_name = "PREFIX=FILE.wasm")]
    routes: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    enum Job {
        Serve,
        Tunnel,
        Migrate { dir: PathBuf, status: bool },
        Check,
        Healthcheck,
    }
    let (args, job) = match cli.command {
        Some(Command::Serve(args)) => (args, Job::Serve),
        Some(Command::Tunnel(args)) => (
            ServeArgs {
                config: args.config,
                ..Default::default()
            },
            Job::Tunnel,
        ),
        Some(Command::Migrate(args)) => (
            ServeArgs {
                config: args.config.config,
                ..Default::default()
            },
            Job::Migrate {
                dir: args.dir,
                status: args.status,
            },
        ),
        Some(Command::Check(args)) => (args, Job::Check),
        Some(Command::Healthcheck(args)) => (
            ServeArgs {
                config: args.config,
                ..Default::default()
            },
            Job::Healthcheck,
        ),
        None => (cli.serve, Job::Serve),
    };
    let checking = matches!(job, Job::Check);
    let overrides = Overrides {
        config_file: args.config,
        listen: args.listen,
        routes: args.routes,
    };
    let reload_overrides = overrides.clone();
    let config = Config::load(&overrides, &ProcessEnv);
    if checking && let Err(e) = &config {
        println!("✗ configuration: {e:#}");
        println!("1 check(s) failed");
        return ExitCode::FAILURE;
    }
    let result = config.and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            match job {
                Job::Serve => burrow::serve::serve(config, reload_overrides).await,
                Job::Tunnel => burrow::serve::tunnel(config).await,
                Job::Migrate { dir, status } => burrow::migrate::run(config, &dir, status).await,
                Job::Check => match burrow::check::run(config).await? {
                    0 => Ok(()),
                    n => Err(anyhow::anyhow!("{n} check(s) failed")),
                },
                Job::Healthcheck => burrow::admin::healthcheck(&config.admin).await,
            }
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines on stderr, readable or JSON; `BURROW_LOG` (or `RUST_LOG`)
/// sets the filter.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BURROW_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
