//! Secrets stay out of config files: `${ENV_VAR}` and `@/path/to/file` in header values
//! and tokens are replaced by what they name when the file is read, and every value so
//! read is redacted from messages ([`Redactor`]).

use std::sync::Arc;

/// Expands secret references and remembers what they expanded to, so that no log line,
/// error or API answer shows it. Its `Debug` says how many secrets it holds, never which.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// What an expanded reference makes a secret.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Whole {
    /// A header value or token: the whole value, and each variable's value.
    Secret,
    /// Part of a URL: each variable's value, not the URL.
    Part,
    /// A whole URL: nothing (its credentials are found by where they sit).
    Url,
}

/// What a redacted secret looks like.
pub const REDACTED: &str = "[redacted]";

/// A value that must not be printed: a token, a header value. `Debug` shows [`REDACTED`];
/// [`Secret::expose`] gives the value to the one place that sends it. Equality compares the
/// value, so a reload notices a rotated secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, to send or compare; never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_string()))
    }
}

impl PartialEq<&str> for Secret {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Redactor {
    /// `text` with `${NAME}` replaced by the environment variable `NAME`, or, when the whole
    /// text is `@PATH`, the contents of that file (without the final line break).
    pub fn expand(&mut self, text: &str) -> Result<String, String> {
        self.expand_as(text, Whole::Secret)
    }

    /// A `--url` expanded like [`Redactor::expand`], but a reference that is the whole URL
    /// (`${STREAM_URL}`, `@/run/secrets/url`) is not one secret: a URL shown as
    /// `[redacted]` would say nothing, and its credentials are found by where they sit
    /// (userinfo, credential query names; `config::source_url`). A reference inside a URL
    /// (`?wiki=en&access=${TOKEN}`) is a secret whatever the parameter's name.
    pub fn expand_url(&mut self, text: &str) -> Result<String, String> {
        let whole = text.starts_with('@')
            || (text.starts_with("${") && text.find('}') == Some(text.len() - 1));
        self.expand_as(text, if whole { Whole::Url } else { Whole::Part })
    }

    fn expand_as(&mut self, text: &str, whole: Whole) -> Result<String, String> {
        if let Some(path) = text.strip_prefix('@') {
            let contents = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read the secret file {path}: {error}"))?;
            let secret = contents.trim_end_matches(['\n', '\r']).to_string();
            if whole == Whole::Secret {
                self.remember(&secret);
            }
            return Ok(secret);
        }
        let mut expanded = String::new();
        let mut rest = text;
        let mut any = false;
        while let Some(start) = rest.find("${") {
            let Some(length) = rest[start + 2..].find('}') else {
                return Err("`${` without its closing `}`".to_string());
            };
            let name = &rest[start + 2..start + 2 + length];
            let value = std::env::var(name)
                .map_err(|_| format!("the environment variable `{name}` is not set"))?;
            expanded.push_str(&rest[..start]);
            expanded.push_str(&value);
            if whole != Whole::Url {
                self.remember(&value);
            }
            any = true;
            rest = &rest[start + 3 + length..];
        }
        expanded.push_str(rest);
        if any && whole == Whole::Secret {
            // The whole value is a credential, whatever part of it came from the variable.
            self.remember(&expanded);
        }
        Ok(expanded)
    }

    /// A `Name: value` header with its value expanded (see [`Redactor::expand`]).
    pub fn expand_header(&mut self, header: &str) -> Result<String, String> {
        let Some((name, value)) = header.split_once(':') else {
            // The usual "expected `Name: value`" comes later, from the same check as the flag's.
            return Ok(header.to_string());
        };
        let expanded = self.expand(value.trim_start())?;
        Ok(format!("{name}: {expanded}"))
    }

    /// `text` with every secret this redactor has seen replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut redacted = text.to_string();
        for secret in self.secrets.iter() {
            redacted = redacted.replace(secret.as_str(), REDACTED);
        }
        redacted
    }

    /// Whether `value` is or holds a secret.
    pub fn is_secret(&self, value: &str) -> bool {
        self.secrets
            .iter()
            .any(|secret| value.contains(secret.as_str()))
    }

    /// Treats every secret of `other` as a secret too (a pipeline's own, from its URL, and
    /// those its configuration file expanded).
    pub fn absorb(&mut self, other: &Redactor) {
        for secret in other.secrets.iter() {
            self.remember(secret);
        }
    }

    /// Treats `secret` as a secret from now on.
    pub fn remember(&mut self, secret: &str) {
        if secret.is_empty() || self.secrets.iter().any(|s| s == secret) {
            return;
        }
        let secrets = Arc::make_mut(&mut self.secrets);
        secrets.push(secret.to_string());
        // Longest first, so a secret that contains another is redacted whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_variable_is_expanded_and_then_redacted_from_messages() {
        // Cargo sets CARGO_PKG_NAME for the tests it runs.
        let mut redactor = Redactor::default();
        let header = redactor
            .expand_header("Authorization: Bearer ${CARGO_PKG_NAME}")
            .unwrap();
        assert_eq!(header, "Authorization: Bearer sse-ingest");
        assert_eq!(
            redactor.redact("sent Authorization: Bearer sse-ingest"),
            "sent Authorization: [redacted]"
        );
        assert!(redactor.is_secret("Bearer sse-ingest"));
    }

    #[test]
    fn a_file_reference_reads_the_file_without_its_line_break() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "from-a-file\n").unwrap();
        let mut redactor = Redactor::default();
        let token = redactor
            .expand(&format!("@{}", file.path().display()))
            .unwrap();
        assert_eq!(token, "from-a-file");
        assert_eq!(redactor.redact("token from-a-file"), "token [redacted]");
    }

    #[test]
    fn a_missing_variable_or_file_is_an_error_naming_it() {
        let mut redactor = Redactor::default();
        let error = redactor
            .expand("${SSE_INGEST_TEST_SURELY_UNSET}")
            .unwrap_err();
        assert!(
            error.contains("`SSE_INGEST_TEST_SURELY_UNSET` is not set"),
            "{error}"
        );
        let error = redactor.expand("@/nonexistent/secret").unwrap_err();
        assert!(error.contains("/nonexistent/secret"), "{error}");
    }

    #[test]
    fn debug_shows_neither_a_secret_nor_what_a_redactor_holds() {
        let secret = Secret::from("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&secret)), format!("Some({REDACTED})"));
        assert_eq!(secret.expose(), "hunter2-hunter2-hunter2");
        let mut redactor = Redactor::default();
        redactor.remember("hunter2-hunter2-hunter2");
        let shown = format!("{redactor:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("secrets: 1"), "{shown}");
    }

    #[test]
    fn a_url_keeps_its_shape_and_only_a_reference_inside_it_is_a_secret() {
        let mut redactor = Redactor::default();
        let url = redactor
            .expand_url("https://h.example/s?wiki=en&access=${CARGO_PKG_NAME}")
            .unwrap();
        assert_eq!(url, "https://h.example/s?wiki=en&access=sse-ingest");
        assert_eq!(
            redactor.redact(&url),
            "https://h.example/s?wiki=en&access=[redacted]"
        );
        let mut whole = Redactor::default();
        let url = whole.expand_url("${CARGO_PKG_NAME}").unwrap();
        assert_eq!(url, "sse-ingest");
        assert_eq!(whole.redact(&url), "sse-ingest", "found by where they sit");
    }

    #[test]
    fn text_without_references_is_not_a_secret() {
        let mut redactor = Redactor::default();
        assert_eq!(redactor.expand("plain").unwrap(), "plain");
        assert_eq!(redactor.redact("plain"), "plain");
    }
}
