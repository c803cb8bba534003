//! The DNS-01 propagation check's reading of answers: a nameserver's reply
//! to the TXT query (present, stale, NXDOMAIN, failure), and the CNAME, SOA,
//! NS and A/AAAA answers the recursive resolvers give on the way to the
//! authoritative servers. The answers are hostile wire data.
//!
//! Input: a DNS message as received (wire format).
#![no_main]

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData};
use libfuzzer_sys::fuzz_target;
use proxy_acme::dns::propagation::{addresses, cname_target, judge_txt, ns_hosts, soa_zone, Seen};

/// The value the seeds carry: a key authorization digest.
const VALUE: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::from_vec(data) else { return };

    let seen = judge_txt(&message, VALUE);
    let _ = seen.to_string();
    let values: Vec<String> = message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect();
    match message.response_code() {
        ResponseCode::NoError => {
            assert_eq!(seen == Seen::Present, values.iter().any(|v| v == VALUE));
            for value in &values {
                assert_eq!(judge_txt(&message, value), Seen::Present, "{value:?} is in the answer");
            }
        }
        ResponseCode::NXDomain => assert_eq!(seen, Seen::NxDomain),
        _ => assert!(matches!(seen, Seen::Failed(_)), "{seen:?}"),
    }

    let asked: Vec<Name> = message.queries().iter().map(|q| q.name().clone()).collect();
    for name in asked.iter().chain(message.answers().iter().map(|r| r.name())) {
        if let Some(target) = cname_target(&message, name) {
            let _ = target.to_string();
            assert!(message
                .answers()
                .iter()
                .any(|r| r.name() == name && matches!(r.data(), RData::CNAME(c) if c.0 == target)));
        }
    }
    if let Some(zone) = soa_zone(&message) {
        let _ = zone.to_string();
    }
    for host in ns_hosts(&message) {
        let _ = host.to_string();
    }
    let _ = addresses(&message);
});
