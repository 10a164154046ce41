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

use crate::config::{Diagnostics, ReloadPriority, ServerConfig};
use crate::metrics::DataCounts;
use crate::metrics::ResultLabels;
use crate::state::{Failure, Shared, yield_to_queries};

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

/// Reads the configuration file and the zones directory anew and swaps
/// them in together; reloads are serialised.
pub async fn reload(shared: &Arc<Shared>, trigger: &'static str) -> Result<u64, Diagnostics> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let next_gen = shared.snapshot.load().generation + 1;
    let running = shared.config.load_full();
    let started = Instant::now();
    debug!(trigger, "reload started");
    let load = {
        let (shared, running) = (shared.clone(), running.clone());
        tokio::task::spawn_blocking(move || {
            let (cfg, restart) = reread_config(&shared, &running)?;
            let prev = shared.snapshot.load_full();
            // Reloads are serialised: the state is taken and put back.
            let mut inc = std::mem::take(&mut *shared.incremental.lock().unwrap_or_else(|p| p.into_inner()));
            let load = || {
                let r = crate::loader::load_incremental(&cfg, next_gen, Some(&prev), &mut inc);
                (r, inc)
            };
            // The first load has every core; a reload, `reload.threads`.
            let (loaded, inc) = match (trigger, reload_pool(&shared, &cfg)) {
                ("start", _) | (_, None) => load(),
                (_, Some(pool)) => pool.install(load),
            };
            *shared.incremental.lock().unwrap_or_else(|p| p.into_inner()) = inc;
            let (snap, reuse) = loaded?;
            let gone = zones_gone(&prev, &snap);
            Ok((cfg, restart, snap, reuse, gone))
        })
    };
    let failed = |why: String| {
        let mut d = Diagnostics::new();
        d.push(&running.zones_dir, crate::config::Pos::UNKNOWN, why);
        Err(d)
    };
    let built = match tokio::time::timeout(LOAD_TIMEOUT, load).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => failed(format!("loader thread failed: {e}")),
        // The thread cannot be stopped; its result, if it ever comes, is dropped.
        Err(_) => failed(format!(
            "loading took over {}s and was abandoned; is a file on a hung file system?{}",
            LOAD_TIMEOUT.as_secs(),
            match running.reload_priority {
                ReloadPriority::Idle =>
                    " Or are the CPUs saturated? Reload threads at `reload.priority: idle` wait for idle CPU time; `low` keeps them a share",
                ReloadPriority::Low => "",
            }
        )),
    };
    let ms = started.elapsed().as_millis() as u64;
    match built {
        Ok((cfg, restart_needed, snap, reuse, gone)) => {
            // Policy hit counters exist (at 0) before the data serves.
            snap.policy.register(&shared.metrics.policy_hits);
            for w in &snap.policy.warnings {
                tracing::warn!(target: "pzdns::reload", "{w}");
            }
            let snap = Arc::new(snap);
            // The settings first, then the data built from them: a query
            // that sees the new data sees the new settings too.
            shared.apply_config(Arc::new(cfg));
            let old = shared.snapshot.swap(snap.clone());
            snap.commit_health();
            crate::transfer::notify::spawn(crate::transfer::notify::after_load(Some(&old), &snap, &shared.metrics), shared.metrics.clone());
            debug!(trigger, generation = next_gen, "reload swapped in");
            // Freeing a large snapshot takes milliseconds: not on a worker
            // thread that answers queries. (Queries still holding it keep it
            // alive until they finish; the last one frees it.)
            // A load that read most files again freed as much as it holds
            // (parse trees, the old zones): give it back. A reload of a few
            // files frees little, and the pool reuses it on the next one.
            let pool = (reuse.read * 8 >= reuse.read + reuse.reused).then(|| reload_pool(shared, &shared.config.load()));
            let priority = shared.config.load().reload_priority;
            tokio::task::spawn_blocking(move || {
                // Background work like the load itself: it must not keep a
                // query waiting on a shared core (the thread stays lowered;
                // blocking threads exit after some seconds without work).
                yield_to_queries(priority);
                drop(old);
                if let Some(pool) = pool {
                    release_free_memory(pool.as_deref());
                }
            });
            // The checkout's commit and local changes before anything says the
            // load is done: the metrics, /readyz, /zones and the log line then
            // change together (the data itself is already served).
            let dir = running.zones_dir.clone();
            let checkout = tokio::task::spawn_blocking(move || git_commit(&dir).map(|c| (c, git_dirty(&dir, GIT_STATUS_LIMIT))));
            // git_dirty keeps to its own limit; this one is for a git_commit stuck on a hung file system.
            let (commit, dirty) = match tokio::time::timeout(GIT_STATUS_LIMIT * 2, checkout).await {
                Ok(Ok(Some((c, dirty)))) => (Some(c), dirty),
                _ => (None, None),
            };
            shared.metrics.set_data(DataCounts {
                zones: snap.stats.zones,
                records: snap.stats.records,
                vpcs: snap.stats.vpcs,
                endpoints: snap.stats.endpoints,
                generation: snap.generation,
            });
            shared.metrics.upstreams_known(snap.all_upstreams());
            shared.metrics.queries_known(&snap.vpc_labels, &snap.unknown_label);
            shared.metrics.reloads.get_or_create(&ResultLabels { result: "success" }).inc();
            for (zone, file, vpcs) in &gone {
                warn!(trigger, generation = next_gen, zone = %zone, file = %file.display(), vpcs = %vpcs, "zone no longer loaded");
            }
            for what in &restart_needed {
                warn!(trigger, "{what}: the running server keeps the old setting until it is restarted");
            }
            shared.metrics.set_commit(commit.as_deref(), dirty);
            {
                let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
                st.generation = next_gen;
                st.loaded_at = Some(SystemTime::now());
                st.load_ms = ms;
                st.git_commit = commit.clone();
                st.git_dirty = dirty;
                st.last_failure = None;
                st.restart_needed = restart_needed;
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
                files_read = reuse.read,
                files_reused = reuse.reused,
                commit = commit.as_deref().unwrap_or("-"),
                dirty = commit.as_ref().map_or("-", |_| crate::metrics::dirty_label(dirty)),
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

/// The zones of `old` that `new` no longer has (by name and the VPCs
/// that see it, so that a file renamed is not reported): each with its
/// file, as it was, and its VPCs.
fn zones_gone(old: &crate::snapshot::Snapshot, new: &crate::snapshot::Snapshot) -> Vec<(String, PathBuf, String)> {
    use rustc_hash::FxHashSet;
    let vpc_ids = |s: &crate::snapshot::Snapshot, z: &crate::snapshot::zone::Zone| {
        let mut ids: Vec<&str> = z.vpcs.iter().map(|v| s.vpcs[*v as usize].id.as_str()).collect();
        ids.sort_unstable();
        ids.join(",")
    };
    let now: FxHashSet<(&[u8], String)> = new.zones.iter().map(|z| (&z.key[..], vpc_ids(new, z))).collect();
    old.zones
        .iter()
        .filter_map(|z| {
            let vpcs = vpc_ids(old, z);
            (!now.contains(&(&z.key[..], vpcs.clone()))).then(|| (z.origin.to_string(), z.path.clone(), vpcs))
        })
        .collect()
}

/// Hands the memory a load freed (its parse trees, the old snapshot) back
/// to the system: each thread that may have allocated it (the load's pools
/// and this one) collects its own heap, since mimalloc otherwise keeps a
/// thread's free pages until that thread allocates again, and the pools'
/// threads sleep until the next reload.
fn release_free_memory(reload_pool: Option<&rayon::ThreadPool>) {
    let collect = || {
        // SAFETY: mi_collect only walks the calling thread's heap.
        unsafe { libmimalloc_sys::mi_collect(true) }
    };
    rayon::broadcast(|_| collect());
    if let Some(pool) = reload_pool {
        pool.broadcast(|_| collect());
    }
    collect();
}

/// The pool reloads build on, of `threads` threads (made again when the
/// setting changes); `None` if no pool can be made (the global one serves).
fn reload_pool(shared: &Shared, cfg: &ServerConfig) -> Option<Arc<rayon::ThreadPool>> {
    let (threads, priority) = (cfg.reload_threads, cfg.reload_priority);
    let mut slot = shared.reload_pool.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((n, pool)) = slot.as_ref()
        && *n == threads
    {
        return Some(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("pzdns-reload-{i}"))
        .start_handler(move |_| yield_to_queries(priority))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    *slot = Some((threads, pool.clone()));
    Some(pool)
}

/// The configuration to load with: the file read again (with the
/// command-line flags over it, as at start), less what only a restart can
/// change, which stays as the server runs it; and what those changes are.
fn reread_config(shared: &Shared, running: &ServerConfig) -> Result<(ServerConfig, Vec<String>), Diagnostics> {
    let Some(source) = &shared.config_source else { return Ok((running.clone(), Vec::new())) };
    let mut cfg = source()?;
    let restart = settings_needing_restart(running, &mut cfg);
    Ok((cfg, restart))
}

/// Settings the running server cannot change: its sockets (`listen`,
/// `admin.listen`), its log format, its dnstap output, the priority of
/// its reload threads, and the zones
/// directory its file watch is on. Where `new` differs, the running value is put back in it
/// and the change is described.
pub fn settings_needing_restart(running: &ServerConfig, new: &mut ServerConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let listeners = |c: &ServerConfig| -> Vec<String> {
        c.listen
            .iter()
            .map(|l| {
                let vpc = l.vpc.as_ref().map_or("-", |v| v.value.as_str());
                let tls = l.tls.as_ref().map_or(String::new(), |t| format!(", cert {}, key {}", t.cert.display(), t.key.display()));
                format!("{} ({}, vpc {vpc}, proxy_protocol {:?}{tls})", l.address, l.transport.as_str(), l.proxy_protocol)
            })
            .collect()
    };
    let (was, now) = (listeners(running), listeners(new));
    if was != now {
        notes.push(format!("listen changed from [{}] to [{}]", was.join(", "), now.join(", ")));
        new.listen = running.listen.clone();
    }
    if running.admin_listen != new.admin_listen {
        let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        notes.push(format!("admin.listen changed from {} to {}", show(running.admin_listen), show(new.admin_listen)));
        new.admin_listen = running.admin_listen;
    }
    if running.log_format != new.log_format {
        notes.push(format!("log_format changed from {:?} to {:?}", running.log_format, new.log_format).to_lowercase());
        new.log_format = running.log_format;
    }
    if running.dnstap != new.dnstap {
        let show = |d: &Option<crate::config::dnstap::Settings>| d.as_ref().map_or("off".to_string(), |s| s.output.to_string());
        notes.push(format!("dnstap changed from {} to {}", show(&running.dnstap), show(&new.dnstap)));
        new.dnstap = running.dnstap.clone();
    }
    // A thread that dropped to SCHED_IDLE may not rise again without
    // privilege, so the threads keep the priority they started with.
    if running.reload_priority != new.reload_priority {
        notes.push(format!("reload.priority changed from {:?} to {:?}", running.reload_priority, new.reload_priority).to_lowercase());
        new.reload_priority = running.reload_priority;
    }
    if running.zones_dir != new.zones_dir {
        notes.push(format!("zones_dir changed from {} to {}", running.zones_dir.display(), new.zones_dir.display()));
        new.zones_dir = running.zones_dir.clone();
    }
    // The health table is sized once: its targets keep their ids.
    if running.health.max_targets != new.health.max_targets {
        notes.push(format!("health_checks.max_targets changed from {} to {}", running.health.max_targets, new.health.max_targets));
        new.health.max_targets = running.health.max_targets;
    }
    notes
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

/// How long `git status` may take to say whether a checkout has local changes.
pub const GIT_STATUS_LIMIT: Duration = Duration::from_secs(2);

/// Whether the checkout holding `dir` has local changes under `dir`: a file
/// modified, staged, deleted, or new and not ignored. The data served is then
/// not the commit's. `.git` alone cannot tell (that needs the index and the
/// objects), so this asks `git status`; None when there is no git (the
/// container image has none), git refuses (a repository owned by another
/// user), fails, or takes longer than `limit` (it is killed then).
pub fn git_dirty(dir: &Path, limit: Duration) -> Option<bool> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let deadline = Instant::now() + limit;
    let mut child = Command::new("git")
        // No fsmonitor hook: a status must run nothing the repository names.
        .args(["-c", "core.fsmonitor=false", "status", "--porcelain", "-z", "--untracked-files=normal", "--", "."])
        .current_dir(dir)
        // The checkout found from `dir`, whatever repository pzdns was started from.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        // Read only: no refresh of the index written back.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut out = child.stdout.take()?;
    // One byte of output is enough to know. The read is on its own thread so
    // that a git that hangs is killed at the deadline instead of waited on.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = tx.send(matches!(out.read(&mut byte), Ok(1)));
    });
    let changes = rx.recv_timeout(limit).ok();
    let result = match changes {
        Some(true) => Some(true),
        // Nothing printed: clean, if git says it succeeded.
        Some(false) => loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.success().then_some(false),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => break None,
            }
        },
        None => None,
    };
    // Done with it either way (after one byte there is no need to read the rest).
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Watches `zones_dir` (recursively), its parent (to see a symlink
/// swapped over it, as git-sync does) and the configuration file, and
/// reloads after the events settle.
/// The watching task owns the watcher; returns false if nothing could be
/// watched (then only SIGHUP and `POST /reload` reload).
pub fn spawn_watcher(shared: Arc<Shared>) -> bool {
    let dir = shared.config.load().zones_dir.clone();
    let abs = std::path::absolute(&dir).unwrap_or(dir.clone());
    let parent = abs.parent().map(Path::to_path_buf);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let name = abs.file_name().map(|n| n.to_os_string());
    let watch_dir = abs.clone();
    let watch_parent = parent.clone();
    // The configuration file, when it is read again on reload.
    let config_file = match (&shared.config_source, &shared.config.load().source) {
        (Some(_), Some(f)) => std::path::absolute(f).ok(),
        _ => None,
    };
    let watch_config = config_file.clone();
    let priority = shared.config.load().reload_priority;
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // This runs on the watcher's own thread, woken by every event in
        // the watched directories (the parent's too): background work.
        thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !LOWERED.replace(true) {
            yield_to_queries(priority);
        }
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        // In the parent, only the zones directory's own entry matters.
        let relevant = ev.paths.iter().any(|p| {
            p.starts_with(&watch_dir)
                || (p.parent() == watch_parent.as_deref() && p.file_name().map(|n| n.to_os_string()) == name)
                || watch_config.as_deref() == Some(p.as_path())
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
    if let Some(dir) = config_file.as_deref().and_then(Path::parent)
        && let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive)
    {
        warn!(error = %e, dir = %dir.display(), "cannot watch the configuration file's directory; reload it with SIGHUP or POST /reload");
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
