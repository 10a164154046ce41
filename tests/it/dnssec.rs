//! DNSSEC validation against a signed hierarchy built here
//! (tests/fixtures/dnssec/make-zones.sh: a root, a TLD with NSEC3
//! opt-out, a secure leaf with NSEC and wildcards, an insecure
//! delegation, a bogus zone, expired signatures, an NSEC3 leaf, a
//! glueless delegation, a zone with a lame server), served by NSD on
//! 127.53.1.1–3 port 53. In forward mode pzdns forwards to an Unbound that
//! only iterates (127.53.1.10); in recursive mode it resolves from the
//! same root hints itself. The oracle is a second Unbound that validates
//! (127.53.1.11) with the same hints and trust anchor. For every name ×
//! type × DO × CD, pzdns must give the same rcode, answer RRsets and AD bit.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::interop::{Peer, scratch};
use crate::support::*;
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

const NSD: [(&str, &str, &str); 3] =
    [("127.53.1.1", ".", "root.signed"), ("127.53.1.2", "test.", "test.signed"), ("127.53.1.3", "leaves", "")];
const LEAVES: [&str; 7] = ["secure", "insecure", "bogus", "expired", "nsec3", "glueless", "lame"];
const ITERATOR: &str = "127.53.1.10";
const ORACLE: &str = "127.53.1.11";

fn nsd_conf(dir: &Path, i: usize, ip: &str, zones: &[(&str, &str)]) -> String {
    let d = dir.display();
    let mut c = format!(
        "server:\n  ip-address: {ip}\n  port: 53\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd{i}.pid\"\n  \
         database: \"\"\n  xfrdfile: \"{d}/xfrd{i}.state\"\n  zonelistfile: \"{d}/zone{i}.list\"\n  server-count: 1\n  rrl-ratelimit: 0\n  verbosity: 1\n\
         remote-control:\n  control-enable: no\n"
    );
    for (name, file) in zones {
        c.push_str(&format!("zone:\n  name: \"{name}\"\n  zonefile: \"{d}/{file}\"\n"));
    }
    c
}

fn unbound_conf(dir: &Path, ip: &str, modules: &str, anchor: &str) -> String {
    let d = dir.display();
    let anchor = if anchor.is_empty() { String::new() } else { format!("    trust-anchor: \"{anchor}\"\n") };
    format!(
        r#"server:
    interface: {ip}
    port: 53
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound-{ip}.pid"
    use-syslog: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "{modules}"
    root-hints: "{d}/hints"
    local-zone: "test." nodefault
    qname-minimisation: no
    num-threads: 1
    ede: yes
    val-log-level: 2
{anchor}remote-control:
    control-enable: no
"#
    )
}

/// The EDE INFO-CODE of a response, if any.
fn ede(m: &Message) -> Option<u16> {
    match m.edns.as_ref()?.option(EdnsCode::from(15u16))? {
        EdnsOption::Unknown(_, data) if data.len() >= 2 => Some(u16::from_be_bytes([data[0], data[1]])),
        _ => None,
    }
}

/// What is compared: rcode, the answer RRsets (TTLs aside), AD.
fn shape(m: &Message) -> (String, BTreeSet<String>, bool) {
    let answers = m.answers.iter().map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.data)).collect();
    (m.metadata.response_code.to_string(), answers, m.metadata.authentic_data)
}

fn ask(server: SocketAddr, name: &str, t: RecordType, dnssec_ok: bool, cd: bool) -> Message {
    ask_from(server, "127.0.0.1", name, t, dnssec_ok, cd)
}

fn ask_from(server: SocketAddr, from: &str, name: &str, t: RecordType, dnssec_ok: bool, cd: bool) -> Message {
    let mut q = query(name, t, None);
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(dnssec_ok);
    q.set_edns(e);
    q.metadata.checking_disabled = cd;
    tcp(server, from, &q)
}

/// The oracle's answer. Unbound, meeting lame.test.'s dead server, may
/// pick it again and back off (each time twice as long), and at times
/// closes the connection before it answers; asked again, it answers from
/// what it resolved meanwhile.
fn ask_oracle(name: &str, t: RecordType, dnssec_ok: bool, cd: bool) -> Message {
    let oracle: SocketAddr = format!("{ORACLE}:53").parse().unwrap();
    for _ in 0..3 {
        if let Ok(m) = std::panic::catch_unwind(|| ask(oracle, name, t, dnssec_ok, cd)) {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    ask(oracle, name, t, dnssec_ok, cd)
}

/// The hierarchy served and the two Unbounds in front of it. Dropped: every process stopped.
struct World {
    peers: Vec<Peer>,
    dir: std::path::PathBuf,
    anchor: String,
    /// One world at a time: they take the same addresses.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.peers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn world(tag: &str) -> Option<World> {
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    for t in ["nsd", "unbound", "dnssec-keygen", "dnssec-signzone", "dnssec-dsfromkey"] {
        tool(t)?;
    }
    let dir = scratch(tag);
    let made = Command::new("sh").arg("tests/fixtures/dnssec/make-zones.sh").arg(&dir).status().unwrap();
    assert!(made.success(), "make-zones.sh failed");
    let anchor = std::fs::read_to_string(dir.join("root.ds")).unwrap().trim().to_string();
    std::fs::write(dir.join("hints"), ". 3600000 IN NS a.root-servers.test.\na.root-servers.test. 3600000 IN A 127.53.1.1\n").unwrap();
    let mut peers = Vec::new();
    for (i, (ip, zone, file)) in NSD.iter().enumerate() {
        let zones: Vec<(String, String)> = if *zone == "leaves" {
            LEAVES.iter().map(|l| (format!("{l}.test."), format!("{l}.signed"))).collect()
        } else {
            vec![(zone.to_string(), file.to_string())]
        };
        let zones: Vec<(&str, &str)> = zones.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let conf = dir.join(format!("nsd{i}.conf"));
        std::fs::write(&conf, nsd_conf(&dir, i, ip, &zones)).unwrap();
        let pdir = dir.join(format!("nsd{i}"));
        std::fs::create_dir_all(&pdir).unwrap();
        peers.push(Peer::start(Command::new(tool("nsd")?).arg("-d").arg("-c").arg(&conf), pdir, format!("{ip}:53").parse().unwrap()));
    }
    for (ip, modules, anchor) in [(ITERATOR, "iterator", ""), (ORACLE, "validator iterator", anchor.as_str())] {
        let conf = dir.join(format!("unbound-{ip}.conf"));
        std::fs::write(&conf, unbound_conf(&dir, ip, modules, anchor)).unwrap();
        let pdir = dir.join(format!("unbound-{ip}"));
        std::fs::create_dir_all(&pdir).unwrap();
        peers.push(Peer::start(Command::new(tool("unbound")?).arg("-d").arg("-c").arg(&conf), pdir, format!("{ip}:53").parse().unwrap()));
    }
    Some(World { peers, dir, anchor, _turn: turn })
}

/// How pzdns reaches the signed hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forwarding to the iterating Unbound.
    Forward,
    /// `resolver.mode: recursive` from the hierarchy's root hints.
    Recursive,
}

impl World {
    /// pzdns in `mode`, validating with the local root's DS (`dnssec`), more resolver keys in `resolver`.
    fn pzdns_in(&self, mode: Mode, dnssec: &str, resolver: &str) -> TestServer {
        let recursive = format!("  mode: recursive\n  root_hints: {}\n", self.dir.join("hints").display());
        self.pzdns(dnssec, &format!("{}{resolver}", if mode == Mode::Recursive { recursive.as_str() } else { "" }))
    }

    /// pzdns forwarding to the iterating Unbound (unless `resolver` sets the mode), validating with the local root's DS.
    fn pzdns(&self, dnssec: &str, resolver: &str) -> TestServer {
        // One VPC (127.0.0.77) with a private zone whose name points into the signed world.
        let zones = self.dir.join("pzdns-zones");
        std::fs::create_dir_all(&zones).unwrap();
        std::fs::write(zones.join("vpcs.yaml"), "vpcs:\n  - id: vpc-a\n    cidrs: [127.0.0.77/32]\n").unwrap();
        std::fs::write(
            zones.join("private.test.yaml"),
            "zone: private.test\nvpcs: [vpc-a]\nrecords:\n  - { name: www, type: CNAME, value: www.secure.test }\n  - { name: a, type: A, value: 10.0.0.1 }\n",
        )
        .unwrap();
        std::fs::write(self.dir.join("anchor.ds"), format!("{}\n", self.anchor)).unwrap();
        let cfg = format!(
            "listen:\n  - address: 127.0.0.1:0\nupstreams: [{ITERATOR}:53]\nunknown_clients: forward\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\n\
             resolver:\n  dnssec: {dnssec}\n  trust_anchors: {}\n{resolver}",
            self.dir.join("anchor.ds").display()
        );
        TestServer::start(&zones, &cfg)
    }
}

const CORPUS: &[(&str, RecordType)] = &[
    ("www.secure.test.", RecordType::A),
    ("www.secure.test.", RecordType::AAAA),
    ("www.secure.test.", RecordType::MX),
    ("txt.secure.test.", RecordType::TXT),
    ("mx.secure.test.", RecordType::MX),
    ("nx.secure.test.", RecordType::A),
    ("x.wild.secure.test.", RecordType::A),
    ("x.wild.secure.test.", RecordType::AAAA),
    ("deep.secure.test.", RecordType::A),
    ("cn.secure.test.", RecordType::A),
    ("cn2.secure.test.", RecordType::A),
    ("secure.test.", RecordType::DNSKEY),
    ("secure.test.", RecordType::DS),
    ("secure.test.", RecordType::SOA),
    ("www.insecure.test.", RecordType::A),
    ("back.insecure.test.", RecordType::A),
    ("nx.insecure.test.", RecordType::A),
    ("insecure.test.", RecordType::DS),
    ("www.bogus.test.", RecordType::A),
    ("ok.bogus.test.", RecordType::A),
    ("www.expired.test.", RecordType::A),
    ("www.nsec3.test.", RecordType::A),
    ("www.nsec3.test.", RecordType::MX),
    ("nx.nsec3.test.", RecordType::A),
    ("a.wild.nsec3.test.", RecordType::TXT),
    ("nope.test.", RecordType::A),
    ("test.", RecordType::SOA),
    ("www.glueless.test.", RecordType::A),
    ("www.glueless.test.", RecordType::TXT),
    ("ns.secure.test.", RecordType::A),
    ("www.lame.test.", RecordType::A),
    ("nx.lame.test.", RecordType::A),
    ("x.wc.secure.test.", RecordType::A),
];

#[test]
fn forward_mode_validates_as_unbound_does() {
    validates_as_unbound_does(Mode::Forward, "dnssec-oracle");
}

/// Recursive mode: the DS and DNSKEY sets fetched by pzdns itself (each
/// DS of the parent's servers), the same table as forward mode's.
#[test]
fn recursive_mode_validates_as_unbound_does() {
    validates_as_unbound_does(Mode::Recursive, "dnssec-oracle-rec");
}

fn validates_as_unbound_does(mode: Mode, tag: &str) {
    let Some(w) = world(tag) else { return };
    let pz = w.pzdns_in(mode, "validate", "");
    let mut rows = Vec::new();
    let mut differ = 0;
    // CD=0 first, so that both have validated what a CD=1 question finds in their caches.
    for (cd, dnssec_ok) in [(false, false), (false, true), (true, false), (true, true)] {
        for (name, t) in CORPUS {
            let (p, u) = (ask(pz.addrs[0], name, *t, dnssec_ok, cd), ask_oracle(name, *t, dnssec_ok, cd));
            let (ps, us) = (shape(&p), shape(&u));
            let same = ps == us;
            differ += usize::from(!same);
            rows.push(format!(
                "{} {name:<22} {t:<6} DO={} CD={} | pzdns {:<8} AD={} {} rr | unbound {:<8} AD={} {} rr{}",
                if same { "  " } else { "!!" },
                u8::from(dnssec_ok),
                u8::from(cd),
                ps.0,
                u8::from(ps.2),
                ps.1.len(),
                us.0,
                u8::from(us.2),
                us.1.len(),
                if same { String::new() } else { format!("\n     pzdns {:?}\n   unbound {:?}", ps.1, us.1) }
            ));
        }
    }
    eprintln!("{mode:?} mode:\n{}", rows.join("\n"));
    assert_eq!(differ, 0, "{differ} answers differ from Unbound's (the table above)");
}

/// Recursive mode: the DS and DNSKEY questions of a validation are
/// authority queries of the client's question, within its work bound and
/// counted with it; the sets are cached, so the next name under the same
/// zone costs its one query.
#[test]
fn recursive_validation_spends_the_questions_work() {
    let Some(w) = world("dnssec-work") else { return };
    let pz = w.pzdns_in(Mode::Recursive, "validate", "");
    let spent = || {
        let m = http(pz.admin.unwrap(), "GET", "/metrics").1;
        (metric(&m, "pzdns_authority_queries_per_resolution_count"), metric(&m, "pzdns_authority_queries_per_resolution_sum"))
    };
    assert!(ask(pz.addrs[0], "www.secure.test.", RecordType::A, true, false).metadata.authentic_data);
    // 3 to resolve (`test.` of the root, `secure.test.` of test., the name of
    // secure.test.), 5 for the chain of trust: DNSKEY `.`, DS and DNSKEY of
    // `test.` and of `secure.test.`.
    assert_eq!(spent(), (1.0, 8.0));
    assert!(ask(pz.addrs[0], "txt.secure.test.", RecordType::TXT, true, false).metadata.authentic_data);
    assert_eq!(spent(), (2.0, 9.0));
}

#[test]
fn bogus_answers_carry_the_precise_extended_error_and_cd_gets_the_data() {
    bogus_answers_carry_the_precise_extended_error(Mode::Forward, "dnssec-ede");
}

#[test]
fn recursive_bogus_answers_carry_the_precise_extended_error_and_cd_gets_the_data() {
    bogus_answers_carry_the_precise_extended_error(Mode::Recursive, "dnssec-ede-rec");
}

fn bogus_answers_carry_the_precise_extended_error(mode: Mode, tag: &str) {
    let Some(w) = world(tag) else { return };
    let pz = w.pzdns_in(mode, "validate", "");
    for (name, code) in [("www.bogus.test.", 6), ("www.expired.test.", 7)] {
        let r = ask(pz.addrs[0], name, RecordType::A, true, false);
        assert_eq!(r.metadata.response_code.to_string(), "Server Failure", "{name}");
        assert_eq!(ede(&r), Some(code), "{name}");
        let cd = ask(pz.addrs[0], name, RecordType::A, true, true);
        assert_eq!(cd.metadata.response_code.to_string(), "No Error", "{name} with CD=1: the data as received");
        assert!(!cd.answers.is_empty() && !cd.metadata.authentic_data, "{name}");
        // The CD=1 answer did not make it good for the others.
        assert_eq!(ask(pz.addrs[0], name, RecordType::A, true, false).metadata.response_code.to_string(), "Server Failure");
    }
    // Cached with its status, a bogus answer for at most a minute (its TTL is an hour).
    let dump = http(pz.admin.unwrap(), "GET", "/cache?name=www.bogus.test.").1;
    let line = dump.lines().find(|l| l.contains("DO=1") && l.contains("dnssec=bogus")).unwrap_or_else(|| panic!("{dump}"));
    let left: u32 =
        line.split("expires in ").nth(1).and_then(|t| t.trim_end_matches(" dnssec=bogus").trim_end_matches('s').parse().ok()).unwrap();
    assert!(left <= 60, "{line}");
    assert!(ask(pz.addrs[0], "ok.bogus.test.", RecordType::A, true, false).metadata.authentic_data);
    let dump = http(pz.admin.unwrap(), "GET", "/cache?name=ok.bogus.test.").1;
    assert!(dump.contains("dnssec=secure") && dump.contains("expires in 3"), "{dump}");
    // Local data is never AD, even where it leads into secure data; the secure data alone is.
    for (name, ad) in [("a.private.test.", false), ("www.private.test.", false), ("www.secure.test.", true)] {
        let r = ask_from(pz.addrs[0], "127.0.0.77", name, RecordType::A, true, false);
        assert_eq!((r.metadata.response_code.to_string().as_str(), r.metadata.authentic_data), ("No Error", ad), "{name}");
    }
    // The address of a glueless delegation's server, looked up on the way
    // to www.glueless.test. (not validated then), is validated before a client gets it.
    assert!(ask(pz.addrs[0], "www.glueless.test.", RecordType::A, false, false).answers.len() == 1);
    let mut q = query("ns.secure.test.", RecordType::A, None);
    q.metadata.authentic_data = true;
    let r = tcp(pz.addrs[0], "127.0.0.1", &q);
    assert!(r.metadata.authentic_data && r.answers.len() == 1, "AD=1 asked without DO: {r:?}");
    let metrics = http(pz.admin.unwrap(), "GET", "/metrics").1;
    assert!(metric(&metrics, "pzdns_dnssec_answers_total{status=\"bogus\"}") >= 4.0, "{metrics}");
    // explain, from outside: the validation status of the cached answers, and the delegations in recursive mode.
    let explain = |name: &str| http(pz.admin.unwrap(), "GET", &format!("/explain?from=127.0.0.1&name={name}")).1;
    let bogus = explain("www.bogus.test.");
    assert!(bogus.contains("DNSSEC bogus: no signature verifies (Extended DNS Error 6)"), "{bogus}");
    let secure = explain("www.secure.test.");
    assert!(secure.contains("cached for DO=1: NOERROR, 2 answer record(s)") && secure.contains("DNSSEC secure"), "{secure}");
    assert!(!ask(pz.addrs[0], "www.insecure.test.", RecordType::A, true, false).metadata.authentic_data);
    assert!(explain("www.insecure.test.").contains("DNSSEC insecure"));
    assert!(explain("never.asked.test.").contains("not in the cache: asked on the next query, validated when it arrives"));
    if mode == Mode::Recursive {
        assert!(secure.contains("  secure.test. → ns.leaf.test. 127.53.1.3"), "{secure}");
    }
    assert!(pz.stderr().contains("bogus.test"), "the log names the zone: {}", pz.stderr());
}

#[test]
fn negative_trust_anchors_reload_and_validation_off() {
    negative_trust_anchors_and_off(Mode::Forward, "dnssec-nta");
}

#[test]
fn recursive_negative_trust_anchors_reload_and_validation_off() {
    negative_trust_anchors_and_off(Mode::Recursive, "dnssec-nta-rec");
}

fn negative_trust_anchors_and_off(mode: Mode, tag: &str) {
    let Some(w) = world(tag) else { return };
    let pz = w.pzdns_in(mode, "validate", "");
    assert_eq!(ask(pz.addrs[0], "www.bogus.test.", RecordType::A, true, false).metadata.response_code.to_string(), "Server Failure");
    // A negative trust anchor added on reload applies at once (the cached bogus answer goes).
    let path = pz.dir.join("pzdns.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}  negative_trust_anchors: [bogus.test]\n")).unwrap();
    let (code, body) = http(pz.admin.unwrap(), "POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let r = ask(pz.addrs[0], "www.bogus.test.", RecordType::A, true, false);
    assert_eq!(r.metadata.response_code.to_string(), "No Error");
    assert!(!r.metadata.authentic_data, "under a negative trust anchor: never AD");
    let s = ask(pz.addrs[0], "www.secure.test.", RecordType::A, true, false);
    assert!(s.metadata.authentic_data, "elsewhere validated as before");
    let off = w.pzdns_in(mode, "off", "");
    let r = ask(off.addrs[0], "www.expired.test.", RecordType::A, true, false);
    assert_eq!(r.metadata.response_code.to_string(), "No Error");
    assert!(!ask(off.addrs[0], "www.secure.test.", RecordType::A, true, false).metadata.authentic_data, "off: never AD");
}

/// `pzdns check` names the file, line and column of each problem of the
/// resolver keys and of the trust anchor file.
#[test]
fn check_names_file_line_and_column_of_resolver_problems() {
    let dir = scratch("dnssec-check");
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("anchors.ds"), "; comment\n. IN DS 20326 8 2 E06D44B8\nexample IN DS 1 8 2 AB\n. IN DNSKEY 257 2 13 AAAA\n")
        .unwrap();
    std::fs::write(
        dir.join("pzdns.yaml"),
        "upstreams: []\nzones_dir: zones\nresolver:\n  dnssec: maybe\n  trust_anchors: anchors.ds\n  negative_trust_anchors: [\"bad..name\"]\n",
    )
    .unwrap();
    let out = pzdns_command().args(["check", "--config"]).arg(dir.join("pzdns.yaml")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "anchors.ds:3:1: trust anchor owner `example` must be a fully qualified name",
        "anchors.ds:4:1: the DNSKEY protocol is 2; it is always 3",
        "pzdns.yaml:4:11: resolver.dnssec `maybe` must be `validate` or `off`",
        "pzdns.yaml:6:28: resolver.negative_trust_anchors: `bad..name` is not a domain name",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
