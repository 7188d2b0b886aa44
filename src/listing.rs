//! Directory listings (off by default): HTML or JSON, folders first, sorted by name, size or
//! time (`?sort=`, `?order=`), paged, with human sizes, ISO dates and a breadcrumb path. A listing shows
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
    sort(&mut out, Sort::default());
    Ok(out)
}

/// The order of a listing: folders always first, then by `key`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// What a listing is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    #[default]
    Name,
    Size,
    Time,
}

impl Sort {
    /// From `?sort=name|size|time` and `?order=asc|desc`; `None` for anything else.
    pub fn parse(sort: Option<&str>, order: Option<&str>) -> Option<Sort> {
        let key = match sort.unwrap_or("name") {
            "name" => SortKey::Name,
            "size" => SortKey::Size,
            "time" => SortKey::Time,
            _ => return None,
        };
        let descending = match order.unwrap_or("asc") {
            "asc" => false,
            "desc" => true,
            _ => return None,
        };
        Some(Sort { key, descending })
    }

    fn query(self) -> String {
        let key = match self.key {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Time => "time",
        };
        let order = if self.descending { "desc" } else { "asc" };
        format!("sort={key}&order={order}")
    }
}

/// Sort `entries`: folders first, then by the key (ties by name).
pub fn sort(entries: &mut [Entry], by: Sort) {
    entries.sort_by(|a, b| {
        let within = match by.key {
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::Size => a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)),
            SortKey::Time => a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)),
        };
        let within = if by.descending {
            within.reverse()
        } else {
            within
        };
        b.is_dir.cmp(&a.is_dir).then(within)
    });
}

/// `1023 B`, `1.5 KiB`, `12.3 MiB`: sizes a person reads at a glance.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `2026-12-02 07:50` (UTC), from seconds since the epoch.
pub fn iso_minute(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    let (y, mo, d, h, mi, _, _) = crate::civil::civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
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
    /// The order the entries are in (kept in the page links).
    pub sort: Sort,
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
                "mtime": e.mtime,
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

/// The page as HTML: a breadcrumb, folders first, column headers that sort (no script), human
/// sizes with the exact bytes in a title, ISO dates; readable on a phone.
pub fn html(p: &Page<'_>) -> String {
    let mut out = String::with_capacity(1024 + p.entries.len() * 200);
    let mut title = String::new();
    html_escape(p.path, &mut title);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Index of {title}</title><style>{STYLE}</style></head><body>\n"
    );
    breadcrumb(p.path, &mut out);
    if p.zip {
        out.push_str(
            "<p><a href=\"?download=zip\">Download this folder as a ZIP archive</a> \
             (resumable, unless it holds over 8 MiB of text, which is compressed)</p>\n",
        );
    }
    out.push_str("<table>\n<thead><tr>");
    for (label, key) in [
        ("Name", SortKey::Name),
        ("Size", SortKey::Size),
        ("Modified", SortKey::Time),
    ] {
        header_cell(label, key, p.sort, &mut out);
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    if p.path != "/" {
        out.push_str("<tr class=\"up\"><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in p.entries {
        entry_row(e, &mut out);
    }
    out.push_str("</tbody></table>\n");
    pager(p, &mut out);
    out.push_str("</body></html>\n");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;max-width:60em}\
h1{font-size:1.2em;word-break:break-all}nav.crumbs{display:inline}table{border-collapse:collapse;width:100%}\
th,td{padding:.3em .6em .3em 0;text-align:left}td.size,th.size{text-align:right;white-space:nowrap}\
td.time{white-space:nowrap}a{text-decoration:none}tr:hover{background:#f3f3f3}\
@media (max-width:30em){td.time,th.time{display:none}}";

/// `Index of /a/b/` with each ancestor a link.
fn breadcrumb(path: &str, out: &mut String) {
    out.push_str("<h1>Index of <nav class=\"crumbs\"><a href=\"/\">/</a>");
    let mut href = String::from("/");
    for part in path.split('/').filter(|s| !s.is_empty()) {
        href.extend(utf8_percent_encode(part, SEGMENT));
        href.push('/');
        let mut shown = String::new();
        html_escape(part, &mut shown);
        let _ = write!(out, "<a href=\"{href}\">{shown}/</a>");
    }
    out.push_str("</nav></h1>\n");
}

/// A column header that links to the listing sorted by it (again: the other way round).
fn header_cell(label: &str, key: SortKey, current: Sort, out: &mut String) {
    let descending = current.key == key && !current.descending;
    let link = Sort { key, descending }.query();
    let class = match key {
        SortKey::Name => "name",
        SortKey::Size => "size",
        SortKey::Time => "time",
    };
    let mark = match (current.key == key, current.descending) {
        (true, false) => " ▲",
        (true, true) => " ▼",
        _ => "",
    };
    let _ = write!(
        out,
        "<th class=\"{class}\"><a href=\"?{link}\">{label}</a>{mark}</th>"
    );
}

fn entry_row(e: &Entry, out: &mut String) {
    let mut href: String = utf8_percent_encode(&e.name, SEGMENT).collect();
    let mut shown = String::new();
    html_escape(&e.name, &mut shown);
    let (class, size, bytes) = if e.is_dir {
        href.push('/');
        shown.push('/');
        ("dir", String::new(), String::new())
    } else {
        (
            "file",
            human_size(e.size),
            format!(" title=\"{} bytes\" data-bytes=\"{}\"", e.size, e.size),
        )
    };
    let _ = writeln!(
        out,
        "<tr class=\"{class}\"><td class=\"name\"><a href=\"./{href}\">{shown}</a></td>\
         <td class=\"size\"{bytes}>{size}</td><td class=\"time\">{}</td></tr>",
        iso_minute(e.mtime)
    );
}

/// Previous and next links of a paged listing, in the same order.
fn pager(p: &Page<'_>, out: &mut String) {
    if p.pages <= 1 {
        return;
    }
    let order = p.sort.query();
    let _ = write!(
        out,
        "<p>Page {} of {} ({} entries)",
        p.page, p.pages, p.total
    );
    if p.page > 1 {
        let _ = write!(
            out,
            " <a href=\"?page={}&amp;{order}\">previous</a>",
            p.page - 1
        );
    }
    if p.page < p.pages {
        let _ = write!(
            out,
            " <a href=\"?page={}&amp;{order}\">next</a>",
            p.page + 1
        );
    }
    out.push_str("</p>\n");
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
            sort: Sort::default(),
        };
        let h = html(&page);
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;.txt"));
        assert!(h.contains("href=\"./%3Cscript%3Ealert(1)%3C%2Fscript%3E%20%26%20%22q%22.txt\""));
        assert!(h.contains("<a href=\"/a%26b/\">a&amp;b/</a>"), "{h}");
        let j: serde_json::Value = serde_json::from_str(&json(&page)).unwrap();
        assert_eq!(j["entries"][0]["name"], entries[0].name);
    }

    #[test]
    fn folders_first_then_the_chosen_order_and_readable_sizes() {
        let e = |name: &str, is_dir: bool, size: u64, mtime: i64| Entry {
            name: name.into(),
            is_dir,
            size,
            mtime,
        };
        let mut list = vec![
            e("b", false, 5, 3),
            e("z", true, 0, 1),
            e("a", false, 9, 2),
            e("c", true, 0, 9),
        ];
        sort(&mut list, Sort::default());
        let names = |l: &[Entry]| l.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&list), ["c", "z", "a", "b"]);
        sort(&mut list, Sort::parse(Some("size"), Some("desc")).unwrap());
        assert_eq!(names(&list), ["z", "c", "a", "b"]);
        sort(&mut list, Sort::parse(Some("time"), None).unwrap());
        assert_eq!(names(&list), ["z", "c", "a", "b"]);
        assert_eq!(Sort::parse(Some("colour"), None), None);
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
        assert_eq!(iso_minute(1_795_232_168), "2026-11-21 03:36");
    }
}
