//! ZIP archives of a directory or a selection, streamed on the fly: bounded memory, no temp
//! files, exact Content-Length, ETag and Range whenever no entry is really compressed.
//!
//! - [`format`]: the wire format and the exact length of every part (pure).
//! - [`manifest`]: which entries, named how, stored how, at which offsets; from metadata only.
//! - [`crc`]: CRC-32s read from the files on the blocking pool, cached by file identity.
//! - [`stream`]: the response body, able to start at any byte.
//! - `deflate`: compression on the blocking pool; [`permit`]: the archive slot.
//!
//! The HTTP side (parameters, status codes, headers) is in `service`; see docs/zip.md.

mod compressible;
pub mod crc;
mod deflate;
pub mod format;
pub mod manifest;
pub mod permit;
pub mod stream;

use manifest::Compress;

/// What the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipRequest {
    /// Paths relative to the directory; empty: the whole tree.
    pub paths: Vec<String>,
    /// Download name (`x.zip`), if given.
    pub name: Option<String>,
    pub compress: Compress,
    pub level: u32,
}

impl ZipRequest {
    /// Parse the query of `?download=zip&path=a&path=b&compress=store&level=6&name=x.zip`.
    /// `Ok(None)` when the query does not ask for an archive.
    pub fn from_query(
        query: &str,
        default_compress: Compress,
        default_level: u32,
    ) -> Result<Option<ZipRequest>, String> {
        let mut wants_zip = false;
        let mut req = ZipRequest {
            paths: Vec::new(),
            name: None,
            compress: default_compress,
            level: default_level,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "download" => wants_zip = v == "zip",
                "path" => req.paths.push(v.into_owned()),
                "name" => req.name = Some(v.into_owned()),
                "compress" => req.compress = v.parse()?,
                "level" => req.level = parse_level(&v)?,
                _ => {}
            }
        }
        if !wants_zip {
            return Ok(None);
        }
        req.normalise_level();
        Ok(Some(req))
    }

    /// Merge a POST body `{"paths": [...], "name": "x.zip", "compress": "...", "level": N}`.
    pub fn merge_json(&mut self, body: &[u8]) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            paths: Vec<String>,
            name: Option<String>,
            compress: Option<String>,
            level: Option<u32>,
        }
        let b: Body = serde_json::from_slice(body)
            .map_err(|e| format!("the JSON body is not a selection: {e}"))?;
        if b.paths.is_empty() {
            return Err("\"paths\" is empty".into());
        }
        self.paths.extend(b.paths);
        if b.name.is_some() {
            self.name = b.name;
        }
        if let Some(c) = b.compress {
            self.compress = c.parse()?;
        }
        if let Some(l) = b.level {
            self.level = parse_level(&l.to_string())?;
        }
        self.normalise_level();
        Ok(())
    }

    /// Merge a JSON selection into a request whose query a signed link fixed: the body may
    /// only narrow it. Every path it names must lie within the signed paths (anywhere in the
    /// folder when the link named none), and it may not change the name, the compression or the
    /// level. The body's paths then replace the signed ones. `Err` is a refusal (403).
    pub fn merge_json_pinned(&mut self, body: &[u8]) -> Result<(), PinError> {
        let signed = self.clone();
        let mut merged = signed.clone();
        merged.paths.clear();
        merged.merge_json(body).map_err(PinError::Malformed)?;
        let within =
            |p: &String| signed.paths.is_empty() || signed.paths.iter().any(|s| inside(s, p));
        let same_options = merged.name == signed.name
            && merged.compress == signed.compress
            && merged.level == signed.level;
        if !same_options || !merged.paths.iter().all(within) {
            return Err(PinError::Widened);
        }
        *self = merged;
        Ok(())
    }

    /// Level 0 means storing; level 1 is taken as 2 (zlib-rs' level 1 expands incompressible
    /// data by about 5%).
    fn normalise_level(&mut self) {
        if self.level == 0 {
            self.compress = Compress::Store;
        }
        self.level = self.level.clamp(2, 9);
    }
}

/// Why a selection could not be merged into a signed request.
#[derive(Debug, PartialEq, Eq)]
pub enum PinError {
    /// Not a selection at all (400).
    Malformed(String),
    /// It would widen or change what the link signed (403).
    Widened,
}

/// Whether the selected path `p` is `signed` or lies inside it, once both are normalised.
fn inside(signed: &str, p: &str) -> bool {
    let (mut a, mut b) = (String::new(), String::new());
    let normal = crate::fs::path::normalize(&format!("/{signed}"), &mut a).is_ok()
        && crate::fs::path::normalize(&format!("/{p}"), &mut b).is_ok();
    normal
        && !b.is_empty()
        && (a.is_empty() || b == a || (b.starts_with(&a) && b.as_bytes()[a.len()] == b'/'))
}

fn parse_level(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n <= 9 => Ok(n),
        _ => Err(format!("level={v:?} is not a number from 0 to 9")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            ZipRequest::from_query("download", Compress::Auto, 3).unwrap(),
            None
        );
        let r = ZipRequest::from_query(
            "download=zip&path=a.txt&path=sub%2Fb.jpg&compress=store",
            Compress::Auto,
            3,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.paths, vec!["a.txt", "sub/b.jpg"]);
        assert_eq!(r.compress, Compress::Store);
        let r = ZipRequest::from_query("download=zip&level=0", Compress::Auto, 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.compress, Compress::Store);
        let r = ZipRequest::from_query("download=zip&level=1", Compress::Deflate, 3)
            .unwrap()
            .unwrap();
        assert_eq!(r.level, 2);
        assert!(ZipRequest::from_query("download=zip&compress=lzma", Compress::Auto, 3).is_err());
        assert!(ZipRequest::from_query("download=zip&level=10", Compress::Auto, 3).is_err());
    }

    #[test]
    fn json_bodies() {
        let mut r = ZipRequest::from_query("download=zip", Compress::Auto, 3)
            .unwrap()
            .unwrap();
        r.merge_json(br#"{"paths": ["a", "b/c"], "name": "x.zip"}"#)
            .unwrap();
        assert_eq!(r.paths, vec!["a", "b/c"]);
        assert_eq!(r.name.as_deref(), Some("x.zip"));
        assert!(r.merge_json(br#"{"paths": []}"#).is_err());
        assert!(r.merge_json(br#"{"paths": ["a"], "extra": 1}"#).is_err());
        assert!(r.merge_json(b"not json").is_err());
    }
}
