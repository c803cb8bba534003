use super::*;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200)
}

#[test]
fn renewal_jitter_moves_earlier_by_at_most_one_percent_or_an_hour() {
    let day = Duration::from_secs(86_400);
    assert_eq!(renewal_jitter(t0(), 90 * day, 0.0), t0());
    assert_eq!(renewal_jitter(t0(), 90 * day, 0.5), t0() - Duration::from_secs(1800));
    // 1% of a day is 14.4 min.
    assert_eq!(renewal_jitter(t0(), day, 0.5), t0() - Duration::from_secs(432));
    assert!(renewal_jitter(t0(), 90 * day, 1.0) >= t0() - Duration::from_secs(3600));
    assert_eq!(renewal_jitter(t0(), 90 * day, f64::NAN), t0());
}

#[test]
fn stable_jitter_is_the_same_for_a_serial_and_spreads_consecutive_serials_evenly() {
    assert_eq!(stable_jitter(b"03a1f2"), stable_jitter(b"03a1f2"));
    assert_ne!(stable_jitter(b"03a1f2"), stable_jitter(b"03a1f3"));
    let mut deciles = [0u32; 10];
    for serial in 0..10_000u32 {
        let j = stable_jitter(format!("{serial:x}").as_bytes());
        assert!((0.0..1.0).contains(&j), "{j}");
        deciles[(j * 10.0) as usize] += 1;
    }
    assert!(deciles.iter().all(|&n| (850..1150).contains(&n)), "uneven: {deciles:?}");
}

#[test]
fn fallback_order_for_every_combination() {
    let now = t0();
    let hour = Duration::from_secs(3600);
    let valid = Some((now - hour, now + hour));
    let expired = Some((now - 2 * hour, now - hour));
    let not_yet = Some((now + hour, now + 2 * hour));
    let ends_now = Some((now - hour, now));
    for has_default in [false, true] {
        for placeholder in [false, true] {
            assert_eq!(choose_served(valid, has_default, placeholder, now), Served::Current);
            assert_eq!(choose_served(not_yet, has_default, placeholder, now), Served::Current);
            assert_eq!(choose_served(expired, has_default, placeholder, now), Served::Expired);
            assert_eq!(choose_served(ends_now, has_default, placeholder, now), Served::Expired);
            let expected = match (has_default, placeholder) {
                (true, _) => Served::Default,
                (false, true) => Served::Placeholder,
                (false, false) => Served::Nothing,
            };
            assert_eq!(choose_served(None, has_default, placeholder, now), expected);
        }
    }
}
