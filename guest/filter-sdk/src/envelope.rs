//! The `envelope` record format: `{"event","id","data","source","received_at"}`.

use crate::Event;

/// Serialises an event as the envelope JSON object (one line, no newline).
pub fn envelope(event: &Event, source_url: &str) -> Vec<u8> {
    let value = serde_json::json!({
        "event": event.event_type,
        "id": event.id,
        "data": event.data,
        "source": source_url,
        "received_at": rfc3339_millis(event.received_at_ms),
    });
    // Serialising a `Value` of strings cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with millisecond precision.
///
/// Filters have no clock and no date library; this is the civil-from-days
/// conversion (proleptic Gregorian calendar), exact for every `u64` input
/// up to year 9999 and beyond.
pub fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_formatted_as_1970() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_leap_day_is_formatted_correctly() {
        // 2024-02-29T12:34:56.789Z
        assert_eq!(
            rfc3339_millis(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
    }

    #[test]
    fn end_of_year_rolls_over() {
        assert_eq!(
            rfc3339_millis(1_704_067_199_999),
            "2023-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(1_704_067_200_000),
            "2024-01-01T00:00:00.000Z"
        );
    }
}
