//! Just enough XML for Namecheap's answers: the start tags of one name with
//! their attributes (entities decoded), and the `<Error Number="...">text`
//! list. Namespaces, comments, CDATA and processing instructions are
//! skipped; nothing here fails: a malformed document gives fewer elements.

/// A start (or empty-element) tag's attributes.
#[derive(Debug, Default)]
pub(super) struct Element {
    attrs: Vec<(String, String)>,
    /// The text right after the start tag, up to the next `<`.
    text: String,
}

impl Element {
    pub(super) fn attr(&self, name: &str) -> Option<String> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// Every element called `name` (without a namespace prefix), in order.
pub(super) fn elements(xml: &str, name: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if rest.starts_with(['/', '?', '!']) {
            // End tag, declaration, comment or CDATA: skip past its `>`.
            let end = if rest.starts_with("!--") { rest.find("-->").map(|i| i + 2) } else { rest.find('>') };
            let Some(end) = end else { break };
            rest = &rest[end + 1..];
            continue;
        }
        let Some(end) = tag_end(rest) else { break };
        let tag = rest[..end].trim_end_matches('/');
        rest = &rest[end + 1..];
        let tag_name = tag.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or_default();
        let local = tag_name.rsplit(':').next().unwrap_or(tag_name);
        if local == name {
            let text = rest.split('<').next().unwrap_or_default();
            out.push(Element { attrs: attributes(&tag[tag_name.len()..]), text: decode(text.trim()) });
        }
    }
    out
}

/// `(Number, text)` of every `<Error>`.
pub(super) fn errors(xml: &str) -> Vec<(String, String)> {
    elements(xml, "Error").into_iter().map(|e| (e.attr("Number").unwrap_or_default(), e.text)).collect()
}

/// The index of the `>` closing a tag, outside quoted attribute values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="1" b='2'` as pairs.
fn attributes(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { return out };
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { return out };
        rest = &rest[1..];
        let Some(close) = rest.find(quote) else { return out };
        out.push((key, decode(&rest[..close])));
        rest = &rest[close + 1..];
    }
}

/// The five named entities and numeric references.
fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_attributes_text_and_entities_and_skips_the_rest() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- a <host Name="commented"/> -->
<ApiResponse Status="ERROR" xmlns="http://api.namecheap.com/xml.response">
  <Errors><Error Number="1011102">API Key is invalid &amp; "off"</Error></Errors>
  <nc:host Name='a&gt;b' Address="v=spf1 &#x2d;all &quot;x&quot;" TTL="60"/>
  <host Name="x>y" Address="&bogus; &#65;"></host>
</ApiResponse>"#;
        assert_eq!(elements(xml, "ApiResponse")[0].attr("Status").as_deref(), Some("ERROR"));
        assert_eq!(errors(xml), [("1011102".to_owned(), "API Key is invalid & \"off\"".to_owned())]);
        let hosts = elements(xml, "host");
        assert_eq!(hosts.len(), 2, "{hosts:?}");
        assert_eq!(hosts[0].attr("Name").as_deref(), Some("a>b"));
        assert_eq!(hosts[0].attr("Address").as_deref(), Some("v=spf1 -all \"x\""));
        assert_eq!(hosts[1].attr("Name").as_deref(), Some("x>y"));
        assert_eq!(hosts[1].attr("Address").as_deref(), Some("&bogus; A"));
        assert!(elements("<host Name=\"unterminated", "host").is_empty());
    }
}
