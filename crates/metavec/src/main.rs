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
    /// Log format: "text" or "json". The level comes from RUST_LOG: a bare level (`debug`) is
    /// metavec's own crates' (others log warnings); `h2=debug,metavec=trace` is taken as is.
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
    Flush {
        /// Collection to flush (default: every collection).
        collection: Option<String>,
    },
    /// Per-collection sizes (one collection, or all).
    Stats {
        /// Collection to describe (default: every collection).
        collection: Option<String>,
    },
    /// Merge a collection's segments, dropping deleted documents.
    Compact {
        /// Collection to compact.
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
        /// The data directory of a stopped server.
        #[arg(long, default_value = "./metavec-data")]
        data_dir: PathBuf,
    },
    /// End-to-end benchmark: ingest a .npy set (or synthetic data) into a temporary engine and
    /// measure every budget against the exact scan; `bench scale` drives a real server as its
    /// collection grows.
    Bench(BenchCmd),
    /// Check every checksum of a stopped server's data directory; non-zero exit on damage.
    Verify {
        /// The data directory of a stopped server.
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

/// The log filter: RUST_LOG as given when it names targets (`h2=debug,metavec=trace`); a bare
/// level (`RUST_LOG=debug`) or none (info for `serve`, warn for the CLI) applies to metavec's own
/// crates only, every other crate logging warnings and errors (at debug, h2 would log every frame
/// and sled its internals).
fn log_filter(rust_log: Option<&str>, quiet: bool) -> String {
    let ours =
        |level: &str| format!("warn,metavec={level},metavec_core={level},metavec_api={level}");
    match rust_log.map(str::trim) {
        None | Some("") => ours(if quiet { "warn" } else { "info" }),
        Some(l)
            if ["trace", "debug", "info", "warn", "error", "off"]
                .contains(&l.to_ascii_lowercase().as_str()) =>
        {
            ours(l)
        }
        Some(spec) => spec.to_string(),
    }
}

fn init_tracing(format: &str, quiet: bool) {
    let spec = log_filter(std::env::var("RUST_LOG").ok().as_deref(), quiet);
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("metavec: RUST_LOG {spec:?} is not a filter ({e}); logging at the default");
        tracing_subscriber::EnvFilter::new(log_filter(None, quiet))
    });
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

/// The command line, with the client-only flags (`--addr`, `--auth-key`, `--tls-ca`: global so
/// they may come before or after a client command) hidden where they mean nothing: under
/// `serve`, the offline `inspect` / `verify` and the in-process `bench`.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for sub in ["serve", "inspect", "verify", "bench"] {
        // A subcommand's own argument of the same id stops the global one from being
        // propagated into it: these hidden stand-ins take its place (and its value, if given).
        cmd = cmd.mut_subcommand(sub, |mut s| {
            for (id, long) in cli::CLIENT_FLAGS {
                s = s.arg(clap::Arg::new(id).long(long).hide(true));
            }
            s
        });
    }
    cmd
}

fn main() -> std::process::ExitCode {
    let matches = command().get_matches();
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

#[cfg(test)]
mod tests {
    /// Every flag and positional argument a user can see says what it is in `--help`.
    #[test]
    fn every_visible_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::command(), "metavec", &mut missing);
        assert!(missing.is_empty(), "no --help text: {missing:#?}");
    }

    #[test]
    fn a_bare_rust_log_level_is_metavec_s_own() {
        use super::log_filter;
        assert_eq!(
            log_filter(Some("debug"), false),
            "warn,metavec=debug,metavec_core=debug,metavec_api=debug"
        );
        assert_eq!(
            log_filter(None, false),
            "warn,metavec=info,metavec_core=info,metavec_api=info"
        );
        assert_eq!(
            log_filter(None, true),
            "warn,metavec=warn,metavec_core=warn,metavec_api=warn"
        );
        assert_eq!(
            log_filter(Some("h2=debug,metavec=trace"), false),
            "h2=debug,metavec=trace"
        );
    }

    /// `serve` and the offline commands do not list the client's connection flags.
    #[test]
    fn client_flags_are_hidden_where_they_mean_nothing() {
        let mut cmd = super::command();
        cmd.build();
        for sub in ["serve", "inspect", "verify", "bench"] {
            let s = cmd.find_subcommand(sub).unwrap();
            for (id, _) in super::cli::CLIENT_FLAGS {
                assert!(
                    s.get_arguments()
                        .all(|a| a.get_id() != id || a.is_hide_set()),
                    "{sub} lists --{id}"
                );
            }
        }
        let search = cmd.find_subcommand("search").unwrap();
        assert!(search
            .get_arguments()
            .any(|a| a.get_id() == "addr" && !a.is_hide_set()));
    }
}
