//! The Backstop sink's delivery, on its worker thread (`kstatsd-backstop`): each queued body
//! POSTed with ureq, and what Backstop's answer means for it. A 400 is never retried (Backstop
//! answers it at the first bad item, after writing the ones before it); 401, 403 and 404
//! (unknown prefix) are not retried either: retrying cannot fix them. 408, 429, 5xx and
//! connection errors are retried by the engine after the backoff (or the `Retry-After` the
//! answer gives, when it is longer).

use crate::sink::outbox::{Dropped, SendBatch, Sent};
use std::time::{Duration, Instant};

/// The HTTP side; lives on the worker thread.
pub(super) struct Post {
    pub agent: ureq::Agent,
    /// Without credentials.
    pub url: String,
    pub authorization: Option<String>,
}

/// What a Backstop status means for the batch.
fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Sent {
    let error = || format!("HTTP {status}: {}", body.trim().chars().take(200).collect::<String>());
    match status {
        200..=299 => Sent::Delivered,
        400 => Sent::Reject { why: Dropped::BadRequest, error: error() },
        401 | 403 => Sent::Reject { why: Dropped::Unauthorized, error: error() },
        404 => Sent::Reject { why: Dropped::NotFound, error: error() },
        408 | 429 | 500..=599 => Sent::Retry { error: error(), after: retry_after },
        _ => Sent::Reject { why: Dropped::Rejected, error: error() },
    }
}

impl SendBatch for Post {
    fn send(&mut self, bytes: &[u8], _deadline: Option<Instant>) -> Sent {
        let mut req = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        match req.send(bytes) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = crate::sink::http::retry_after(&resp);
                let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                classify(status, &body, retry_after)
            }
            Err(e) => Sent::Retry { error: format!("{e}"), after: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_retried_or_not_as_backstop_means_them() {
        let kind = |s| match classify(s, "x", None) {
            Sent::Delivered => "ok",
            Sent::Retry { .. } => "retry",
            Sent::Reject { why, .. } => why.point_key(),
        };
        assert_eq!(kind(200), "ok");
        assert_eq!(kind(400), "dropped_bad_request");
        assert_eq!(kind(401), "dropped_unauthorized");
        assert_eq!(kind(404), "dropped_not_found");
        assert_eq!(kind(302), "dropped_rejected");
        for s in [408, 429, 500, 502, 503] {
            assert_eq!(kind(s), "retry");
        }
    }
}
