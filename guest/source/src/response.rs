//! What a response means for the stream, as plain functions (tested natively).
//!
//! HTML §9.2.4: only `200` with `text/event-stream` announces the connection; `204 No Content`
//! tells the client to stop reconnecting. Anything else fails the connection: the source
//! stops when reconnecting cannot help (a status the operator listed as fatal, or any status
//! in a `--once` run) and reconnects otherwise, waiting at least `Retry-After` after a 429 or
//! a 503 (RFC 9110 §10.2.3).

use std::time::SystemTime;

/// What to do with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 200 with `text/event-stream`: read the stream.
    Stream,
    /// 204: stop reconnecting.
    NoContent,
    /// A status reconnecting cannot help with.
    FatalStatus(u16),
    /// Another content type, and the configuration says that is fatal.
    FatalContentType(String),
    /// A status worth another try; `Retry-After` counts for 429 and 503.
    RetryStatus {
        /// The status.
        status: u16,
        /// Whether the response's `Retry-After` sets a lower bound for the delay.
        honour_retry_after: bool,
    },
    /// Another content type, retried as configured.
    RetryContentType(String),
}

/// The rules a response is judged by (from the pipeline's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Whether the source reconnects at all (`false` with `--once`).
    pub reconnect: bool,
    /// Statuses that end the pipeline.
    pub fatal_statuses: &'a [u16],
    /// Whether a wrong content type ends the pipeline.
    pub fatal_content_type: bool,
}

/// Judges a response by its status and `Content-Type` (`None` when absent).
pub fn classify(status: u16, content_type: Option<&str>, rules: Rules<'_>) -> Verdict {
    if status == 204 {
        return Verdict::NoContent;
    }
    if status != 200 {
        return if !rules.reconnect || rules.fatal_statuses.contains(&status) {
            Verdict::FatalStatus(status)
        } else {
            Verdict::RetryStatus {
                status,
                honour_retry_after: status == 429 || status == 503,
            }
        };
    }
    let shown = content_type.filter(|c| !c.is_empty()).unwrap_or("none");
    let essence = shown.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Verdict::Stream
    } else if !rules.reconnect || rules.fatal_content_type {
        Verdict::FatalContentType(shown.to_string())
    } else {
        Verdict::RetryContentType(shown.to_string())
    }
}

/// `Retry-After` in milliseconds from `now`: delay-seconds, or an HTTP-date (IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms, RFC 9110 §5.6.7). A date in the past means
/// "now" (0); anything else is treated as absent.
pub fn retry_after_ms(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = value.parse().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at.duration_since(now).unwrap_or_default();
    Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const RECONNECTING: Rules<'static> = Rules {
        reconnect: true,
        fatal_statuses: &[401, 403, 404, 410],
        fatal_content_type: true,
    };

    #[test]
    fn only_200_with_event_stream_is_a_stream() {
        let sse = Some("text/event-stream; charset=utf-8");
        assert_eq!(classify(200, sse, RECONNECTING), Verdict::Stream);
        assert_eq!(
            classify(200, Some("TEXT/Event-Stream"), RECONNECTING),
            Verdict::Stream
        );
        assert_eq!(
            classify(200, Some("text/html"), RECONNECTING),
            Verdict::FatalContentType("text/html".into())
        );
        assert_eq!(
            classify(200, None, RECONNECTING),
            Verdict::FatalContentType("none".into())
        );
    }

    #[test]
    fn no_content_stops_and_listed_statuses_are_fatal() {
        assert_eq!(classify(204, None, RECONNECTING), Verdict::NoContent);
        assert_eq!(classify(401, None, RECONNECTING), Verdict::FatalStatus(401));
    }

    #[test]
    fn other_statuses_are_retried_and_only_429_and_503_honour_retry_after() {
        assert_eq!(
            classify(503, None, RECONNECTING),
            Verdict::RetryStatus {
                status: 503,
                honour_retry_after: true
            }
        );
        assert_eq!(
            classify(500, None, RECONNECTING),
            Verdict::RetryStatus {
                status: 500,
                honour_retry_after: false
            }
        );
    }

    #[test]
    fn once_makes_every_failure_fatal_and_a_wrong_type_retryable_when_configured() {
        let once = Rules {
            reconnect: false,
            ..RECONNECTING
        };
        assert_eq!(classify(500, None, once), Verdict::FatalStatus(500));
        let lenient = Rules {
            fatal_content_type: false,
            ..RECONNECTING
        };
        assert_eq!(
            classify(200, Some("text/plain"), lenient),
            Verdict::RetryContentType("text/plain".into())
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_every_http_date_form() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after_ms(" 120 ", now), Some(120_000));
        for date in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(retry_after_ms(date, now), Some(120_000), "{date}");
        }
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(0),
            "a past date means now"
        );
        assert_eq!(retry_after_ms("soon", now), None);
        assert_eq!(retry_after_ms("-5", now), None);
    }
}
