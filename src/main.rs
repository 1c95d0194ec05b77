//! `narun`: one multi-call binary for the CLI and the daemons.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "narun",
    version,
    about = "Ship static binaries to Linux fleets and expose them as HTTP and gRPC APIs over NATS",
    after_help = narun::cli::EXIT_CODES_HELP
)]
struct Cli {
    /// Log format: `text` for people (colours only on a terminal and
    /// without NO_COLOR; under systemd, journald's native fields) or `json`
    /// for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NARUN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP gateway: routes requests to NATS Micro services as BHTTP.
    Gateway {
        /// Gateway configuration (the Go narun-gw `config.yaml` schema).
        #[arg(
            short,
            long,
            env = "NARUN_GATEWAY_CONFIG",
            default_value = "/etc/narun/gateway.yaml"
        )]
        config: PathBuf,
        /// Check the configuration and exit (0 if valid, 78 if not).
        #[arg(long)]
        check: bool,
    },
    /// Run the node agent: apps from NATS as transient systemd units.
    Node(Box<narun::node::cmd::NodeArgs>),
    /// The whole system on this machine: NATS, a node agent, the gateway
    /// and the hello demo, until Ctrl-C (as root: system units; otherwise
    /// your systemd user manager).
    Dev(DevArgs),
    /// Proxy mode's bridge, run by node agents inside a proxy-mode app's
    /// unit: start the app with PORT set, wait until it listens on
    /// 127.0.0.1, then serve its NATS Micro service by forwarding each
    /// request to it.
    #[command(hide = true)]
    Bridge(BridgeArgs),
    #[command(flatten)]
    Manage(Box<narun::cli::Command>),
}

#[derive(clap::Args, Debug)]
struct BridgeArgs {
    /// The app's NATS Micro service name.
    #[arg(long)]
    service: String,
    /// The app's port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The app's command line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn bridge(args: BridgeArgs) -> ExitCode {
    let runtime = match narun::cli::runtime("narun bridge", Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(narun::bridge::run(narun::bridge::BridgeOptions {
        service: args.service,
        port: args.port,
        command: args.command,
    }))
}

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Use this NATS server instead of starting one.
    #[arg(long)]
    nats_url: Option<String>,
    /// Gateway HTTP port on 127.0.0.1 (any free one if taken, or if 0;
    /// the port taken is printed).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// Do not deploy the hello demo.
    #[arg(long)]
    no_demo: bool,
    /// The hello demo binary (default: examples/hello beside this binary).
    #[arg(long)]
    demo_binary: Option<PathBuf>,
    /// Gateway gRPC port on 127.0.0.1 (any free one if taken, or if 0;
    /// the port taken is printed).
    #[arg(long, default_value_t = 50051)]
    grpc_port: u16,
    /// The gRPC hello.v1.Greeter demo binary (default: examples/grpc-hello
    /// beside this binary; the gRPC demo is skipped without it).
    #[arg(long)]
    demo_grpc_binary: Option<PathBuf>,
    /// Exit once the demo answered through the gateway (for scripts).
    #[arg(long)]
    smoke: bool,
}

fn dev(args: DevArgs) -> ExitCode {
    let opts = narun::dev::DevOptions {
        nats_url: args.nats_url,
        http_port: args.http_port,
        demo: !args.no_demo,
        demo_binary: args.demo_binary,
        grpc_port: args.grpc_port,
        demo_grpc_binary: args.demo_grpc_binary,
        smoke: args.smoke,
    };
    let runtime = match narun::cli::runtime("narun dev", None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // `run` must be polled on this (the main) thread: the children it
    // starts die with the thread that started them (PR_SET_PDEATHSIG).
    let result = runtime.block_on(narun::dev::run(opts));
    // Whatever is still running (a task stuck on a dead NATS) does not
    // hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // 128 + SIGINT, as a shell reports a job stopped by Ctrl-C.
        Err(narun::dev::DevError::StoppedAtOnce) => ExitCode::from(130),
        Err(e) => {
            eprintln!("narun dev: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Plain text off a terminal, journald under systemd (narun::logging).
/// LOG_LEVEL (Go narun's variable) or RUST_LOG; default info (daemons) or
/// warn (management commands, -v for more).
fn init_logging(format: LogFormat, default: &str) {
    let format = match format {
        LogFormat::Text => narun::logging::Format::Text,
        LogFormat::Json => narun::logging::Format::Json,
    };
    narun::logging::init_with(format, default);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match &cli.command {
        Command::Manage(c) => c.log_filter(),
        _ => "info",
    };
    match (&cli.command, cli.log_format) {
        // A person's command: its events read like its own messages.
        (Command::Manage(_), LogFormat::Text) => {
            narun::logging::init_with(narun::logging::Format::Command, default_log)
        }
        _ => init_logging(cli.log_format, default_log),
    }
    match cli.command {
        Command::Gateway { config, check } => gateway(config, check),
        Command::Node(args) => narun::node::cmd::run(*args),
        Command::Dev(args) => dev(args),
        Command::Bridge(args) => bridge(args),
        Command::Manage(c) => narun::cli::run(*c, Cli::command),
    }
}

fn gateway(path: PathBuf, check: bool) -> ExitCode {
    ExitCode::from(narun::gateway::main(&path, check))
}
