//! Reading a data file safely: no file can hang or exhaust a load.
//!
//! Every file pzdns reads (the config, `vpcs.yaml`, `endpoints.yaml`, zone
//! YAML, master files and each nested `$INCLUDE`) goes through
//! [`FileAccess::read`], which
//!
//! 1. resolves the path (symbolic links included, as git-sync and
//!    Kubernetes ConfigMap volumes use them) and, for data files, requires
//!    the result to lie inside the zones directory or a directory named by
//!    `allow_paths_outside`;
//! 2. `stat`s it and refuses anything but a regular file before opening it
//!    (a FIFO would block `open`, a device would never end);
//! 3. opens it with `O_NONBLOCK | O_NOFOLLOW | O_NOCTTY`, so that a file
//!    swapped for a FIFO or a link in between cannot block either, and
//!    checks again with `fstat` on what was opened;
//! 4. reads at most [`MAX_FILE_BYTES`], however much the file grows;
//! 5. counts what it reads against the load's budget (`zones_max_bytes`),
//!    so that a tree naming its files many times over cannot exhaust
//!    memory however small each file is.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::diagnostics::{Diagnostics, Pos};

/// Largest file pzdns reads: larger ones are rejected before reading, so a
/// stray multi-gigabyte file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// See [`Stamp::unless_racy`]: well over any file system's timestamp granularity.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// What tells a file's content changed without reading it, as make and
/// ninja judge it: device, inode, size, modification and change time (a
/// rename over it, a write or a truncation each move one of them). For a
/// file modified just before it was read, also a hash of what was read
/// (see [`Stamp::unless_racy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    /// Set when the file was racy when read: the hash of its content then,
    /// which must match its content now for the file to count as unchanged.
    racy: Option<u64>,
}

impl Stamp {
    fn from_meta(m: &std::fs::Metadata) -> Stamp {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            racy: None,
        }
    }

    /// Whether the file was modified within `window` of now: it may be
    /// modified again within the file system's timestamp granularity,
    /// leaving its stamp as it was (git's "racily clean" case).
    fn is_racy(&self, window: std::time::Duration) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
        now - self.mtime_ns.max(self.ctime_ns) < window.as_nanos() as i128
    }

    /// The stamp to note for `content`, read from a file stamped `self`:
    /// a racy file's stamp carries the content's hash, so that the next
    /// load reads it again and compares (cheap next to parsing it), as git
    /// compares the content of racily clean files.
    fn unless_racy(self, window: std::time::Duration, content: &[u8]) -> Stamp {
        Stamp { racy: self.is_racy(window).then(|| content_hash(content)), ..self }
    }

    /// Whether `now` (a file's current stamp) shows the same file as this
    /// noted stamp, content aside.
    fn same_file(&self, now: &Stamp) -> bool {
        Stamp { racy: None, ..*self } == *now
    }

    /// The device and inode: which file (or directory) this is.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The stamp of what `path` names now (links followed); `None` if
    /// nothing can be found there.
    pub fn of(path: &Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::from_meta(&m))
    }
}

/// The files one reader read, each with its stamp when read (`None`: it
/// could not be found), so that a later load can tell whether reading
/// again would give the same.
pub type Reads = Arc<Mutex<Vec<(PathBuf, Option<Stamp>)>>>;

/// Tells content apart when the stamp cannot: the file's size and times
/// are already equal, so an accidental collision is what matters, not a
/// crafted one; rustc-hash's byte hash runs at memory speed, where SipHash
/// would add a noticeable share to a load of freshly copied files.
fn content_hash(content: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(content)
}

/// Whether every file of `reads` is still what was read: the same stamp,
/// and for a file that was racy when read, the same content (read again
/// with `access`'s rules). Returns the reads to note from now on (a racy
/// file that has aged past `window` is noted by its stamp alone), or
/// `None` when something changed.
pub fn unchanged(
    reads: &[(PathBuf, Option<Stamp>)],
    access: &FileAccess,
    window: std::time::Duration,
) -> Option<Vec<(PathBuf, Option<Stamp>)>> {
    let mut out = Vec::with_capacity(reads.len());
    for (p, noted) in reads {
        let now = Stamp::of(p);
        let still = match (noted, now) {
            (None, None) => None,
            (Some(s), Some(n)) if s.same_file(&n) => match s.racy {
                None => Some(n),
                Some(h) => {
                    let content = access.read_checked(p, false).ok()?;
                    if content_hash(&content) != h {
                        return None;
                    }
                    Some(if n.is_racy(window) { *s } else { n })
                }
            },
            _ => return None,
        };
        out.push((p.clone(), still));
    }
    Some(out)
}

/// Bytes one load may read in all, shared by every reader of that load.
#[derive(Debug)]
struct ReadBudget {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
}

impl ReadBudget {
    /// Counts `n` more bytes; `false` when that goes over the limit.
    fn take(&self, n: u64) -> bool {
        let before = self.used.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        before.saturating_add(n) <= self.limit
    }
}

/// Where data files may be read from.
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    /// The zones directory, resolved; `None`: anywhere (the config file).
    root: Option<PathBuf>,
    /// `allow_paths_outside`, resolved.
    allowed: Vec<PathBuf>,
    /// The size limit (tests lower it).
    max_bytes: u64,
    /// Where each file read is noted, when a caller wants to know.
    reads: Option<Reads>,
    /// Files modified more recently than this before they are read are
    /// noted with a stamp nothing matches (see [`Stamp::unless_racy`]).
    racy_window: std::time::Duration,
    /// What this load may still read, when bounded.
    budget: Option<Arc<ReadBudget>>,
}

impl FileAccess {
    /// Files inside `zones_dir` (after resolving links) or inside one of
    /// `allowed`.
    pub fn new(zones_dir: &Path, allowed: &[PathBuf]) -> Self {
        let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        FileAccess {
            root: Some(resolve(zones_dir)),
            allowed: allowed.iter().map(|p| resolve(p)).collect(),
            max_bytes: MAX_FILE_BYTES,
            reads: None,
            racy_window: RACY_WINDOW,
            budget: None,
        }
    }

    /// Any path (the configuration file, named on the command line).
    pub fn anywhere() -> Self {
        FileAccess { root: None, allowed: Vec::new(), max_bytes: MAX_FILE_BYTES, reads: None, racy_window: RACY_WINDOW, budget: None }
    }

    /// The same rules with another size limit.
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// The same rules, reading at most `limit` bytes in all, counted over
    /// this access and every clone of it (one load's readers).
    pub fn with_load_limit(mut self, limit: u64) -> Self {
        self.budget = Some(Arc::new(ReadBudget { limit, used: Default::default() }));
        self
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The same rules with another racy window (tests that set stamps
    /// themselves use none).
    pub fn with_racy_window(mut self, w: std::time::Duration) -> Self {
        self.racy_window = w;
        self
    }

    /// The same rules, noting every file read (and every one that could
    /// not be found) in the list returned.
    pub fn recording(&self) -> (FileAccess, Reads) {
        let reads = Reads::default();
        (FileAccess { reads: Some(reads.clone()), ..self.clone() }, reads)
    }

    fn note(&self, path: &Path, stamp: Option<Stamp>) {
        if let Some(r) = &self.reads {
            r.lock().unwrap_or_else(|p| p.into_inner()).push((path.to_path_buf(), stamp));
        }
    }

    /// Reads `path` as bytes, or says why not (the message names the path,
    /// as resolved when that differs, and how to fix it).
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        self.read_as(path, false)
    }

    /// As [`Self::read`]; with `self_named` the message says "file" instead
    /// of the path, for a problem reported against the path itself.
    fn read_as(&self, path: &Path, self_named: bool) -> Result<Vec<u8>, String> {
        if self.reads.is_none() {
            return self.read_checked(path, self_named);
        }
        // Stamped before the read: a change made while it reads shows as a
        // change at the next load.
        let stamp = Stamp::of(path);
        let read = self.read_checked(path, self_named);
        self.note(path, stamp.map(|s| s.unless_racy(self.racy_window, read.as_deref().unwrap_or_default())));
        read
    }

    fn read_checked(&self, path: &Path, self_named: bool) -> Result<Vec<u8>, String> {
        let named = if self_named { "file".to_string() } else { path.display().to_string() };
        let real = std::fs::canonicalize(path).map_err(|e| format!("cannot read {named}: {e}"))?;
        let shown = if real == path { named } else { format!("{named} (resolves to {})", real.display()) };
        if let Some(root) = &self.root
            && !real.starts_with(root)
            && !self.allowed.iter().any(|a| real.starts_with(a))
        {
            return Err(format!(
                "{shown} is outside the zones directory {}; move it inside, or name its directory in `allow_paths_outside` in pzdns.yaml",
                root.display()
            ));
        }
        // Refuse before opening: opening a FIFO or a device is itself the
        // danger (it blocks, or has effects).
        let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read {shown}: {e}"))?;
        self.check_meta(&meta, &shown)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&real)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        // What was opened may not be what was looked at.
        let meta = file.metadata().map_err(|e| format!("cannot read {shown}: {e}"))?;
        self.check_meta(&meta, &shown)?;
        let over_budget = |b: &ReadBudget| {
            format!(
                "{shown} would take this load over the {} it may read in all (`zones_max_bytes` in pzdns.yaml); \
                 is a file named many times over (links, `$INCLUDE`)? If not, raise the limit",
                limit_text(b.limit)
            )
        };
        if let Some(b) = &self.budget
            && !b.take(meta.len())
        {
            return Err(over_budget(b));
        }
        let mut out = Vec::with_capacity(meta.len() as usize);
        file.take(self.max_bytes + 1).read_to_end(&mut out).map_err(|e| format!("cannot read {shown}: {e}"))?;
        if out.len() as u64 > self.max_bytes {
            return Err(format!("{shown} grew over the {} limit while being read", limit_text(self.max_bytes)));
        }
        if let Some(b) = &self.budget
            && !b.take((out.len() as u64).saturating_sub(meta.len()))
        {
            return Err(over_budget(b));
        }
        Ok(out)
    }

    fn check_meta(&self, meta: &std::fs::Metadata, shown: &str) -> Result<(), String> {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            None
        } else if ft.is_dir() {
            Some("a directory")
        } else if ft.is_fifo() {
            Some("a FIFO (named pipe)")
        } else if ft.is_char_device() {
            Some("a character device")
        } else if ft.is_block_device() {
            Some("a block device")
        } else if ft.is_socket() {
            Some("a socket")
        } else {
            Some("not a regular file")
        };
        if let Some(kind) = kind {
            return Err(format!("{shown} is {kind}; pzdns reads only regular files"));
        }
        if meta.len() > self.max_bytes {
            return Err(format!(
                "{shown} is {} bytes, over the {} limit; split the zone into smaller files",
                meta.len(),
                limit_text(self.max_bytes)
            ));
        }
        Ok(())
    }

    /// Reads `path` as UTF-8 text, reporting any problem against `path`
    /// itself.
    pub fn read_text(&self, path: &Path, diags: &mut Diagnostics) -> Option<String> {
        self.read_text_at(path, path, Pos::UNKNOWN, diags)
    }

    /// Reads `path` as UTF-8 for a caller that reports problems itself.
    pub fn read_string(&self, path: &Path) -> Result<String, String> {
        let bytes = self.read(path)?;
        String::from_utf8(bytes).map_err(|_| format!("{} is not valid UTF-8; save it as UTF-8", path.display()))
    }

    /// As [`Self::read_text`], reporting a problem at `at:pos` (the line
    /// that names the file: a `master_file:` key, an `$INCLUDE`).
    pub fn read_text_at(&self, path: &Path, at: &Path, pos: Pos, diags: &mut Diagnostics) -> Option<String> {
        let bytes = match self.read_as(path, at == path) {
            Ok(b) => b,
            Err(e) => {
                diags.push(at, pos, e);
                return None;
            }
        };
        match String::from_utf8(bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = upto.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                let col = upto.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
                diags.push(path, Pos::new(line, col), "file is not valid UTF-8; save it as UTF-8");
                None
            }
        }
    }
}

fn limit_text(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n}-byte")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pzdns-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn regular_files_inside_are_read_others_refused() {
        let d = scratch("kinds");
        let zones = d.join("zones");
        std::fs::create_dir_all(&zones).unwrap();
        std::fs::write(zones.join("ok.yaml"), "zone: a\n").unwrap();
        std::fs::write(d.join("outside.zone"), "x").unwrap();
        std::os::unix::fs::symlink("/dev/zero", zones.join("zero.yaml")).unwrap();
        std::os::unix::fs::symlink(d.join("outside.zone"), zones.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink("ok.yaml", zones.join("link.yaml")).unwrap();
        let fifo = zones.join("fifo.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let a = FileAccess::new(&zones, &[]);
        let mut diags = Diagnostics::new();
        assert_eq!(a.read_text(&zones.join("ok.yaml"), &mut diags).as_deref(), Some("zone: a\n"));
        assert_eq!(a.read_text(&zones.join("link.yaml"), &mut diags).as_deref(), Some("zone: a\n"));
        assert!(diags.is_empty());
        let t = std::time::Instant::now();
        assert!(a.read(&fifo).unwrap_err().contains("is a FIFO (named pipe); pzdns reads only regular files"));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let e = a.read(&zones.join("zero.yaml")).unwrap_err();
        assert!(e.contains("is outside the zones directory"), "{e}");
        let e = FileAccess::new(&zones, &[PathBuf::from("/dev")]).read(&zones.join("zero.yaml")).unwrap_err();
        assert!(e.contains("(resolves to /dev/zero) is a character device"), "{e}");
        let e = a.read(&zones.join("out.yaml")).unwrap_err();
        assert!(e.contains("allow_paths_outside"), "{e}");
        assert_eq!(FileAccess::new(&zones, std::slice::from_ref(&d)).read(&zones.join("out.yaml")).unwrap(), b"x");
        assert!(a.read(&zones).unwrap_err().contains("is a directory"));
        std::fs::remove_dir_all(&d).ok();
    }

    /// A file modified just before it was read is read again by the next
    /// load and compared: the same content counts as unchanged, other
    /// content (under the same stamp, as a second write within the file
    /// system's timestamp granularity leaves it) as changed.
    #[test]
    fn racy_files_are_compared_by_content() {
        let d = scratch("racy");
        let f = d.join("z.yaml");
        std::fs::write(&f, "zone: a.test\n").unwrap();
        let window = std::time::Duration::from_secs(3600);
        let access = FileAccess::new(&d, &[]).with_racy_window(window);
        let (rec, reads) = access.recording();
        rec.read(&f).unwrap();
        let noted = reads.lock().unwrap().clone();
        assert!(noted[0].1.unwrap().racy.is_some(), "just written: racy");
        assert!(unchanged(&noted, &access, window).is_some(), "the same content");
        let mut forged = noted.clone();
        let s = forged[0].1.as_mut().unwrap();
        s.racy = s.racy.map(|h| h ^ 1);
        assert!(unchanged(&forged, &access, window).is_none(), "other content under the same stamp");
        // Past the window the file is noted by its stamp alone.
        let aged = unchanged(&noted, &access, std::time::Duration::ZERO).unwrap();
        assert!(aged[0].1.unwrap().racy.is_none());
        std::fs::write(&f, "zone: another.test\n").unwrap();
        assert!(unchanged(&aged, &access, window).is_none(), "a write of another size changes the stamp");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The load's budget counts every read, by every clone of the access
    /// (the readers of one load), the same file read again included.
    #[test]
    fn a_load_reads_at_most_its_budget_in_all() {
        let d = scratch("budget");
        let f = d.join("z.yaml");
        std::fs::write(&f, vec![b'a'; 40]).unwrap();
        let a = FileAccess::new(&d, &[]).with_load_limit(100);
        let (clone, _) = a.recording();
        assert!(a.read(&f).is_ok() && clone.read(&f).is_ok(), "80 bytes of 100");
        let e = a.read(&f).unwrap_err();
        assert!(e.contains("would take this load over the 100-byte it may read in all (`zones_max_bytes`"), "{e}");
        assert!(clone.read(&f).is_err(), "shared by the clones");
        assert!(FileAccess::new(&d, &[]).with_load_limit(100).read(&f).is_ok(), "a new load, a new budget");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn size_limit_at_under_and_over() {
        let d = scratch("size");
        let a = FileAccess::new(&d, &[]).with_max_bytes(100);
        for (n, ok) in [(99, true), (100, true), (101, false)] {
            let p = d.join(format!("f{n}"));
            std::fs::write(&p, vec![b'a'; n]).unwrap();
            let r = a.read(&p);
            assert_eq!(r.is_ok(), ok, "{n}: {r:?}");
            if !ok {
                assert!(r.unwrap_err().contains("is 101 bytes, over the 100-byte limit"));
            }
        }
        std::fs::remove_dir_all(&d).ok();
    }
}
