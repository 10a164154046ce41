//! `transfers:` of pzdns.yaml: the TSIG keys that stand for VPC views, the
//! secondaries told of changes (NOTIFY) and the catalog zone's suffix
//! (docs/REFERENCE.md#transfers). Secrets are read from their files with
//! the configuration, so again on every reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hickory_proto::rr::Name;

use super::diagnostics::Diagnostics;
use super::schema::TransfersEntry;
use super::yaml::pos;
use super::{Located, files, located, parse_socket_addr, rdata};

/// A TSIG algorithm pzdns signs and verifies with (RFC 8945 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as written in pzdns.yaml and BIND's key files.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm name in the TSIG record (RFC 8945 §6), lowercase wire form.
    pub fn wire_name(self) -> &'static [u8] {
        match self {
            TsigAlgorithm::HmacSha256 => b"\x0bhmac-sha256\x00",
            TsigAlgorithm::HmacSha512 => b"\x0bhmac-sha512\x00",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
            "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
            _ => None,
        }
    }
}

/// A TSIG secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigSecret(pub std::sync::Arc<[u8]>);

impl std::fmt::Debug for TsigSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TsigSecret({} bytes)", self.0.len())
    }
}

/// One `transfers.keys` entry, its secret read.
#[derive(Debug, Clone)]
pub struct TsigKey {
    /// The key's name (lowercase): what a TSIG record names it by.
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    pub secret: TsigSecret,
    pub secret_file: PathBuf,
    /// The VPC whose view the key stands for (checked against vpcs.yaml with the zones).
    pub vpc: Located<String>,
    /// Secondaries of this view told of changes: `transfers.notify` and the key's own.
    pub notify: Vec<SocketAddr>,
}

/// `transfers:`, read.
#[derive(Debug, Clone, Default)]
pub struct Transfers {
    pub keys: Vec<TsigKey>,
    /// `transfers.notify`: told of the changes of every view.
    pub notify: Vec<SocketAddr>,
    /// The suffix of each view's catalog zone (RFC 9432): `<vpc-id>.<catalog>`.
    pub catalog: Option<Name>,
}

/// Reads `transfers:`; `base` is the config file's directory.
pub fn read(path: &Path, base: &Path, t: TransfersEntry, diags: &mut Diagnostics) -> Transfers {
    let mut out = Transfers { notify: read_notify(path, &t.notify, diags), ..Transfers::default() };
    if let Some(c) = t.catalog {
        match rdata::parse_absolute_name(&c.value) {
            Ok(n) if !n.is_root() => out.catalog = Some(n.to_lowercase()),
            Ok(_) => diags.push(path, pos(&c), "transfers.catalog must not be the root; give a name, e.g. catalog.pzdns.internal"),
            Err(e) => diags.push(path, pos(&c), format!("transfers.catalog: {e}")),
        }
    }
    for k in t.keys {
        let name = match rdata::parse_absolute_name(&k.name.value) {
            Ok(n) if !n.is_root() => n.to_lowercase(),
            Ok(_) => {
                diags.push(path, pos(&k.name), "transfers.keys name must not be the root; give the key's name, e.g. onprem-hz");
                continue;
            }
            Err(e) => {
                diags.push(path, pos(&k.name), format!("transfers.keys name: {e}"));
                continue;
            }
        };
        if out.keys.iter().any(|x| x.name == name) {
            diags.push(path, pos(&k.name), format!("TSIG key {name} is given twice; each key stands for one VPC"));
            continue;
        }
        let algorithm = match &k.algorithm {
            None => TsigAlgorithm::HmacSha256,
            Some(a) => match TsigAlgorithm::parse(&a.value) {
                Some(x) => x,
                None => {
                    diags.push(path, pos(a), format!("transfers.keys algorithm `{}` must be `hmac-sha256` or `hmac-sha512`", a.value));
                    continue;
                }
            },
        };
        let file = base.join(&k.secret_file.value);
        let secret = match read_secret(&file) {
            Ok(s) => s,
            Err(why) => {
                diags.push(path, pos(&k.secret_file), format!("transfers.keys secret_file: {why}"));
                continue;
            }
        };
        let mut notify = out.notify.clone();
        for a in read_notify(path, &k.notify, diags) {
            if !notify.contains(&a) {
                notify.push(a);
            }
        }
        out.keys.push(TsigKey { name, algorithm, secret, secret_file: file, vpc: located(path, k.vpc), notify });
    }
    out
}

fn read_notify(path: &Path, list: &[super::yaml::Spanned<String>], diags: &mut Diagnostics) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in list {
        match parse_socket_addr(&a.value, Some(53)) {
            Some(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => {
                if !out.contains(&addr) {
                    out.push(addr)
                }
            }
            _ => diags.push(path, pos(a), format!("transfers notify `{}` must be a secondary's IP or IP:PORT, e.g. 10.8.0.10:53", a.value)),
        }
    }
    out
}

/// Reads a TSIG secret file: the base64 secret alone, or a BIND key
/// clause as `tsig-keygen` writes it (`secret "…";`).
pub fn read_secret(file: &Path) -> Result<TsigSecret, String> {
    let text = files::FileAccess::anywhere().with_max_bytes(64 << 10).read_string(file)?;
    // The `secret` statement: the word alone (not inside a key's name), then a quoted string.
    let statement = text.match_indices("secret").map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let rest = &text[i + "secret".len()..];
        let after = rest.trim_start();
        before.is_none_or(|c| c.is_whitespace() || c == '{' || c == ';') && after.len() < rest.len() && after.starts_with('"')
    });
    let b64 = match statement {
        Some(i) => {
            let rest = &text[i + "secret".len()..];
            let open = rest.find('"').ok_or_else(|| format!("{}: `secret` is not followed by a quoted base64 string", file.display()))?;
            let rest = &rest[open + 1..];
            let close = rest.find('"').ok_or_else(|| format!("{}: the secret's closing quote is missing", file.display()))?;
            rest[..close].to_string()
        }
        None => text.split_whitespace().collect::<String>(),
    };
    let secret = base64_decode(&b64).ok_or_else(|| {
        format!(
            "{} does not hold a base64 secret; write one, e.g. `head -c 32 /dev/urandom | base64 > {}` (or `tsig-keygen NAME > {}`)",
            file.display(),
            file.display(),
            file.display()
        )
    })?;
    if secret.is_empty() {
        return Err(format!("{} holds an empty secret", file.display()));
    }
    Ok(TsigSecret(secret.into()))
}

/// Standard base64 (RFC 4648 §4) with padding optional; `None` if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    data_encoding::BASE64_NOPAD.decode(s.trim_end_matches('=').as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_reads_as_rfc_4648_says() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vY").as_deref(), None);
        assert_eq!(base64_decode("Zm9*"), None);
    }

    #[test]
    fn problems_name_the_line_and_field() {
        let dir = std::env::temp_dir().join(format!("pzdns-transfers-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k.key"), "Zm9vYmFy\n").unwrap();
        let cfg = dir.join("pzdns.yaml");
        std::fs::write(
            &cfg,
            "transfers:\n  keys:\n    - { name: k1, secret_file: k.key, vpc: vpc-a }\n    - { name: k2, algorithm: hmac-md5, secret_file: k.key, vpc: vpc-a }\n    - { name: k3, secret_file: missing.key, vpc: vpc-a }\n    - { name: k1, secret_file: k.key, vpc: vpc-b }\n  notify: [nowhere]\n",
        )
        .unwrap();
        let d = crate::config::ServerConfig::load_file(&cfg).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(d.contains("pzdns.yaml:4:") && d.contains("algorithm `hmac-md5` must be `hmac-sha256` or `hmac-sha512`"), "{d}");
        assert!(d.contains("pzdns.yaml:5:") && d.contains("secret_file:") && d.contains("missing.key"), "{d}");
        assert!(d.contains("pzdns.yaml:6:") && d.contains("TSIG key k1. is given twice"), "{d}");
        assert!(d.contains("pzdns.yaml:7:") && d.contains("transfers notify `nowhere`"), "{d}");
    }

    #[test]
    fn a_secret_file_is_bare_base64_or_a_bind_key_clause() {
        let dir = std::env::temp_dir().join(format!("pzdns-tsig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bare = dir.join("bare.key");
        std::fs::write(&bare, "Zm9vYmFy\n").unwrap();
        assert_eq!(&*read_secret(&bare).unwrap().0, b"foobar");
        let bind = dir.join("bind.key");
        std::fs::write(&bind, "key \"onprem\" {\n\talgorithm hmac-sha256;\n\tsecret \"Zm9vYg==\";\n};\n").unwrap();
        assert_eq!(&*read_secret(&bind).unwrap().0, b"foob");
        // A key whose name holds the word.
        std::fs::write(&bind, "key \"my secret\" {\n\talgorithm hmac-sha256;\n\tsecret \"Zm9vYg==\";\n};\n").unwrap();
        assert_eq!(&*read_secret(&bind).unwrap().0, b"foob");
        std::fs::write(&bare, "not base64!\n").unwrap();
        let e = read_secret(&bare).unwrap_err();
        assert!(e.contains("does not hold a base64 secret"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
