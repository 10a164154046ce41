//! DNS Cookies (RFC 7873, RFC 9018 server cookies) against BIND 9.18:
//! `named` and pzdns on loopback with the same secret get the same
//! queries from `dig +cookie` and `kdig +cookie`, and must answer with the
//! same rcodes; cookies one makes are valid at the other (RFC 9018's
//! point), at replicas sharing a secret, and across a secret's rollover.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::interop::{Peer, free_udp_port, scratch};
use crate::support::*;

use pzdns::abuse::cookie::{Secrets, unix_now};

/// The secrets of these tests, in hex, as `cookie-secret` and `cookie_secret_file` take them.
const S1: &str = "00112233445566778899aabbccddeeff";
const S2: &str = "ffeeddccbbaa99887766554433221100";
/// The clients' source address: in vpc-a, which sees example.test.
const FROM: &str = "127.1.0.5";
/// A client cookie.
const CLIENT: &str = "0102030405060708";

pub(crate) fn bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// A server cookie for CLIENT at FROM, made with `secret` at `at` (Unix seconds), in hex.
fn minted(secret_hex: &str, at: u32) -> String {
    let s = Secrets { current: bytes(secret_hex).try_into().unwrap(), previous: None };
    let c: [u8; 8] = bytes(CLIENT).try_into().unwrap();
    s.make(&c, FROM.parse().unwrap(), at).iter().map(|b| format!("{b:02x}")).collect()
}

/// `named` answering example.test (www: 10.0.0.1 and 10.0.0.2, as the
/// pzdns fixture) with `secret`, requiring server cookies or not.
fn named(tag: &str, secret_hex: &str, require: bool) -> Option<(Peer, SocketAddr)> {
    let named = tool("named")?;
    let dir = scratch(tag);
    let port = free_udp_port("127.0.0.1");
    let d = dir.display();
    std::fs::write(
        dir.join("example.test.db"),
        "$TTL 300\n@ SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ NS ns\nns A 10.0.0.53\nwww A 10.0.0.1\nwww A 10.0.0.2\n",
    )
    .unwrap();
    let conf = format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    cookie-algorithm siphash24;
    cookie-secret "{secret_hex}";
    require-server-cookie {};
}};
controls {{ }};
zone "example.test" {{ type primary; file "{d}/example.test.db"; }};
"#,
        if require { "yes" } else { "no" }
    );
    std::fs::write(dir.join("named.conf"), conf).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let peer = Peer::start(Command::new(named).args(["-g", "-n", "1", "-c"]).arg(dir.join("named.conf")), dir, addr);
    Some((peer, addr))
}

/// pzdns with the rules fixture, `cookies: mode` and a secret file holding `secrets`.
fn pzdns(mode: &str, secrets: &str) -> (TestServer, std::path::PathBuf) {
    let file = std::env::temp_dir().join(format!("pzdns-cookie-secret-{}-{}", std::process::id(), rand_id()));
    std::fs::write(&file, secrets).unwrap();
    let cfg = format!(
        "listen:\n  - address: 127.0.0.1:0\nupstreams: []\nzones_dir: {{ZONES}}\nadmin:\n  listen: 127.0.0.1:0\ncookies: {mode}\ncookie_secret_file: {}\n",
        file.display()
    );
    (TestServer::start(Path::new(RULES_ZONES), &cfg), file)
}

/// What a client printed: the status and the COOKIE (hex, lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub status: String,
    pub cookie: Option<String>,
}

/// `dig` (or `kdig`) from FROM to `server` for www.example.test A with
/// `opts`: what the last response printed.
pub(crate) fn ask(bin: &Path, server: SocketAddr, opts: &[&str]) -> Seen {
    let kdig = bin.ends_with("kdig");
    let mut c = Command::new(bin);
    c.args(["-p", &server.port().to_string(), &format!("@{}", server.ip()), "-b", FROM, "+time=3"]);
    c.arg(if kdig { "+retry=0" } else { "+tries=1" });
    let out = c.args(opts).args(["www.example.test", "A"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // The last response (a client may retry a BADCOOKIE and print both).
    let status = text
        .rsplit("status: ")
        .next()
        .filter(|_| text.contains("status: "))
        .and_then(|s| s.split([',', ';']).next())
        .unwrap_or_else(|| panic!("no status from {bin:?} {opts:?}:\n{text}"))
        .to_string();
    let cookie = text
        .lines()
        .rev()
        .find_map(|l| l.trim_start_matches(';').trim_start().strip_prefix("COOKIE: "))
        .map(|c| c.split_whitespace().next().unwrap_or("").to_ascii_lowercase());
    Seen { status, cookie }
}

/// The server part of a COOKIE in hex (after the 16 hex digits of the client's).
fn server_part(s: &Seen) -> &str {
    &s.cookie.as_deref().expect("a COOKIE in the response")[16..]
}

#[test]
fn answered_as_bind_answers() {
    let (Some(dig), Some(kdig)) = (tool("dig"), tool("kdig")) else { return };
    for require in [false, true] {
        let Some((_named, bind)) = named(if require { "cookie-req" } else { "cookie-on" }, S1, require) else { return };
        let (pz, file) = pzdns(if require { "required" } else { "on" }, S1);
        let pz_addr = pz.addrs[0];
        let now = unix_now();
        let (fresh, stale) = (minted(S1, now), minted(S1, now - 7200));
        let bad = if require { "BADCOOKIE" } else { "NOERROR" };
        let with = |server: &str| format!("+cookie={CLIENT}{server}");
        let (garbage, fresh_opt, stale_opt) = (with("99887766554433221100aabbccddeeff"), with(&fresh), with(&stale));
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["+cookie"], bad),
            (vec!["+cookie=0102030405060708"], bad),
            (vec![garbage.as_str()], bad),
            (vec![stale_opt.as_str()], bad),
            (vec![fresh_opt.as_str()], "NOERROR"),
            (vec!["+cookie=0102030405"], "FORMERR"),
            (vec!["+cookie=0102030405060708090a0b0c"], "FORMERR"),
            (vec!["+cookie", "+header-only"], "NOERROR"),
            (vec!["+cookie", "+header-only", "+edns=1", "+noednsneg"], "BADVERS"),
            (vec!["+cookie", "+opcode=2"], "NOTIMP"),
            (vec!["+cookie", "+tcp"], "NOERROR"),
            (vec![garbage.as_str(), "+tcp"], "NOERROR"),
            (vec!["+nocookie"], "NOERROR"),
        ];
        for (opts, want) in &cases {
            let mut opts = opts.clone();
            opts.push("+nobadcookie");
            let (b, p) = (ask(&dig, bind, &opts), ask(&dig, pz_addr, &opts));
            let at = format!("require={require} dig {opts:?}: named {b:?}, pzdns {p:?}");
            assert_eq!((b.status.as_str(), p.status.as_str()), (*want, *want), "{at}");
            // Both send a cookie back exactly when the other does: 24 bytes,
            // the client's own first.
            assert_eq!(b.cookie.is_some(), p.cookie.is_some(), "{at}");
            if let Some(c) = &p.cookie {
                assert_eq!(c.len(), 48, "client and server cookie, 8 + 16 bytes: {at}");
                if opts[0].starts_with("+cookie=") {
                    assert!(c.starts_with(CLIENT), "{at}");
                }
            }
        }
        // Garbage and stale server cookies are replaced by both; a fresh
        // one is kept by pzdns (under half its life, RFC 9018 §4.3; BIND
        // stamps a new one on every response).
        for opt in [&garbage, &stale_opt] {
            for server in [bind, pz_addr] {
                let s = ask(&dig, server, &[opt, "+nobadcookie"]);
                assert_ne!(server_part(&s), &opt[8 + 16..], "{server}: {opt} was kept");
            }
        }
        assert_eq!(server_part(&ask(&dig, pz_addr, &[&fresh_opt, "+nobadcookie"])), fresh);
        // What one made, the other accepts (RFC 9018: the same secret, the same cookies).
        let from_named = ask(&dig, bind, &["+cookie=0102030405060708", "+nobadcookie"]);
        let from_pzdns = ask(&dig, pz_addr, &["+cookie=0102030405060708", "+nobadcookie"]);
        for (server, cookie) in [(pz_addr, &from_named), (bind, &from_pzdns)] {
            let opt = format!("+cookie={}", cookie.cookie.as_ref().unwrap());
            assert_eq!(ask(&dig, server, &[&opt, "+nobadcookie"]).status, "NOERROR", "{server} given {cookie:?}");
        }
        // kdig, which retries a BADCOOKIE with the cookie it got, as dig does by default.
        for server in [bind, pz_addr] {
            let k = ask(&kdig, server, &["+cookie"]);
            assert_eq!((k.status.as_str(), k.cookie.as_ref().map(String::len)), ("NOERROR", Some(48)), "kdig {server}");
            assert_eq!(ask(&dig, server, &["+cookie"]).status, "NOERROR", "dig {server}");
        }
        let metrics = http(pz.admin.unwrap(), "GET", "/metrics").1;
        for result in ["client_only", "valid", "invalid", "malformed"] {
            assert!(metric(&metrics, &format!("pzdns_cookies_total{{result=\"{result}\"}}")) > 0.0, "{result}:\n{metrics}");
        }
        let badcookies = metric(&metrics, "pzdns_cookies_total{result=\"badcookie\"}");
        assert_eq!(badcookies > 0.0, require, "BADCOOKIE answered only where required");
        std::fs::remove_file(file).ok();
    }
}

/// Waits (at most 10 s, through reloads) until `server` answers `opt` with `want`.
fn until(dig: &Path, server: SocketAddr, opt: &str, want: &str) {
    let t = Instant::now();
    loop {
        let s = ask(dig, server, &[opt, "+nobadcookie"]);
        if s.status == want {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{server} {opt}: {s:?}, not {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn replicas_share_a_secret_and_roll_it_over() {
    let Some(dig) = tool("dig") else { return };
    let (a, file_a) = pzdns("required", &format!("{S1}\n"));
    let (b_server, file_b) = pzdns("required", &format!("# the same secret as A\n{S1}\n"));
    let (c_server, file_c) = pzdns("required", &format!("{S2}\n{S1}\n"));
    let (b, c_addr) = (b_server.addrs[0], c_server.addrs[0]);
    let got = ask(&dig, a.addrs[0], &["+cookie=0102030405060708", "+nobadcookie"]);
    assert_eq!(got.status, "BADCOOKIE");
    let from_a = format!("+cookie={}", got.cookie.unwrap());
    // B shares A's secret: A's cookie is valid there, and kept as it is.
    let at_b = ask(&dig, b, &[&from_a, "+nobadcookie"]);
    assert_eq!((at_b.status.as_str(), format!("+cookie={}", at_b.cookie.unwrap())), ("NOERROR", from_a.clone()));
    // C has rolled over to S2, S1 still accepted: valid, and renewed under S2.
    let at_c = ask(&dig, c_addr, &[&from_a, "+nobadcookie"]);
    assert_eq!(at_c.status, "NOERROR");
    let from_c = format!("+cookie={}", at_c.cookie.unwrap());
    assert_ne!(from_c, from_a, "a cookie of the previous secret is renewed");
    // A does not know S2 yet.
    assert_eq!(ask(&dig, a.addrs[0], &[&from_c, "+nobadcookie"]).status, "BADCOOKIE");
    // A rolls over on reload: S2 first, S1 kept.
    std::fs::write(&file_a, format!("{S2}\n{S1}\n")).unwrap();
    unsafe { libc::kill(a.pid(), libc::SIGHUP) };
    until(&dig, a.addrs[0], &from_c, "NOERROR");
    assert_eq!(ask(&dig, a.addrs[0], &[&from_a, "+nobadcookie"]).status, "NOERROR", "S1 is still accepted");
    // Then S1 goes.
    std::fs::write(&file_a, format!("{S2}\n")).unwrap();
    unsafe { libc::kill(a.pid(), libc::SIGHUP) };
    until(&dig, a.addrs[0], &from_a, "BADCOOKIE");
    assert_eq!(ask(&dig, a.addrs[0], &[&from_c, "+nobadcookie"]).status, "NOERROR");
    // A bad secret file fails the reload; the secrets in force stay.
    std::fs::write(&file_a, "not hex\n").unwrap();
    unsafe { libc::kill(a.pid(), libc::SIGHUP) };
    let t = Instant::now();
    while !a.stderr().contains("cookie_secret_file") {
        assert!(t.elapsed() < Duration::from_secs(10), "the bad secret file is not reported: {}", a.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.stderr().contains("is not a secret of 16 bytes in hex"), "{}", a.stderr());
    assert_eq!(ask(&dig, a.addrs[0], &[&from_c, "+nobadcookie"]).status, "NOERROR");
    for f in [file_a, file_b, file_c] {
        std::fs::remove_file(f).ok();
    }
}
