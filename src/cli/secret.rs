//! `narun secret set|list|delete|keygen`: secrets encrypted with the cluster
//! master key (AES-256-GCM, Go compatible, see [`crate::store::secret`]).
//!
//! The master key is read from `--master-key-file` / `NARUN_MASTER_KEY_FILE`
//! (or Go's `NARUN_MASTER_KEY_PATH` / `NARUN_MASTER_KEY`), never from argv.
//! The value may come from argv (visible to every user in /proc and `ps`,
//! and kept in shell history), `--from-file`, or stdin (preferred).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    confirm, fail, fleet, human_time, print_json, print_table, println_safe, rfc3339, CliError,
    CliResult, Ctx,
};
use crate::store::{self, MasterKey, StoredSecret};
use crate::{limits, spec};

/// Where the master key comes from.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// File holding the base64 master key (32 bytes; `narun secret keygen`).
    #[arg(long, env = "NARUN_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

/// `narun secret`.
#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Encrypt and store a secret (create or replace).
    #[command(after_help = "\
The value is read, in order of preference, from stdin (`narun secret set DB <
file`, or typed; one trailing newline is dropped), from --from-file (bytes
as is), or from the VALUE argument, which every local user can read in
/proc/<pid>/cmdline while the command runs, and which your shell history
keeps.")]
    Set {
        /// Secret name (what `env[].valueFromSecret` refers to).
        name: String,
        /// The value (prefer stdin or --from-file: argv is visible in /proc).
        #[arg(conflicts_with = "from_file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// A note shown by `narun secret list`.
        #[arg(long, alias = "desc", default_value = "")]
        description: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Secret names (values are never shown).
    #[command(alias = "ls")]
    List,
    /// Delete a secret.
    #[command(alias = "rm")]
    Delete {
        /// Secret name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Delete even if a deployed spec uses it.
        #[arg(long)]
        force: bool,
    },
    /// Generate a new master key.
    Keygen {
        /// Write it to this file (created with mode 0600, never overwritten)
        /// instead of stdout.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Run `narun secret`.
pub async fn run(ctx: &Ctx, cmd: SecretCommand) -> CliResult {
    match cmd {
        SecretCommand::Set {
            name,
            value,
            from_file,
            description,
            key,
        } => {
            check_name(&name)?;
            let key = master_key(&key)?;
            let value = read_value(value, from_file.as_deref())?;
            set(ctx, &name, &value, &description, &key).await
        }
        SecretCommand::List => list(ctx).await,
        SecretCommand::Delete { name, yes, force } => delete(ctx, &name, yes, force).await,
        SecretCommand::Keygen { file } => keygen(ctx, file.as_deref()),
    }
}

fn check_name(name: &str) -> CliResult {
    if !spec::valid_secret_name(name) {
        fail!(
            data,
            "{name:?} is not a valid secret name: ASCII letters, digits, '-', '/', '_', '=', '.' \
             (not starting or ending with '.')"
        );
    }
    Ok(())
}

/// The master key: the file option, else Go's variables.
pub fn master_key(args: &KeyArgs) -> CliResult<MasterKey> {
    let from_file = |path: &Path| {
        warn_if_readable(path);
        MasterKey::from_file(path).map_err(CliError::data)
    };
    if let Some(path) = &args.master_key_file {
        return from_file(path);
    }
    if let Some(path) = std::env::var_os("NARUN_MASTER_KEY_PATH").filter(|p| !p.is_empty()) {
        return from_file(Path::new(&path));
    }
    if let Ok(text) = std::env::var("NARUN_MASTER_KEY") {
        let text = Zeroizing::new(text);
        if !text.is_empty() {
            return MasterKey::from_base64(&text).map_err(CliError::data);
        }
    }
    fail!(
        data,
        "the master key is required: --master-key-file FILE or NARUN_MASTER_KEY_FILE (create one \
         with `narun secret keygen --file FILE`)"
    )
}

fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o004 != 0 {
            eprintln!(
                "narun: warning: master key file {} is readable by every user: chmod 600 it",
                path.display()
            );
        }
    }
}

/// The value, from argv, a file, or stdin: at most
/// [`limits::MAX_SECRET_BYTES`] (read no further, so `--from-file
/// /dev/zero` fails at once).
fn read_value(value: Option<String>, from_file: Option<&Path>) -> CliResult<Zeroizing<Vec<u8>>> {
    const WHAT: &str = "a secret value";
    let max = limits::MAX_SECRET_BYTES;
    let bytes = if let Some(v) = value {
        let v = Zeroizing::new(v.into_bytes());
        if v.len() > max {
            return Err(CliError::data(anyhow::anyhow!(
                "the value is {}",
                limits::too_large(max, WHAT)
            )));
        }
        v
    } else if let Some(path) = from_file {
        std::fs::File::open(path)
            .and_then(|f| read_secret(f, max + 1))
            .and_then(|buf| {
                if buf.len() > max {
                    Err(limits::too_large(max, WHAT))
                } else {
                    Ok(buf)
                }
            })
            .map_err(|e| CliError::data(anyhow::anyhow!("cannot read {}: {e}", path.display())))?
    } else {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprintln!("Reading the secret value from stdin (end with Ctrl-D):");
        }
        // Two more bytes for a trailing "\r\n" (dropped), one more to
        // tell a value that is too large.
        let mut buf = read_secret(stdin.lock(), max + 3)
            .map_err(|e| CliError::data(anyhow::anyhow!("cannot read stdin: {e}")))?;
        if buf.ends_with(b"\n") {
            buf.pop();
            if buf.ends_with(b"\r") {
                buf.pop();
            }
        }
        if buf.is_empty() {
            fail!(
                data,
                "no value on stdin: pipe the value in, or use --from-file"
            );
        }
        if buf.len() > max {
            return Err(CliError::data(anyhow::anyhow!(
                "cannot read stdin: {}",
                limits::too_large(max, WHAT)
            )));
        }
        buf
    };
    if bytes.contains(&0) {
        fail!(
            data,
            "the value contains a NUL byte, which an environment variable cannot hold"
        );
    }
    Ok(bytes)
}

/// At most `limit` bytes of `reader`, in a buffer allocated once (a
/// reallocation would leave a copy of the secret behind, not zeroized).
fn read_secret(reader: impl Read, limit: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(limit));
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

async fn set(ctx: &Ctx, name: &str, value: &[u8], description: &str, key: &MasterKey) -> CliResult {
    let js = ctx.js().await?;
    let kv = store::ensure_kv(&js, store::SECRETS).await?;
    let previous = ctx
        .timed(&format!("cannot read {}/{name}", store::SECRETS), || {
            kv.get(name)
        })
        .await?
        .and_then(|v| serde_json::from_slice::<StoredSecret>(&v).ok());
    let now = OffsetDateTime::now_utc();
    let sealed = StoredSecret::seal(key, name, value, description, now, previous.as_ref())
        .map_err(CliError::failed)?;
    let doc = serde_json::to_vec(&sealed).map_err(CliError::failed)?;
    ctx.timed(&format!("cannot write {}/{name}", store::SECRETS), || {
        kv.put(name, doc.clone().into())
    })
    .await?;
    let created = previous.is_none();
    if ctx.json() {
        return print_json(&json!({
            "name": name,
            "created": created,
            "created_at": rfc3339(sealed.created_at),
            "updated_at": rfc3339(sealed.updated_at),
        }));
    }
    println_safe(&format!(
        "secret {name} {}",
        if created { "created" } else { "updated" }
    ));
    Ok(())
}

async fn list(ctx: &Ctx) -> CliResult {
    let js = ctx.js().await?;
    let mut secrets = Vec::new();
    if let Some(kv) = store::open_kv(&js, store::SECRETS).await? {
        let mut names = fleet::keys(ctx, &kv, store::SECRETS).await?;
        names.sort();
        for name in names {
            let doc = ctx
                .timed(&format!("cannot read {}/{name}", store::SECRETS), || {
                    kv.get(&name)
                })
                .await?;
            let stored = doc.and_then(|v| serde_json::from_slice::<StoredSecret>(&v).ok());
            secrets.push((name, stored));
        }
    }
    if ctx.json() {
        let docs: Vec<_> = secrets
            .iter()
            .map(|(name, s)| {
                json!({
                    "name": name,
                    "description": s.as_ref().map(|s| s.description.clone()),
                    "created_at": s.as_ref().map(|s| rfc3339(s.created_at)),
                    "updated_at": s.as_ref().map(|s| rfc3339(s.updated_at)),
                })
            })
            .collect();
        return print_json(&docs);
    }
    if secrets.is_empty() {
        eprintln!("no secrets stored");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|(name, s)| match s {
            Some(s) => vec![
                name.clone(),
                human_time(s.updated_at),
                s.description.clone(),
            ],
            None => vec![name.clone(), "-".into(), "(unreadable)".into()],
        })
        .collect();
    print_table(&["SECRET NAME", "UPDATED", "DESCRIPTION"], &rows);
    Ok(())
}

async fn delete(ctx: &Ctx, name: &str, yes: bool, force: bool) -> CliResult {
    check_name(name)?;
    let js = ctx.js().await?;
    let Some(kv) = store::open_kv(&js, store::SECRETS).await? else {
        fail!("unknown secret {name:?}: no secret stored yet");
    };
    let exists = ctx
        .timed(&format!("cannot read {}/{name}", store::SECRETS), || {
            kv.get(name)
        })
        .await?
        .is_some();
    if !exists {
        fail!("unknown secret {name:?} (see `narun secret list`)");
    }
    let users: Vec<String> = fleet::load_apps(ctx, &js)
        .await?
        .into_iter()
        .filter(|(_, e)| {
            e.valid().is_some_and(|s| {
                s.env.iter().any(|v| v.value_from_secret == name)
                    || s.secrets.iter().any(|f| f.name == name)
            })
        })
        .map(|(app, _)| app)
        .collect();
    if !users.is_empty() && !force {
        fail!(
            "secret {name} is used by {}: their instances could not start again (pass --force to \
             delete anyway)",
            users.join(", ")
        );
    }
    if !confirm(&format!("Delete secret {name}?"), yes)? {
        fail!("cancelled: {name} not deleted");
    }
    ctx.timed(&format!("cannot delete {}/{name}", store::SECRETS), || {
        kv.purge(name)
    })
    .await?;
    if ctx.json() {
        return print_json(&json!({ "name": name, "deleted": true }));
    }
    println_safe(&format!("secret {name} deleted"));
    Ok(())
}

fn keygen(ctx: &Ctx, file: Option<&Path>) -> CliResult {
    let key = MasterKey::generate();
    let text = key.to_base64();
    let Some(path) = file else {
        println_safe(&text);
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot create {}: {e}", path.display())))?;
    f.write_all(format!("{}\n", &*text).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    if ctx.json() {
        return print_json(&json!({ "file": path }));
    }
    println_safe(&format!(
        "master key written to {} (mode 0600): give it to every node agent and operator",
        path.display()
    ));
    Ok(())
}
