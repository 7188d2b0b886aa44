//! A URL path prefix as the configuration names one (`signing.protected`,
//! `[[bandwidth]].prefix`): normalised, with a leading and a trailing `/` (just `/` for the whole
//! tree), an invariant that holds by construction rather than by comment.

use std::fmt;

/// A normalised URL path prefix: `/` or `/a/b/`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UrlPrefix(String);

impl UrlPrefix {
    /// A prefix as written in the configuration. It must start with `/`; `.` and `..` segments
    /// and repeated slashes are resolved; `..` above the root is refused.
    pub fn parse(text: &str) -> Result<UrlPrefix, String> {
        if !text.starts_with('/') {
            return Err(format!("{text:?} must start with /"));
        }
        let mut rel = String::new();
        crate::fs::path::normalize(text, &mut rel).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(UrlPrefix(if rel.is_empty() {
            "/".to_string()
        } else {
            format!("/{rel}/")
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (leading `/`, normalised) lies under this prefix; the prefix's own
    /// directory, written without its trailing slash, counts.
    pub fn covers(&self, path: &str) -> bool {
        path_within(path, &self.0)
    }

    /// Whether this prefix names a directory strictly inside `dir` (leading `/`, no trailing
    /// slash; `/` for the root).
    pub fn is_strictly_inside(&self, dir: &str) -> bool {
        let dir = dir.trim_end_matches('/');
        self.0.len() > dir.len() + 1
            && self.0.starts_with(dir)
            && self.0.as_bytes()[dir.len()] == b'/'
    }

    /// The directory it names, relative to the root, without slashes at either end.
    pub fn relative(&self) -> &str {
        self.0.trim_matches('/')
    }
}

/// Whether `path` (leading `/`) lies under `prefix` (leading and trailing `/`); the prefix's own
/// directory counts. Also used for the prefix a signed link carries, which is kept as written
/// because the signature covers its exact bytes.
pub fn path_within(path: &str, prefix: &str) -> bool {
    path.starts_with(prefix) || path.len() + 1 == prefix.len() && prefix.starts_with(path)
}

impl fmt::Debug for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_normalises_and_refuses_what_has_no_meaning() {
        for (text, want) in [
            ("/", "/"),
            ("/a", "/a/"),
            ("/a/", "/a/"),
            ("//a//b", "/a/b/"),
            ("/a/./b/../c", "/a/c/"),
        ] {
            assert_eq!(UrlPrefix::parse(text).unwrap().as_str(), want, "{text}");
        }
        assert_eq!(
            UrlPrefix::parse("a/").unwrap_err(),
            "\"a/\" must start with /"
        );
        assert!(UrlPrefix::parse("/../a").is_err());
    }

    #[test]
    fn covers_the_tree_below_and_the_directory_itself() {
        let p = UrlPrefix::parse("/private").unwrap();
        assert!(p.covers("/private/a.bin"));
        assert!(p.covers("/private/"));
        assert!(p.covers("/private"));
        assert!(!p.covers("/privatex"));
        assert!(!p.covers("/privatex/a"));
        assert!(!p.covers("/"));
        assert!(UrlPrefix::parse("/").unwrap().covers("/anything"));
    }

    #[test]
    fn strictly_inside_a_directory() {
        let p = UrlPrefix::parse("/a/b").unwrap();
        assert!(p.is_strictly_inside("/"));
        assert!(p.is_strictly_inside("/a"));
        assert!(!p.is_strictly_inside("/a/b"));
        assert!(!p.is_strictly_inside("/ab"));
        assert!(!p.is_strictly_inside("/a/b/c"));
        assert!(!UrlPrefix::parse("/").unwrap().is_strictly_inside("/"));
        assert_eq!(p.relative(), "a/b");
    }
}
