//! `narun-gateway`: `narun gateway` as a binary of its own. It links only
//! the gateway, so the pages of code it maps are a third of the multi-call
//! binary's (bench/README.md, peak RSS); the packaged unit runs it.
//!
//!     narun-gateway [--config PATH] [--check] [--log-format text|json]
//!
//! The same options, environment (`NARUN_GATEWAY_CONFIG`,
//! `NARUN_LOG_FORMAT`, `LOG_LEVEL`/`RUST_LOG`) and exit statuses as
//! `narun gateway`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: narun-gateway [--config PATH] [--check] [--log-format text|json]\n\
(the same as `narun gateway`: see narun-gateway(8))";

fn main() -> ExitCode {
    let mut config = std::env::var_os("NARUN_GATEWAY_CONFIG")
        .map_or_else(|| PathBuf::from("/etc/narun/gateway.yaml"), PathBuf::from);
    let mut check = false;
    let mut format = std::env::var("NARUN_LOG_FORMAT").unwrap_or_else(|_| "text".into());
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| match inline
            .clone()
            .or_else(|| args.next().map(|v| v.to_string_lossy().into_owned()))
        {
            Some(v) => Ok(v),
            None => Err(format!("narun-gateway: {name} needs a value\n{USAGE}")),
        };
        let parsed = match flag.as_str() {
            "-c" | "--config" => value("--config").map(|v| config = PathBuf::from(v)),
            "--check" => {
                check = true;
                Ok(())
            }
            "--log-format" => value("--log-format").map(|v| format = v),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("narun-gateway {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => Err(format!(
                "narun-gateway: unknown argument {other:?}\n{USAGE}"
            )),
        };
        if let Err(e) = parsed {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let format = match format.as_str() {
        "text" => narun::logging::Format::Text,
        "json" => narun::logging::Format::Json,
        other => {
            eprintln!("narun-gateway: --log-format {other:?}: text or json\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    narun::logging::init_with(format, "info");
    ExitCode::from(narun::gateway::main(&config, check))
}
