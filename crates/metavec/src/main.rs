//! `metavec`: the server (`metavec serve`) and, as they land, the operations subcommands.

mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "metavec",
    version,
    about = "A database for Matryoshka multi-vector embeddings"
)]
struct Cli {
    /// Log format: "text" or "json" (level from RUST_LOG, default info).
    #[arg(
        long,
        global = true,
        default_value = "text",
        env = "METAVEC_LOG_FORMAT"
    )]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(server::ServeArgs),
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("metavec: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => rt.block_on(server::serve(args)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metavec: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
