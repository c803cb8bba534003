use std::time::{Duration, SystemTime};

use super::{AfterFailure, Fallback};
use super::{FallbackSettings as Settings, Renewals};
use crate::schedule::Failure;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn settings(renewals: Renewals) -> Settings {
    Settings { after_failures: 2, patience_secs: 600, renewals }
}

fn invalid() -> Failure {
    Failure { message: "challenge invalid".into(), ..Failure::default() }
}

fn outage() -> Failure {
    Failure { outage: true, message: "connection refused".into(), ..Failure::default() }
}

fn permanent() -> Failure {
    Failure { permanent: true, message: "rejectedIdentifier".into(), ..Failure::default() }
}

#[test]
fn one_resolver_always_backs_off_with_the_failure_as_it_is() {
    let mut f = Fallback::new(settings(Renewals::PreferFirst), 1, None);
    for failure in [invalid(), permanent(), outage()] {
        assert_eq!(f.failed(&failure, t(0)), AfterFailure::BackOff(failure.clone()));
        assert_eq!(f.next(), 0);
    }
    assert_eq!(f.why(), None);
}

#[test]
fn a_permanent_error_moves_on_at_once() {
    let mut f = Fallback::new(settings(Renewals::PreferFirst), 2, None);
    let after = f.failed(&permanent(), t(0));
    let AfterFailure::MoveOn { from: 0, to: 1, why } = after else { panic!("{after:?}") };
    assert!(why.contains("permanent error: rejectedIdentifier"), "{why}");
    assert_eq!(f.next(), 1);
    assert_eq!(f.why(), Some(why.as_str()));
}

#[test]
fn failures_in_a_row_move_on_after_the_configured_number() {
    let mut f = Fallback::new(settings(Renewals::PreferFirst), 3, None);
    assert_eq!(f.failed(&invalid(), t(0)), AfterFailure::BackOff(invalid()));
    assert_eq!(f.next(), 0);
    let after = f.failed(&invalid(), t(60));
    assert!(matches!(&after, AfterFailure::MoveOn { from: 0, to: 1, why } if why.starts_with("2 failures in a row")));
    // The count starts over at the next resolver.
    assert_eq!(f.failed(&invalid(), t(61)), AfterFailure::BackOff(invalid()));
    assert!(matches!(f.failed(&invalid(), t(62)), AfterFailure::MoveOn { from: 1, to: 2, .. }));
}

#[test]
fn an_outage_longer_than_the_patience_moves_on_a_short_one_does_not() {
    let mut f = Fallback::new(Settings { after_failures: 100, ..settings(Renewals::PreferFirst) }, 2, None);
    assert_eq!(f.failed(&outage(), t(0)), AfterFailure::BackOff(outage()));
    assert_eq!(f.failed(&outage(), t(599)), AfterFailure::BackOff(outage()));
    let after = f.failed(&outage(), t(600));
    assert!(
        matches!(&after, AfterFailure::MoveOn { to: 1, why, .. } if why.contains("failing for 600 s")),
        "{after:?}"
    );
}

#[test]
fn a_retry_after_beyond_the_patience_moves_on_a_near_one_waits() {
    let mut f = Fallback::new(Settings { after_failures: 100, ..settings(Renewals::PreferFirst) }, 2, None);
    let near = Failure { rate_limited: true, retry_after: Some(t(300)), ..invalid() };
    assert_eq!(f.failed(&near, t(0)), AfterFailure::BackOff(near.clone()));
    let far = Failure { rate_limited: true, retry_after: Some(t(10 + 7200)), ..invalid() };
    let after = f.failed(&far, t(10));
    assert!(matches!(&after, AfterFailure::MoveOn { why, .. } if why.contains("wait 7200 s")), "{after:?}");
}

#[test]
fn a_whole_failed_round_backs_off_permanent_only_if_every_resolver_was() {
    let mut f = Fallback::new(settings(Renewals::PreferFirst), 2, None);
    assert!(matches!(f.failed(&permanent(), t(0)), AfterFailure::MoveOn { to: 1, .. }));
    let after = f.failed(&permanent(), t(1));
    assert_eq!(after, AfterFailure::BackOff(permanent()));
    assert_eq!(f.next(), 0, "the next round starts at the first");
    assert!(f.why().is_some_and(|w| w.starts_with("every resolver failed")));

    // First permanent, second only unreachable: retried later, not stopped.
    assert!(matches!(f.failed(&permanent(), t(2)), AfterFailure::MoveOn { to: 1, .. }));
    f.failed(&outage(), t(3));
    let after = f.failed(&outage(), t(4));
    let AfterFailure::BackOff(failure) = after else { panic!("{after:?}") };
    assert!(!failure.permanent && failure.outage);
}

#[test]
fn prefer_first_sends_the_renewal_back_to_the_first_resolver() {
    let mut f = Fallback::new(settings(Renewals::PreferFirst), 2, None);
    f.failed(&permanent(), t(0));
    f.succeeded();
    assert_eq!(f.issued_by(), 1, "ARI and revocation go to the issuer");
    assert_eq!(f.next(), 0, "the renewal tries the first again");
    assert!(f.why().is_some(), "why the current certificate came from the second");
    f.succeeded();
    assert_eq!((f.issued_by(), f.next(), f.why()), (0, 0, None));
}

#[test]
fn stick_keeps_renewing_where_the_certificate_came_from() {
    let mut f = Fallback::new(settings(Renewals::Stick), 2, None);
    f.failed(&permanent(), t(0));
    f.succeeded();
    assert_eq!((f.issued_by(), f.next()), (1, 1));
    // Restarted: the recorded issuer decides.
    let f = Fallback::new(settings(Renewals::Stick), 2, Some(1));
    assert_eq!((f.issued_by(), f.next()), (1, 1));
    let f = Fallback::new(settings(Renewals::PreferFirst), 2, Some(1));
    assert_eq!((f.issued_by(), f.next()), (1, 0));
}

#[test]
fn a_recorded_issuer_out_of_range_reads_as_the_first() {
    let f = Fallback::new(settings(Renewals::Stick), 2, Some(5));
    assert_eq!((f.issued_by(), f.next()), (0, 0));
    let mut f = Fallback::new(settings(Renewals::Stick), 2, None);
    f.adopted(Some(1));
    assert_eq!((f.issued_by(), f.next()), (1, 1));
    f.adopted(Some(9));
    assert_eq!((f.issued_by(), f.next()), (0, 0));
}
