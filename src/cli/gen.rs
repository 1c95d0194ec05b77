//! `narun completions SHELL` and the hidden `narun man`: generated from the
//! clap definition (clap_complete, clap_mangen).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, CliResult};

/// `narun completions`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  narun completions bash > /etc/bash_completion.d/narun
  narun completions zsh > \"${fpath[1]}/_narun\"
  narun completions fish > ~/.config/fish/completions/narun.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `narun man`.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write narun.1 and one page per command (narun-deploy.1, ...) here;
    /// without it, print narun.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Print the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> CliResult {
    let name = cli.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    write_stdout(&script)
}

/// Write to stdout; a closed pipe is not an error.
fn write_stdout(bytes: &[u8]) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::failed(e)),
        _ => Ok(()),
    }
}

/// Render the man pages.
pub fn man(args: ManArgs, cli: clap::Command) -> CliResult {
    let Some(dir) = args.out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cli)
            .render(&mut page)
            .map_err(CliError::failed)?;
        return write_stdout(&page);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    clap_mangen::generate_to(cli, &dir)
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot write man pages: {e}")))?;
    Ok(())
}
