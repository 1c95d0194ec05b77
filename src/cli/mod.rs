//! The `narun` management commands: thin layers over [`crate::spec`] and
//! [`crate::store`], one file per command group. Each command parses, calls
//! the data model, and prints a table or (`-o json`) JSON.
//!
//! Exit codes ([`EXIT_CODES_HELP`]): 0 success; 1 the operation failed (or
//! was cancelled); 2 usage error (clap); 65 invalid input (spec, name,
//! binary); 69 NATS unreachable, or without JetStream, or older than 2.10.

pub mod apps;
pub mod connection;
pub mod deploy;
pub mod files;
mod fleet;
pub mod gen;
pub mod images;
pub mod init;
pub mod logs;
pub mod nodes;
pub mod secret;

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use async_nats::Client;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::store::{Js, StoreError};

/// sysexits(3) EX_DATAERR: invalid input (spec, name, binary).
pub const EX_DATAERR: u8 = 65;
/// sysexits(3) EX_UNAVAILABLE: NATS unreachable or unusable.
pub const EX_UNAVAILABLE: u8 = 69;

/// The exit codes, for `narun --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success
  1   the operation failed or was cancelled
  2   usage error
  65  invalid input (spec, name, binary)
  69  NATS unreachable, without JetStream, or older than 2.10
  78  invalid gateway configuration (narun gateway)";

/// Options every management command takes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// How to reach NATS (the same options as the node agent's).
    #[command(flatten)]
    pub nats: connection::NatsArgs,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Time allowed to connect to NATS and for each NATS operation.
    #[arg(long, global = true, default_value = "15s", value_parser = crate::duration::parse, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// The tokio runtime of a `narun` command or daemon: `workers` threads
/// (None: one per core). On failure, the error is printed as `program:
/// …` and the exit code to return is given back.
pub fn runtime(program: &str, workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("{program}: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The management commands (flattened into `narun`'s command list). Each
/// carries the [`GlobalArgs`] (`narun apps list --nats-url URL -o json`):
/// they are not `narun`-wide because `narun node` has its own NATS flags.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate a spec, upload the binaries and write the spec.
    Deploy(deploy::DeployArgs),
    /// Deployed apps: desired vs running per node (alias: service).
    #[command(alias = "service")]
    Apps(Group<apps::AppsCommand>),
    /// Uploaded binaries (object store app-binaries).
    Images(Group<images::ImagesCommand>),
    /// Same as `images list` (Go narun name).
    #[command(name = "list-images", hide = true)]
    ListImages(Global),
    /// Shared files for `mounts` (object store narun-files).
    Files(Group<files::FilesCommand>),
    /// Encrypted secrets for `env[].valueFromSecret` (KV narun-secrets).
    #[command(alias = "secrets")]
    Secret(Group<secret::SecretCommand>),
    /// Node agents and their heartbeats.
    Nodes(Group<nodes::NodesCommand>),
    /// Create narun's buckets and streams, or set their replicas.
    Init(init::InitArgs),
    /// Show and follow app logs (retained for 24 h).
    Logs(logs::LogsArgs),
    /// Print a shell completion script.
    Completions(gen::CompletionsArgs),
    /// Write man pages generated from this command line definition.
    #[command(hide = true)]
    Man(gen::ManArgs),
}

/// A command group: the global options and a subcommand.
#[derive(Args, Debug)]
pub struct Group<C: Subcommand> {
    /// Options of every management command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The subcommand.
    #[command(subcommand)]
    pub command: C,
}

/// Only the global options.
#[derive(Args, Debug)]
pub struct Global {
    /// Options of every management command.
    #[command(flatten)]
    pub global: GlobalArgs,
}

impl Command {
    /// The global options, for commands that have them.
    pub fn global(&self) -> Option<&GlobalArgs> {
        Some(match self {
            Command::Deploy(a) => &a.global,
            Command::Apps(g) => &g.global,
            Command::Images(g) => &g.global,
            Command::ListImages(g) => &g.global,
            Command::Files(g) => &g.global,
            Command::Secret(g) => &g.global,
            Command::Nodes(g) => &g.global,
            Command::Init(a) => &a.global,
            Command::Logs(a) => &a.global,
            Command::Completions(_) | Command::Man(_) => return None,
        })
    }

    /// The default log filter (`RUST_LOG` overrides): warnings only, more
    /// with `-v`.
    pub fn log_filter(&self) -> &'static str {
        match self.global().map_or(0, |g| g.verbose) {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    }
}

/// Run `command`; `cli` is the whole `narun` command definition (for
/// completions and man pages).
pub fn run(command: Command, cli: impl FnOnce() -> clap::Command) -> ExitCode {
    let global = match command.global() {
        Some(g) => g.clone(),
        None => {
            let result = match command {
                Command::Completions(a) => gen::completions(a, cli()),
                Command::Man(a) => gen::man(a, cli()),
                _ => unreachable!("every other command has global options"),
            };
            return finish(Output::Table, result);
        }
    };
    let runtime = match runtime("narun", Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let ctx = Ctx::new(global.clone());
    let result = runtime.block_on(async move {
        match command {
            Command::Deploy(a) => deploy::run(&ctx, a).await,
            Command::Apps(g) => apps::run(&ctx, g.command, g.global.clone()).await,
            Command::Images(g) => images::run(&ctx, g.command).await,
            Command::ListImages(_) => images::run(&ctx, images::ImagesCommand::List).await,
            Command::Files(g) => files::run(&ctx, g.command).await,
            Command::Secret(g) => secret::run(&ctx, g.command).await,
            Command::Nodes(g) => nodes::run(&ctx, g.command).await,
            Command::Init(a) => init::run(&ctx, a).await,
            Command::Logs(a) => logs::run(&ctx, a).await,
            Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
        }
    });
    // Do not wait for the client's background tasks (they never end).
    runtime.shutdown_background();
    finish(global.output, result)
}

fn finish(output: Output, result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = error_chain(&e.error);
            if output == Output::Json {
                let mut doc = serde_json::json!({
                    "error": message,
                    "exit_code": e.code,
                });
                if let Some(d) = e.details {
                    doc["details"] = d;
                }
                println_safe(&doc.to_string());
            }
            eprintln!("narun: error: {message}");
            ExitCode::from(e.code)
        }
    }
}

/// The error and its causes, `: `-separated, skipping a cause whose text
/// the message already shows (async-nats errors print their source).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A failed command: the exit code and the error chain.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code.
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
    /// Structured details for `-o json` (spec issues, ...).
    pub details: Option<serde_json::Value>,
}

impl CliError {
    /// Exit 1.
    pub fn failed(e: impl Into<anyhow::Error>) -> Self {
        Self::with_code(1, e)
    }
    /// Exit 65.
    pub fn data(e: impl Into<anyhow::Error>) -> Self {
        Self::with_code(EX_DATAERR, e)
    }
    /// Exit 69.
    pub fn unavailable(e: impl Into<anyhow::Error>) -> Self {
        Self::with_code(EX_UNAVAILABLE, e)
    }
    fn with_code(code: u8, e: impl Into<anyhow::Error>) -> Self {
        CliError {
            code,
            error: e.into(),
            details: None,
        }
    }
    /// Attach JSON details.
    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = Some(d);
        self
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::failed(e)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ServerTooOld { .. } | StoreError::NoJetStream { .. } => {
                CliError::unavailable(e)
            }
            StoreError::Nats { .. } => CliError::failed(e),
        }
    }
}

/// `Result` of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// `anyhow::bail!` with an exit code.
macro_rules! fail {
    (data, $($t:tt)*) => { return Err($crate::cli::CliError::data(anyhow::anyhow!($($t)*))) };
    ($($t:tt)*) => { return Err($crate::cli::CliError::failed(anyhow::anyhow!($($t)*))) };
}
pub(crate) use fail;

/// What a command needs: the options and a lazily connected client.
pub struct Ctx {
    /// The global options.
    pub global: GlobalArgs,
    client: OnceCell<Client>,
}

impl Ctx {
    /// A context for `global`.
    pub fn new(global: GlobalArgs) -> Self {
        Ctx {
            global,
            client: OnceCell::new(),
        }
    }

    /// `-o json`?
    pub fn json(&self) -> bool {
        self.global.output == Output::Json
    }

    /// The NATS client, connected on first use (exit 69 if unreachable).
    pub async fn client(&self) -> CliResult<&Client> {
        self.client
            .get_or_try_init(|| async {
                let g = &self.global;
                let mut opts = g.nats.options("narun-cli");
                opts.connect_timeout = g.timeout;
                match crate::nats::connect_now(&opts).await {
                    Ok(c) => Ok(c),
                    Err(crate::nats::NatsConfigError::Connect(e)) => {
                        Err(CliError::unavailable(anyhow::anyhow!(
                            "cannot reach NATS at {}: {e} (set --nats-url or NATS_URL)",
                            g.nats.nats_url
                        )))
                    }
                    Err(e) => Err(CliError::data(e)),
                }
            })
            .await
    }

    /// JetStream, checked (exit 69 without JetStream or before 2.10); its
    /// calls retry what a cluster makes fail for a moment within
    /// `--timeout`.
    pub async fn js(&self) -> CliResult<Js> {
        let client = self.client().await?;
        let mut js = crate::store::jetstream(client)?.with_patience(self.global.timeout);
        js.set_timeout(self.global.timeout);
        Ok(js)
    }

    /// Run `op` within `--timeout`, naming `what` if it fails. An attempt
    /// that times out or meets a leader election is tried again
    /// ([`crate::store::retry`]): `op` must be safe to repeat.
    pub async fn timed<T, E, F, Fut>(&self, what: &str, op: F) -> CliResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<async_nats::Error>,
    {
        Ok(crate::store::patiently(self.global.timeout, what, op).await?)
    }

    /// Run `fut` within `--timeout`, naming `what` if it fails or runs out;
    /// not retried (for a read that streams: its parts are
    /// [`Ctx::timed`]).
    pub async fn within<T, E>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> CliResult<T>
    where
        E: Into<anyhow::Error>,
    {
        match tokio::time::timeout(self.global.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CliError::failed(e.into().context(what.to_owned()))),
            Err(_) => Err(CliError::failed(anyhow::anyhow!(
                "{what}: no answer from NATS within {:?} (--timeout)",
                self.global.timeout
            ))),
        }
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> CliResult {
    let text = serde_json::to_string_pretty(value).map_err(CliError::failed)?;
    println_safe(&text);
    Ok(())
}

/// Print a line on stdout; a closed pipe (`| head`) ends the process
/// quietly, as ripgrep does.
pub fn println_safe(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").is_err() {
        std::process::exit(0);
    }
}

/// Print aligned columns.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s
    };
    println_safe(&line(headers.to_vec()));
    for row in rows {
        println_safe(&line(row.iter().map(String::as_str).collect()));
    }
}

/// Ask for confirmation unless `yes`: the answer must be `yes`.
pub fn confirm(question: &str, yes: bool) -> CliResult<bool> {
    if yes {
        return Ok(true);
    }
    eprint!("{question} Type 'yes' to confirm: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let stdin = std::io::stdin();
    let read = stdin.lock().read_line(&mut answer);
    if (read.is_err() || answer.is_empty()) && !stdin.is_terminal() {
        eprintln!();
        fail!("no confirmation on stdin: pass -y to confirm without a prompt");
    }
    Ok(answer.trim() == "yes")
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `2025-12-21T19:18:35Z` (seconds, UTC).
pub fn human_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `5s ago`, `3m ago`, `2h ago`, `4d ago`.
pub fn human_age(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// RFC 3339 with nanoseconds (Go's format), for JSON output.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Check an app name given on the command line (exit 65).
pub fn check_app_name(name: &str) -> CliResult {
    if !crate::spec::valid_app_name(name) {
        fail!(
            data,
            "{name:?} is not a valid app name: use ASCII letters, digits, '-' and '_' (at most {}, \
             not starting with '-')",
            crate::spec::MAX_APP_NAME_LEN
        );
    }
    Ok(())
}

/// Check a node id given on the command line (exit 65).
pub fn check_node_id(id: &str) -> CliResult {
    if !crate::spec::valid_node_id(id) {
        fail!(
            data,
            "{id:?} is not a valid node id: use ASCII letters, digits, '-' and '_'"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(50 * 1024 * 1024), "50.0 MiB");
        let t = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(human_time(t), "1970-01-01T00:00:00Z");
        assert_eq!(human_age(t, t + time::Duration::seconds(5)), "5s ago");
        assert_eq!(human_age(t, t + time::Duration::seconds(600)), "10m ago");
        assert_eq!(human_age(t, t + time::Duration::days(3)), "3d ago");
        assert_eq!(crate::duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(crate::duration::parse("2"), Ok(Duration::from_secs(2)));
        assert!(crate::duration::parse("soon").is_err());
    }
}
