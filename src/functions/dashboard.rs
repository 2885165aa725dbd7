//! Dashboard: the job dashboard, a page for people, at `GET /api/dashboard`.
//!
//! The page holds no data, so it is served without a key (`authLevel: anonymous`; the handler
//! in standalone mode asks for none either); every call it makes to SummaryWomble needs one.
//! The script takes that key from the address's fragment (`#key=`, which the browser never
//! sends) or from a form, keeps it in memory only, and sends it only in `x-functions-key`: no
//! address, request line or server log ever holds it (see `web/dashboard/dashboard.js`).
//!
//! Under Azure, `/api/dashboard` is the only path the host routes to this function, so the
//! page is one document: its stylesheet and script are inlined, and the
//! `Content-Security-Policy` allows exactly those two, by hash. Nothing comes from anywhere
//! else (no CDN, no web font), so the page also works offline.
//!
//! The assets are kept as files of their own in `dashboard/` and compiled in with
//! `include_str!`; the document, its policy and its headers are assembled once, on first use.

use std::sync::LazyLock;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("../../web/dashboard/index.html");
const STYLE: &str = include_str!("../../web/dashboard/dashboard.css");
const SCRIPT: &str = include_str!("../../web/dashboard/dashboard.js");

/// Where the template takes the stylesheet and the script, each exactly once.
const STYLE_SLOT: &str = "{{dashboard.css}}";
const SCRIPT_SLOT: &str = "{{dashboard.js}}";

/// The assembled page: the document and the policy that allows its inline parts.
struct Page {
    html: Bytes,
    content_security_policy: String,
}

impl Page {
    /// Puts `style` and `script` into `template`'s slots. The policy hashes the exact text
    /// that ends up between the tags, so the browser runs these and nothing else.
    fn assemble(template: &str, style: &str, script: &str) -> Self {
        let html = template
            .replacen(STYLE_SLOT, style, 1)
            .replacen(SCRIPT_SLOT, script, 1);
        let content_security_policy = [
            "default-src 'self'".to_owned(),
            format!("script-src '{}'", source_hash(script)),
            format!("style-src '{}'", source_hash(style)),
            // The favicon is an empty data: URL, so the browser asks the host for nothing else.
            "img-src 'self' data:".to_owned(),
            "connect-src 'self'".to_owned(),
            "object-src 'none'".to_owned(),
            "frame-ancestors 'none'".to_owned(),
            "base-uri 'none'".to_owned(),
            "form-action 'none'".to_owned(),
        ]
        .join("; ");
        Self {
            html: Bytes::from(html),
            content_security_policy,
        }
    }

    /// Every header of the answer. The page's address is nobody else's business
    /// (`no-referrer`), and no copy of the page is kept (`no-store`), so a deployment's page
    /// and policy replace the old ones at the next load.
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let policy = HeaderValue::from_str(&self.content_security_policy)
            .expect("the policy is ASCII: directives and base64 hashes");
        vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // For browsers that predate `frame-ancestors`.
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]
    }
}

/// A CSP hash source: `sha256-<base64 of the SHA-256 of the UTF-8 text>`.
fn source_hash(text: &str) -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

static PAGE: LazyLock<Page> = LazyLock::new(|| Page::assemble(TEMPLATE, STYLE, SCRIPT));

/// The answer to `GET /api/dashboard`: the page with its security headers.
pub fn page() -> Response<Bytes> {
    let page = &*PAGE;
    let mut response = Response::new(page.html.clone());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().extend(page.headers());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text between the first `<open…>` and the next `</close>`.
    fn inline_text<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
        let start = html.find(open).expect("the element is there");
        let start = start + html[start..].find('>').expect("the tag closes") + 1;
        let end = start + html[start..].find(close).expect("the element ends");
        &html[start..end]
    }

    #[test]
    fn each_slot_of_the_template_is_filled_exactly_once() {
        assert_eq!(TEMPLATE.matches(STYLE_SLOT).count(), 1);
        assert_eq!(TEMPLATE.matches(SCRIPT_SLOT).count(), 1);
        let html = String::from_utf8(PAGE.html.to_vec()).unwrap();
        assert!(!html.contains("{{"), "an unfilled slot is left");
    }

    #[test]
    fn the_assets_cannot_end_their_own_element_early() {
        // A `</script` inside the script would end the element and leave the rest as markup.
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        assert!(!STYLE.contains("{{") && !SCRIPT.contains("{{dashboard."));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script_of_the_page() {
        let html = String::from_utf8(PAGE.html.to_vec()).unwrap();
        let policy = &PAGE.content_security_policy;
        let script = inline_text(&html, "<script", "</script>");
        let style = inline_text(&html, "<style", "</style>");
        assert_eq!(script, SCRIPT);
        assert_eq!(style, STYLE);
        assert!(policy.contains(&format!("script-src '{}'", source_hash(script))));
        assert!(policy.contains(&format!("style-src '{}'", source_hash(style))));
        assert_eq!(html.matches("<script").count(), 1, "one script only");
        assert_eq!(html.matches("<style").count(), 1, "one stylesheet only");
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "connect-src 'self'",
        ] {
            assert!(policy.contains(directive), "{directive} in {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn a_source_hash_is_the_base64_sha256_of_the_text() {
        // printf 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            source_hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
    }

    #[test]
    fn the_page_loads_nothing_from_anywhere_else() {
        let markup = TEMPLATE.to_ascii_lowercase();
        for pattern in [" src=", "<iframe", "<img", "<object", "<embed"] {
            assert!(!markup.contains(pattern), "the markup holds {pattern:?}");
        }
        // The only link is the empty favicon, which keeps the browser from asking for one.
        assert_eq!(markup.matches("href=").count(), 1);
        assert!(markup.contains(r#"<link rel="icon" href="data:,">"#));
        let style = STYLE.to_ascii_lowercase();
        for pattern in ["url(", "@import", "@font-face"] {
            assert!(!style.contains(pattern), "the stylesheet holds {pattern:?}");
        }
        // The script's only absolute URL is the SVG namespace, a name rather than an address.
        let addresses: Vec<&str> = SCRIPT
            .split(['\'', '"'])
            .filter(|text| text.contains("://"))
            .collect();
        assert_eq!(addresses, ["http://www.w3.org/2000/svg"]);
    }

    #[test]
    fn the_key_field_has_no_name_so_no_form_submission_can_carry_it() {
        let start = TEMPLATE.find("<input").expect("the key field");
        let field = &TEMPLATE[start..start + TEMPLATE[start..].find('>').unwrap()];
        assert!(field.contains(r#"id="key-input""#), "{field}");
        assert!(field.contains(r#"type="password""#), "{field}");
        assert!(!field.contains("name="), "{field}");
        assert_eq!(TEMPLATE.matches("<input").count(), 1);
    }

    #[test]
    fn the_answer_carries_the_security_headers() {
        let response = page();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        let value = |name: HeaderName| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(value(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(value(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(value(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(value(header::CACHE_CONTROL), "no-store");
        assert_eq!(
            value(header::CONTENT_SECURITY_POLICY),
            PAGE.content_security_policy
        );
    }
}
