//! Rates judged by the gateway's clock: new enrollment connections per
//! address and minute (`[enrollment] rate_per_minute`).

use std::net::IpAddr;

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
