//! `narun-node`: `narun node` as a binary of its own. It links only the
//! node agent, so the pages of code it maps are about 4 MiB fewer than the
//! multi-call binary's (bench/README.md, "Node agent"); the packaged unit
//! runs it. Same flags, environment and exit statuses as `narun node`.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "narun-node",
    version,
    about = "The narun node agent (`narun node` as a binary of its own)"
)]
struct Cli {
    /// Log format: `text` (journald's native fields under systemd) or `json`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "NARUN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(flatten)]
    node: narun::node::cmd::NodeArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => narun::logging::Format::Text,
        LogFormat::Json => narun::logging::Format::Json,
    };
    narun::logging::init_with(format, "info");
    narun::node::cmd::run(cli.node)
}
