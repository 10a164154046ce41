//! `dnstap:` of pzdns.yaml (docs/REFERENCE.md#dnstap), read and checked:
//! plain settings that the `dnstap` module, which writes the messages,
//! takes as they are.

use std::path::{Path, PathBuf};

use super::diagnostics::Diagnostics;
use super::schema;
use super::yaml::{self, pos};

/// Default bound of the queue, in hand-overs (one per client query, with
/// both of its messages; one per forwarder message).
pub const DEFAULT_QUEUE: usize = 10_000;
/// Where the messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A Frame Streams collector's Unix socket (bidirectional handshake).
    Socket(PathBuf),
    /// A Frame Streams file, written from START to STOP.
    File(PathBuf),
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Socket(p) => write!(f, "socket {}", p.display()),
            Output::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

/// Which message kinds are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub const ALL: Kinds = Kinds(0b11_1111);
    pub const NONE: Kinds = Kinds(0);
    /// The names `dnstap.messages` takes, in the order of dnstap's
    /// message types (CLIENT_QUERY, CLIENT_RESPONSE, FORWARDER_QUERY,
    /// FORWARDER_RESPONSE, RESOLVER_QUERY, RESOLVER_RESPONSE).
    pub const NAMES: [&'static str; 6] =
        ["client_query", "client_response", "forwarder_query", "forwarder_response", "resolver_query", "resolver_response"];

    /// The kind named `NAMES[i]` alone.
    pub const fn nth(i: usize) -> Kinds {
        Kinds(1 << i)
    }

    pub fn by_name(name: &str) -> Option<Kinds> {
        Self::NAMES.iter().position(|n| *n == name).map(Self::nth)
    }

    pub fn with(self, k: Kinds) -> Kinds {
        Kinds(self.0 | k.0)
    }

    /// Whether every kind of `k` is in `self`.
    pub fn has(self, k: Kinds) -> bool {
        self.0 & k.0 == k.0
    }
}

/// `dnstap:` of pzdns.yaml, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub output: Output,
    /// `Dnstap.identity` (empty: left out).
    pub identity: String,
    /// `Dnstap.version` (empty: left out).
    pub version: String,
    pub kinds: Kinds,
    /// Bound of the queue, in hand-overs.
    pub queue: usize,
}

/// This machine's host name, the default identity (as BIND's).
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let n = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    std::str::from_utf8(&buf[..n]).ok().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Longest Unix socket path (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Longest dnstap identity or version.
const MAX_DNSTAP_TEXT: usize = 255;

/// `dnstap:` checked: one output, known message kinds, a sane queue.
pub(super) fn read(path: &Path, base: &Path, t: schema::DnstapEntry, nsid: Option<&str>, diags: &mut Diagnostics) -> Option<Settings> {
    let before = diags.len();
    let output = match (t.socket, t.file) {
        (Some(s), None) if !s.value.is_empty() => {
            let p = base.join(&s.value);
            if p.as_os_str().len() > MAX_SOCKET_PATH {
                diags.push(
                    path,
                    pos(&s),
                    format!("dnstap.socket is {} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH}", p.as_os_str().len()),
                );
            }
            Some(Output::Socket(p))
        }
        (None, Some(f)) if !f.value.is_empty() => Some(Output::File(base.join(&f.value))),
        (Some(s), Some(_)) => {
            diags.push(path, pos(&s), "dnstap has both `socket` and `file`; give one: a collector's Unix socket, or a file to write");
            None
        }
        (s, f) => {
            let at = s.as_ref().or(f.as_ref()).map_or(t.pos, pos);
            diags.push(
                path,
                at,
                "dnstap needs `socket:` (a collector's Unix socket, e.g. /run/pzdns/dnstap.sock) or `file:` (e.g. /var/log/pzdns/dnstap.fstrm)",
            );
            None
        }
    };
    // BIND's defaults: the host name (here the NSID first, which names
    // the replica the same way) and the server's version; `none` omits them.
    let text = |v: Option<yaml::Spanned<String>>, key: &str, default: &dyn Fn() -> String, diags: &mut Diagnostics| match v {
        None => default(),
        Some(v) if v.value == "none" => String::new(),
        Some(v) if v.value.len() > MAX_DNSTAP_TEXT => {
            diags.push(path, pos(&v), format!("dnstap.{key} is {} bytes; at most {MAX_DNSTAP_TEXT}", v.value.len()));
            String::new()
        }
        Some(v) => v.value,
    };
    let identity = text(t.identity, "identity", &|| nsid.map(str::to_string).or_else(hostname).unwrap_or_default(), diags);
    let version = text(t.version, "version", &|| format!("pzdns {}", env!("CARGO_PKG_VERSION")), diags);
    let mut kinds = Kinds::ALL;
    if let Some(m) = t.messages {
        kinds = Kinds::NONE;
        if m.value.is_empty() {
            diags.push(path, pos(&m), format!("dnstap.messages is empty; list some of {}, or remove `dnstap`", Kinds::NAMES.join(", ")));
        }
        for k in &m.value {
            match Kinds::by_name(&k.value) {
                Some(kind) => kinds = kinds.with(kind),
                None => diags.push(path, pos(k), format!("dnstap.messages `{}` must be one of {}", k.value, Kinds::NAMES.join(", "))),
            }
        }
    }
    let mut queue = DEFAULT_QUEUE;
    if let Some(q) = t.queue {
        if (1..=1_000_000).contains(&q.value) {
            queue = q.value as usize;
        } else {
            diags.push(path, pos(&q), "dnstap.queue must be from 1 to 1000000 (messages waiting for the writer)");
        }
    }
    if diags.len() > before {
        return None;
    }
    Some(Settings { output: output?, identity, version, kinds, queue })
}
