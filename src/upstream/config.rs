//! `UpstreamConfig`: one upstream MCP server as the gateway sees it, and the credential precedence it applies.

use std::fmt;

use http::{header::AUTHORIZATION, Extensions, HeaderMap, HeaderName, HeaderValue, Uri};

use super::{
    auth::UpstreamAuth,
    error::{ConfigError, Reason},
    refused::Refused,
};
use crate::{
    admission::Admission, client_credentials::ClientCredentials, passthrough::OAuthPassthrough,
};

/// One upstream MCP server: its name, URL, the gateway's own credential for it, whether it accepts the
/// client's own OAuth token, and extra headers.
///
/// The name is what clients use in `x-mcp-{name}-{header}`; it is stored in lower case. `Debug` shows the
/// URL's origin only (MCP URLs sometimes carry a secret in their path) and never a credential.
///
/// ```
/// use http::{HeaderName, HeaderValue};
/// use tower_mcp_auth::upstream::{UpstreamAuth, UpstreamConfig};
///
/// let github = UpstreamConfig::new("GitHub", "https://api.githubcopilot.com/mcp/")
///     .unwrap()
///     .with_auth("bearer_token:ghp_example".parse().unwrap())
///     .with_header(HeaderName::from_static("x-mcp-toolsets"), HeaderValue::from_static("repos"));
/// assert_eq!(github.name(), "github");
/// assert!(!github.accepts_passthrough());
/// assert!(!format!("{github:?}").contains("ghp_example"));
/// ```
#[derive(Clone)]
pub struct UpstreamConfig {
    name: String,
    url: Uri,
    /// The `Host` of every request to `url`, prepared once.
    host: HeaderValue,
    auth: UpstreamAuth,
    accepts_passthrough: bool,
    forwards_cookies: bool,
    extra_headers: HeaderMap,
}

impl UpstreamConfig {
    /// An upstream named `name` at `url`, with no credential, no passthrough and no extra headers.
    ///
    /// # Errors
    /// When `name` is empty or holds anything but ASCII letters, digits, `-`, `_` and `.` (it must fit in a
    /// header name), or `url` is not absolute or carries user information.
    pub fn new(name: &str, url: &str) -> Result<Self, ConfigError> {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(Reason::InvalidName.into());
        }
        let url: Uri = url.parse().map_err(|_| Reason::InvalidUrl)?;
        let Some(authority) = url.authority().filter(|_| url.scheme().is_some()) else {
            return Err(Reason::InvalidUrl.into());
        };
        if authority.as_str().contains('@') {
            return Err(Reason::UrlWithUserinfo.into());
        }
        let host = host_of(&url).ok_or(Reason::InvalidUrl)?;
        Ok(Self {
            name: name.to_ascii_lowercase(),
            url,
            host,
            auth: UpstreamAuth::none(),
            accepts_passthrough: false,
            forwards_cookies: false,
            extra_headers: HeaderMap::new(),
        })
    }

    /// Sets the gateway's own credential for this upstream.
    pub fn with_auth(mut self, auth: UpstreamAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets whether this upstream receives the client's own OAuth token ([`OAuthPassthrough`]), which then
    /// takes precedence over every other credential.
    ///
    /// Match it with the [`PassthroughPolicy`](crate::PassthroughPolicy) of the route that leads here.
    pub fn with_passthrough(mut self, accepts: bool) -> Self {
        self.accepts_passthrough = accepts;
        self
    }

    /// Sets whether the client's `Cookie` header travels to this upstream. Off by default: a browser-based
    /// client's cookies are for the gateway's origin, often carry its session, and are no business of a third
    /// party. Turn it on only for an upstream that is the same party as the gateway and needs them.
    pub fn with_cookies(mut self, forwards: bool) -> Self {
        self.forwards_cookies = forwards;
        self
    }

    /// Adds a header sent on every request to this upstream, after the credential, so it wins over it.
    ///
    /// Names are case-insensitive; a second value for the same name replaces the first. The value is marked
    /// sensitive, since extra headers are often credentials.
    pub fn with_header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.extra_headers.insert(name, value);
        self
    }

    /// The upstream's name, in lower case.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream's URL.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The `Host` header of requests to this upstream: the URL's host, and its port unless it is the scheme's
    /// default (as hyper's client would set it).
    ///
    /// ```
    /// use tower_mcp_auth::upstream::UpstreamConfig;
    ///
    /// assert_eq!(UpstreamConfig::new("a", "https://mcp.example:443/mcp").unwrap().host(), "mcp.example");
    /// assert_eq!(UpstreamConfig::new("b", "http://127.0.0.1:8080/").unwrap().host(), "127.0.0.1:8080");
    /// ```
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The gateway's own credential for this upstream.
    pub fn auth(&self) -> &UpstreamAuth {
        &self.auth
    }

    /// Whether this upstream receives the client's own OAuth token.
    pub fn accepts_passthrough(&self) -> bool {
        self.accepts_passthrough
    }

    /// Whether the client's `Cookie` header travels to this upstream.
    pub fn forwards_cookies(&self) -> bool {
        self.forwards_cookies
    }

    /// The extra headers sent on every request.
    pub fn extra_headers(&self) -> &HeaderMap {
        &self.extra_headers
    }

    /// The credential headers to send this upstream for a request with these extensions, extra headers
    /// included, or why the request must not be sent at all.
    ///
    /// What is sent depends first on how [`McpAuthLayer`](crate::McpAuthLayer) admitted the request (its
    /// [`Admission`]):
    ///
    /// - **authenticated** (a gateway key): one source supplies the credential, the first that applies:
    ///   1. the [`OAuthPassthrough`] token, as `Authorization: Bearer …`, when this upstream
    ///      [accepts passthrough](Self::accepts_passthrough);
    ///   2. the client's own credential for this upstream from [`ClientCredentials`](crate::client_credentials::ClientCredentials): its `x-mcp-{name}-…`
    ///      headers, else the deprecated `x-mcp-auth` value sent as this upstream's
    ///      [`AuthKind`](super::AuthKind) says;
    ///   3. the configured [`UpstreamAuth`];
    ///   4. nothing.
    ///
    ///   Then the [extra headers](Self::with_header) are applied and win.
    /// - **passthrough only** (no gateway identity): the [`OAuthPassthrough`] token where this upstream
    ///   accepts passthrough, and nothing gateway-held, ever (neither the configured credential nor the extra
    ///   headers); where it does not, [`Refused::PassthroughNotAccepted`].
    /// - **not admitted** (no [`Admission`]): [`Refused::NotAdmitted`].
    ///
    /// Every value is marked sensitive. [`ForwardCredentialsLayer`](super::ForwardCredentialsLayer) does this
    /// for each request; the method is public for gateways that forward with another client.
    ///
    /// # Errors
    /// [`Refused`], when the request must not reach this upstream.
    pub fn credential_headers(&self, extensions: &Extensions) -> Result<HeaderMap, Refused> {
        Ok(match self.choose(extensions)? {
            // Kept as the client sent them, every value of a name included.
            Chosen::Client(mut headers) => {
                self.add_extra(&mut headers);
                headers
            }
            chosen => {
                let mut headers = HeaderMap::new();
                self.write(chosen, &mut headers);
                headers
            }
        })
    }

    /// Which source supplies the credential of a request with `extensions`
    /// ([`credential_headers`](Self::credential_headers) says which), or why none may.
    pub(crate) fn choose(&self, extensions: &Extensions) -> Result<Chosen<'_>, Refused> {
        let passthrough = || {
            extensions
                .get::<OAuthPassthrough>()
                .filter(|_| self.accepts_passthrough)
                .and_then(|token| token.authorization().ok())
        };
        match extensions.get::<Admission>() {
            None => Err(Refused::NotAdmitted),
            Some(Admission::Authenticated(_)) => Ok(match passthrough() {
                Some(value) => Chosen::Passthrough(value),
                None => self.choose_gateway_held(extensions),
            }),
            // Admission is non-exhaustive: anything but an authenticated caller gets nothing of the gateway's.
            Some(_) => match passthrough() {
                Some(value) => Ok(Chosen::PassthroughOnly(value)),
                None => Err(Refused::PassthroughNotAccepted),
            },
        }
    }

    /// The precedence below the passthrough token, for a caller the gateway authenticated.
    fn choose_gateway_held(&self, extensions: &Extensions) -> Chosen<'_> {
        let client = extensions
            .get::<ClientCredentials>()
            .map(|client| client.headers_for(&self.name, self.auth.kind()))
            .filter(|headers| !headers.is_empty());
        match (client, self.auth.header()) {
            (Some(headers), _) => Chosen::Client(headers),
            (None, Some((name, value))) => Chosen::Configured(name, value),
            (None, None) => Chosen::Nothing,
        }
    }

    /// Sets the `chosen` credential in `headers` (one value per name), then the extra headers unless the
    /// caller is known only by its passthrough token; returns the source's name, for the debug log.
    pub(crate) fn write(&self, chosen: Chosen<'_>, headers: &mut HeaderMap) -> &'static str {
        let source = match chosen {
            Chosen::PassthroughOnly(value) => {
                headers.insert(AUTHORIZATION, value);
                return "passthrough";
            }
            Chosen::Passthrough(value) => {
                headers.insert(AUTHORIZATION, value);
                "passthrough"
            }
            Chosen::Client(client) => {
                for (name, value) in client {
                    if let Some(name) = name {
                        headers.insert(name, value);
                    }
                }
                "client"
            }
            Chosen::Configured(name, value) => {
                headers.insert(name.clone(), value.clone());
                "configured"
            }
            Chosen::Nothing => "none",
        };
        self.add_extra(headers);
        source
    }

    fn add_extra(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.extra_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The `Host` of requests to `url`: its host, with its port unless it is the scheme's default.
fn host_of(url: &Uri) -> Option<HeaderValue> {
    let host = url.host()?;
    let default = match url.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let value = match url.port_u16() {
        Some(port) if Some(port) != default => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

/// The source of an upstream request's credential, chosen before the request is changed.
pub(crate) enum Chosen<'a> {
    /// The client's token, for an authenticated caller.
    Passthrough(HeaderValue),
    /// The client's token, for a caller known only by it: nothing of the gateway's goes with it.
    PassthroughOnly(HeaderValue),
    /// The client's own credential for this upstream.
    Client(HeaderMap),
    /// The gateway's credential for this upstream.
    Configured(&'a HeaderName, &'a HeaderValue),
    /// None at all.
    Nothing,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = format_args!(
            "{}://{}",
            self.url.scheme_str().unwrap_or_default(),
            self.url.authority().map_or("", |a| a.as_str())
        );
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("origin", &origin)
            .field("auth", &self.auth)
            .field("accepts_passthrough", &self.accepts_passthrough)
            .field("forwards_cookies", &self.forwards_cookies)
            .field(
                "extra_headers",
                &self.extra_headers.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_the_upstream_without_its_default_port() {
        for (url, expected) in [
            ("http://u/mcp", "u"),
            ("http://u:80/mcp", "u"),
            ("https://u:443", "u"),
            ("https://u:8443/mcp", "u:8443"),
            ("http://u:443/mcp", "u:443"),
            ("http://127.0.0.1:3000/mcp", "127.0.0.1:3000"),
            ("http://[::1]:3000/mcp", "[::1]:3000"),
        ] {
            let config = UpstreamConfig::new("u", url).unwrap();
            assert_eq!(config.host(), expected, "{url}");
        }
    }
}
