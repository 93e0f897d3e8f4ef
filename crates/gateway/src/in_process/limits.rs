//! Limits judged by the gateway's clock: new enrollment connections per
//! address and minute (`[enrollment] rate_per_minute`), and a join
//! token's lifetime.

use std::net::IpAddr;

use proto::EnrollReply;

use super::secs;
use crate::harness::{Harness, set};

#[tokio::test(start_paused = true)]
async fn the_enrollment_rate_is_per_address_and_resets_each_minute() {
    let h = Harness::with_toml(|t| set(t, "rate_per_minute = 60", "rate_per_minute = 5")).await;
    let a: IpAddr = [192, 0, 2, 1].into();
    let b: IpAddr = [192, 0, 2, 2].into();
    for i in 0..5 {
        assert!(h.shared.enroll_rate_ok(a), "connection {i} refused");
    }
    assert!(!h.shared.enroll_rate_ok(a), "a sixth in the minute");
    assert!(
        h.shared.enroll_rate_ok(b),
        "another address has its own count"
    );
    // Still the same minute half a minute later...
    tokio::time::sleep(secs(30)).await;
    assert!(!h.shared.enroll_rate_ok(a));
    // ...and a new one after it.
    tokio::time::sleep(secs(31)).await;
    assert!(h.shared.enroll_rate_ok(a));
}

#[tokio::test(start_paused = true)]
async fn a_join_token_works_until_it_expires_and_not_after() {
    let h = Harness::start().await;
    let token = h.token(60, 10, None).await;
    tokio::time::sleep(secs(59)).await;
    let early = h.submit_enrollment(&token, "n1").await;
    assert!(matches!(early, EnrollReply::Approved { .. }), "{early:?}");
    tokio::time::sleep(secs(2)).await;
    match h.submit_enrollment(&token, "n2").await {
        EnrollReply::Error(e) => assert!(e.message.contains("expired"), "{e:?}"),
        EnrollReply::Approved { .. } => panic!("an expired token enrolled a node"),
        other => panic!("{other:?}"),
    }
}
