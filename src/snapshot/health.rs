//! What is known of each health-checked address (SPEC §10), shared by
//! every snapshot of one server: the query path reads a target's state
//! with one atomic load; the checker (module `health`) writes it.
//!
//! A target (address and check) keeps its id, and so its state, for as
//! long as some snapshot in force refers to it: a reload that keeps a
//! record keeps its state (no flap), a changed target starts unknown.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use crate::config::routing::Target;

/// No health check on a record.
pub const NO_HEALTH: u32 = u32::MAX;

/// A target's state as answers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet decided (new, or not checked enough): answered.
    Unknown,
    Healthy,
    /// Failed `failure_threshold` checks in a row: left out of answers
    /// while some record of its set is not.
    Unhealthy,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One check's outcome, kept for `/zones`, `explain` and `/metrics`.
#[derive(Debug, Clone)]
pub struct LastResult {
    pub ok: bool,
    /// What happened, in words ("connected", "HTTP 503", "timed out after 2s").
    pub detail: String,
    pub at: SystemTime,
}

/// One target, as the checker and the admin API see it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub target: Target,
    /// Referred to by the snapshot in force (the checker checks only these).
    pub live: bool,
    pub successes: u32,
    pub failures: u32,
    pub last: Option<LastResult>,
    /// When its state last changed.
    pub since: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Registry {
    ids: HashMap<Target, u32>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
}

/// The targets of one server and their states.
#[derive(Debug)]
pub struct HealthTable {
    states: Box<[AtomicU8]>,
    inner: Mutex<Registry>,
}

/// A state change, for the checker to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub target: Target,
    pub from: Health,
    pub to: Health,
}

impl HealthTable {
    /// Room for `capacity` targets (`health_checks.max_targets`, fixed at start).
    pub fn new(capacity: usize) -> Self {
        HealthTable { states: (0..capacity).map(|_| AtomicU8::new(0)).collect(), inner: Mutex::new(Registry::default()) }
    }

    pub fn capacity(&self) -> usize {
        self.states.len()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id of `target`: its own if known, else a new one (state
    /// unknown, not checked until a snapshot that refers to it is in
    /// force). `None` when the table is full.
    pub fn intern(&self, target: &Target) -> Option<u32> {
        let mut r = self.registry();
        if let Some(&id) = r.ids.get(target) {
            return Some(id);
        }
        let id = match r.free.pop() {
            Some(id) => id,
            None if r.slots.len() < self.states.len() => {
                r.slots.push(None);
                (r.slots.len() - 1) as u32
            }
            None => return None,
        };
        self.states[id as usize].store(Health::Unknown.to_u8(), Ordering::Relaxed);
        r.slots[id as usize] = Some(Slot { target: target.clone(), live: false, successes: 0, failures: 0, last: None, since: None });
        r.ids.insert(target.clone(), id);
        Some(id)
    }

    /// The snapshot referring to exactly `live` is in force: those are
    /// checked, every other target is forgotten (its id may be reused).
    pub fn retain(&self, live: &[u32]) {
        let mut r = self.registry();
        let mut keep = vec![false; r.slots.len()];
        for &id in live {
            if let Some(k) = keep.get_mut(id as usize) {
                *k = true;
            }
        }
        for (id, k) in keep.into_iter().enumerate() {
            match (&mut r.slots[id], k) {
                (Some(s), true) => s.live = true,
                (Some(_), false) => {
                    let s = r.slots[id].take().expect("checked above");
                    r.ids.remove(&s.target);
                    r.free.push(id as u32);
                    self.states[id].store(Health::Unknown.to_u8(), Ordering::Relaxed);
                }
                (None, _) => {}
            }
        }
    }

    /// A target's state; an id the table does not know is answered.
    #[inline]
    pub fn state(&self, id: u32) -> Health {
        match self.states.get(id as usize) {
            Some(s) => Health::from_u8(s.load(Ordering::Relaxed)),
            None => Health::Unknown,
        }
    }

    /// Whether a record with this target is answered (anything but unhealthy).
    #[inline]
    pub fn answerable(&self, id: u32) -> bool {
        id == NO_HEALTH || self.state(id) != Health::Unhealthy
    }

    /// The targets to check now.
    pub fn live(&self) -> Vec<(u32, Target)> {
        let r = self.registry();
        r.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().filter(|s| s.live).map(|s| (i as u32, s.target.clone()))).collect()
    }

    /// One check of `id` (of `target`, so that a result for an id since
    /// given to another target is dropped): the state moves after
    /// `failures` failures or `successes` successes in a row.
    pub fn report(&self, id: u32, target: &Target, result: LastResult, failures: u32, successes: u32) -> Option<Transition> {
        let mut r = self.registry();
        let slot = r.slots.get_mut(id as usize)?.as_mut().filter(|s| s.target == *target)?;
        if result.ok {
            slot.successes = slot.successes.saturating_add(1);
            slot.failures = 0;
        } else {
            slot.failures = slot.failures.saturating_add(1);
            slot.successes = 0;
        }
        let from = Health::from_u8(self.states[id as usize].load(Ordering::Relaxed));
        let to = if slot.failures >= failures {
            Health::Unhealthy
        } else if slot.successes >= successes {
            Health::Healthy
        } else {
            from
        };
        let at = result.at;
        slot.last = Some(result);
        if to == from {
            return None;
        }
        slot.since = Some(at);
        self.states[id as usize].store(to.to_u8(), Ordering::Relaxed);
        Some(Transition { target: slot.target.clone(), from, to })
    }

    /// What is known of `id`, for `/zones` and `explain`.
    pub fn describe(&self, id: u32) -> Option<(Slot, Health)> {
        let r = self.registry();
        let s = r.slots.get(id as usize)?.clone()?;
        Some((s, self.state(id)))
    }

    /// Every target with its state, for `/metrics`.
    pub fn all(&self) -> Vec<(Slot, Health)> {
        let r = self.registry();
        r.slots.iter().enumerate().filter_map(|(i, s)| s.clone().filter(|s| s.live).map(|s| (s, self.state(i as u32)))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routing::parse_check;

    fn t(ip: &str, c: &str) -> Target {
        Target { ip: ip.parse().unwrap(), check: parse_check(c).unwrap() }
    }

    fn result(ok: bool) -> LastResult {
        LastResult { ok, detail: String::new(), at: SystemTime::now() }
    }

    #[test]
    fn thresholds_move_the_state_and_ids_survive_while_live() {
        let h = HealthTable::new(2);
        let a = t("10.0.0.1", "tcp/80");
        let id = h.intern(&a).unwrap();
        assert_eq!(h.intern(&a), Some(id));
        assert!(h.live().is_empty(), "not checked before a snapshot with it is in force");
        h.retain(&[id]);
        assert_eq!(h.live().len(), 1);
        assert_eq!(h.report(id, &a, result(false), 2, 2), None);
        assert_eq!(h.state(id), Health::Unknown);
        assert_eq!(h.report(id, &a, result(false), 2, 2).map(|t| t.to), Some(Health::Unhealthy));
        assert!(!h.answerable(id));
        assert_eq!(h.report(id, &a, result(true), 2, 2), None);
        assert_eq!(h.report(id, &a, result(true), 2, 2).map(|t| t.to), Some(Health::Healthy));
        // Kept by the next snapshot: same id, same state.
        assert_eq!(h.intern(&a), Some(id));
        h.retain(&[id]);
        assert_eq!(h.state(id), Health::Healthy);
        // Dropped: forgotten; a new target may take the id, unknown.
        h.retain(&[]);
        let b = t("10.0.0.2", "tcp/80");
        let idb = h.intern(&b).unwrap();
        assert_eq!(h.state(idb), Health::Unknown);
        assert_eq!(h.report(idb, &a, result(false), 1, 1), None, "a result for the old target is dropped");
        // Full.
        h.intern(&t("10.0.0.3", "tcp/80")).unwrap();
        assert_eq!(h.intern(&t("10.0.0.4", "tcp/80")), None);
        assert!(h.answerable(NO_HEALTH));
    }
}
