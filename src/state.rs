//! State shared by every listener, the admin server and reload: the data
//! in force, the forwarder and its cache, metrics, the configuration and
//! the reload status; and the two halves of answering a query in process
//! (at once, or after waiting on an upstream), each recorded once by
//! [`crate::record`] against the snapshot the answer began on.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::abuse::rrl::{self, Rrl};
use crate::answer::{Answered, Client, Ctx, Outcome, Pending, Transport, answer};
use crate::config::{Diagnostics, ServerConfig};
use crate::dnstap::Dnstap;
use crate::metrics::Metrics;
use crate::record::Recorder;
use crate::snapshot::Snapshot;
use crate::upstream::Forwarder;

/// What `/readyz` and `/zones` report about loading.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// Generation in force (0: nothing loaded yet).
    pub generation: u64,
    pub loaded_at: Option<SystemTime>,
    pub load_ms: u64,
    /// The git commit of the zones directory, when it is in a checkout.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>, // local changes under zones_dir (reload::git_dirty); None: not known
    /// The last failed attempt, if it is more recent than the last success.
    pub last_failure: Option<Failure>,
    /// Settings changed in the configuration file that the running
    /// server cannot apply (listeners, admin address, ...): each says
    /// what changed; a restart applies them.
    pub restart_needed: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub at: SystemTime,
    pub trigger: &'static str,
    pub problems: Vec<String>,
}

pub struct Shared {
    /// The data in force; swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Upstream client and cache; they survive reloads.
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
    /// The configuration in force: re-read with the data on every reload
    /// (what needs a restart stays as the server started, see
    /// `reload::settings_needing_restart`).
    pub config: ArcSwap<ServerConfig>,
    /// How to read the configuration again: the file and the command-line
    /// flags over it. `None`: the configuration is fixed (tests, embedded
    /// defaults with nothing to re-read).
    pub config_source: Option<ConfigSource>,
    /// Metrics, the query log and dnstap of every answered query.
    pub recorder: Recorder,
    pub status: Mutex<ReloadStatus>,
    /// Serialises reloads from the watch, SIGHUP and the admin API.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// What the last successful load read, for the next to read only what changed.
    pub incremental: Mutex<crate::loader::Incremental>,
    /// The threads reloads build on (`reload.threads`), made on first use.
    pub reload_pool: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>>,
    /// Upstream questions still being answered (the drain waits on them).
    pub waiting: Drain,
    /// Response rate limiting's buckets, made when first needed (they
    /// outlive reloads, which may turn it on or off).
    rrl: std::sync::OnceLock<Rrl>,
}

/// Reads the configuration anew, as at start (file, then flags).
pub type ConfigSource = Box<dyn Fn() -> Result<ServerConfig, Diagnostics> + Send + Sync>;

impl Shared {
    pub fn new(config: ServerConfig, snapshot: Snapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_source(config, snapshot, metrics, None)
    }

    /// As [`Shared::new`], with the means to re-read the configuration on reload.
    pub fn with_source(config: ServerConfig, snapshot: Snapshot, metrics: Arc<Metrics>, source: Option<ConfigSource>) -> Arc<Self> {
        let forwarder = Forwarder::new(config.cache_max_entries, config.cache_max_bytes, config.serve_stale, metrics.clone());
        // The first data in force: its health targets are checked from now.
        snapshot.commit_health();
        forwarder.set_dnssec(config.dnssec.as_ref());
        forwarder.set_tls(&config.upstream_tls, config.upstream_ca.as_deref());
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            forwarder,
            recorder: Recorder::new(metrics.clone(), config.query_log, config.listen.iter().map(|l| l.address).collect()),
            metrics,
            config: ArcSwap::from_pointee(config),
            config_source: source,
            status: Mutex::new(ReloadStatus::default()),
            reload_lock: tokio::sync::Mutex::new(()),
            incremental: Mutex::new(crate::loader::Incremental::default()),
            reload_pool: Mutex::new(None),
            waiting: Drain::default(),
            rrl: std::sync::OnceLock::new(),
        })
    }

    /// Puts a configuration re-read on reload in force: what applies
    /// without a restart (the snapshot, built from it, is swapped by the
    /// caller).
    pub fn apply_config(&self, cfg: Arc<ServerConfig>) {
        self.recorder.set_query_log(cfg.query_log);
        self.forwarder.reconfigure(cfg.cache_max_entries, cfg.cache_max_bytes, cfg.serve_stale);
        self.forwarder.set_dnssec(cfg.dnssec.as_ref());
        self.forwarder.set_tls(&cfg.upstream_tls, cfg.upstream_ca.as_deref());
        self.config.store(cfg);
    }

    /// Sends client and forwarder messages to `tap` from now on.
    pub fn set_dnstap(&self, tap: Arc<Dnstap>) {
        self.forwarder.set_dnstap(tap.clone());
        let _ = self.recorder.dnstap.set(tap);
    }

    /// A whole query, in process: bytes in, response bytes out (`None`
    /// where nothing is sent back). For tests, benchmarks and fuzzing;
    /// UDP drives [`answer`] itself, TCP [`Shared::answer_start`].
    pub async fn answer_bytes(&self, client: Client, query: &[u8]) -> Option<Vec<u8>> {
        match self.answer_start(client, query) {
            Started::Done(bytes) => bytes,
            Started::Drop => None,
            Started::Wait(w) => w.finish(self).await,
        }
    }

    /// Answers `query` as far as can be done now: the response (recorded;
    /// `None` where a policy drops it), nothing, or the question that
    /// must wait on an upstream.
    pub fn answer_start(&self, client: Client, query: &[u8]) -> Started {
        let started = std::time::Instant::now();
        let snap = self.snapshot.load_full();
        let ctx = Ctx { snap: &snap, cache: &self.forwarder.cache, metrics: &self.metrics, now: started };
        let mut out = Vec::new();
        let outcome = answer(&ctx, &client, query, &mut out);
        self.recorder.note_received(&client, query, matches!(outcome, Outcome::Drop));
        let (bytes, a) = match outcome {
            Outcome::Drop => return Started::Drop,
            Outcome::Wait(pending) => {
                let query = if self.recorder.keeps_query() { query.to_vec() } else { Vec::new() };
                return Started::Wait(Waiting { pending, client, query, started });
            }
            Outcome::Done(a) => (Some(out), a),
            Outcome::Silent(a) => (None, a),
        };
        self.recorder.record(&snap, &client, query, bytes.as_deref(), &a, started.elapsed());
        Started::Done(bytes)
    }

    /// Response rate limiting (`rate_limit:`): whether `response`, about
    /// to be sent to `client`, goes out (then it may have been rewritten
    /// empty: a slip) or not at all. Only UDP is limited: over a stream
    /// the source cannot be spoofed, and neither can a client that brought
    /// a valid server cookie. Call it on every datagram response.
    pub fn rate_limit(&self, snap: &Snapshot, client: &Client, a: &Answered, response: &mut Vec<u8>, now: std::time::Instant) -> bool {
        let Some(s) = snap.rate_limit else { return true };
        // An answer given before the view was chosen (FORMERR, NOTIMP, BADVERS): the source's.
        let view = a.view.unwrap_or_else(|| snap.select_view(Some(client.listener), client.src.ip()).0);
        let in_vpc = matches!(view, crate::snapshot::View::Vpc { .. });
        if client.transport != Transport::Udp || a.valid_cookie || !s.applies(in_vpc) {
            return true;
        }
        let source = a.claimed.unwrap_or(client.src.ip());
        let counters = &self.metrics.abuse.rrl;
        match self.rrl.get_or_init(Rrl::new).check(&s, source, response, now) {
            rrl::Action::Send => true,
            rrl::Action::Drop => {
                counters[0].inc();
                false
            }
            rrl::Action::Slip => {
                counters[1].inc();
                rrl::slip(response)
            }
        }
    }

    /// Runs `f` counted as a question waiting on an upstream: shutdown
    /// waits for these (within its grace time).
    pub async fn waiting_on<T>(&self, f: impl Future<Output = T>) -> T {
        let _counted = self.waiting.enter();
        f.await
    }
}

/// A count of the questions waiting on an upstream, for the drain at
/// shutdown. (A counter and a `Notify`: a `watch` channel notified all
/// its sharded waker lists twice per question.)
#[derive(Default)]
pub struct Drain {
    count: std::sync::atomic::AtomicUsize,
    none: tokio::sync::Notify,
}

/// One question counted in [`Drain`] until dropped (on every path).
pub struct Counted<'a>(&'a Drain);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

impl Drain {
    pub fn enter(&self) -> Counted<'_> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Counted(self)
    }

    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once none is counted.
    pub async fn drained(&self) {
        loop {
            // Registered before the count is read: a last one leaving in between still wakes it.
            let mut none = std::pin::pin!(self.none.notified());
            none.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            none.await;
        }
    }
}

/// How far [`Shared::answer_start`] got.
pub enum Started {
    /// The response, recorded (`None`: a policy drops it).
    Done(Option<Vec<u8>>),
    /// Nothing is sent back.
    Drop,
    Wait(Waiting),
}

/// A query waiting on an upstream, with what recording it needs.
pub struct Waiting {
    pending: Box<Pending>,
    client: Client,
    /// Kept only for the query log and dnstap.
    query: Vec<u8>,
    started: std::time::Instant,
}

impl Waiting {
    /// A query waiting on an upstream, from the UDP path: `query` is kept
    /// only if recording needs it.
    pub fn new(pending: Box<Pending>, client: Client, query: &[u8], started: std::time::Instant, recorder: &Recorder) -> Waiting {
        let query = if recorder.keeps_query() { query.to_vec() } else { Vec::new() };
        Waiting { pending, client, query, started }
    }

    /// Asks the upstream, records the answer against the snapshot the
    /// answer began on, returns the response (`None`: a policy drops it).
    pub async fn finish(self, shared: &Shared) -> Option<Vec<u8>> {
        let snap = self.pending.snapshot().clone();
        let mut reply = self.pending.finish(&shared.forwarder).await;
        if let Some(b) = reply.bytes.as_mut()
            && !shared.rate_limit(&snap, &self.client, &reply.answered, b, std::time::Instant::now())
        {
            reply.bytes = None;
        }
        shared.recorder.record(&snap, &self.client, &self.query, reply.bytes.as_deref(), &reply.answered, self.started.elapsed());
        reply.bytes
    }
}

/// Polls `fut` once, with a waker that does nothing: its output if it is
/// ready at once, else `None` (then it is polled again where it is
/// spawned or awaited, which registers a real waker).
pub fn ready_now<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Lowers the calling thread, which does background work (reloading, the
/// file watch, freeing an old snapshot, making a transfer's messages), below the threads that answer, so
/// that on a core they share an arriving query preempts it at once and
/// answers keep their latency while a reload runs.
///
/// `idle` (the default) is Linux's `SCHED_IDLE`: a waking thread of the
/// normal policy always preempts it. A nice value alone is not enough on
/// Linux 6.6+ (EEVDF): a waking thread does not preempt one whose slice is
/// still protected, or that it is not yet eligible to preempt, and then
/// waits for the next tick (up to 4 ms at HZ=250); answers waited so during
/// reloads at nice +10. `low` is the process's nice +10 with the longest time slice the
/// kernel grants (a waking thread with a shorter slice overrides the
/// protection, on 6.12+; the eligibility rule stays): it keeps about a
/// tenth of a saturated core, where `idle` waits for the saturation to pass.
/// Lowering needs no privilege; rising again would, so only threads that do
/// background work call this, and the setting holds until restart.
pub fn yield_to_queries(priority: crate::config::ReloadPriority) {
    #[cfg(target_os = "linux")]
    // SAFETY: getpid, gettid, getpriority, sched_setattr and setpriority
    // only read their arguments (errno is this thread's); on Linux the
    // scheduling of a thread id is that thread's alone.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::pid_t;
        // Relative to the process (its main thread, whose id is the pid):
        // under `nice -n 15` the answering threads run at 15 and these must
        // still be below them. A thread lowered before is not lowered twice.
        *libc::__errno_location() = 0;
        let base = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        let base = if base == -1 && *libc::__errno_location() != 0 { 0 } else { base };
        let nice = background_nice(base);
        let (policy, slice) = match priority {
            crate::config::ReloadPriority::Idle => (libc::SCHED_IDLE, 0),
            crate::config::ReloadPriority::Low => (libc::SCHED_OTHER, LOW_PRIORITY_SLICE_NS),
        };
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: policy as u32,
            sched_flags: 0,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: slice,
            sched_deadline: 0,
            sched_period: 0,
        };
        if libc::syscall(libc::SYS_sched_setattr, tid, &attr as *const libc::sched_attr, 0u32) != 0
            && libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) != 0
        {
            warn_not_lowered(&std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

/// The nice value of background threads in a process at nice `base`:
/// [`LOW_PRIORITY_NICE`] above it, at most 19 (the lowest there is).
fn background_nice(base: libc::c_int) -> libc::c_int {
    (base + LOW_PRIORITY_NICE).clamp(-20, 19)
}

/// Says once per process that background threads run at the answering
/// threads' priority because both calls were refused (a seccomp filter
/// such as systemd's `SystemCallFilter=~@resources`): reloads then take
/// CPU time from queries, which an operator should know.
fn warn_not_lowered(e: &std::io::Error) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            error = %e,
            "cannot lower the priority of reload threads (sched_setattr and setpriority refused): reloads compete with answering \
             for the CPU; allow both system calls (systemd: SystemCallFilter=sched_setattr setpriority)"
        );
    }
}

/// The nice value background threads add to the process's (see [`yield_to_queries`]).
const LOW_PRIORITY_NICE: libc::c_int = 10;
/// The time slice `low` background threads ask for: the longest Linux
/// grants (it clamps longer requests to this).
const LOW_PRIORITY_SLICE_NS: u64 = 100_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain returns once the last counted question is done, and at
    /// once when none is.
    #[test]
    fn the_drain_waits_for_the_last_question() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        rt.block_on(async {
            let d = Arc::new(Drain::default());
            let limit = std::time::Duration::from_secs(5);
            assert!(tokio::time::timeout(limit, d.drained()).await.is_ok(), "none counted");
            let (a, b) = (d.enter(), d.enter());
            assert_eq!(d.count(), 2);
            let waiting = tokio::spawn({
                let d = d.clone();
                async move { tokio::time::timeout(limit, d.drained()).await.is_ok() }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            drop(a);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!waiting.is_finished(), "one still counted");
            drop(b);
            assert!(waiting.await.unwrap(), "drained once none is left");
        });
    }
}
