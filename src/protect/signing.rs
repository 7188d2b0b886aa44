//! Signed, expiring URLs: HMAC-SHA256 over what a link grants (method class, path or prefix,
//! expiry, key id and every other query parameter), verified statelessly so that any node holding
//! the key accepts the link. Keys live in files, several at once by id, and are re-read when a
//! file changes, so rotation needs no restart.
//!
//! A signed link carries `expires=UNIX&kid=ID&sig=BASE64URL`. A path link's signature covers
//! every other query parameter (`download`, `path`, `compress`, `rate`, ...), so a selection or a
//! name cannot be changed. A prefix link (`prefix=/dir/`) opens every path and selection under
//! its folder, so its signature covers only what it grants beyond access (`rate`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::bounded_read::{read_key_file, KeySource, MIN_KEY_BYTES};

type HmacSha256 = Hmac<Sha256>;

/// How often, at most, key files are checked for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// Query parameters that carry the signature itself rather than select content.
const SIG: &str = "sig";

/// The parameters a prefix link's signature covers: what it grants beyond access. (A prefix
/// link opens every path and selection under its folder, so content-selecting parameters are
/// the client's choice; a path link covers every parameter.)
const GRANT_PARAMS: [&str; 1] = ["rate"];

/// Why a request was refused; logged and counted, never shown to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No `sig` (or no `expires`/`kid`) on a protected path.
    Missing,
    /// A parameter is malformed (expiry not a number, signature not base64url, repeated).
    Malformed,
    /// The link's expiry has passed.
    Expired,
    /// The key id is not one of the configured keys.
    UnknownKey,
    /// The signature does not match: the path, expiry or a parameter was changed, or the key.
    BadSignature,
    /// A prefix link used outside its prefix.
    OutOfScope,
}

impl Denial {
    /// Every reason, for metrics.
    pub const ALL: [Denial; 6] = [
        Denial::Missing,
        Denial::Malformed,
        Denial::Expired,
        Denial::UnknownKey,
        Denial::BadSignature,
        Denial::OutOfScope,
    ];

    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Malformed => "malformed",
            Denial::Expired => "expired",
            Denial::UnknownKey => "unknown_key",
            Denial::BadSignature => "bad_signature",
            Denial::OutOfScope => "out_of_scope",
        }
    }

    /// Index into [`Denial::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a valid signature grants beyond access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The key that signed the link.
    pub kid: String,
    /// A bandwidth limit carried in the link (`rate=`, bytes per second).
    pub rate: Option<u64>,
    /// The prefix the link covers, if it is a prefix link (with leading and trailing `/`).
    pub prefix: Option<String>,
}

/// The method classes a signature can be bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodClass {
    /// GET and HEAD.
    Read,
    /// POST (ZIP selections sent as a body).
    Post,
}

impl MethodClass {
    fn as_str(self) -> &'static str {
        match self {
            MethodClass::Read => "GET",
            MethodClass::Post => "POST",
        }
    }

    /// The class of an HTTP method; other methods never reach a file.
    pub fn of(method: &http::Method) -> MethodClass {
        if method == http::Method::POST {
            MethodClass::Post
        } else {
            MethodClass::Read
        }
    }
}

/// The bytes a signature is computed over. `path` is the decoded, normalised request path with
/// a leading `/` (or the prefix, ending in `/`); `params` are every query parameter except `sig`,
/// `expires`, `kid` and `prefix`, in any order (they are sorted here).
pub fn message(
    method: MethodClass,
    scope_is_prefix: bool,
    path: &str,
    expires: u64,
    kid: &str,
    params: &mut [(String, String)],
) -> Vec<u8> {
    params.sort();
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter() {
        ser.append_pair(k, v);
    }
    let scope = if scope_is_prefix { "prefix" } else { "path" };
    format!(
        "sendfiled-v1\n{}\n{scope}:{path}\n{expires}\n{kid}\n{}",
        method.as_str(),
        ser.finish()
    )
    .into_bytes()
}

/// The base64url signature of `message` under `key`.
pub fn sign(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether `sig` (base64url) is `message`'s signature under `key`, compared in constant time.
fn signature_matches(key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.verify_slice(sig).is_ok()
}

/// What identifies one version of a key file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

struct LoadedKey {
    secret: Vec<u8>,
    stamp: Option<FileStamp>,
}

/// The configured keys, shared by every worker, re-read when their files change.
pub struct KeyRing {
    sources: Vec<KeySource>,
    keys: RwLock<HashMap<String, Arc<LoadedKey>>>,
    checked: Mutex<Instant>,
}

impl KeyRing {
    /// Load every key now; an unreadable or short key file is an error naming it.
    pub fn load(sources: Vec<KeySource>) -> Result<KeyRing, (usize, String)> {
        let mut keys = HashMap::new();
        for (i, s) in sources.iter().enumerate() {
            let st = stamp(&s.file);
            let secret = read_key_file(&s.file).map_err(|m| (i, m))?;
            keys.insert(s.id.clone(), Arc::new(LoadedKey { secret, stamp: st }));
        }
        Ok(KeyRing {
            sources,
            keys: RwLock::new(keys),
            checked: Mutex::new(Instant::now()),
        })
    }

    /// No keys configured.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Re-read the key files that changed (at most once per [`RECHECK`] unless `force`). A file
    /// that became unreadable or too short keeps its previous key, with a warning.
    pub fn refresh(&self, force: bool) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if !force && checked.elapsed() < RECHECK {
                return;
            }
            *checked = Instant::now();
        }
        for s in &self.sources {
            let st = stamp(&s.file);
            let current = self
                .keys
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&s.id)
                .map(|k| k.stamp);
            if current == Some(st) {
                continue;
            }
            match read_key_file(&s.file) {
                Ok(secret) => {
                    tracing::info!(key_id = %s.id, file = %s.file.display(), "signing key reloaded");
                    self.keys
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s.id.clone(), Arc::new(LoadedKey { secret, stamp: st }));
                }
                Err(e) => {
                    tracing::warn!(key_id = %s.id, error = %e, "signing key not reloaded; the previous one stays");
                    // Remember the stamp so that the warning is not repeated every second.
                    let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(old) = keys.get(&s.id).cloned() {
                        keys.insert(
                            s.id.clone(),
                            Arc::new(LoadedKey {
                                secret: old.secret.clone(),
                                stamp: st,
                            }),
                        );
                    }
                }
            }
        }
    }

    fn key(&self, id: &str) -> Option<Arc<LoadedKey>> {
        self.refresh(false);
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Check the signature of a request for `path` (decoded, normalised, leading `/`) with query
    /// `query`, at time `now` (Unix seconds).
    pub fn verify(
        &self,
        method: MethodClass,
        path: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<Grant, Denial> {
        let mut expires = None;
        let mut kid = None;
        let mut sig = None;
        let mut prefix = None;
        let mut rate = None;
        let mut params = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*k {
                "expires" => &mut expires,
                "kid" => &mut kid,
                SIG => &mut sig,
                "prefix" => &mut prefix,
                _ => {
                    if k == "rate" {
                        rate = Some(v.to_string());
                    }
                    params.push((k.into_owned(), v.into_owned()));
                    continue;
                }
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Denial::Malformed);
            }
        }
        let (Some(expires), Some(kid), Some(sig)) = (expires, kid, sig) else {
            return Err(Denial::Missing);
        };
        let expires: u64 = expires.parse().map_err(|_| Denial::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig.as_bytes())
            .map_err(|_| Denial::Malformed)?;
        let rate = match rate {
            None => None,
            Some(r) => Some(crate::units::parse_size_text(&r).map_err(|_| Denial::Malformed)?),
        };
        let key = self.key(&kid).ok_or(Denial::UnknownKey)?;
        let scope = match &prefix {
            Some(p) => {
                if !p.starts_with('/') || !p.ends_with('/') {
                    return Err(Denial::Malformed);
                }
                p.as_str()
            }
            None => path,
        };
        if prefix.is_some() {
            params.retain(|(k, _)| GRANT_PARAMS.contains(&k.as_str()));
        }
        let msg = message(method, prefix.is_some(), scope, expires, &kid, &mut params);
        if !signature_matches(&key.secret, &msg, &sig) {
            return Err(Denial::BadSignature);
        }
        // Checked after the signature, so that a forged link never learns more than "no".
        if now > expires {
            return Err(Denial::Expired);
        }
        if let Some(p) = &prefix {
            if !crate::url_prefix::path_within(path, p) {
                return Err(Denial::OutOfScope);
            }
        }
        Ok(Grant { kid, rate, prefix })
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A signed link, as `sendfiled sign` prints it.
pub struct SignRequest<'a> {
    pub key: &'a [u8],
    pub kid: &'a str,
    pub method: MethodClass,
    /// The path as the user typed it (may be percent-encoded, may carry a query).
    pub target: &'a str,
    /// Sign the path as a prefix (it must name a directory: a trailing `/` is added).
    pub prefix: bool,
    pub expires: u64,
    /// Extra parameters to carry (and sign), such as `rate`.
    pub extra: Vec<(String, String)>,
}

/// Build a signed path-and-query for `req`.
pub fn signed_target(req: SignRequest<'_>) -> Result<String, String> {
    use percent_encoding::utf8_percent_encode;
    let (raw_path, query) = match req.target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (req.target, ""),
    };
    let mut rel = String::new();
    crate::fs::path::normalize(raw_path, &mut rel).map_err(|e| format!("{raw_path:?}: {e}"))?;
    let mut path = format!("/{rel}");
    if req.prefix && !path.ends_with('/') {
        path.push('/');
    }
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if matches!(&*k, "expires" | "kid" | "sig" | "prefix") {
            return Err(format!("the query already has {k:?}"));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    params.extend(req.extra);
    let mut covered: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !req.prefix || GRANT_PARAMS.contains(&k.as_str()))
        .cloned()
        .collect();
    let msg = message(
        req.method,
        req.prefix,
        &path,
        req.expires,
        req.kid,
        &mut covered,
    );
    let sig = sign(req.key, &msg);
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        ser.append_pair(k, v);
    }
    ser.append_pair("expires", &req.expires.to_string());
    ser.append_pair("kid", req.kid);
    if req.prefix {
        ser.append_pair("prefix", &path);
    }
    ser.append_pair(SIG, &sig);
    let mut out: String = utf8_percent_encode(&path, crate::fs::path::PATH_ESCAPES).collect();
    if rel.is_empty() && !out.ends_with('/') {
        out.push('/');
    }
    if raw_path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out.push('?');
    out.push_str(&ser.finish());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(dir: &Path, keys: &[(&str, &str)]) -> KeyRing {
        let sources = keys
            .iter()
            .map(|(id, secret)| {
                let file = dir.join(id);
                std::fs::write(&file, format!("{secret}\n")).unwrap();
                KeySource {
                    id: id.to_string(),
                    file,
                }
            })
            .collect();
        KeyRing::load(sources).unwrap()
    }

    fn link(key: &str, kid: &str, target: &str, prefix: bool, expires: u64) -> String {
        signed_target(SignRequest {
            key: key.as_bytes(),
            kid,
            method: MethodClass::Read,
            target,
            prefix,
            expires,
            extra: vec![],
        })
        .unwrap()
    }

    fn check(ring: &KeyRing, path: &str, link: &str, now: u64) -> Result<Grant, Denial> {
        let query = link.split_once('?').map(|(_, q)| q);
        ring.verify(MethodClass::Read, path, query, now)
    }

    #[test]
    fn every_tampering_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(
            dir.path(),
            &[("a", "0123456789abcdef0123"), ("b", "fedcba9876543210fedc")],
        );
        let l = link(
            "0123456789abcdef0123",
            "a",
            "/private/r.pdf?download",
            false,
            1000,
        );
        assert_eq!(check(&keys, "/private/r.pdf", &l, 999).unwrap().kid, "a");
        assert_eq!(
            check(&keys, "/private/r.pdf", &l, 1001),
            Err(Denial::Expired)
        );
        assert_eq!(
            check(&keys, "/private/s.pdf", &l, 999),
            Err(Denial::BadSignature)
        );
        let later = l.replace("expires=1000", "expires=2000");
        assert_eq!(
            check(&keys, "/private/r.pdf", &later, 999),
            Err(Denial::BadSignature)
        );
        let renamed = l.replace("download", "download=x.exe");
        assert_eq!(
            check(&keys, "/private/r.pdf", &renamed, 999),
            Err(Denial::BadSignature)
        );
        let other_key = l.replace("kid=a", "kid=b");
        assert_eq!(
            check(&keys, "/private/r.pdf", &other_key, 999),
            Err(Denial::BadSignature)
        );
        let unknown = l.replace("kid=a", "kid=zz");
        assert_eq!(
            check(&keys, "/private/r.pdf", &unknown, 999),
            Err(Denial::UnknownKey)
        );
        assert_eq!(
            check(&keys, "/private/r.pdf", "/x", 999),
            Err(Denial::Missing)
        );
        let twice = format!("{l}&kid=a");
        assert_eq!(
            check(&keys, "/private/r.pdf", &twice, 999),
            Err(Denial::Malformed)
        );
    }

    #[test]
    fn prefix_links_cover_their_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path(), &[("k", "a-secret-of-enough-bytes")]);
        let l = link("a-secret-of-enough-bytes", "k", "/media/show", true, 50);
        assert!(l.starts_with("/media/show/?"), "{l}");
        assert!(check(&keys, "/media/show/seg-1.ts", &l, 10).is_ok());
        assert!(check(&keys, "/media/show", &l, 10).is_ok());
        assert_eq!(
            check(&keys, "/media/showcase/x", &l, 10),
            Err(Denial::OutOfScope)
        );
        assert_eq!(
            check(&keys, "/media/other.ts", &l, 10),
            Err(Denial::OutOfScope)
        );
        let widened = l.replace("prefix=%2Fmedia%2Fshow%2F", "prefix=%2Fmedia%2F");
        assert_ne!(widened, l);
        assert_eq!(
            check(&keys, "/media/other.ts", &widened, 10),
            Err(Denial::BadSignature)
        );
        // Selections are free under a prefix; the rate it grants is not.
        let sel = l.replace("?", "?download=zip&path=seg-1.ts&");
        assert!(check(&keys, "/media/show/", &sel, 10).is_ok(), "{sel}");
        let paced = signed_target(SignRequest {
            key: b"a-secret-of-enough-bytes",
            kid: "k",
            method: MethodClass::Read,
            target: "/media/show/",
            prefix: true,
            expires: 50,
            extra: vec![("rate".into(), "65536".into())],
        })
        .unwrap();
        assert_eq!(
            check(&keys, "/media/show/a", &paced, 10).unwrap().rate,
            Some(65536)
        );
        let lifted = paced.replace("rate=65536", "rate=0");
        assert_eq!(
            check(&keys, "/media/show/a", &lifted, 10),
            Err(Denial::BadSignature)
        );
    }

    #[test]
    fn encodings_of_the_same_path_share_a_signature() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path(), &[("k", "a-secret-of-enough-bytes")]);
        let l = link(
            "a-secret-of-enough-bytes",
            "k",
            "/a b/%E6%8A%A5.pdf",
            false,
            50,
        );
        assert!(l.starts_with("/a%20b/"), "{l}");
        assert!(check(&keys, "/a b/报.pdf", &l, 10).is_ok());
    }

    #[test]
    fn short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("short");
        std::fs::write(&f, "tiny\n").unwrap();
        let e = KeyRing::load(vec![KeySource {
            id: "s".into(),
            file: f,
        }])
        .err()
        .unwrap();
        assert!(e.1.contains("at least 16"), "{}", e.1);
    }
}
