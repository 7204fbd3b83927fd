//! `cairn.config.url=http://...` on the kernel command line, with an optional
//! `cairn.config.sha256=HEX` that the document must match (the pin makes a
//! plain-HTTP source safe to use on an untrusted network).

use super::http::{self, Answer};
use super::{check_user_data, failed, Found, SourceError};
use sha2::{Digest, Sha256};

/// The value of the last `key=value` word on the command line.
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline.split_whitespace().rev().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Whether the command line names a URL at all.
pub fn given(cmdline: &str) -> bool {
    value(cmdline, "cairn.config.url").is_some()
}

pub fn fetch(cmdline: &str) -> Result<Option<Found>, SourceError> {
    let Some(url) = value(cmdline, "cairn.config.url") else { return Ok(None) };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(failed("cmdline", format!("cairn.config.url={url}: expected an http:// or https:// URL")));
    }
    let pin = match value(cmdline, "cairn.config.sha256") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
        Some(h) => return Err(failed("cmdline", format!("cairn.config.sha256={h}: expected 64 hexadecimal digits"))),
        None => None,
    };
    let body = match http::request("GET", url, &[]) {
        Answer::Status(200, body, _) => body,
        Answer::Status(s, _, _) => return Err(failed("cmdline", format!("GET {url}: status {s}"))),
        Answer::Unreachable(why) => return Err(failed("cmdline", why)),
    };
    if let Some(pin) = pin {
        let got = hex::encode(Sha256::digest(&body));
        if got != pin {
            return Err(failed("cmdline", format!("{url} has sha256 {got}, but cairn.config.sha256 pins {pin}; not used")));
        }
    }
    let text = http::text(body, url).map_err(|e| failed("cmdline", e))?;
    check_user_data("cmdline", &text)?;
    Ok(Some(Found { source: "cmdline", text, instance_id: None }))
}
