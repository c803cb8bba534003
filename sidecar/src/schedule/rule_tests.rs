use super::*;

const HOUR: u64 = 3600;
const DAYS: u64 = 24 * HOUR;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200) // 2026-11-28T12:00:00Z
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAYS)
}

fn rb(text: &str) -> RenewBefore {
    text.parse().unwrap()
}

fn error(text: &str) -> String {
    text.parse::<RenewBefore>().unwrap_err().to_string()
}

#[test]
fn parses_durations_and_percentages() {
    assert_eq!(rb("30d"), RenewBefore::from_duration(days(30)).unwrap());
    assert_eq!(rb("720h"), rb("30d"));
    assert_eq!(rb("90m"), RenewBefore::from_duration(Duration::from_secs(5400)).unwrap());
    assert_eq!(rb("45s"), RenewBefore::from_duration(Duration::from_secs(45)).unwrap());
    assert_eq!(rb("1d12h"), RenewBefore::from_duration(Duration::from_secs(36 * HOUR)).unwrap());
    assert_eq!(rb("1d2h3m4s"), RenewBefore::from_duration(Duration::from_secs(DAYS + 2 * HOUR + 184)).unwrap());
    assert_eq!(rb(" 7d "), rb("7d"));
    assert_eq!(rb("33%"), RenewBefore::from_percent(33).unwrap());
    assert_eq!(rb("1%"), RenewBefore::from_percent(1).unwrap());
    assert_eq!(rb("99%"), RenewBefore::from_percent(99).unwrap());
}

#[test]
fn refuses_bad_strings_with_clear_messages() {
    assert_eq!(error("0d"), "'0d' must be positive");
    assert_eq!(error("0h0m"), "'0h0m' must be positive");
    assert!(error("").contains("is empty"), "{}", error(""));
    assert!(error("30").contains("'30' needs a unit"), "{}", error("30"));
    assert!(error("30x").contains("unknown unit 'x'"), "{}", error("30x"));
    assert!(error("30 d").contains("unknown unit ' '"), "{}", error("30 d"));
    assert!(error("d").contains("needs a number"), "{}", error("d"));
    assert!(error("-5d").contains("unknown unit '-'"), "{}", error("-5d"));
    assert!(error("12h1d").contains("order d, h, m, s"), "{}", error("12h1d"));
    assert!(error("1d1d").contains("order d, h, m, s"), "{}", error("1d1d"));
    assert!(error("99999999999999999999d").contains("too large"), "{}", error("99999999999999999999d"));
    assert_eq!(error("0%"), "'0%' must be between 1% and 99%");
    assert_eq!(error("100%"), "'100%' must be between 1% and 99%");
    assert!(error("33.5%").contains("whole percentage"), "{}", error("33.5%"));
    assert!(error("%").contains("whole percentage"), "{}", error("%"));
    assert!(!error("0d").contains("renew_before"), "the caller adds the field path");
}

#[test]
fn display_is_canonical_and_round_trips() {
    for (input, canonical) in [
        ("30d", "30d"),
        ("720h", "30d"),
        ("36h", "1d12h"),
        ("90m", "1h30m"),
        ("45s", "45s"),
        ("3600s", "1h"),
        ("1d2h3m4s", "1d2h3m4s"),
        ("33%", "33%"),
    ] {
        let parsed = rb(input);
        assert_eq!(parsed.to_string(), canonical, "{input}");
        assert_eq!(rb(canonical), parsed, "{input}");
    }
}

#[test]
fn constructors_validate() {
    assert!(RenewBefore::from_duration(Duration::from_millis(999)).is_err());
    assert_eq!(RenewBefore::from_duration(Duration::from_millis(1500)).unwrap().to_string(), "1s");
    assert!(RenewBefore::from_percent(0).is_err());
    assert!(RenewBefore::from_percent(100).is_err());
}

#[test]
fn deserializes_from_the_string_form() {
    #[derive(serde::Deserialize)]
    struct Resolver {
        renew_before: Option<RenewBefore>,
    }
    let r: Resolver = toml::from_str(r#"renew_before = "1d12h""#).unwrap();
    assert_eq!(r.renew_before, Some(rb("36h")));
    let r: Resolver = toml::from_str("").unwrap();
    assert_eq!(r.renew_before, None);
    let e = toml::from_str::<Resolver>(r#"renew_before = "0d""#).err().unwrap().to_string();
    assert!(e.contains("'0d' must be positive"), "{e}");
    assert!(toml::from_str::<Resolver>("renew_before = 30").is_err());
    assert_eq!(serde_json::to_string(&rb("720h")).unwrap(), r#""30d""#);
    assert_eq!(serde_json::from_str::<RenewBefore>(r#""33%""#).unwrap(), rb("33%"));
}

#[test]
fn ninety_day_certificate_renews_with_a_third_left() {
    let (at, why) = renew_time(t0(), t0() + days(90), None);
    assert_eq!(at, t0() + days(60));
    assert_eq!(why, Why::Lifetime { short: false });
    assert_eq!(why.to_string(), "one third of the lifetime left");
}

#[test]
fn six_day_certificate_renews_at_half_life() {
    let (at, why) = renew_time(t0(), t0() + days(6), None);
    assert_eq!(at, t0() + days(3));
    assert_eq!(why, Why::Lifetime { short: true });
    assert_eq!(why.to_string(), "half of a short lifetime left");
    // Exactly ten days is not short.
    assert_eq!(renew_time(t0(), t0() + days(10), None).1, Why::Lifetime { short: false });
}

#[test]
fn renew_before_duration_overrides() {
    let (at, why) = renew_time(t0(), t0() + days(90), Some(&rb("7d")));
    assert_eq!(at, t0() + days(83));
    assert_eq!(why, Why::RenewBefore(rb("7d")));
    assert_eq!(why.to_string(), "7d before expiry, per renew_before");
}

#[test]
fn renew_before_percentage_overrides() {
    let (at, why) = renew_time(t0(), t0() + days(100), Some(&rb("25%")));
    assert_eq!(at, t0() + days(75));
    assert_eq!(why.to_string(), "25% of the lifetime left, per renew_before");
}

#[test]
fn renew_before_not_shorter_than_the_lifetime_means_half_life() {
    for text in ["6d", "30d"] {
        let (at, why) = renew_time(t0(), t0() + days(6), Some(&rb(text)));
        assert_eq!(at, t0() + days(3), "{text}");
        assert_eq!(why, Why::RenewBeforeTooLong(rb(text)));
    }
    let why = Why::RenewBeforeTooLong(rb("30d")).to_string();
    assert!(why.starts_with("half of the lifetime left") && why.contains("30d"), "{why}");
}

#[test]
fn inverted_validity_renews_at_once() {
    let (at, _) = renew_time(t0(), t0() - days(1), Some(&rb("50%")));
    assert!(at <= t0());
}

#[test]
fn why_reads_well() {
    let window = Why::AriWindow { start: t0(), end: t0() + days(2) };
    assert_eq!(window.to_string(), "random time in the CA's ARI window 2026-11-28T12:00:00Z–2026-11-30T12:00:00Z");
    for why in [Why::Forced, Why::Expired, Why::NotIssued, Why::ConfigChanged, Why::Interrupted] {
        assert!(!why.to_string().is_empty());
    }
    assert_eq!(Why::NotIssued.to_string(), "not issued yet");
}
