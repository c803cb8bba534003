//! The fields a dns-persist-01 challenge object carries beyond RFC 8555's
//! (`accounturi`, `issuer-domain-names`). instant-acme parses the challenge
//! into its own `Challenge`, which keeps only the RFC's fields, so the
//! account's recording HTTP client (`chains::Recording`) hands each JSON
//! answer that mentions dns-persist-01 to [`ChallengeFields::record`], and
//! the order reads them back by challenge URL. No extra request is made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

/// The type name whose fields are kept.
const DNS_PERSIST: &str = "dns-persist-01";
/// Challenges kept at most, so a long-running daemon cannot grow the map.
const MAX_KEPT: usize = 256;

/// What the CA said in one dns-persist-01 challenge object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct PersistFields {
    #[serde(default)]
    pub(crate) accounturi: Option<String>,
    #[serde(default, rename = "issuer-domain-names")]
    pub(crate) issuer_domain_names: Vec<String>,
}

/// One challenge object, as far as this module reads it.
#[derive(Deserialize)]
struct ChallengeObject {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(flatten)]
    fields: PersistFields,
}

/// An authorization (its challenges) or a challenge object.
#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Authorization { challenges: Vec<ChallengeObject> },
    Challenge(ChallengeObject),
}

/// dns-persist-01 challenge fields seen by one account's HTTP client, by
/// challenge URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChallengeFields(Arc<Mutex<HashMap<String, PersistFields>>>);

impl ChallengeFields {
    /// The fields of the challenge at `url`, if its object was seen.
    pub(crate) fn get(&self, url: &str) -> Option<PersistFields> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(url).cloned()
    }

    /// Keeps the dns-persist-01 fields of a JSON answer (an authorization
    /// or a challenge); anything else is ignored.
    pub(crate) fn record(&self, body: &[u8]) {
        if !contains(body, DNS_PERSIST.as_bytes()) {
            return;
        }
        let challenges = match serde_json::from_slice::<Answer>(body) {
            Ok(Answer::Authorization { challenges }) => challenges,
            Ok(Answer::Challenge(one)) => vec![one],
            Err(_) => return,
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // An object without the fields (some answers to "ready") keeps
        // what was seen before.
        let with_fields = |c: &ChallengeObject| c.kind == DNS_PERSIST && c.fields != PersistFields::default();
        for challenge in challenges.into_iter().filter(with_fields) {
            if map.len() >= MAX_KEPT {
                map.clear();
            }
            map.insert(challenge.url, challenge.fields);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_fields_of_dns_persist_challenges_by_url() {
        let fields = ChallengeFields::default();
        let authz = br#"{"identifier":{"type":"dns","value":"a.test"},"status":"pending","challenges":[
            {"type":"http-01","url":"https://ca/chall/1","token":"t","status":"pending"},
            {"type":"dns-persist-01","url":"https://ca/chall/2","status":"pending",
             "accounturi":"https://ca/acct/7","issuer-domain-names":["ca.example","ca2.example"]}]}"#;
        fields.record(authz);
        let got = fields.get("https://ca/chall/2").unwrap_or_default();
        assert_eq!(got.accounturi.as_deref(), Some("https://ca/acct/7"));
        assert_eq!(got.issuer_domain_names, ["ca.example", "ca2.example"]);
        assert_eq!(fields.get("https://ca/chall/1"), None, "other types are not kept");

        // A challenge object alone (the answer to "ready") updates it, and
        // one without the fields keeps what was seen.
        fields.record(br#"{"type":"dns-persist-01","url":"https://ca/chall/2","accounturi":"https://ca/acct/8"}"#);
        assert_eq!(fields.get("https://ca/chall/2").and_then(|f| f.accounturi).as_deref(), Some("https://ca/acct/8"));
        fields.record(br#"{"type":"dns-persist-01","url":"https://ca/chall/2","status":"processing"}"#);
        assert_eq!(fields.get("https://ca/chall/2").and_then(|f| f.accounturi).as_deref(), Some("https://ca/acct/8"));
        // Anything else is ignored.
        fields.record(b"not json but dns-persist-01");
        fields.record(br#"{"status":"valid"}"#);
        assert!(fields.get("https://ca/chall/3").is_none());
    }
}
