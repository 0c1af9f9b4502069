//! `--watch`: policy folder edits become versions through the same gate as an upload.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Versions, selector};
use crate::decision::Pipeline;

/// What the watcher acts through: the running services, which own it (held weakly, so the
/// watcher ends with them).
pub trait Watched {
    fn pipeline(&self) -> &Pipeline;
    fn versions(&self) -> &Versions;
}

/// `--watch`: checks the policy folders every `interval`; a folder whose texts changed becomes a
/// new version through the same gate as an upload (validate, test, activate). A failing edit is
/// logged and leaves the active version in place; it is not retried until the folder changes
/// again.
///
/// Polling rather than file-system events: the whole folder's digest is what decides anyway, and
/// polling behaves the same on every file system (bind mounts, network shares, editors that
/// replace files) without event-queue limits.
pub fn spawn_watcher<S: Watched + Send + Sync + 'static>(
    services: std::sync::Weak<S>,
    folders: Vec<(String, PathBuf)>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        loop {
            tokio::time::sleep(interval).await;
            let Some(services) = services.upgrade() else {
                return;
            };
            for (store, dir) in &folders {
                let Ok(files) = crate::policy::read_pack_files(dir) else {
                    continue;
                };
                let digest = crate::policy::PolicyDigest::of_files(&files).to_string();
                let active = services
                    .pipeline()
                    .pack_of(selector(store).as_ref())
                    .map(|p| p.digest().to_string());
                let first = seen.insert(store.clone(), digest.clone());
                // On the first look the folder is what was adopted at start (or an older text the
                // API has since replaced): only a change from now on counts.
                if first.is_none()
                    || first.as_deref() == Some(digest.as_str())
                    || active.as_deref() == Some(digest.as_str())
                {
                    continue;
                }
                let result = async {
                    let (version, _) = services
                        .versions()
                        .upload(
                            services.pipeline(),
                            store,
                            files.into_iter().collect(),
                            "watch",
                        )
                        .await?;
                    services
                        .versions()
                        .activate(services.pipeline(), &version.version, "watch")
                        .await
                }
                .await;
                match result {
                    Ok(a) => {
                        tracing::info!(store = %store, version = %a.version.version, digest = %a.version.digest, "policy edit activated")
                    }
                    Err(error) => {
                        tracing::warn!(store = %store, %error, "policy edit refused; the active version stays")
                    }
                }
            }
        }
    })
}
