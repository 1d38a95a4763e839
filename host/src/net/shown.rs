//! How a URL is shown: in logs, `/pipelines`, failure sentences, the filter's context and
//! the envelope's `source`. A URL may carry credentials (`user:password@`, `?token=...`);
//! the request needs them, nothing else does.
//!
//! The shown form has no userinfo, and the value of every query parameter whose name marks
//! it as a credential replaced by `[redacted]`. A name is a credential's when, decoded and
//! in lower case, it contains `token`, `secret`, `passw`, `key`, `auth`, `signature`,
//! `credential` or `session`, or is `sig`, `pwd` or `code`: the well-known names
//! (`access_token`, `api_key`, `apikey`, `key`, `secret`, `password`, `X-Amz-Signature`,
//! `sig` of Azure SAS) and their usual variants. A word inside a name (`monkey`) counts too:
//! hiding a harmless value costs a less useful log line, showing a secret cannot be undone.
//! Values that came from a secret reference (`${ENV}`, `@file`) are redacted on top of this
//! by the pipeline's `Redactor`, whatever their name.

use url::Url;

/// What a hidden query value or userinfo looks like (the same text as `config::REDACTED`).
pub const HIDDEN: &str = "[redacted]";

/// Words that make a query parameter's name a credential's (see the module's comment).
const SECRET_WORDS: [&str; 8] = [
    "token",
    "secret",
    "passw",
    "key",
    "auth",
    "signature",
    "credential",
    "session",
];

/// Whole names that are credentials' though they hold none of [`SECRET_WORDS`].
const SECRET_NAMES: [&str; 3] = ["sig", "pwd", "code"];

/// Whether a query parameter named `name` (decoded) holds a credential.
pub fn is_secret_query_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| name.contains(word)) || SECRET_NAMES.contains(&name.as_str())
}

/// `url` without userinfo and with credential query values hidden.
pub fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have userinfo, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if let Some(query) = url.query() {
        let hidden = query
            .split('&')
            .map(|pair| {
                let (raw_name, _) = pair.split_once('=').unwrap_or((pair, ""));
                let name = url::form_urlencoded::parse(raw_name.as_bytes())
                    .next()
                    .map(|(name, _)| name.into_owned())
                    .unwrap_or_default();
                if is_secret_query_name(&name) && pair.contains('=') {
                    format!("{raw_name}={HIDDEN}")
                } else {
                    pair.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        shown.set_query(Some(&hidden));
    }
    shown.to_string()
}

/// A request URI as [`shown_url`] shows it (a URI that is no URL, e.g. origin-form, has
/// neither userinfo nor a host to show, but may have a query).
pub fn shown_uri(uri: &http::Uri) -> String {
    let text = uri.to_string();
    match Url::parse(&text) {
        Ok(url) => shown_url(&url),
        Err(_) => match Url::parse(&format!("http://host{text}")) {
            Ok(url) => shown_url(&url)
                .strip_prefix("http://host")
                .map_or_else(|| HIDDEN.to_string(), str::to_string),
            Err(_) => HIDDEN.to_string(),
        },
    }
}

/// The text of a `--url` as an error may quote it: shown when it parses, else with anything
/// between `://` and the last `@` before the path hidden (a URL that does not parse may
/// still hold a password).
pub fn shown_url_text(text: &str) -> String {
    if let Ok(url) = Url::parse(text) {
        return shown_url(&url);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{HIDDEN}@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        shown_url(&Url::parse(text).expect("a URL"))
    }

    #[test]
    fn userinfo_and_credential_query_values_are_hidden() {
        assert_eq!(
            shown("https://alice:pa55w0rd@host.example/s?access_token=TOPSECRET&wiki=en"),
            "https://host.example/s?access_token=[redacted]&wiki=en"
        );
    }

    #[test]
    fn well_known_credential_names_are_hidden_in_any_case() {
        for name in [
            "token",
            "access_token",
            "API_KEY",
            "apiKey",
            "key",
            "secret",
            "Password",
            "X-Amz-Signature",
            "sig",
            "auth",
            "client_secret",
        ] {
            let text = shown(&format!("https://h.example/s?{name}=v4lue&wiki=de"));
            assert!(!text.contains("v4lue"), "{name}: {text}");
            assert!(text.contains("wiki=de"), "{name}: {text}");
        }
    }

    #[test]
    fn other_query_values_and_the_rest_of_the_url_are_shown_as_they_are() {
        let text = "https://h.example:8443/v2/stream?wiki=en&since=2024-01-01T00%3A00";
        assert_eq!(shown(text), text);
        assert_eq!(shown("http://h.example/s"), "http://h.example/s");
    }

    #[test]
    fn a_request_uri_is_shown_like_a_url() {
        let uri: http::Uri = "https://h.example/s?token=abc&x=1".parse().expect("uri");
        assert_eq!(shown_uri(&uri), "https://h.example/s?token=[redacted]&x=1");
        let origin_form: http::Uri = "/s?token=abc".parse().expect("uri");
        assert_eq!(shown_uri(&origin_form), "/s?token=[redacted]");
    }

    #[test]
    fn an_unparsable_url_text_hides_what_may_be_a_password() {
        assert_eq!(
            shown_url_text("https://alice:pa55w0rd@host with space/s"),
            "https://[redacted]@host with space/s"
        );
        assert_eq!(shown_url_text("not a url"), "not a url");
    }
}
