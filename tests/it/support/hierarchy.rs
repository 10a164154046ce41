//! A small public DNS built on loopback: a root, TLDs and leaves, each on
//! its own NSD (127.53.0.1xx, port 53), and a root hints file that points
//! at it. Zones are given as master-file text, so that a variant can sign
//! them before they are served.
//!
//! Servers of the default hierarchy ([`default_servers`]):
//! ```text
//! 127.53.0.101  .            root (a.root-servers.net.)
//! 127.53.0.102  test.        ns1.test. (glue)
//! 127.53.0.103  test.        ns2.test. (glue)
//! 127.53.0.104  other.       ns.other. (glue)
//! 127.53.0.105  a.test. lame.test. g.test. b.other. sub.evil.test.   (leaf server)
//! 127.53.0.110  evil.test.   a scripted server: every reply a referral with poisoned glue
//! 127.53.0.111  —            the poisoned glue's address: answers 6.6.6.6 to anything
//! 127.53.0.112  noedns.test. a scripted server: FORMERR to EDNS, 192.0.2.112 to anything else;
//!                            it keeps every query it gets ([`Hierarchy::noedns_queries`])
//! 127.53.0.113  flaky.test.  a scripted server that drops every other query (the first included)
//! 127.53.0.119  —            nothing listens (the lame half of lame.test., all of alllame.test.)
//! (selfref.test. is delegated to ns1.test., which refers it to itself: a lame server)
//! ```
//! Only one hierarchy runs at a time ([`Hierarchy::start`] holds a lock).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, NS};
use hickory_proto::rr::{Name, RData, Record};

use crate::interop::{Peer, scratch};

/// The queries a scripted server got: each one's source and bytes.
pub type QueryLog = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// One authoritative server of the hierarchy and the zones it serves.
pub struct Server {
    pub addr: Ipv4Addr,
    /// (zone name, master-file text).
    pub zones: Vec<(String, String)>,
}

pub const ROOT: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 101);
pub const LEAF: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 105);
pub const POISONER: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 110);
pub const POISON_TARGET: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 111);
pub const NOEDNS: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 112);
pub const FLAKY: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 113);
pub const DEAD: Ipv4Addr = Ipv4Addr::new(127, 53, 0, 119);

const SOA_TIMERS: &str = "1 1800 900 604800 300";

fn zone(apex: &str, body: &str) -> String {
    let under = |label: &str| if apex == "." { format!("{label}.") } else { format!("{label}.{apex}") };
    format!("$ORIGIN {apex}\n$TTL 3600\n@ SOA {} {} {SOA_TIMERS}\n{body}", under("ns"), under("hostmaster"))
}

/// The default hierarchy: in-bailiwick glue, a glueless delegation, a
/// lame server, a CNAME chain across zones, NXDOMAIN, NODATA, a
/// wildcard, an empty non-terminal, a delegation loop, poisoned glue.
pub fn default_servers() -> Vec<Server> {
    let root = zone(
        ".",
        "@ NS a.root-servers.net.\n\
         a.root-servers.net. A 127.53.0.101\n\
         test. NS ns1.test.\n\
         test. NS ns2.test.\n\
         ns1.test. A 127.53.0.102\n\
         ns2.test. A 127.53.0.103\n\
         other. NS ns.other.\n\
         ns.other. A 127.53.0.104\n",
    );
    let test = zone(
        "test.",
        "@ NS ns1.test.\n\
         @ NS ns2.test.\n\
         ns1 A 127.53.0.102\n\
         ns2 A 127.53.0.103\n\
         ns A 127.53.0.102\n\
         a NS ns.a.test.\n\
         ns.a A 127.53.0.105\n\
         a DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE4A62F0A8F0B6E26D2E8B1F3A\n\
         g NS ns.g.other.\n\
         lame NS dead.lame.test.\n\
         lame NS ns.lame.test.\n\
         dead.lame A 127.53.0.119\n\
         ns.lame A 127.53.0.105\n\
         evil NS ns.evil.test.\n\
         ns.evil A 127.53.0.110\n\
         loop1 NS ns.loop2.test.\n\
         loop2 NS ns.loop1.test.\n\
         alllame NS dead.lame.test.\n\
         selfref NS ns1.test.\n\
         noedns NS ns.noedns.test.\n\
         ns.noedns A 127.53.0.112\n\
         flaky NS ns.flaky.test.\n\
         ns.flaky A 127.53.0.113\n\
         @ TXT \"the test TLD\"\n",
    );
    let other = zone(
        "other.",
        "@ NS ns.other.\n\
         ns A 127.53.0.104\n\
         ns.g A 127.53.0.105\n\
         b NS ns.g.other.\n",
    );
    let a = zone(
        "a.test.",
        "@ NS ns.a.test.\n\
         ns A 127.53.0.105\n\
         @ TXT \"zone a\"\n\
         @ MX 10 mail.a.test.\n\
         mail A 192.0.2.25\n\
         www CNAME alias.b.other.\n\
         in CNAME www2\n\
         www2 A 192.0.2.2\n\
         www2 A 192.0.2.3\n\
         www2 TXT \"two\"\n\
         dangling CNAME gone.b.other.\n\
         *.wild A 192.0.2.9\n\
         deep.ent A 192.0.2.10\n\
         v6 AAAA 2001:db8::6\n\
         toprivate CNAME host.priv.test.\n",
    ) + &big_txt();
    let lame = zone("lame.test.", "@ NS dead.lame.test.\n@ NS ns.lame.test.\nwww A 192.0.2.40\n");
    let g = zone("g.test.", "@ NS ns.g.other.\nhost A 192.0.2.7\n@ TXT \"glueless\"\n");
    let b = zone("b.other.", "@ NS ns.g.other.\nalias CNAME host.g.test.\nplain A 192.0.2.70\n");
    let sub_evil = zone("sub.evil.test.", "@ NS ns.a.test.\nwww A 192.0.2.80\n");
    vec![
        Server { addr: ROOT, zones: vec![(".".into(), root)] },
        Server { addr: Ipv4Addr::new(127, 53, 0, 102), zones: vec![("test.".into(), test.clone())] },
        Server { addr: Ipv4Addr::new(127, 53, 0, 103), zones: vec![("test.".into(), test)] },
        Server { addr: Ipv4Addr::new(127, 53, 0, 104), zones: vec![("other.".into(), other)] },
        Server {
            addr: LEAF,
            zones: vec![
                ("a.test.".into(), a),
                ("lame.test.".into(), lame),
                ("g.test.".into(), g),
                ("b.other.".into(), b),
                ("sub.evil.test.".into(), sub_evil),
            ],
        },
    ]
}

/// `big.a.test. TXT`: more than a 1232-byte UDP answer holds (NSD sets TC; asked again over TCP).
fn big_txt() -> String {
    (0..12).map(|i| format!("big TXT \"{i:02}-{}\"\n", "b".repeat(150))).collect()
}

/// The running hierarchy: its NSDs, the scripted servers, the root hints file.
pub struct Hierarchy {
    pub root_hints: PathBuf,
    pub dir: PathBuf,
    _peers: Vec<Peer>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Every query the server of `noedns.test.` got: source and bytes.
    pub noedns_queries: QueryLog,
    _lock: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl Hierarchy {
    /// Starts `servers` (and the scripted poisoner); `None` when NSD is
    /// not installed (a failure under PZDNS_REQUIRE_TOOLS).
    pub fn start(servers: &[Server]) -> Option<Hierarchy> {
        let nsd = super::tool("nsd")?;
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = scratch("hierarchy");
        let mut peers = Vec::new();
        for s in servers {
            let d = dir.join(s.addr.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let mut conf = format!(
                "server:\n  ip-address: {a}\n  port: 53\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\nremote-control:\n  control-enable: no\n",
                a = s.addr,
                d = d.display()
            );
            for (i, (name, text)) in s.zones.iter().enumerate() {
                let file = format!("z{i}.zone");
                std::fs::write(d.join(&file), text).unwrap();
                conf.push_str(&format!("zone:\n  name: \"{name}\"\n  zonefile: \"{file}\"\n"));
            }
            std::fs::write(d.join("nsd.conf"), conf).unwrap();
            let peer_dir = d.join("peer");
            std::fs::create_dir_all(&peer_dir).unwrap();
            peers.push(Peer::start(
                Command::new(&nsd).arg("-d").arg("-c").arg(d.join("nsd.conf")),
                peer_dir,
                SocketAddr::from((s.addr, 53)),
            ));
        }
        let root_hints = dir.join("root.hints");
        std::fs::write(&root_hints, ".  3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.53.0.101\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let noedns_queries: QueryLog = Arc::default();
        let threads = vec![
            scripted(POISONER, stop.clone(), referral_with_poisoned_glue, Arc::default()),
            scripted(POISON_TARGET, stop.clone(), poisoned_answer, Arc::default()),
            scripted(NOEDNS, stop.clone(), formerr_to_edns, noedns_queries.clone()),
            scripted(FLAKY, stop.clone(), every_other, Arc::default()),
        ];
        Some(Hierarchy { root_hints, dir, _peers: peers, stop, threads, noedns_queries, _lock: lock })
    }
}

impl Drop for Hierarchy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server of `evil.test.`: to any question, a referral of
/// `sub.evil.test.` to `ns.a.test.` with glue for `ns.a.test.` (another
/// zone: out of its bailiwick) pointing at [`POISON_TARGET`].
fn referral_with_poisoned_glue(q: &Message, _: usize) -> Option<Message> {
    let mut m = reply_to(q);
    let n = |s: &str| Name::from_ascii(s).unwrap();
    m.authorities.push(Record::from_rdata(n("sub.evil.test."), 3600, RData::NS(NS(n("ns.a.test.")))));
    m.additionals.push(Record::from_rdata(n("ns.a.test."), 3600, RData::A(A(POISON_TARGET))));
    Some(m)
}

/// What the poisoned glue leads to: 6.6.6.6 for any name, authoritatively.
fn poisoned_answer(q: &Message, _: usize) -> Option<Message> {
    let mut m = reply_to(q);
    m.metadata.authoritative = true;
    if let Some(question) = q.queries.first() {
        m.answers.push(Record::from_rdata(question.name().clone(), 3600, RData::A(A::new(6, 6, 6, 6))));
    }
    Some(m)
}

/// A server from before EDNS: FORMERR to a query with an OPT record,
/// else 192.0.2.112 for any name, authoritatively.
fn formerr_to_edns(q: &Message, _: usize) -> Option<Message> {
    let mut m = reply_to(q);
    if q.edns.is_some() {
        m.metadata.response_code = ResponseCode::FormErr;
    } else if let Some(question) = q.queries.first() {
        m.metadata.authoritative = true;
        m.answers.push(Record::from_rdata(question.name().clone(), 3600, RData::A(A::new(192, 0, 2, 112))));
    }
    Some(m)
}

/// A server behind a lossy path: the 1st, 3rd, 5th... query gets no reply,
/// the others 192.0.2.113 for any name, authoritatively.
fn every_other(q: &Message, n: usize) -> Option<Message> {
    let mut m = reply_to(q);
    m.metadata.authoritative = true;
    let question = q.queries.first()?;
    m.answers.push(Record::from_rdata(question.name().clone(), 3600, RData::A(A::new(192, 0, 2, 113))));
    (n % 2 == 1).then_some(m)
}

fn reply_to(q: &Message) -> Message {
    let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    m.metadata.response_code = ResponseCode::NoError;
    m.queries = q.queries.clone();
    m
}

/// A UDP server on `addr:53` answering the nth query (from 0) with
/// `answer(query, n)` (`None`: no reply), keeping what it got in `log`.
fn scripted(
    addr: Ipv4Addr,
    stop: Arc<AtomicBool>,
    answer: fn(&Message, usize) -> Option<Message>,
    log: QueryLog,
) -> std::thread::JoinHandle<()> {
    let sock = UdpSocket::bind((addr, 53)).unwrap_or_else(|e| panic!("bind {addr}:53: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut n_queries = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            log.lock().unwrap().push((from, buf[..n].to_vec()));
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            n_queries += 1;
            if let Some(Ok(bytes)) = answer(&q, n_queries - 1).map(|m| m.to_vec()) {
                let _ = sock.send_to(&bytes, from);
            }
        }
    })
}

/// An Unbound resolving from the same root hints, iterator only: the oracle.
pub fn unbound_oracle(h: &Hierarchy) -> Option<(Peer, SocketAddr)> {
    let unbound = super::tool("unbound")?;
    let dir = h.dir.join("unbound");
    std::fs::create_dir_all(&dir).unwrap();
    let port = crate::interop::free_udp_port("127.0.0.1");
    let d = dir.display();
    std::fs::write(
        dir.join("unbound.conf"),
        format!(
            "server:\n    interface: 127.0.0.1\n    port: {port}\n    do-ip6: no\n    do-daemonize: no\n    username: \"\"\n    chroot: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    access-control: 127.0.0.0/8 allow\n    do-not-query-localhost: no\n    local-zone: \"test.\" nodefault\n    module-config: \"iterator\"\n    root-hints: \"{hints}\"\n    qname-minimisation: yes\n    minimal-responses: yes\nremote-control:\n    control-enable: no\n",
            hints = h.root_hints.display()
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).unwrap();
    Some((Peer::start(Command::new(unbound).arg("-d").arg("-c").arg(dir.join("unbound.conf")), peer_dir, addr), addr))
}

/// A zones directory for pzdns: one VPC for all of loopback, and a
/// private zone `priv.test.` (a name the public hierarchy does not have).
pub fn private_zones(dir: &Path) -> PathBuf {
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    std::fs::write(zones.join("vpcs.yaml"), "vpcs:\n  - id: vpc-lo\n    cidrs: [127.0.0.0/8]\n").unwrap();
    std::fs::write(
        zones.join("priv.test.yaml"),
        "zone: priv.test\nvpcs: [vpc-lo]\nrecords:\n  - { name: host, type: A, value: 10.1.1.1 }\n",
    )
    .unwrap();
    zones
}
