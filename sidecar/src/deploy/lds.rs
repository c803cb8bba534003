//! The HTTPS listener as a file for Envoy's file-based LDS, one filter chain
//! per certificate, so a certificate for a new name reaches Envoy without
//! anyone editing the listener: the sidecar renders the operator's template
//! and swaps the file (`..data`, as for file SDS). Envoy adds the new filter
//! chain in place; connections on the other chains are not drained.
//!
//! The template is a LDS resource file in which the lines between
//! `# proxy-acme: per certificate` and `# proxy-acme: end` are repeated for
//! each certificate, with `{{name}}` (the SDS secret name) and
//! `{{server_names}}` (a JSON list of its names) filled in. Certificates
//! for the same names (one per key type, `key_types`) share one filter
//! chain, as Envoy wants: inside the block, the lines between
//! `# proxy-acme: per secret` and `# proxy-acme: end secret` are repeated
//! for each of the chain's secrets, with `{{secret}}` filled in, so Envoy
//! picks the certificate by the client's signature algorithms.

use std::path::{Path, PathBuf};

use super::DeployError;

pub const BEGIN: &str = "# proxy-acme: per certificate";
pub const END: &str = "# proxy-acme: end";
pub const SECRET_BEGIN: &str = "# proxy-acme: per secret";
pub const SECRET_END: &str = "# proxy-acme: end secret";

/// One filter chain: its `{{name}}`, its server names, its secrets (the
/// certificates for those names, one per key type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub names: Vec<String>,
    pub secrets: Vec<String>,
}

impl Chain {
    /// Certificates (name, names) as chains: those with the same names,
    /// first come first, share one.
    pub fn group(certificates: &[(String, Vec<String>)]) -> Vec<Self> {
        let mut chains: Vec<Self> = Vec::new();
        for (name, names) in certificates {
            match chains.iter_mut().find(|c| &c.names == names) {
                Some(chain) => chain.secrets.push(name.clone()),
                None => chains.push(Self { name: name.clone(), names: names.clone(), secrets: vec![name.clone()] }),
            }
        }
        chains
    }
}
const FILE: &str = "listeners.yaml";

/// A template without its two marker lines, or with them out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the listener template needs a `{BEGIN}` line followed by a `{END}` line")]
pub struct TemplateError;

/// Renders `template` for `certificates` (name, names), in the order given.
pub fn render(template: &str, certificates: &[(String, Vec<String>)]) -> Result<String, TemplateError> {
    let lines: Vec<&str> = template.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == BEGIN).ok_or(TemplateError)?;
    let end = lines.iter().skip(begin).position(|l| l.trim() == END).map(|i| begin + i).ok_or(TemplateError)?;
    let block = &lines[begin + 1..end];
    let inner = match block.iter().position(|l| l.trim() == SECRET_BEGIN) {
        Some(at) => {
            let to = block.iter().skip(at).position(|l| l.trim() == SECRET_END).ok_or(TemplateError)? + at;
            Some((at, to))
        }
        None => None,
    };
    let mut out = String::new();
    let mut push = |line: &str| {
        out.push_str(line);
        out.push('\n');
    };
    lines[..begin].iter().for_each(|l| push(l));
    for chain in Chain::group(certificates) {
        let server_names = serde_json::to_string(&chain.names).unwrap_or_else(|_| "[]".to_owned());
        let fill = |line: &str| line.replace("{{name}}", &chain.name).replace("{{server_names}}", &server_names);
        match inner {
            None => block.iter().for_each(|l| push(&fill(l))),
            Some((at, to)) => {
                block[..at].iter().for_each(|l| push(&fill(l)));
                for secret in &chain.secrets {
                    block[at + 1..to].iter().for_each(|l| push(&fill(l).replace("{{secret}}", secret)));
                }
                block[to + 1..].iter().for_each(|l| push(&fill(l)));
            }
        }
    }
    lines[end + 1..].iter().for_each(|l| push(l));
    Ok(out)
}

/// Where the listener file goes, and its template.
#[derive(Debug, Clone)]
pub struct ListenerFile {
    dir: PathBuf,
    template: String,
}

impl ListenerFile {
    /// Reads and checks the template.
    pub fn load(dir: &Path, template: &Path) -> Result<Self, DeployError> {
        let text = std::fs::read_to_string(template)
            .map_err(|source| DeployError::Directory { path: template.display().to_string(), source })?;
        render(&text, &[]).map_err(|e| DeployError::Directory {
            path: template.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(Self { dir: dir.to_owned(), template: text })
    }

    /// The file Envoy's `lds_config.path_config_source.path` names.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Writes the listener for `certificates`; `false` when unchanged.
    pub async fn write(&self, certificates: &[(String, Vec<String>)]) -> Result<bool, DeployError> {
        let contents = render(&self.template, certificates).map_err(|e| DeployError::Directory {
            path: self.dir.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || super::file_sds::write_watched(&dir, FILE, &contents)).await.map_err(
            |e| DeployError::Directory {
                path: self.dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            },
        )?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "resources:\n- name: https\n  filter_chains:\n  # proxy-acme: per certificate\n  - filter_chain_match: { server_names: {{server_names}} }\n    secret: {{name}}\n  # proxy-acme: end\n  tail: true\n";

    #[test]
    fn the_marked_block_is_repeated_per_certificate() {
        let certs = vec![
            ("a.test".to_owned(), vec!["a.test".to_owned(), "www.a.test".to_owned()]),
            ("_.w.test".to_owned(), vec!["*.w.test".to_owned()]),
        ];
        assert_eq!(
            render(TEMPLATE, &certs),
            Ok("resources:\n- name: https\n  filter_chains:\n  - filter_chain_match: { server_names: [\"a.test\",\"www.a.test\"] }\n    secret: a.test\n  - filter_chain_match: { server_names: [\"*.w.test\"] }\n    secret: _.w.test\n  tail: true\n".to_owned())
        );
        assert_eq!(render("no markers\n", &certs), Err(TemplateError));
        assert_eq!(render("# proxy-acme: end\n# proxy-acme: per certificate\n", &certs), Err(TemplateError));
    }

    #[test]
    fn certificates_for_the_same_names_share_a_chain_with_a_secret_each() {
        let template = "l:\n# proxy-acme: per certificate\n- chain: {{name}} {{server_names}}\n  secrets:\n  # proxy-acme: per secret\n  - name: {{secret}}\n    ads: {}\n  # proxy-acme: end secret\n  tail: {{name}}\n# proxy-acme: end\n";
        let certs = vec![
            ("www".to_owned(), vec!["a.test".to_owned()]),
            ("other".to_owned(), vec!["b.test".to_owned()]),
            ("www-rsa2048".to_owned(), vec!["a.test".to_owned()]),
        ];
        assert_eq!(
            render(template, &certs),
            Ok("l:\n- chain: www [\"a.test\"]\n  secrets:\n  - name: www\n    ads: {}\n  - name: www-rsa2048\n    ads: {}\n  tail: www\n- chain: other [\"b.test\"]\n  secrets:\n  - name: other\n    ads: {}\n  tail: other\n".to_owned())
        );
        let unclosed = "# proxy-acme: per certificate\n# proxy-acme: per secret\n# proxy-acme: end\n";
        assert_eq!(render(unclosed, &certs), Err(TemplateError));
    }

    #[tokio::test]
    async fn writes_behind_a_data_swap_and_skips_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let template = dir.path().join("template.yaml");
        std::fs::write(&template, TEMPLATE).unwrap_or_else(|e| panic!("{e}"));
        let out = dir.path().join("lds");
        let file = ListenerFile::load(&out, &template).unwrap_or_else(|e| panic!("{e}"));
        let one = vec![("a.test".to_owned(), vec!["a.test".to_owned()])];
        assert_eq!(file.write(&one).await.ok(), Some(true));
        assert_eq!(file.write(&one).await.ok(), Some(false));
        let text = std::fs::read_to_string(file.path()).unwrap_or_default();
        assert!(text.contains("secret: a.test"), "{text}");
        assert!(std::fs::read_link(out.join("..data")).is_ok());
    }
}
