//! What may be said about a failed outbound HTTP call.
//!
//! reqwest's error text names the URL, which can carry a function key (`code=`) or other
//! request details; logs, status documents and timer output get only the kind of failure.

/// The kind of failure, in words a person reading a log understands.
pub fn failure(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off"
    } else {
        "request failed"
    }
}

/// `text` with the query string of every URL in it replaced by `?…`, and any `sig=` value
/// outside a URL blanked: a storage error names the request URL, and with a shared access
/// signature that URL carries the credential (`sig=`). What is left (scheme, host, path) is
/// enough to tell which call failed.
pub fn without_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ','))
            .unwrap_or(url.len());
        match url[..end].find('?') {
            Some(query) => {
                out.push_str(&url[..query]);
                out.push_str("?…");
            }
            None => out.push_str(&url[..end]),
        }
        rest = &url[end..];
    }
    out.push_str(rest);
    blank_signatures(&out)
}

fn find_url(text: &str) -> Option<usize> {
    match (text.find("http://"), text.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn blank_signatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("sig=") {
        out.push_str(&rest[..at]);
        out.push_str("sig=…");
        let value = &rest[at + 4..];
        let end = value
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | '"' | '\'' | ')'))
            .unwrap_or(value.len());
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_and_signatures_are_left_out() {
        let cases = [
            (
                "error sending request for url (https://a.blob.core.windows.net/c/b.json?sv=1&sig=abc%2F): refused",
                "error sending request for url (https://a.blob.core.windows.net/c/b.json?…): refused",
            ),
            ("url: \"http://h/p?sig=x\", source", "url: \"http://h/p?…\", source"),
            ("SharedAccessSignature=sv=1&sig=secret;BlobEndpoint=x", "SharedAccessSignature=sv=1&sig=…;BlobEndpoint=x"),
            ("no url here", "no url here"),
            ("http://h/p and https://k/q?x=1", "http://h/p and https://k/q?…"),
        ];
        for (text, expected) in cases {
            assert_eq!(without_secrets(text), expected);
        }
    }
}
