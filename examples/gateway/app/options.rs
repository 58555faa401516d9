//! The command line: `[--listen ADDR] [--public-url URL] [--key KEY[=NAME,...]]... [--key-file PATH]
//! [--upstream NAME=URL]... [--passthrough NAME]... [--upstream-auth NAME=KIND:VALUE]...`.

use std::{fmt, net::SocketAddr};

/// What the gateway was asked to do.
#[derive(Clone, Default)]
pub struct Options {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub keys: Vec<String>,
    pub key_file: Option<String>,
    pub upstreams: Vec<(String, String)>,
    pub passthrough: Vec<String>,
    pub upstream_auth: Vec<(String, String)>,
}

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

pub const USAGE: &str =
    "usage: gateway [--listen ADDR] [--public-url URL] [--key KEY[=NAME,...]]... \
[--key-file PATH] \
[--upstream NAME=URL]... [--passthrough NAME]... [--upstream-auth NAME=KIND:VALUE]...";

impl Options {
    /// Parses the arguments (without the program name) and the comma-separated `MCP_GATEWAY_KEYS` value.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env_keys: Option<String>,
    ) -> Result<Self, String> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (flag, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value()?;
                    options.listen = Some(
                        v.parse()
                            .map_err(|_| format!("--listen {v:?} is not an address"))?,
                    );
                }
                "--public-url" => {
                    options.public_url = Some(value()?.trim_end_matches('/').to_owned())
                }
                "--key" => options.keys.push(value()?),
                "--key-file" => options.key_file = Some(value()?),
                "--upstream" => options
                    .upstreams
                    .push(pair(&value()?, "--upstream", "NAME=URL")?),
                "--passthrough" => options.passthrough.push(value()?),
                "--upstream-auth" => options.upstream_auth.push(pair(
                    &value()?,
                    "--upstream-auth",
                    "NAME=KIND:VALUE",
                )?),
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if let Some(keys) = env_keys {
            options.keys.extend(
                keys.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned),
            );
        }
        Ok(options)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default"))
    }
}

fn pair(value: &str, flag: &str, shape: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => {
            Ok((name.to_ascii_lowercase(), rest.to_owned()))
        }
        // The value may be a credential: never repeat it.
        _ => Err(format!("{flag} takes {shape}")),
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("key_file", &self.key_file)
            .field(
                "upstreams",
                &self.upstreams.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("passthrough", &self.passthrough)
            .field(
                "upstream_auth",
                &self
                    .upstream_auth
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
