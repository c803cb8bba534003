use super::*;

const ACCOUNT: &str = "https://ca.test/acme/acct/abc";

fn expect(wildcard: bool) -> Expect {
    Expect::new(&["CA.example.".to_owned(), "other-ca.test".to_owned()], ACCOUNT, wildcard)
}

#[test]
fn a_wildcard_is_proven_at_its_base_name() {
    assert_eq!(record_name("*.Example.COM"), "_validation-persist.example.com.");
    assert_eq!(record_name("www.example.com."), "_validation-persist.www.example.com.");
}

#[test]
fn the_record_names_the_issuer_and_the_account_and_the_policy_when_asked() {
    assert_eq!(record_value("CA.example", ACCOUNT, false), format!("ca.example; accounturi={ACCOUNT}"));
    assert_eq!(record_value("ca.example", ACCOUNT, true), format!("ca.example; accounturi={ACCOUNT}; policy=wildcard"));
}

#[test]
fn a_zone_line_quotes_escapes_and_splits_long_values() {
    let line = zone_line("_validation-persist.a.test.", "ca.example; accounturi=x");
    assert_eq!(line, "_validation-persist.a.test. IN TXT \"ca.example; accounturi=x\"");
    assert_eq!(zone_line("n.", "a\"b\\c"), "n. IN TXT \"a\\\"b\\\\c\"");
    let long = "x".repeat(300);
    assert_eq!(zone_line("n.", &long), format!("n. IN TXT \"{}\" \"{}\"", "x".repeat(255), "x".repeat(45)));
    assert_eq!(zone_line("n.", ""), "n. IN TXT \"\"");
}

#[test]
fn parses_issue_values_as_the_draft_writes_them() {
    let parsed = parse(" \"CA.example ; AccountURI=https://ca/acct/1;persistUntil=1700000000; \"").unwrap();
    assert_eq!(parsed.issuer, "ca.example");
    assert_eq!(parsed.params.get("accounturi").map(String::as_str), Some("https://ca/acct/1"));
    assert_eq!(parsed.params.get("persistuntil").map(String::as_str), Some("1700000000"));
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("accounturi=x"), Err(ParseError::NoIssuer));
    assert_eq!(parse("ca; accounturi"), Err(ParseError::NoEquals("accounturi".into())));
    assert_eq!(parse("ca; =x"), Err(ParseError::NoKey));
    assert_eq!(parse("ca; a=1; A=2"), Err(ParseError::Duplicate("a".into())));
}

#[test]
fn only_the_right_issuer_account_policy_and_time_prove_a_name() {
    let now = 1_800_000_000;
    let good = record_value("ca.example", ACCOUNT, false);
    assert_eq!(judge_one(&good, &expect(false), now), Ok(()));
    assert_eq!(judge_one("OTHER-CA.test; accounturi=https://ca.test/acme/acct/abc", &expect(false), now), Ok(()));
    assert!(matches!(
        judge_one(&record_value("evil.example", ACCOUNT, false), &expect(false), now),
        Err(Mismatch::OtherIssuer { .. })
    ));
    let other = judge_one("ca.example; accounturi=https://ca.test/acme/acct/zzz", &expect(false), now);
    assert!(other.as_ref().is_err_and(Mismatch::is_other_account), "{other:?}");
    assert_eq!(judge_one("ca.example", &expect(false), now), Err(Mismatch::NoAccount));
    assert_eq!(judge_one(&good, &expect(true), now), Err(Mismatch::NotWildcard));
    assert_eq!(judge_one(&record_value("ca.example", ACCOUNT, true), &expect(true), now), Ok(()));
    let until = |t: &str| format!("{good}; persistUntil={t}");
    assert_eq!(judge_one(&until("1900000000"), &expect(false), now), Ok(()));
    assert_eq!(
        judge_one(&until("1700000000"), &expect(false), now),
        Err(Mismatch::Expired { until: 1_700_000_000, now })
    );
    assert_eq!(judge_one(&until("soon"), &expect(false), now), Err(Mismatch::BadPersistUntil("soon".into())));
}

#[test]
fn one_good_value_among_many_proves_it_and_a_refusal_says_why_for_each() {
    let now = 1_800_000_000;
    let good = record_value("ca.example", ACCOUNT, false);
    let other = "ca.example; accounturi=https://ca.test/acme/acct/zzz".to_owned();
    assert_eq!(judge(&[other.clone(), good], &expect(false), now), Verdict::Proven);
    assert_eq!(judge(&[], &expect(false), now), Verdict::Missing);
    let refused = judge(&[other], &expect(false), now);
    assert_eq!(
        refused.to_string(),
        "\"ca.example; accounturi=https://ca.test/acme/acct/zzz\" names another account \
         (accounturi=https://ca.test/acme/acct/zzz), not this one (https://ca.test/acme/acct/abc)"
    );
}

#[test]
fn a_certificates_records_map_wildcards_to_their_base_name_once() {
    let names: Vec<String> = ["b.test", "*.a.test", "a.test", "10.0.0.1"].iter().map(|n| (*n).to_owned()).collect();
    let lines = records_for(&names, "ca.example", ACCOUNT, false);
    assert_eq!(
        lines,
        [
            format!("_validation-persist.b.test. IN TXT \"ca.example; accounturi={ACCOUNT}\""),
            format!("_validation-persist.a.test. IN TXT \"ca.example; accounturi={ACCOUNT}; policy=wildcard\""),
        ]
    );
    let everywhere = records_for(&names[..1], "ca.example", ACCOUNT, true);
    assert!(everywhere[0].ends_with("; policy=wildcard\""), "{everywhere:?}");
}
