//! The credentials a `--url` may carry. `https://user:password@host/...` is how curl and
//! browsers take a user and password; HTTP sends them as `Authorization: Basic`, never in
//! the URL (the request line and `Host` have no place for them). So they are taken out of
//! the URL here, once, and become that header; what is left is the URL the request goes to.
//! Every credential found (the password, the header's value, credential query values) is
//! remembered by the pipeline's [`Redactor`], so a message that quotes it shows
//! `[redacted]`; how the URL itself is shown is `net::shown`.

use base64::Engine as _;
use url::Url;

use super::Redactor;
use crate::net::shown::is_secret_query_name;

/// Query values shorter than this are not remembered as secrets: the redactor replaces
/// every occurrence of a secret in a message, and `key=1` would hide every `1`. The shown
/// URL hides them by name whatever their length.
const MIN_REMEMBERED_QUERY_VALUE: usize = 4;

/// Takes the userinfo out of `url` and returns it as an `Authorization` header value
/// (`Basic` of `user:password`, percent-decoded, as RFC 7617 builds it); `None` when the URL
/// has none. Remembers the credentials in `secrets`.
pub fn take_credentials(url: &mut Url, secrets: &mut Redactor) -> Option<String> {
    for (name, value) in url.query_pairs() {
        if is_secret_query_name(&name) && value.len() >= MIN_REMEMBERED_QUERY_VALUE {
            secrets.remember(&value);
        }
    }
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode).unwrap_or_default();
    if let Some(raw) = url.password() {
        secrets.remember(raw);
    }
    secrets.remember(&password);
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let value = format!("Basic {credentials}");
    secrets.remember(&value);
    secrets.remember(&credentials);
    // Both only fail for URLs that cannot have userinfo (not http(s)).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(value)
}

/// `%XX` sequences decoded (as UTF-8, lossily), as the URL standard leaves them encoded in
/// userinfo.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_authorization_and_leaves_the_url() {
        let mut url = Url::parse("https://alice:pa55w0rd@host.example/s?access_token=TOPSECRET")
            .expect("a URL");
        let mut secrets = Redactor::default();
        let header = take_credentials(&mut url, &mut secrets);
        // base64("alice:pa55w0rd")
        assert_eq!(header.as_deref(), Some("Basic YWxpY2U6cGE1NXcwcmQ="));
        assert_eq!(
            url.as_str(),
            "https://host.example/s?access_token=TOPSECRET"
        );
        let message = secrets.redact("pa55w0rd TOPSECRET YWxpY2U6cGE1NXcwcmQ=");
        assert_eq!(message, "[redacted] [redacted] [redacted]");
    }

    #[test]
    fn percent_encoded_userinfo_is_decoded_before_encoding() {
        let mut url = Url::parse("http://us%40er:p%3Ass@h.example/").expect("a URL");
        let header = take_credentials(&mut url, &mut Redactor::default());
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(header, Some(format!("Basic {expected}")));
    }

    #[test]
    fn a_url_without_userinfo_is_left_alone_and_short_values_are_not_remembered() {
        let mut url = Url::parse("https://h.example/s?key=1&wiki=en").expect("a URL");
        let mut secrets = Redactor::default();
        assert_eq!(take_credentials(&mut url, &mut secrets), None);
        assert_eq!(url.as_str(), "https://h.example/s?key=1&wiki=en");
        assert_eq!(secrets.redact("exit 1"), "exit 1");
    }
}
