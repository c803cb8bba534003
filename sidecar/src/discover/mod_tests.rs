use super::*;

fn policy(allow: &[&str], deny: &[&str]) -> Policy {
    let parse = |list: &[&str]| list.iter().map(|p| Pattern::parse(p).unwrap_or_else(|e| panic!("{e}"))).collect();
    Policy { allow: parse(allow), deny: parse(deny), ip_addresses: false, wildcards: false }
}

fn found(hosts: &[&[&str]]) -> Vec<Vec<String>> {
    hosts.iter().map(|h| h.iter().map(|s| (*s).to_owned()).collect()).collect()
}

#[test]
fn each_virtual_host_is_one_request_first_name_main_ports_stripped() {
    let (requests, skipped) = requests(&found(&[&["a.test", "WWW.a.test:8080"], &["b.test"]]), &policy(&[], &[]));
    assert_eq!(
        requests,
        vec![
            Request { name: "a.test".into(), domains: vec!["a.test".into(), "www.a.test".into()] },
            Request { name: "b.test".into(), domains: vec!["b.test".into()] },
        ]
    );
    assert!(skipped.is_empty());
}

#[test]
fn what_cannot_be_issued_is_skipped_with_a_reason() {
    let (requests, skipped) = requests(
        &found(&[&["*"], &["10.0.0.1", "c.test"], &["*.w.test"], &["bad_name.test"], &["~^x$", "_", ""], &["a.*"]]),
        &policy(&[], &[]),
    );
    assert_eq!(requests, vec![Request { name: "c.test".into(), domains: vec!["c.test".into()] }]);
    let names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["*", "*.w.test", "10.0.0.1", "a.*", "bad_name.test", "~^x$"]);
    assert!(skipped.iter().all(|s| !s.why.is_empty()));
    let wildcard = skipped.iter().find(|s| s.name == "*.w.test").map(|s| s.why.as_str());
    assert_eq!(wildcard, Some("a wildcard needs DNS-01: give the discover resolver a dns_challenge"));
}

#[test]
fn wildcards_and_ips_when_allowed_and_nginx_dot_names_mean_both() {
    let policy = Policy { ip_addresses: true, wildcards: true, ..policy(&[], &[]) };
    let (requests, skipped) = requests(&found(&[&[".w.test"], &["10.0.0.1"]]), &policy);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(
        requests,
        vec![
            Request { name: "w.test".into(), domains: vec!["w.test".into(), "*.w.test".into()] },
            Request { name: "10.0.0.1".into(), domains: vec!["10.0.0.1".into()] },
        ]
    );
}

#[test]
fn deny_wins_over_allow_and_an_allow_list_excludes_the_rest() {
    let policy = policy(&[".example.com", "~^api-[0-9]+\\.example\\.net$", "exact.org"], &["bad.example.com"]);
    let (requests, skipped) = requests(
        &found(&[
            &["www.example.com"],
            &["bad.example.com"],
            &["example.com"],
            &["api-7.example.net"],
            &["api-x.example.net"],
            &["exact.org"],
        ]),
        &policy,
    );
    let names: Vec<&str> = requests.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["www.example.com", "api-7.example.net", "exact.org"]);
    let why: Vec<(&str, &str)> = skipped.iter().map(|s| (s.name.as_str(), s.why.as_str())).collect();
    assert_eq!(
        why,
        vec![
            ("api-x.example.net", "not on the allow list"),
            ("bad.example.com", "denied by 'bad.example.com'"),
            ("example.com", "not on the allow list"),
        ]
    );
}

#[test]
fn patterns_that_do_not_parse_are_errors() {
    assert!(Pattern::parse("~(").is_err());
    assert!(Pattern::parse("A.test").is_err());
    assert!(Pattern::parse(".").is_err());
    assert!(Pattern::parse("").is_err());
}
