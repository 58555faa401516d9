//! Client-supplied per-server credentials, compatible with LiteLLM's MCP gateway: `x-mcp-servers`,
//! `x-mcp-{server}-{header}` and the deprecated `x-mcp-auth`, taken out of the request into
//! [`ClientCredentials`].

use std::{
    collections::BTreeMap,
    fmt, iter,
    sync::Arc,
    task::{Context, Poll},
};

use http::{
    header::{AUTHORIZATION, CONTENT_LENGTH, HOST},
    HeaderMap, HeaderName, HeaderValue, Request,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    auth::DEFAULT_KEY_HEADER,
    secret::{credentials_equal, Fingerprint},
    upstream::{hop_by_hop::is_hop_by_hop, AuthKind},
};

/// The default name of the deprecated header that carries one credential for every server, `x-mcp-auth`.
pub const DEFAULT_CLIENT_AUTH_HEADER: HeaderName = HeaderName::from_static("x-mcp-auth");

/// The prefix of every per-server header.
pub(crate) const PREFIX: &str = "x-mcp-";
const SERVERS: HeaderName = HeaderName::from_static("x-mcp-servers");
/// LiteLLM's access-group selector: an `x-mcp-` header that is not a credential, left where it is.
const ACCESS_GROUPS: HeaderName = HeaderName::from_static("x-mcp-access-groups");

/// Request extension: the credentials a client supplied for individual upstream servers, and the servers it
/// asked for.
///
/// [`TakeClientCredentialsLayer`] builds it and removes the headers it came from. These credentials never
/// admit a caller to the gateway; they only travel on, each to its own server. `Debug` shows server and header
/// names and a [`Fingerprint`] per value.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    servers: Option<Vec<String>>,
    per_server: BTreeMap<String, HeaderMap>,
    fallback: Option<HeaderValue>,
}

impl ClientCredentials {
    /// The servers listed in `x-mcp-servers` (comma-separated, trimmed, empty entries dropped), or `None`
    /// when the header was not sent.
    pub fn servers(&self) -> Option<&[String]> {
        self.servers.as_deref()
    }

    /// The servers a request targets: the one its path names when there is one (the path wins), else those
    /// of `x-mcp-servers`.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue};
    /// use tower_mcp_auth::client_credentials::TakeClientCredentialsLayer;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-mcp-servers", HeaderValue::from_static(" github, ,jira "));
    /// let client = TakeClientCredentialsLayer::new().take(&mut headers);
    /// assert_eq!(client.targets(None), ["github", "jira"]);
    /// assert_eq!(client.targets(Some("atlassian")), ["atlassian"]);
    /// ```
    pub fn targets<'a>(&'a self, from_path: Option<&'a str>) -> Vec<&'a str> {
        match from_path {
            Some(server) => vec![server],
            None => self
                .servers()
                .unwrap_or_default()
                .iter()
                .map(String::as_str)
                .collect(),
        }
    }

    /// The headers the client supplied for `server` (case-insensitive): its `x-mcp-{server}-{header}`
    /// headers, else the deprecated `x-mcp-auth` value sent as `kind` says (nothing for
    /// [`AuthKind::None`]), else nothing. Every value is marked sensitive.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue};
    /// use tower_mcp_auth::{client_credentials::TakeClientCredentialsLayer, upstream::AuthKind};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-mcp-github-authorization", HeaderValue::from_static("Bearer gh-token"));
    /// headers.insert("x-mcp-auth", HeaderValue::from_static("shared-key"));
    /// let client = TakeClientCredentialsLayer::new().take(&mut headers);
    /// assert!(headers.is_empty());
    ///
    /// assert_eq!(client.headers_for("github", AuthKind::ApiKey)["authorization"], "Bearer gh-token");
    /// assert_eq!(client.headers_for("zapier", AuthKind::ApiKey)["x-api-key"], "shared-key");
    /// assert!(client.headers_for("zapier", AuthKind::None).is_empty());
    /// ```
    pub fn headers_for(&self, server: &str, kind: AuthKind) -> HeaderMap {
        // Server names are kept in lower case; most callers already use it.
        let server = if server.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(server.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(server)
        };
        if let Some(headers) = self.per_server.get(&*server) {
            return headers.clone();
        }
        self.fallback
            .as_ref()
            .and_then(|value| kind.header(value.to_str().ok()?).ok().flatten())
            .into_iter()
            .collect()
    }
}

struct Redacted<'a>(&'a HeaderValue);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are visible ASCII: `take` keeps no other.
        let fingerprint = Fingerprint::of(self.0.to_str().unwrap_or_default());
        write!(f, "[redacted {fingerprint}]")
    }
}

struct PerServer<'a>(&'a BTreeMap<String, HeaderMap>);

impl fmt::Debug for PerServer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (server, headers) in self.0 {
            let headers: BTreeMap<_, _> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), Redacted(value)))
                .collect();
            map.entry(server, &headers);
        }
        map.finish()
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("servers", &self.servers)
            .field("per_server", &PerServer(&self.per_server))
            .field("fallback", &self.fallback.as_ref().map(Redacted))
            .finish()
    }
}

#[derive(Clone, Debug)]
struct Rules {
    /// Known server names in lower case, longest first; `None` when unknown.
    servers: Option<Vec<String>>,
    key_header: HeaderName,
    client_auth_header: HeaderName,
}

impl Rules {
    fn is_client_header(&self, name: &HeaderName) -> bool {
        *name == self.client_auth_header
            || (name.as_str().starts_with(PREFIX) && *name != ACCESS_GROUPS)
    }

    /// Splits `{server}-{header}`: at the longest known server name; without known names, only where there is
    /// a single dash to split at.
    fn resolve<'a>(&self, rest: &'a str) -> Option<(&'a str, HeaderName)> {
        let (server, header) = match &self.servers {
            Some(known) => known.iter().find_map(|server| {
                let header = rest.strip_prefix(server.as_str())?.strip_prefix('-')?;
                Some((&rest[..server.len()], header))
            })?,
            // `a-b-c` could be `b-c` for `a` or `c` for `a-b`: guessing could hand one server a credential
            // meant for another, so an ambiguous name is dropped.
            None => match rest.split_once('-')? {
                (_, header) if header.contains('-') => return None,
                split => split,
            },
        };
        if server.is_empty() || header.is_empty() {
            return None;
        }
        let header = HeaderName::from_bytes(header.as_bytes()).ok()?;
        // A credential never sets the request's framing or routing, nor a header the gateway itself reads.
        let forbidden = is_hop_by_hop(&header)
            || header == HOST
            || header == CONTENT_LENGTH
            || header == self.key_header
            || header == self.client_auth_header
            || header.as_str().starts_with(PREFIX);
        (!forbidden).then_some((server, header))
    }
}

/// A [`Layer`] that takes client-supplied per-server credentials out of each request into a
/// [`ClientCredentials`] extension. It must run **before** [`McpAuthLayer`](crate::McpAuthLayer) (outside it).
///
/// Headers, compatible with LiteLLM's MCP gateway:
/// - `x-mcp-servers: a,b`: the servers the client asks for, see [`ClientCredentials::targets`];
/// - `x-mcp-{server}-{header}: value`: `header: value` for `server` only
///   (`x-mcp-github-authorization: Bearer …`, `x-mcp-zapier-x-api-key: …`). With the gateway's server names
///   known ([`servers`](Self::servers)) the longest matching name wins (`x-mcp-my-server-authorization` is
///   `authorization` for `my-server`, not `server-authorization` for `my`) and headers for unknown servers are
///   dropped. Without them, only a name with a single dash after `x-mcp-` is understood
///   (`x-mcp-github-authorization`); one with more (`x-mcp-my-server-authorization`,
///   `x-mcp-zapier-x-api-key`) could be split in more than one place, and is dropped rather than guessed, so
///   that no server receives a credential meant for another. Configure the names to use servers or headers
///   whose names hold a dash;
/// - `x-mcp-auth: value` (deprecated; the name is [configurable](Self::client_auth_header)): one value for every
///   server without a per-server header.
///
/// All of them, and any other `x-mcp-` header except LiteLLM's `x-mcp-access-groups`, are removed from the
/// request. A credential is dropped when it was sent more than once, is empty or not visible ASCII, would set a
/// hop-by-hop, `Host`, `Content-Length`, gateway or `x-mcp-` header, or equals the gateway credential.
///
/// **The gateway credential.** This layer runs before the request is authenticated, so it still sees the key
/// header and `Authorization`. A value equal to the credential in either of them (compared in constant time,
/// whole or after a leading scheme such as `Bearer `) is dropped: a client can therefore not send its gateway
/// key, nor the OAuth token it passes through, to a server that should not get it. Placed after
/// `McpAuthLayer`, it would not see them; hence the order.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use http_body_util::BodyExt;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mcp_auth::{validate_fn, McpAuthLayer, Verdict};
/// use tower_mcp_auth::client_credentials::{ClientCredentials, TakeClientCredentialsLayer};
/// use tower_mcp_auth::upstream::AuthKind;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let gateway = ServiceBuilder::new()
///     .layer(TakeClientCredentialsLayer::new().servers(["github", "my-server"]))
///     .layer(McpAuthLayer::new(validate_fn(|key: String| async move {
///         Ok::<_, Infallible>(if key == "sk-good" { Verdict::Valid(()) } else { Verdict::Unknown })
///     })))
///     .service(service_fn(|req: Request<()>| async move {
///         let client = req.extensions().get::<ClientCredentials>().unwrap();
///         let github = client.headers_for("github", AuthKind::None);
///         Ok::<_, Infallible>(Response::new(format!("{} {}", github.len(), req.headers().len())))
///     }));
///
/// let request = Request::post("/mcp/github")
///     .header("x-litellm-api-key", "sk-good")
///     .header("x-mcp-github-authorization", "Bearer gh-token")
///     .header("x-mcp-my-server-authorization", "Bearer sk-good") // the gateway key: dropped
///     .body(())
///     .unwrap();
/// let body = gateway.oneshot(request).await.unwrap().into_body().collect().await.unwrap();
/// // One header for github; nothing left in the request itself.
/// assert_eq!(body.to_bytes(), "1 0");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TakeClientCredentialsLayer {
    rules: Arc<Rules>,
}

impl TakeClientCredentialsLayer {
    /// A layer with the defaults: server names unknown, key header `x-litellm-api-key`, deprecated header
    /// `x-mcp-auth`.
    pub fn new() -> Self {
        Self {
            rules: Arc::new(Rules {
                servers: None,
                key_header: DEFAULT_KEY_HEADER,
                client_auth_header: DEFAULT_CLIENT_AUTH_HEADER,
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Rules)) -> Self {
        f(Arc::make_mut(&mut self.rules));
        self
    }

    /// Sets the gateway's server names, so that `x-mcp-{server}-{header}` is split at the longest matching
    /// name (case-insensitive) and headers for other servers are dropped. Without them, only
    /// `x-mcp-{server}-{header}` names with a single dash after `x-mcp-` are understood; see the
    /// [layer](TakeClientCredentialsLayer).
    pub fn servers<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = names
            .into_iter()
            .map(|name| name.as_ref().to_ascii_lowercase())
            .collect();
        names.sort_by_key(|name| std::cmp::Reverse(name.len()));
        self.configure(|rules| rules.servers = Some(names))
    }

    /// Sets the gateway's key header, as given to [`McpAuthLayer::key_header`](crate::McpAuthLayer::key_header)
    /// (default `x-litellm-api-key`).
    ///
    /// # Panics
    /// When `name` is `authorization` or the deprecated client header.
    pub fn key_header(self, name: HeaderName) -> Self {
        assert!(
            name != AUTHORIZATION && !self.rules.is_client_header(&name),
            "the key header cannot be `authorization` or a client credential header"
        );
        self.configure(|rules| rules.key_header = name)
    }

    /// Sets the name of the deprecated header that carries one credential for every server (default
    /// `x-mcp-auth`).
    ///
    /// # Panics
    /// When `name` is `authorization`, `x-mcp-servers` or the key header.
    pub fn client_auth_header(self, name: HeaderName) -> Self {
        assert!(
            name != AUTHORIZATION && name != SERVERS && name != self.rules.key_header,
            "the client auth header cannot be `authorization`, `x-mcp-servers` or the key header"
        );
        self.configure(|rules| rules.client_auth_header = name)
    }

    /// Removes the client credential headers from `headers` and returns what they held; what the layer does
    /// for each request.
    pub fn take(&self, headers: &mut HeaderMap) -> ClientCredentials {
        let rules = &*self.rules;
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|name| rules.is_client_header(name))
            .cloned()
            .collect();
        let mut credentials = ClientCredentials::default();
        if names.is_empty() {
            return credentials;
        }
        let taken: Vec<(HeaderName, Vec<HeaderValue>)> = names
            .into_iter()
            .map(|name| {
                let values = headers.get_all(&name).iter().cloned().collect();
                headers.remove(&name);
                (name, values)
            })
            .collect();
        let gateway: Vec<&str> = headers
            .get_all(&rules.key_header)
            .iter()
            .chain(headers.get_all(AUTHORIZATION))
            .filter_map(|value| value.to_str().ok())
            .collect();

        for (name, values) in &taken {
            if *name == SERVERS {
                let servers = values
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .flat_map(|value| value.split(','))
                    .map(str::trim)
                    .filter(|server| !server.is_empty())
                    .map(str::to_owned);
                credentials.servers = Some(servers.collect());
                continue;
            }
            // Sent twice, a credential is ambiguous: neither value travels.
            let [value] = values.as_slice() else { continue };
            let Some(value) = credential(value) else {
                continue;
            };
            let text = value.to_str().unwrap_or_default();
            if gateway.iter().any(|gateway| same_credential(text, gateway)) {
                continue;
            }
            if *name == rules.client_auth_header {
                credentials.fallback = Some(value);
            } else if let Some((server, header)) = rules.resolve(&name.as_str()[PREFIX.len()..]) {
                credentials
                    .per_server
                    .entry(server.to_owned())
                    .or_default()
                    .insert(header, value);
            }
        }
        credentials
    }
}

impl Default for TakeClientCredentialsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for TakeClientCredentialsLayer {
    type Service = TakeClientCredentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TakeClientCredentials {
            inner,
            layer: self.clone(),
        }
    }
}

/// A trimmed, non-empty, visible-ASCII copy of `value`, marked sensitive.
fn credential(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return None;
    }
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Whether two header values carry the same credential: whole, or after a leading scheme (`Bearer k`, `k`).
fn same_credential(a: &str, b: &str) -> bool {
    fn forms(value: &str) -> impl Iterator<Item = &str> + Clone {
        let value = value.trim();
        iter::once(value).chain(value.split_once(' ').map(|(_, rest)| rest.trim()))
    }
    let b = forms(b);
    forms(a).any(|a| b.clone().any(|b| credentials_equal(a, b)))
}

/// Middleware that takes client-supplied per-server credentials out of requests before they reach `S`; built by
/// [`TakeClientCredentialsLayer`].
#[derive(Clone, Debug)]
pub struct TakeClientCredentials<S> {
    inner: S,
    layer: TakeClientCredentialsLayer,
}

impl<S> TakeClientCredentials<S> {
    crate::macros::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for TakeClientCredentials<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let credentials = self.layer.take(request.headers_mut());
        request.extensions_mut().insert(credentials);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_credential_compares_whole_and_after_scheme() {
        assert!(same_credential("sk-1", "sk-1"));
        assert!(same_credential("Bearer sk-1", "sk-1"));
        assert!(same_credential("sk-1", "bearer   sk-1 "));
        assert!(same_credential("token sk-1", "Bearer sk-1"));
        assert!(!same_credential("sk-1", "sk-2"));
        assert!(!same_credential("Bearer sk-1", "Bearer sk-2"));
    }
}
