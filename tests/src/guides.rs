//! Walking a guide in docs/ literally: its blocks as written, and the
//! commands it tells the reader to type.

use std::path::Path;
use std::process::{Command, Output};

/// The `n`th ```` ```lang ```` block of `docs/<page>`.
pub fn doc_block(page: &str, lang: &str, n: usize) -> String {
    let guide = std::fs::read_to_string(super::workspace_root().join("docs").join(page))
        .unwrap_or_else(|e| panic!("docs/{page}: {e}"));
    let fence = format!("```{lang}\n");
    let start = guide.match_indices(&fence).nth(n).unwrap_or_else(|| panic!("no {lang} block #{n} in {page}")).0;
    let body = &guide[start + fence.len()..];
    body[..body.find("```").unwrap_or_else(|| panic!("unclosed block in {page}"))].to_owned()
}

/// `proxy-acme ARGS --config CONFIG`, as the reader types it.
pub fn run(args: &[&str], config: &Path) -> Output {
    Command::new(super::proxy_acme_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Everything a command printed, stdout then stderr.
pub fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
