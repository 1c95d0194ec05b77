//! `narun images list|delete` (Go: `narun list-images`).

use async_nats::jetstream::object_store::ObjectInfo;
use clap::Subcommand;
use serde_json::json;

use super::{
    confirm, fail, fleet, human_bytes, human_time, print_json, print_table, println_safe, rfc3339,
    CliResult, Ctx,
};
use crate::store::{self, binary};

/// `narun images`.
#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Every uploaded binary with its app, tag, platform and digest.
    #[command(alias = "ls")]
    List,
    /// Delete an uploaded binary.
    #[command(alias = "rm")]
    Delete {
        /// Object name (`<app>-<tag>-<os>-<arch>`, see `narun images list`).
        name: String,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Delete even if a deployed spec still uses it.
        #[arg(long)]
        force: bool,
    },
}

/// Run `narun images`.
pub async fn run(ctx: &Ctx, cmd: ImagesCommand) -> CliResult {
    match cmd {
        ImagesCommand::List => list(ctx).await,
        ImagesCommand::Delete { name, yes, force } => delete(ctx, &name, yes, force).await,
    }
}

/// Every live object of an object store by name (None if it does not
/// exist), with the modification time nats.go would report (see
/// [`store::list_objects`]).
pub(crate) async fn list_objects(ctx: &Ctx, bucket: &str) -> CliResult<Option<Vec<ObjectInfo>>> {
    let js = ctx.js().await?;
    let listed = ctx
        .within(&format!("cannot list {bucket}"), async {
            Ok::<_, std::convert::Infallible>(store::list_objects(&js, bucket).await)
        })
        .await?;
    Ok(listed?)
}

fn meta<'a>(info: &'a ObjectInfo, key: &str) -> &'a str {
    info.metadata.get(key).map(String::as_str).unwrap_or("-")
}

async fn list(ctx: &Ctx) -> CliResult {
    let infos = list_objects(ctx, store::APP_BINARIES)
        .await?
        .unwrap_or_default();
    if ctx.json() {
        let docs: Vec<_> = infos
            .iter()
            .map(|i| {
                json!({
                    "object": i.name,
                    "size": i.size,
                    "modified": i.modified.map(rfc3339),
                    "app": i.metadata.get(binary::META_APP_NAME),
                    "tag": i.metadata.get(binary::META_TAG),
                    "os": i.metadata.get(binary::META_OS),
                    "arch": i.metadata.get(binary::META_ARCH),
                    "original_file": i.metadata.get(binary::META_ORIGINAL_FILE),
                    "digest": i.digest,
                })
            })
            .collect();
        return print_json(&docs);
    }
    if infos.is_empty() {
        eprintln!("no binaries uploaded");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = infos
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                human_bytes(i.size as u64),
                i.modified.map(human_time).unwrap_or_else(|| "-".into()),
                meta(i, binary::META_APP_NAME).to_owned(),
                meta(i, binary::META_TAG).to_owned(),
                format!(
                    "{}/{}",
                    meta(i, binary::META_OS),
                    meta(i, binary::META_ARCH)
                ),
                i.digest.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &[
            "OBJECT", "SIZE", "MODIFIED", "APP", "TAG", "PLATFORM", "DIGEST",
        ],
        &rows,
    );
    Ok(())
}

async fn delete(ctx: &Ctx, name: &str, yes: bool, force: bool) -> CliResult {
    let js = ctx.js().await?;
    let Some(bucket) = store::open_object_store(&js, store::APP_BINARIES).await? else {
        fail!("no binary named {name:?}: nothing uploaded yet");
    };
    let Some(info) = super::deploy::existing_info(ctx, &bucket, name).await? else {
        fail!("no binary named {name:?} (see `narun images list`)");
    };
    let (app, tag) = (
        info.metadata.get(binary::META_APP_NAME),
        info.metadata.get(binary::META_TAG),
    );
    if let (Some(app), Some(tag)) = (app, tag) {
        let apps = fleet::load_apps(ctx, &js).await?;
        let in_use = apps
            .get(app)
            .and_then(|e| e.valid())
            .is_some_and(|s| &s.tag == tag);
        if in_use && !force {
            fail!(
                "{name} is the binary of deployed app {app} (tag {tag}): its nodes could not \
                 restart it; deploy another tag or delete the app first (or pass --force)"
            );
        }
    }
    if !confirm(&format!("Delete binary {name}?"), yes)? {
        fail!("cancelled: {name} not deleted");
    }
    ctx.timed(&format!("cannot delete {name}"), || bucket.delete(name))
        .await?;
    if ctx.json() {
        return print_json(&json!({ "object": name, "deleted": true }));
    }
    println_safe(&format!("binary {name} deleted"));
    Ok(())
}
