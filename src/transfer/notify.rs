//! NOTIFY (RFC 1996) to a view's secondaries for every zone of the view
//! (and its catalog) whose serial changed with a load, signed with the
//! view's key, sent again with backoff until acknowledged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use rustc_hash::FxHashMap;

use super::tsig::{self, Signer};
use crate::config::transfers::TsigKey;
use crate::dns::names::name_key;
use crate::dns::{AA, CLASS_IN, OPCODE_NOTIFY, TYPE_SOA};
use crate::metrics::{Metrics, NotifyLabels, ZoneLabels};
use crate::snapshot::{Snapshot, VpcIdx};

/// Attempts per NOTIFY; the wait doubles from [`FIRST_WAIT`] after each.
pub const ATTEMPTS: u32 = 5;
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// A zone's serial as a view's secondaries see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial {
    pub zone: Name,
    pub serial: u32,
}

/// Every zone `vpc`'s secondaries may copy, the catalog included, with its serial.
pub fn serials(snap: &Snapshot, vpc: VpcIdx) -> Vec<Serial> {
    let mut out: Vec<Serial> = snap.transferable_zones(vpc).map(|z| Serial { zone: z.origin.clone(), serial: z.serial }).collect();
    if let (Some(zone), Some(c)) = (snap.catalog_zone(vpc), snap.catalogs.get(vpc as usize)) {
        out.push(Serial { zone, serial: c.serial });
    }
    out
}

/// One NOTIFY to send: the zone, to whom, signed with which key.
#[derive(Debug, Clone)]
pub struct Notice {
    pub vpc: String,
    pub key: TsigKey,
    pub zone: Name,
    pub target: SocketAddr,
}

/// The NOTIFYs a load calls for: per key with secondaries, each zone of
/// its view new or with another serial than in `prev` (every zone when
/// there is no `prev`: a start). Sets the serial gauges on the way.
pub fn after_load(prev: Option<&Snapshot>, next: &Snapshot, metrics: &Metrics) -> Vec<Notice> {
    let mut out = Vec::new();
    // The serial series of views no longer served, or zones gone, are removed.
    if let Some(p) = prev {
        for (_, v) in &p.transfer_keys {
            let id = &p.vpcs[*v as usize].id;
            let now: Vec<Name> = next.vpc_index(id).map(|nv| serials(next, nv).into_iter().map(|s| s.zone).collect()).unwrap_or_default();
            for s in serials(p, *v) {
                if !now.contains(&s.zone) {
                    metrics.zone_serial.remove(&ZoneLabels { vpc: id.clone(), zone: s.zone.to_string() });
                }
            }
        }
    }
    let mut done_views: Vec<VpcIdx> = Vec::new();
    for (key, vpc) in &next.transfer_keys {
        let id = &next.vpcs[*vpc as usize].id;
        let before: FxHashMap<Name, u32> = prev
            .and_then(|p| p.vpc_index(id).map(|pv| serials(p, pv).into_iter().map(|s| (s.zone, s.serial)).collect()))
            .unwrap_or_default();
        for s in serials(next, *vpc) {
            if !done_views.contains(vpc) {
                metrics.zone_serial.get_or_create(&ZoneLabels { vpc: id.clone(), zone: s.zone.to_string() }).set(i64::from(s.serial));
            }
            if before.get(&s.zone) == Some(&s.serial) {
                continue;
            }
            for t in &key.notify {
                out.push(Notice { vpc: id.clone(), key: key.clone(), zone: s.zone.clone(), target: *t });
            }
        }
        done_views.push(*vpc);
    }
    out
}

/// NOTIFYs under way at once (each holds a socket): a start with many
/// zones queues the rest.
pub const MAX_IN_FLIGHT: usize = 64;

static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_IN_FLIGHT);

/// Sends each notice on its own task (on the current tokio runtime), at
/// most [`MAX_IN_FLIGHT`] at a time.
pub fn spawn(notices: Vec<Notice>, metrics: Arc<Metrics>) {
    for n in notices {
        let m = metrics.clone();
        tokio::spawn(async move {
            let Ok(_permit) = IN_FLIGHT.acquire().await else { return };
            send(n, &m).await
        });
    }
}

/// The NOTIFY message for `zone`, id `id`, signed with `key` at `now`,
/// and its MAC (what the secondary's signed response chains from).
pub fn message(key: &TsigKey, zone: &Name, id: u16, now: u64) -> (Vec<u8>, Vec<u8>) {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&((u16::from(OPCODE_NOTIFY) << 11) | AA).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(&name_key(zone));
    m.extend_from_slice(&TYPE_SOA.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    let mut signer = Signer::for_request(key, id);
    signer.sign(&mut m, now, 0, &[]);
    (m, signer.last_mac().to_vec())
}

/// Sends one NOTIFY until a response with its id comes back, at most
/// [`ATTEMPTS`] times, waiting twice as long after each.
async fn send(n: Notice, metrics: &Metrics) {
    let unspecified = match n.target.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let count = |result: &'static str| metrics.notifies.get_or_create(&NotifyLabels { vpc: n.vpc.clone(), result }).inc();
    let Ok(sock) = tokio::net::UdpSocket::bind(SocketAddr::new(unspecified, 0)).await else {
        count("failed");
        return;
    };
    if sock.connect(n.target).await.is_err() {
        count("failed");
        return;
    }
    let id: u16 = rand::random();
    let mut wait = FIRST_WAIT;
    let mut buf = vec![0u8; 4096];
    for _ in 0..ATTEMPTS {
        let (msg, mac) = message(&n.key, &n.zone, id, tsig::now());
        count("sent");
        let deadline = tokio::time::Instant::now() + wait;
        if sock.send(&msg).await.is_ok() {
            // A refused port (ICMP) ends the wait early: the deadline still holds below.
            while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                let r = &buf[..len];
                // A response (QR) to this id and opcode, signed with the key
                // over our MAC: acknowledged. Anything else (a forgery, a
                // secondary without the key) is not.
                if len >= 12
                    && r[..2] == id.to_be_bytes()
                    && r[2] & 0x80 != 0
                    && (r[2] >> 3) & 0xf == OPCODE_NOTIFY
                    && r[3] & 0x0f == 0
                    && tsig::verify_response(&n.key, r, &mac, tsig::now())
                {
                    count("acknowledged");
                    tracing::debug!(zone = %n.zone, target = %n.target, "NOTIFY acknowledged");
                    return;
                }
            }
        }
        tokio::time::sleep_until(deadline).await;
        wait *= 2;
    }
    count("failed");
    tracing::warn!(zone = %n.zone, target = %n.target, "NOTIFY not acknowledged after {ATTEMPTS} attempts");
}
