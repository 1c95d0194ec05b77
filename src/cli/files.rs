//! `narun files add|list|delete`: shared files for `mounts`.

use std::path::PathBuf;

use async_nats::jetstream::object_store::ObjectMetadata;
use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::{
    confirm, fail, fleet, human_bytes, human_time, print_json, print_table, println_safe, rfc3339,
    CliError, CliResult, Ctx,
};
use crate::spec;
use crate::store::{self, binary};

/// `narun files`.
#[derive(Subcommand, Debug)]
pub enum FilesCommand {
    /// Upload (or replace) a file that specs mount with `source.objectStore: NAME`.
    Add {
        /// The file's name in the store (no '/').
        name: String,
        /// The local file.
        path: PathBuf,
    },
    /// Every shared file.
    #[command(alias = "ls")]
    List,
    /// Delete a shared file.
    #[command(alias = "rm")]
    Delete {
        /// The file's name in the store.
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Delete even if a deployed spec mounts it.
        #[arg(long)]
        force: bool,
    },
}

/// Run `narun files`.
pub async fn run(ctx: &Ctx, cmd: FilesCommand) -> CliResult {
    match cmd {
        FilesCommand::Add { name, path } => add(ctx, &name, &path).await,
        FilesCommand::List => list(ctx).await,
        FilesCommand::Delete { name, yes, force } => delete(ctx, &name, yes, force).await,
    }
}

fn check_name(name: &str) -> CliResult {
    if !spec::valid_file_name(name) {
        fail!(
            data,
            "{name:?} is not a valid file name: not empty, no '/', no control characters, at \
             most 255 bytes"
        );
    }
    Ok(())
}

/// Upload `path` as `name`: streamed in chunks (any size; never held in
/// memory). Only a regular file: a device (`/dev/zero`) or a FIFO has no
/// size to check the upload against.
async fn add(ctx: &Ctx, name: &str, path: &PathBuf) -> CliResult {
    check_name(name)?;
    let open_err = |e: std::io::Error| CliError::data(anyhow::anyhow!("{}: {e}", path.display()));
    // Checked before it is opened (opening a FIFO would wait for a
    // writer), then the open file itself (the path may have changed).
    if !std::fs::metadata(path).map_err(open_err)?.is_file() {
        fail!(data, "{}: not a regular file", path.display());
    }
    let file = tokio::fs::File::open(path).await.map_err(open_err)?;
    let meta = file.metadata().await.map_err(open_err)?;
    if !meta.is_file() {
        fail!(data, "{}: not a regular file", path.display());
    }
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let js = ctx.js().await?;
    let bucket = store::ensure_object_store(&js, store::FILES).await?;
    // A file that grows while it is read stops one byte past its size (and
    // fails the size check below).
    let mut file = tokio::io::AsyncReadExt::take(file, meta.len().saturating_add(1));
    let now = OffsetDateTime::now_utc();
    let object = ObjectMetadata {
        name: name.to_owned(),
        description: Some(format!("Shared file '{name}' uploaded from '{base}'")),
        metadata: [
            (binary::FILE_META_ORIGINAL_FILENAME.to_owned(), base.clone()),
            (
                binary::FILE_META_UPLOAD_TIMESTAMP.to_owned(),
                super::human_time(now),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let info = bucket
        .put(object, &mut file)
        .await
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot upload {name}: {e}")))?;
    if info.size as u64 != meta.len() {
        fail!(
            "{} changed while it was uploaded ({} bytes, then {}): add it again",
            path.display(),
            meta.len(),
            info.size
        );
    }
    if ctx.json() {
        return print_json(&json!({
            "name": name, "size": info.size, "digest": info.digest, "original_filename": base,
        }));
    }
    println_safe(&format!(
        "file {name} uploaded ({}, {})",
        human_bytes(info.size as u64),
        info.digest.unwrap_or_default()
    ));
    Ok(())
}

async fn list(ctx: &Ctx) -> CliResult {
    let infos = super::images::list_objects(ctx, store::FILES)
        .await?
        .unwrap_or_default();
    if ctx.json() {
        let docs: Vec<_> = infos
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "size": i.size,
                    "modified": i.modified.map(rfc3339),
                    "original_filename": i.metadata.get(binary::FILE_META_ORIGINAL_FILENAME),
                    "digest": i.digest,
                })
            })
            .collect();
        return print_json(&docs);
    }
    if infos.is_empty() {
        eprintln!("no shared files");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                human_bytes(i.size as u64),
                i.modified.map(human_time).unwrap_or_else(|| "-".into()),
                i.metadata
                    .get(binary::FILE_META_ORIGINAL_FILENAME)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                i.digest.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["NAME", "SIZE", "MODIFIED", "ORIGINAL FILENAME", "DIGEST"],
        &rows,
    );
    Ok(())
}

async fn delete(ctx: &Ctx, name: &str, yes: bool, force: bool) -> CliResult {
    check_name(name)?;
    let js = ctx.js().await?;
    let Some(bucket) = store::open_object_store(&js, store::FILES).await? else {
        fail!("no file named {name:?}: no file uploaded yet");
    };
    if super::deploy::existing_info(ctx, &bucket, name)
        .await?
        .is_none()
    {
        fail!("no file named {name:?} (see `narun files list`)");
    }
    let users: Vec<String> = fleet::load_apps(ctx, &js)
        .await?
        .into_iter()
        .filter(|(_, e)| {
            e.valid()
                .is_some_and(|s| s.mounts.iter().any(|m| m.source.object_store == name))
        })
        .map(|(app, _)| app)
        .collect();
    if !users.is_empty() && !force {
        fail!(
            "file {name} is mounted by {}: their instances could not start again (pass --force \
             to delete anyway)",
            users.join(", ")
        );
    }
    if !confirm(&format!("Delete file {name}?"), yes)? {
        fail!("cancelled: {name} not deleted");
    }
    ctx.timed(&format!("cannot delete {name}"), || bucket.delete(name))
        .await?;
    if ctx.json() {
        return print_json(&json!({ "name": name, "deleted": true }));
    }
    println_safe(&format!("file {name} deleted"));
    Ok(())
}
