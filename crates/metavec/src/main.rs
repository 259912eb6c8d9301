//! `metavec`: the server (`metavec serve`) and the operations CLI.

mod bench;
mod cli;
mod roofline;
mod router;
mod scale;
mod server;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    #[command(flatten)]
    remote: cli::Remote,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve(server::ServeArgs),
    /// Create, list, show and delete collections.
    #[command(subcommand)]
    Collections(cli::CollectionsCmd),
    /// Bulk-load documents from a .npy file [N, M_c, D] over streaming gRPC.
    Load(cli::LoadArgs),
    /// Search with queries from a .npy file [Q, M_q, D].
    Search(cli::SearchArgs),
    /// Show documents by id: payload, and with --vectors their stored vectors.
    Get(cli::docs::GetArgs),
    /// Delete documents by id, or every document a --filter matches.
    Delete(cli::docs::DeleteArgs),
    /// Count documents (all, or those a --filter matches).
    Count(cli::docs::CountArgs),
    /// List document ids in id order, a page at a time (--all for every page).
    Scroll(cli::docs::ScrollArgs),
    /// Write a collection's documents to docs.npy, ids.txt and payloads.jsonl (what `load` reads).
    Export(cli::docs::ExportArgs),
    /// Set (replace or --merge) the payload of documents without resending their vectors.
    SetPayload(cli::docs::SetPayloadArgs),
    /// Seal memtables into segments (one collection, or all).
    Flush { collection: Option<String> },
    /// Per-collection sizes (one collection, or all).
    Stats { collection: Option<String> },
    /// Merge a collection's segments, dropping deleted documents.
    Compact {
        collection: String,
        /// Shrink to budget: keep only the first R vectors per document on disk (a trained r_c).
        #[arg(long)]
        keep_r_c: Option<u32>,
    },
    /// Create, list, delete and restore snapshots.
    #[command(subcommand)]
    Snapshot(cli::SnapshotCmd),
    /// Describe a stopped server's data directory: segments, groups, bytes, HNSW, WAL records.
    Inspect {
        #[arg(long, default_value = "./metavec-data")]
        data_dir: PathBuf,
    },
    /// End-to-end benchmark: ingest a .npy set (or synthetic data) into a temporary engine and
    /// measure every budget against the exact scan; `bench scale` drives a real server as its
    /// collection grows.
    Bench(BenchCmd),
    /// Check every checksum of a stopped server's data directory; non-zero exit on damage.
    Verify {
        #[arg(long, default_value = "./metavec-data")]
        data_dir: PathBuf,
    },
}

/// `metavec bench [ARGS]` (the in-process benchmark), or `metavec bench scale [ARGS]`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchCmd {
    #[command(subcommand)]
    scenario: Option<BenchScenario>,
    #[command(flatten)]
    args: bench::BenchArgs,
}

#[derive(Debug, Subcommand)]
enum BenchScenario {
    /// Resumable scale scenario: start `metavec serve`, stream a seeded synthetic set into it
    /// over gRPC, and at each checkpoint record ingest rate, write amplification, memory, disk,
    /// latency and recall per budget, and recovery after kill -9.
    Scale(Box<scale::ScaleArgs>),
}

fn init_tracing(format: &str, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
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

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let (Command::Serve(args), Some(("serve", m))) = (&mut cli.command, matches.subcommand()) {
        if let Err(e) = args.apply_config_file(m) {
            eprintln!("metavec: config: {e}");
            return std::process::ExitCode::FAILURE;
        }
        if args.print_config {
            let toml = args.to_toml();
            return match cli::write_line(format_args!("{}", toml.trim_end_matches('\n'))) {
                Err(cli::CliError::Failed(e)) => {
                    eprintln!("metavec: {e}");
                    std::process::ExitCode::FAILURE
                }
                Ok(()) | Err(cli::CliError::StdoutClosed) => std::process::ExitCode::SUCCESS,
            };
        }
    }
    init_tracing(&cli.log_format, !matches!(cli.command, Command::Serve(_)));
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
    let r = &cli.remote;
    let result: cli::CliResult = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => server::serve(args)
                .await
                .map_err(|e| cli::CliError::Failed(e.to_string())),
            Command::Collections(cmd) => cli::collections(r, cmd).await,
            Command::Load(a) => cli::load(r, a).await,
            Command::Search(a) => cli::search(r, a).await,
            Command::Get(a) => cli::docs::get(r, a).await,
            Command::Delete(a) => cli::docs::delete(r, a).await,
            Command::Count(a) => cli::docs::count(r, a).await,
            Command::Scroll(a) => cli::docs::scroll(r, a).await,
            Command::Export(a) => cli::docs::export(r, a).await,
            Command::SetPayload(a) => cli::docs::set_payload(r, a).await,
            Command::Flush { collection } => cli::admin(r, cli::AdminOp::Flush(collection)).await,
            Command::Stats { collection } => cli::admin(r, cli::AdminOp::Stats(collection)).await,
            Command::Compact {
                collection,
                keep_r_c,
            } => cli::admin(r, cli::AdminOp::Compact(collection, keep_r_c)).await,
            Command::Snapshot(cmd) => cli::admin(r, cli::AdminOp::Snapshot(cmd)).await,
            Command::Inspect { data_dir } => cli::offline(&data_dir, false, r.json),
            Command::Verify { data_dir } => cli::offline(&data_dir, true, r.json),
            Command::Bench(BenchCmd {
                scenario: Some(BenchScenario::Scale(a)),
                ..
            }) => {
                let json = a.json || r.json;
                scale::run(scale::ScaleArgs { json, ..*a }).await
            }
            Command::Bench(b) => bench::run(b.args),
        }
    });
    match result {
        // A closed stdout (`| head`) is how a reader says it has seen enough.
        Ok(()) | Err(cli::CliError::StdoutClosed) => std::process::ExitCode::SUCCESS,
        Err(cli::CliError::Failed(e)) => {
            eprintln!("metavec: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
