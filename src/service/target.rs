//! The request target, parsed once per request for every handler (file, listing, archive): the
//! target within its length limit, the path decoded once and made safe, the dotfile rule
//! applied. The checks are a pure function, unit-tested below.

use std::cell::RefMut;
use std::rc::Rc;

use http::Uri;

use crate::config::DotfileRule;
use crate::conn::ConnShared;
use crate::fs::path::{has_dotfile, normalize, Normalized};

/// Why a request target names no servable path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TargetRefusal {
    /// Longer than `limits.target_bytes` (414).
    TooLong,
    /// Not a safe path (400).
    BadPath,
    /// Refused by the dotfile rule (404).
    Hidden,
}

/// One request's target.
pub(super) struct Target<'a> {
    /// The normalised path relative to the root (no leading `/`; empty for the root), in the
    /// worker's scratch buffer so that a request allocates none. Meaningful when `path` is `Ok`.
    pub(super) rel: RefMut<'a, String>,
    /// Whether the path was servable, and whether it ended with `/`.
    pub(super) path: Result<Normalized, TargetRefusal>,
}

impl<'a> Target<'a> {
    /// Parse `uri` under the worker's current limits and dotfile rule.
    pub(super) fn parse(conn: &'a Rc<ConnShared>, uri: &Uri) -> Target<'a> {
        let config = conn.worker.config();
        let mut rel = conn.worker.scratch_path.borrow_mut();
        let path = check(uri, config.limits.target_bytes, config.dotfiles, &mut rel);
        Target { rel, path }
    }

    /// The normalised path of the existing directory the target names, if it names one (owned:
    /// a listing or an archive keeps it across awaits).
    pub(super) fn existing_dir(&self, conn: &Rc<ConnShared>) -> Option<String> {
        self.path.ok()?;
        match conn.worker.open(&self.rel) {
            Ok(f) if f.is_dir => Some(self.rel.clone()),
            _ => None,
        }
    }
}

/// The checks, in the order their statuses take precedence: length, then path, then dotfiles.
fn check(
    uri: &Uri,
    target_bytes: usize,
    dotfiles: DotfileRule,
    rel: &mut String,
) -> Result<Normalized, TargetRefusal> {
    if uri.path_and_query().map_or(1, |pq| pq.as_str().len()) > target_bytes {
        return Err(TargetRefusal::TooLong);
    }
    let norm = normalize(uri.path(), rel).map_err(|e| {
        tracing::debug!(reason = %e, "bad request path");
        TargetRefusal::BadPath
    })?;
    if dotfiles == DotfileRule::Deny && has_dotfile(rel) {
        return Err(TargetRefusal::Hidden);
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_in_order_of_precedence() {
        use DotfileRule::{Allow, Deny};
        use TargetRefusal::*;
        let ok = |slash| {
            Ok(Normalized {
                trailing_slash: slash,
            })
        };
        type Case = (
            &'static str,
            usize,
            DotfileRule,
            Result<Normalized, TargetRefusal>,
            &'static str,
        );
        let cases: &[Case] = &[
            ("/a/b.txt", 64, Deny, ok(false), "a/b.txt"),
            ("/a/./c/../b.txt?x=1", 64, Deny, ok(false), "a/b.txt"),
            ("/dir/", 64, Deny, ok(true), "dir"),
            ("/", 64, Deny, ok(true), ""),
            ("/%61%2Fb", 64, Deny, ok(false), "a/b"),
            ("/a?q=0123456789", 10, Deny, Err(TooLong), ""),
            ("/../etc/passwd", 64, Deny, Err(BadPath), ""),
            ("/a%00b", 64, Deny, Err(BadPath), ""),
            ("/.git/config", 64, Deny, Err(Hidden), ""),
            ("/.git/config", 64, Allow, ok(false), ".git/config"),
            (
                "/.well-known/security.txt",
                64,
                Deny,
                ok(false),
                ".well-known/security.txt",
            ),
            ("/..%2f.git", 64, Deny, Err(BadPath), ""),
        ];
        for (target, limit, dotfiles, want, want_rel) in cases {
            let uri: Uri = target.parse().unwrap();
            let mut rel = String::new();
            let got = check(&uri, *limit, *dotfiles, &mut rel);
            assert_eq!(got, *want, "{target}");
            if got.is_ok() {
                assert_eq!(rel, *want_rel, "{target}");
            }
        }
    }
}
