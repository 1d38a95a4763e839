//! Which failures of an AWS call a later try may not meet again.
//!
//! One rule for every AWS call this product makes (Kinesis and DynamoDB alike), so that a
//! pipeline restarts after what passes (throttling, a 5xx, a timeout, a refused or reset
//! connection, credentials that are not there yet) and stops for an operator on what does
//! not (access denied, a missing stream or table, a request the service refuses).

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// Error codes that say "not now" rather than "never", whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "KMSThrottlingException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    // Temporary credentials expire; the provider chain fetches new ones for the next try.
    "ExpiredTokenException",
    "RequestExpired",
    "RequestTimeout",
];

/// Whether a later try of the same call may succeed.
///
/// - No answer at all (a timeout, a refused or reset connection, a DNS failure, credentials
///   the provider chain could not load yet): transient.
/// - An answer that cannot be read (a proxy's HTML page, a body cut short): transient.
/// - A service error: transient when its HTTP status is 5xx or 429, or its code is one of
///   throttling or a passing fault; anything else (4xx: access denied, not found,
///   validation) needs someone to change something.
/// - A request that could not even be built: not transient, it will not build later.
pub fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            status >= 500
                || status == 429
                || context
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
    use aws_smithy_types::body::SdkBody;

    fn service_error(
        status: u16,
        code: &str,
    ) -> SdkError<DescribeStreamSummaryError, HttpResponse> {
        let metadata = ErrorMetadata::builder().code(code).build();
        let response =
            HttpResponse::new(status.try_into().expect("a valid status"), SdkBody::empty());
        SdkError::service_error(DescribeStreamSummaryError::generic(metadata), response)
    }

    #[test]
    fn server_errors_and_throttling_pass() {
        assert!(is_transient(&service_error(500, "InternalFailure")));
        assert!(is_transient(&service_error(503, "SomethingNew")));
        assert!(is_transient(&service_error(429, "SomethingNew")));
        assert!(is_transient(&service_error(400, "LimitExceededException")));
        assert!(is_transient(&service_error(400, "ThrottlingException")));
    }

    #[test]
    fn refusals_need_an_operator() {
        assert!(!is_transient(&service_error(400, "AccessDeniedException")));
        assert!(!is_transient(&service_error(
            400,
            "ResourceNotFoundException"
        )));
        assert!(!is_transient(&service_error(400, "ValidationException")));
        assert!(!is_transient(&service_error(
            403,
            "UnrecognizedClientException"
        )));
    }

    #[test]
    fn no_answer_at_all_passes() {
        let timeout: SdkError<DescribeStreamSummaryError, HttpResponse> =
            SdkError::timeout_error("the attempt timed out");
        assert!(is_transient(&timeout));
        let construction: SdkError<DescribeStreamSummaryError, HttpResponse> =
            SdkError::construction_failure("a bad request");
        assert!(!is_transient(&construction));
    }
}
