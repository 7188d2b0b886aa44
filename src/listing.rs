//! Directory listings (off by default): HTML or JSON, sorted by name, paged. A listing shows
//! exactly what the server would serve: dotfiles and symlinks under the same rules as requests,
//! and no protected folder unless the request is signed for it. The directory is read on the
//! blocking pool, so a huge directory never stalls a worker.

use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::config::{DotfileRule, SymlinkRule};
use crate::fs;

/// Characters escaped in a link to an entry (a path segment).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
}

/// What to list.
pub struct ListInput {
    pub root: Arc<File>,
    /// The directory, relative to the root ("" = the root).
    pub dir: String,
    pub symlinks: SymlinkRule,
    pub dotfiles: DotfileRule,
    /// Relative paths (no slashes at the ends) whose entries stay hidden.
    pub hidden: Vec<String>,
}

/// Read the directory: every entry the server would serve, sorted by name.
pub fn read(input: &ListInput) -> std::io::Result<Vec<Entry>> {
    let (dir, _) = fs::open(&input.root, &input.dir, input.symlinks).map_err(|e| match e {
        fs::OpenError::Io(e) => e,
        _ => std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let mut out = Vec::new();
    for item in listing {
        let item = item?;
        let Ok(name) = std::str::from_utf8(item.file_name().as_bytes()).map(str::to_string) else {
            continue; // not addressable by a request either
        };
        if input.dotfiles == DotfileRule::Deny && name.starts_with('.') {
            continue;
        }
        let rel = if input.dir.is_empty() {
            name.clone()
        } else {
            format!("{}/{name}", input.dir)
        };
        if input.hidden.contains(&rel) {
            continue;
        }
        let Ok(ftype) = item.file_type() else {
            continue;
        };
        let meta = if ftype.is_symlink() {
            // Listed only if a request would follow it.
            match fs::open(&input.root, &rel, input.symlinks) {
                Ok((_, meta)) => meta,
                Err(_) => continue,
            }
        } else if ftype.is_file() || ftype.is_dir() {
            match item.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            }
        } else {
            continue; // sockets, FIFOs, devices are never served
        };
        out.push(Entry {
            name,
            is_dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            mtime: meta.mtime(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One page of a listing.
pub struct Page<'a> {
    /// The directory's path as shown (leading and trailing `/`).
    pub path: &'a str,
    pub entries: &'a [Entry],
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    /// Link a ZIP download of the directory.
    pub zip: bool,
}

/// The page as JSON.
pub fn json(p: &Page<'_>) -> String {
    let entries: Vec<serde_json::Value> = p
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "type": if e.is_dir { "directory" } else { "file" },
                "size": e.size,
                "modified": httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.mtime.max(0) as u64)
                ),
            })
        })
        .collect();
    let mut doc = serde_json::json!({
        "path": p.path,
        "page": p.page,
        "pages": p.pages,
        "total": p.total,
        "entries": entries,
    });
    if p.zip {
        doc["zip"] = serde_json::Value::from("?download=zip");
    }
    let mut text = doc.to_string();
    text.push('\n');
    text
}

fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The page as HTML.
pub fn html(p: &Page<'_>) -> String {
    let mut out = String::with_capacity(512 + p.entries.len() * 160);
    let mut title = String::new();
    html_escape(p.path, &mut title);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em 0 0}}td.n{{text-align:right}}</style>\
         </head><body>\n<h1>Index of {title}</h1>\n"
    );
    if p.zip {
        out.push_str(
            "<p><a href=\"?download=zip\">Download this folder as a ZIP archive</a> \
             (resumable, unless it holds over 8 MiB of text, which is compressed)</p>\n",
        );
    }
    out.push_str("<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n");
    if p.path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in p.entries {
        let mut href: String = utf8_percent_encode(&e.name, SEGMENT).collect();
        let mut shown = String::new();
        html_escape(&e.name, &mut shown);
        if e.is_dir {
            href.push('/');
            shown.push('/');
        }
        let size = if e.is_dir {
            String::new()
        } else {
            e.size.to_string()
        };
        let modified = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.mtime.max(0) as u64),
        );
        let _ = writeln!(
            out,
            "<tr><td><a href=\"./{href}\">{shown}</a></td><td class=\"n\">{size}</td><td>{modified}</td></tr>"
        );
    }
    out.push_str("</table>\n");
    if p.pages > 1 {
        let _ = write!(
            out,
            "<p>Page {} of {} ({} entries)",
            p.page, p.pages, p.total
        );
        if p.page > 1 {
            let _ = write!(out, " <a href=\"?page={}\">previous</a>", p.page - 1);
        }
        if p.page < p.pages {
            let _ = write!(out, " <a href=\"?page={}\">next</a>", p.page + 1);
        }
        out.push_str("</p>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_in_html_and_links() {
        let entries = vec![Entry {
            name: "<script>alert(1)</script> & \"q\".txt".into(),
            is_dir: false,
            size: 5,
            mtime: 0,
        }];
        let page = Page {
            path: "/a&b/",
            entries: &entries,
            page: 1,
            pages: 1,
            total: 1,
            zip: true,
        };
        let h = html(&page);
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;.txt"));
        assert!(h.contains("href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E%20%26%20%22q%22.txt\""));
        assert!(h.contains("Index of /a&amp;b/"));
        let j: serde_json::Value = serde_json::from_str(&json(&page)).unwrap();
        assert_eq!(j["entries"][0]["name"], entries[0].name);
    }
}
