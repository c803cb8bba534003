//! certbot's configuration directory: `live/<name>/fullchain.pem` and
//! `privkey.pem` (symlinks into `archive/`), one lineage per directory.

use std::path::Path;

use super::{Candidate, ImportError};
use crate::cert::{Bundle, SecretPem};

/// Every lineage under `<dir>/live`. Unreadable lineages are an error
/// naming the file; `README` and other plain files are ignored.
pub fn candidates(dir: &Path) -> Result<Vec<Candidate>, ImportError> {
    let live = dir.join("live");
    let read_error = |path: &Path, source| ImportError::Read { path: path.display().to_string(), source };
    let mut entries: Vec<_> =
        std::fs::read_dir(&live).map_err(|e| read_error(&live, e))?.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut out = Vec::new();
    for entry in entries {
        let lineage = entry.path();
        if !lineage.is_dir() {
            continue;
        }
        let read = |file: &str| {
            let path = lineage.join(file);
            std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))
        };
        out.push(Candidate {
            source: format!("{}", lineage.display()),
            bundle: Bundle { fullchain_pem: read("fullchain.pem")?, key_pem: SecretPem::new(read("privkey.pem")?) },
        });
    }
    Ok(out)
}
