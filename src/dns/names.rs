//! Name keys: a domain name in lowercased wire form (`\x03www\x07example\x03com\x00`).
//!
//! Every ancestor of a name is a byte suffix of its key that starts at a label
//! boundary, so walking from a query name up to the root to find the longest
//! matching zone, the closest encloser or a wildcard is a series of hash-map
//! lookups on sub-slices of one stack buffer: no allocation per query.

use hickory_proto::rr::Name;

/// Maximum length of a name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE_LEN: usize = 255;

/// An owned key, as stored in the snapshot's maps.
pub type NameKey = Box<[u8]>;

/// A query name laid out as a key, with the offset of every label so that
/// suffixes (ancestors) can be taken without re-parsing.
#[derive(Clone)]
pub struct KeyBuf {
    bytes: [u8; MAX_NAME_WIRE_LEN],
    len: u8,
    /// Offsets of each label's length byte, leftmost label first.
    label_starts: [u8; 128],
    labels: u8,
}

impl KeyBuf {
    /// Lays `name` out as a lowercased key. Names are at most 255 bytes in wire
    /// form and 127 labels by construction, so this cannot overflow.
    pub fn new(name: &Name) -> Self {
        let mut buf = KeyBuf { bytes: [0; MAX_NAME_WIRE_LEN], len: 0, label_starts: [0; 128], labels: 0 };
        let mut pos = 0usize;
        for label in name.iter() {
            // hickory enforces 63-byte labels and 255-byte names; guard anyway so
            // a malformed Name can never index out of bounds.
            if pos + 1 + label.len() + 1 > MAX_NAME_WIRE_LEN || buf.labels as usize >= 127 {
                break;
            }
            buf.label_starts[buf.labels as usize] = pos as u8;
            buf.labels += 1;
            buf.bytes[pos] = label.len() as u8;
            pos += 1;
            for (i, b) in label.iter().enumerate() {
                buf.bytes[pos + i] = b.to_ascii_lowercase();
            }
            pos += label.len();
        }
        buf.bytes[pos] = 0;
        buf.len = (pos + 1) as u8;
        buf
    }

    /// Lays an uncompressed wire-form name (as in a query's question) out
    /// as a lowercased key; stops at a malformed or over-long label.
    pub fn from_wire(wire: &[u8]) -> Self {
        let mut buf = KeyBuf { bytes: [0; MAX_NAME_WIRE_LEN], len: 0, label_starts: [0; 128], labels: 0 };
        let mut pos = 0usize;
        while let Some(&len) = wire.get(pos) {
            let len = len as usize;
            if len == 0 || len > 63 || pos + 1 + len + 1 > MAX_NAME_WIRE_LEN || pos + 1 + len > wire.len() || buf.labels as usize >= 127 {
                break;
            }
            buf.label_starts[buf.labels as usize] = pos as u8;
            buf.labels += 1;
            buf.bytes[pos] = len as u8;
            for i in 1..=len {
                buf.bytes[pos + i] = wire[pos + i].to_ascii_lowercase();
            }
            pos += 1 + len;
        }
        buf.bytes[pos] = 0;
        buf.len = (pos + 1) as u8;
        buf
    }

    /// The whole name's key.
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Number of labels (the root has 0).
    pub fn labels(&self) -> usize {
        self.labels as usize
    }

    /// The key of the ancestor that drops the `skip` leftmost labels
    /// (`skip == labels()` gives the root).
    pub fn suffix(&self, skip: usize) -> &[u8] {
        if skip >= self.labels as usize {
            &self.bytes[self.len as usize - 1..self.len as usize]
        } else {
            &self.bytes[self.label_starts[skip] as usize..self.len as usize]
        }
    }

    /// The key of `*.<ancestor dropping skip labels>` written into `out`;
    /// returns `None` if that name would exceed 255 bytes.
    pub fn wildcard_of<'a>(&self, skip: usize, out: &'a mut [u8; MAX_NAME_WIRE_LEN]) -> Option<&'a [u8]> {
        let parent = self.suffix(skip);
        if parent.len() + 2 > MAX_NAME_WIRE_LEN {
            return None;
        }
        out[0] = 1;
        out[1] = b'*';
        out[2..2 + parent.len()].copy_from_slice(parent);
        Some(&out[..2 + parent.len()])
    }
}

/// The owned key of a name, for building the snapshot.
pub fn name_key(name: &Name) -> NameKey {
    KeyBuf::new(name).key().into()
}

/// The name a key stands for (lowercase, fully qualified).
pub fn key_to_name(key: &[u8]) -> Name {
    let mut labels: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while pos < key.len() && key[pos] != 0 {
        let len = key[pos] as usize;
        labels.push(&key[pos + 1..(pos + 1 + len).min(key.len())]);
        pos += len + 1;
    }
    Name::from_labels(labels).unwrap_or_else(|_| Name::root())
}

/// Whether `key` is `domain` or a name under it (whole labels: a key's
/// ancestors are its suffixes that start at a label).
pub fn key_is_under(key: &[u8], domain: &[u8]) -> bool {
    let mut k = Some(key);
    while let Some(cur) = k {
        if cur == domain {
            return true;
        }
        if cur.len() <= domain.len() {
            return false;
        }
        k = parent_key(cur);
    }
    false
}

/// Number of labels in a key.
pub fn key_labels(key: &[u8]) -> usize {
    let mut n = 0;
    let mut pos = 0;
    while pos < key.len() && key[pos] != 0 {
        pos += key[pos] as usize + 1;
        n += 1;
    }
    n
}

/// The parent of a key (drops the leftmost label); `None` for the root.
pub fn parent_key(key: &[u8]) -> Option<&[u8]> {
    if key.is_empty() || key[0] == 0 { None } else { key.get(key[0] as usize + 1..) }
}

/// Whether two names are the same, case aside: hickory's `==` orders the
/// names label by label from the root, a character at a time, which costs
/// several times more on the resolver's paths that compare every record.
/// Unlike `==` it ignores whether a name is fully qualified (names read
/// from the wire always are).
pub fn same_name(a: &Name, b: &Name) -> bool {
    // `len` (bytes and dots) and the label count are stored: most names
    // that differ differ there.
    a.len() == b.len() && a.iter().len() == b.iter().len() && a.iter().zip(b.iter()).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn same_name_is_hickorys_equality() {
        let n = |s: &str| Name::from_str(s).unwrap();
        let names = [
            "www.example.com.",
            "WWW.Example.COM.",
            "www.example.co.",
            "ww.wexample.com.",
            "example.com.",
            ".",
            "a.b.",
            "ab.",
            "*.example.com.",
            "*.b.c.",
            "x.y.",
            "*.b.",
        ];
        for a in names {
            for b in names {
                assert_eq!(same_name(&n(a), &n(b)), n(a) == n(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn under_is_by_whole_labels() {
        let k = |s: &str| name_key(&Name::from_str(s).unwrap());
        assert!(key_is_under(&k("a.b.example.com."), &k("example.com.")));
        assert!(key_is_under(&k("example.com."), &k("example.com.")));
        assert!(!key_is_under(&k("badexample.com."), &k("example.com.")));
        assert!(!key_is_under(&k("com."), &k("example.com.")));
        assert!(key_is_under(&k("com."), &k(".")));
    }

    #[test]
    fn suffixes_are_ancestors() {
        let n = Name::from_str("WWW.Example.com.").unwrap();
        let k = KeyBuf::new(&n);
        assert_eq!(k.labels(), 3);
        assert_eq!(k.key(), b"\x03www\x07example\x03com\x00");
        assert_eq!(k.suffix(1), b"\x07example\x03com\x00");
        assert_eq!(k.suffix(2), b"\x03com\x00");
        assert_eq!(k.suffix(3), b"\x00");
        assert_eq!(&*name_key(&Name::from_str("example.COM").unwrap()), k.suffix(1));
        let mut out = [0u8; MAX_NAME_WIRE_LEN];
        assert_eq!(k.wildcard_of(1, &mut out).unwrap(), b"\x01*\x07example\x03com\x00");
        assert_eq!(parent_key(k.key()), Some(k.suffix(1)));
        assert_eq!(parent_key(b"\x00"), None);
        assert_eq!(key_labels(k.key()), 3);
        let w = KeyBuf::from_wire(b"\x03WWW\x07Example\x03com\x00");
        assert_eq!((w.key(), w.labels(), w.suffix(1)), (k.key(), 3, k.suffix(1)));
    }
}
