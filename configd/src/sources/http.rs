//! The loader's HTTP: every request bounded in time and size, retried with
//! back-off when the connection fails (a metadata service may take a moment
//! after the link is up), never when the server answered.

use std::time::Duration;

/// A config or a metadata value is small.
pub const MAX_BODY: u64 = 1 << 20;
/// Tries per request, and the pause before each retry.
const BACKOFF: &[Duration] = &[Duration::from_millis(250), Duration::from_millis(500), Duration::from_secs(1)];
/// One try: connect, send, answer, body.
const PER_TRY: Duration = Duration::from_secs(3);

/// Whether the server answered, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A status and the body.
    Status(u16, Vec<u8>, Vec<(String, String)>),
    /// No answer after every try: what the last failure was.
    Unreachable(String),
}

/// The loader's HTTP agent: no redirects, no proxy, `timeout` for a whole request.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        // Metadata servers are reached directly, never through a proxy.
        .proxy(None)
        .timeout_global(Some(timeout))
        .user_agent("cairn-config")
        .build()
        .into()
}

/// `method` (GET or PUT) `url` with these headers; a PUT sends no body.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let agent = agent(PER_TRY);
    let mut last = String::new();
    for (i, pause) in std::iter::once(&Duration::ZERO).chain(BACKOFF).enumerate() {
        std::thread::sleep(*pause);
        let result = if method == "PUT" {
            let mut r = agent.put(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send_empty()
        } else {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        };
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let heads = resp
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
                    .collect();
                return match resp.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
                    Ok(body) => Answer::Status(status, body, heads),
                    Err(e) => Answer::Unreachable(format!("{method} {url}: the answer broke off: {e}")),
                };
            }
            Err(e) => last = format!("{method} {url}: {e} (try {})", i + 1),
        }
    }
    Answer::Unreachable(last)
}

/// A body as text, or why not.
pub fn text(body: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(body).map_err(|e| format!("{what} is not UTF-8 (byte {})", e.utf8_error().valid_up_to()))
}
