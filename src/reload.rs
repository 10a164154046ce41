//! Reload (docs/REFERENCE.md#reload): a file watch on `zones_dir`, SIGHUP and
//! `POST /reload` all come here. The new snapshot is built off the query
//! path (a blocking thread), checked whole, and swapped in with one atomic
//! pointer store; queries in flight finish on the snapshot they loaded.
//! Invalid data is rejected whole: the old data keeps serving, every problem
//! is logged as `path:line:column: message`, and the failure is counted and
//! shown by `/readyz`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tracing::{debug, error, info, warn};

use crate::config::Diagnostics;
use crate::metrics::DataCounts;
use crate::metrics::ResultLabels;
use crate::state::{Failure, Shared};

/// Settle time: the tree must be quiet this long after the last file
/// event before it is loaded. Editors that rewrite a file in place do it
/// in several steps, and `git pull` touches many files at once; a load in
/// between would serve a half-written file.
pub const DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest a stream of events can delay a reload (a writer that never
/// pauses is loaded anyway, at this bound).
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Longest a load may take before it is abandoned: the files are refused
/// before they could block (FIFOs, devices), so only something unforeseen
/// (a hung network file system) gets here; the old data keeps serving.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Loads the zones directory anew and swaps it in; reloads are serialised.
pub async fn reload(shared: &Arc<Shared>, trigger: &'static str) -> Result<u64, Diagnostics> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let next_gen = shared.snapshot.load().generation + 1;
    let cfg = shared.config.clone();
    let started = Instant::now();
    let load = tokio::task::spawn_blocking(move || crate::loader::load(&cfg, next_gen));
    let failed = |why: String| {
        let mut d = Diagnostics::new();
        d.push(&shared.config.zones_dir, crate::config::Pos::UNKNOWN, why);
        Err(d)
    };
    let built = match tokio::time::timeout(LOAD_TIMEOUT, load).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => failed(format!("loader thread failed: {e}")),
        // The thread cannot be stopped; its result, if it ever comes, is dropped.
        Err(_) => failed(format!("loading took over {}s and was abandoned; is a file on a hung file system?", LOAD_TIMEOUT.as_secs())),
    };
    let ms = started.elapsed().as_millis() as u64;
    match built {
        Ok(snap) => {
            // Policy hit counters exist (at 0) before the data serves.
            snap.policy.register(&shared.metrics.policy_hits);
            for w in &snap.policy.warnings {
                tracing::warn!(target: "pzdns::reload", "{w}");
            }
            let snap = Arc::new(snap);
            let old = shared.snapshot.swap(snap.clone());
            // Freeing a large snapshot takes milliseconds: not on a worker
            // thread that answers queries. (Queries still holding it keep it
            // alive until they finish; the last one frees it.)
            tokio::task::spawn_blocking(move || drop(old));
            shared.metrics.set_data(DataCounts {
                zones: snap.stats.zones,
                records: snap.stats.records,
                vpcs: snap.stats.vpcs,
                endpoints: snap.stats.endpoints,
                generation: snap.generation,
            });
            shared.metrics.reloads.get_or_create(&ResultLabels { result: "success" }).inc();
            let dir = shared.config.zones_dir.clone();
            let commit = tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || git_commit(&dir)))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            shared.metrics.set_commit(commit.as_deref());
            {
                let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
                st.generation = next_gen;
                st.loaded_at = Some(SystemTime::now());
                st.load_ms = ms;
                st.git_commit = commit.clone();
                st.last_failure = None;
            }
            let s = snap.stats;
            info!(
                generation = next_gen,
                trigger,
                zones = s.zones,
                records = s.records,
                vpcs = s.vpcs,
                endpoints = s.endpoints,
                ms,
                commit = commit.as_deref().unwrap_or("-"),
                "data loaded"
            );
            Ok(next_gen)
        }
        Err(diags) => {
            for d in diags.items() {
                error!("{d}");
            }
            shared.metrics.reloads.get_or_create(&ResultLabels { result: "failure" }).inc();
            shared.metrics.set_reload_failed();
            let problems: Vec<String> = diags.items().iter().map(|d| d.to_string()).collect();
            shared.status.lock().unwrap_or_else(|p| p.into_inner()).last_failure =
                Some(Failure { at: SystemTime::now(), trigger, problems });
            if next_gen == 1 {
                error!(problems = diags.len(), "the data cannot be loaded");
            } else {
                error!(problems = diags.len(), trigger, in_force = next_gen - 1, "load rejected: the data in force keeps serving");
            }
            Err(diags)
        }
    }
}

/// The commit checked out in the git work tree holding `dir`, read from
/// `.git` directly (no git binary needed in the container). Each file is
/// read as the zone files are: regular files only, bounded, never blocking
/// on a FIFO.
pub fn git_commit(dir: &Path) -> Option<String> {
    let files = crate::config::files::FileAccess::anywhere().with_max_bytes(4 << 20);
    let read = |p: &Path| files.read_string(p).ok();
    let dir = std::fs::canonicalize(dir).ok()?;
    let mut cur = Some(dir.as_path());
    while let Some(d) = cur {
        let dotgit = d.join(".git");
        if dotgit.exists() {
            let gitdir = if dotgit.is_file() {
                // A linked worktree (git-sync uses them): "gitdir: <path>".
                let text = read(&dotgit)?;
                let p = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
                if p.is_absolute() { p } else { d.join(p) }
            } else {
                dotgit
            };
            let head = read(&gitdir.join("HEAD"))?;
            let head = head.trim();
            let Some(r) = head.strip_prefix("ref:") else { return Some(head.to_string()) };
            let r = r.trim();
            // Refs live in the common dir for worktrees.
            let common = read(&gitdir.join("commondir")).map(|c| gitdir.join(c.trim())).unwrap_or(gitdir.clone());
            for base in [&gitdir, &common] {
                if let Some(c) = read(&base.join(r)) {
                    return Some(c.trim().to_string());
                }
                if let Some(packed) = read(&base.join("packed-refs")) {
                    for line in packed.lines() {
                        if let Some((sha, name)) = line.split_once(' ')
                            && name == r
                        {
                            return Some(sha.to_string());
                        }
                    }
                }
            }
            return None;
        }
        cur = d.parent();
    }
    None
}

/// Watches `zones_dir` (recursively) and its parent (to see a symlink
/// swapped over it, as git-sync does), and reloads after the events settle.
/// The watching task owns the watcher; returns false if nothing could be
/// watched (then only SIGHUP and `POST /reload` reload).
pub fn spawn_watcher(shared: Arc<Shared>) -> bool {
    let dir = shared.config.zones_dir.clone();
    let abs = std::path::absolute(&dir).unwrap_or(dir.clone());
    let parent = abs.parent().map(Path::to_path_buf);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let name = abs.file_name().map(|n| n.to_os_string());
    let watch_dir = abs.clone();
    let watch_parent = parent.clone();
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        // In the parent, only the zones directory's own entry matters.
        let relevant = ev.paths.iter().any(|p| {
            p.starts_with(&watch_dir) || (p.parent() == watch_parent.as_deref() && p.file_name().map(|n| n.to_os_string()) == name)
        });
        if relevant {
            let _ = tx.try_send(());
        }
    }) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch the zones directory; reload with SIGHUP or POST /reload");
            return false;
        }
    };
    if let Some(p) = &parent
        && let Err(e) = watcher.watch(p, RecursiveMode::NonRecursive)
    {
        debug!(error = %e, dir = %p.display(), "cannot watch the parent of the zones directory");
    }
    if let Err(e) = watcher.watch(&abs, RecursiveMode::Recursive) {
        warn!(error = %e, dir = %abs.display(), "cannot watch the zones directory; reload with SIGHUP or POST /reload");
        return false;
    }
    let handle = std::sync::Mutex::new(watcher);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let first = Instant::now();
            // Debounce: wait for a quiet spell, but not forever.
            loop {
                let left = MAX_DELAY.saturating_sub(first.elapsed());
                if left.is_zero() {
                    break;
                }
                match tokio::time::timeout(DEBOUNCE.min(left), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            // A swapped symlink leaves the old watch on a deleted tree: watch anew.
            if let Ok(mut w) = handle.lock() {
                let _ = w.unwatch(&abs);
                let _ = w.watch(&abs, RecursiveMode::Recursive);
            }
            let _ = reload(&shared, "watch").await;
        }
    });
    true
}
