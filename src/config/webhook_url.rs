//! Webhook receivers as configured (`webhooks.urls`, `webhooks.slack_urls`): the URL grammar
//! the validation accepts and the body format of each target. The sending is `fleet::webhook`.

/// An `http[s]://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80, or 443 for https, when not given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The URL as configured (for logs).
    pub text: String,
}

/// Body format of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The plain JSON body (see docs/OPERATIONS.md "Webhooks").
    Json,
    /// `{"text": …}`, which Slack, Mattermost and Rocket.Chat incoming webhooks take.
    Slack,
}

/// One configured receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where.
    pub url: HttpUrl,
    /// Which body.
    pub format: Format,
}

/// Parses a webhook URL; the error says what is wrong in plain words.
pub fn parse_url(text: &str) -> Result<HttpUrl, String> {
    let (tls, rest) = match text.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => return Err(format!("{text:?}: must start with http:// or https://")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.contains('@') {
        return Err(format!(
            "{text:?}: user:password@ in the URL is not supported (put a token in the path)"
        ));
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{text:?}: the path has spaces or control characters"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: unclosed '['"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: no host"));
    }
    let port = match port {
        None if tls => 443,
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?}: the port must be a number from 1 to 65535"))?,
    };
    Ok(HttpUrl {
        tls,
        host,
        port,
        path,
        text: text.to_string(),
    })
}
