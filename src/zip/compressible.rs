//! Which files an `auto` archive deflates: only media types known to compress well (text,
//! markup, JSON, scripts, SVG, uncompressed fonts and tarballs). Everything else is stored,
//! including unknown types (`.bin`, no extension), so a folder of opaque data stays a sized,
//! resumable archive unless compression clearly pays.

/// Whether a file of this name is of a type that deflate shrinks well.
pub fn compresses_well(name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let Some(mime) = mime_guess::from_path(name).first() else {
        return false;
    };
    if mime.type_() == mime_guess::mime::TEXT {
        return true;
    }
    let essence = mime.essence_str();
    essence.ends_with("+xml")
        || essence.ends_with("+json")
        || matches!(
            essence,
            "application/json"
                | "application/javascript"
                | "application/ecmascript"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/x-sh"
                | "application/x-csh"
                | "application/x-tex"
                | "application/x-latex"
                | "application/postscript"
                | "application/rtf"
                | "application/x-tar"
                | "application/sql"
                | "application/wasm"
                | "application/x-yaml"
                | "application/toml"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
                | "image/bmp"
                | "image/x-ms-bmp"
                | "image/tiff"
        )
}

#[cfg(test)]
mod tests {
    use super::compresses_well;

    #[test]
    fn text_compresses_and_opaque_or_compressed_data_does_not() {
        for name in [
            "a.txt", "a.html", "a.css", "a.js", "a.json", "a.svg", "a.xml", "a.csv", "a.md",
            "a.tar", "a.wasm", "a.ttf",
        ] {
            assert!(compresses_well(name.as_bytes()), "{name}");
        }
        for name in [
            "a.bin", "noext", "a.jpg", "a.png", "a.mp4", "a.zip", "a.gz", "a.woff2", "a.pdf",
            "a.docx", "a.iso",
        ] {
            assert!(!compresses_well(name.as_bytes()), "{name}");
        }
    }
}
