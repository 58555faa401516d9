//! What LiteLLM lets a key do on its MCP routes: its team, its object permissions, its allowed routes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{postgres::PgRow, Row};

use crate::permissions::{Tools, Upstreams};

/// LiteLLM's dashboard team: keys of the admin UI carry it, and it has no row of its own.
const UI_TEAM_ID: &str = "litellm-dashboard";
/// In an object permission's `mcp_servers`: every MCP server of the proxy.
const ALL_PROXY_SERVERS: &str = "all-proxy-mcpservers";

/// The ids LiteLLM gives the servers of its config file, each with the gateway's name for that server.
pub(super) type ConfigServers = HashMap<String, String>;

/// The MCP servers the key's (or the team's) object permission lists, its access groups, its tools per server
/// (`mcp_tool_permissions`) and the tools it blocks everywhere (`blocked_tools`).
#[derive(Clone, Debug, Default)]
pub(super) struct Grants {
    pub(super) servers: Vec<String>,
    pub(super) groups: Vec<String>,
    /// Server id or name → the only tools of it; a server named here is also granted (as LiteLLM does).
    pub(super) tools: BTreeMap<String, Vec<String>>,
    pub(super) blocked: Vec<String>,
}

impl Grants {
    pub(super) fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.groups.is_empty() && self.tools.is_empty()
    }

    /// `prefix` is `key` or `team`: the columns are `{prefix}_mcp_servers` and so on.
    fn read(row: &PgRow, prefix: &str) -> Result<Self, sqlx::Error> {
        let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
            Ok(row
                .try_get::<Option<Vec<String>>, _>(format!("{prefix}_{column}").as_str())?
                .unwrap_or_default())
        };
        let tools: Option<serde_json::Value> =
            row.try_get(format!("{prefix}_mcp_tool_permissions").as_str())?;
        Ok(Self {
            servers: list("mcp_servers")?,
            groups: list("mcp_access_groups")?,
            tools: tool_permissions(tools),
            blocked: list("blocked_tools")?,
        })
    }
}

/// `mcp_tool_permissions` (`{"server": ["tool", ...]}`); a value that is not a list of strings allows no tool
/// of its server, rather than every tool.
fn tool_permissions(value: Option<serde_json::Value>) -> BTreeMap<String, Vec<String>> {
    let Some(serde_json::Value::Object(map)) = value else {
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(server, tools)| {
            let tools = match tools {
                serde_json::Value::Array(tools) => tools
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            (server, tools)
        })
        .collect()
}

/// The key's team, as far as MCP access goes.
#[derive(Clone, Debug)]
pub(super) enum Team {
    /// The key has no team (or the dashboard's).
    None,
    /// The key names a team that has no row: LiteLLM refuses such a key.
    Missing,
    /// The team's row.
    Found {
        blocked: bool,
        spend: f64,
        max_budget: Option<f64>,
        grants: Grants,
    },
}

/// The access facts of one key row: the columns [`LOOKUP`](super::LOOKUP) joins in.
#[derive(Clone, Debug)]
pub(super) struct Access {
    pub(super) allowed_routes: Vec<String>,
    pub(super) key: Grants,
    pub(super) team: Team,
}

impl Access {
    pub(super) fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        let team_id: Option<String> = row.try_get("team_id")?;
        let team_found: Option<String> = row.try_get("team_found")?;
        let team = match (team_id.as_deref(), team_found) {
            (None | Some(UI_TEAM_ID), _) => Team::None,
            (Some(_), None) => Team::Missing,
            (Some(_), Some(_)) => Team::Found {
                blocked: row
                    .try_get::<Option<bool>, _>("team_blocked")?
                    .unwrap_or(false),
                spend: row
                    .try_get::<Option<f64>, _>("team_spend")?
                    .unwrap_or_default(),
                max_budget: row.try_get("team_max_budget")?,
                grants: Grants::read(row, "team")?,
            },
        };
        Ok(Self {
            allowed_routes: row
                .try_get::<Option<Vec<String>>, _>("allowed_routes")?
                .unwrap_or_default(),
            key: Grants::read(row, "key")?,
            team,
        })
    }

    /// Whether LiteLLM would refuse the key on account of its team or its routes.
    pub(super) fn refused(&self) -> bool {
        let team_refused = match &self.team {
            Team::None => false,
            Team::Missing => true,
            Team::Found {
                blocked,
                spend,
                max_budget,
                ..
            } => *blocked || max_budget.is_some_and(|budget| *spend >= budget),
        };
        team_refused || !allows_mcp_routes(&self.allowed_routes)
    }

    /// The server ids and access groups to look up in `"LiteLLM_MCPServerTable"`.
    pub(super) fn lookups(&self) -> (Vec<String>, Vec<String>) {
        let team = match &self.team {
            Team::Found { grants, .. } => Some(grants),
            _ => None,
        };
        let grants = std::iter::once(&self.key).chain(team);
        let (mut ids, mut groups) = (Vec::new(), Vec::new());
        for grant in grants {
            ids.extend(grant.servers.iter().cloned());
            ids.extend(grant.tools.keys().cloned());
            groups.extend(grant.groups.iter().cloned());
        }
        (ids, groups)
    }

    /// The upstreams the key may use, as LiteLLM computes its MCP servers: the key's own list (servers and
    /// access groups), narrowed by its team's where both have one, inherited from the team where the key has
    /// none; plus the servers every key may use.
    pub(super) fn upstreams(
        &self,
        servers: &[Server],
        config: &ConfigServers,
        open: &Upstreams,
    ) -> Upstreams {
        let upstreams = self.servers(servers, config, open);
        let team = match &self.team {
            Team::Found { grants, .. } => Some(grants),
            _ => None,
        };
        let key_tools = tools_by_name(&self.key, servers, config);
        let team_tools = team
            .map(|t| tools_by_name(t, servers, config))
            .unwrap_or_default();
        let mut narrowed = upstreams;
        for name in key_tools.keys().chain(team_tools.keys()) {
            // LiteLLM: the team's list where it has one (narrowed by the key's, if the key has one too), else
            // the key's; an empty team list restricts nothing, an empty key list allows nothing.
            let tools = match (key_tools.get(name), team_tools.get(name)) {
                (Some(key), Some(team)) if !team.is_empty() => {
                    Tools::only(key.iter().filter(|t| team.contains(t)))
                }
                (None, Some(team)) if !team.is_empty() => Tools::only(team),
                (Some(key), _) => Tools::only(key),
                (None, _) => Tools::all(),
            };
            narrowed = narrowed.with_tools(name, tools);
        }
        let blocked: BTreeSet<&String> = std::iter::once(&self.key)
            .chain(team)
            .flat_map(|g| &g.blocked)
            .collect();
        if blocked.is_empty() {
            narrowed
        } else {
            narrowed.with_tools_everywhere(Tools::except(blocked))
        }
    }

    /// The servers alone, without their tools.
    fn servers(&self, servers: &[Server], config: &ConfigServers, open: &Upstreams) -> Upstreams {
        let key = resolve(&self.key, servers, config);
        let team = match &self.team {
            Team::Found { grants, .. } => resolve(grants, servers, config),
            _ => Level::Unrestricted,
        };
        let base = match (key, team) {
            (Level::Unrestricted, team) => team,
            (key, Level::Unrestricted) => key,
            (Level::All, team) => team,
            (key, Level::All) => key,
            (Level::Only(key), Level::Only(team)) => {
                Level::Only(key.intersection(&team).cloned().collect())
            }
        };
        let mut names = match base {
            Level::All => return Upstreams::all(),
            // Neither the key nor its team lists a server: only those open to every key.
            Level::Unrestricted => BTreeSet::new(),
            Level::Only(names) => names,
        };
        if open.is_all() {
            return Upstreams::all();
        }
        names.extend(open.names().into_iter().flatten().map(str::to_owned));
        for server in servers.iter().filter(|s| s.allow_all_keys) {
            names.extend(server.names());
        }
        Upstreams::only(names)
    }
}

/// One level's grant, resolved to upstream names.
enum Level {
    /// This level lists nothing: it does not restrict.
    Unrestricted,
    /// Every server of the proxy.
    All,
    /// These servers.
    Only(BTreeSet<String>),
}

fn resolve(grants: &Grants, servers: &[Server], config: &ConfigServers) -> Level {
    if grants.is_empty() {
        return Level::Unrestricted;
    }
    if grants.servers.iter().any(|s| s == ALL_PROXY_SERVERS) {
        return Level::All;
    }
    let mut names = BTreeSet::new();
    for entry in grants.servers.iter().chain(grants.tools.keys()) {
        // An entry is a server id (of the server table, or the id LiteLLM gives a server of its config file,
        // resolved to the gateway's name for it) or already a name or alias.
        match servers.iter().find(|s| s.id == *entry) {
            Some(server) => names.extend(server.names()),
            None => match config.get(entry) {
                Some(name) => {
                    names.insert(name.to_ascii_lowercase());
                }
                None => {
                    names.insert(entry.to_ascii_lowercase());
                }
            },
        }
    }
    for server in servers {
        if server.groups.iter().any(|g| grants.groups.contains(g)) {
            names.extend(server.names());
        }
    }
    Level::Only(names)
}

/// A level's `mcp_tool_permissions` by upstream name: entries are server ids (of the server table or of the
/// config file, resolved to the server's names) or already names; two entries for one name grant the union.
fn tools_by_name(
    grants: &Grants,
    servers: &[Server],
    config: &ConfigServers,
) -> BTreeMap<String, Vec<String>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (entry, tools) in &grants.tools {
        let names: Vec<String> = match servers.iter().find(|s| s.id == *entry) {
            Some(server) => server.names().collect(),
            None => vec![config.get(entry).unwrap_or(entry).to_ascii_lowercase()],
        };
        for name in names {
            by_name
                .entry(name)
                .or_default()
                .extend(tools.iter().cloned());
        }
    }
    by_name
}

/// LiteLLM's route groups that include its MCP routes: `mcp_routes` itself, `llm_api_routes` (what keys of
/// `key_type: llm_api` get: LiteLLM counts the MCP routes among the LLM API's) and `mcp_inference_routes`.
const MCP_ROUTE_GROUPS: &[&str] = &["mcp_routes", "llm_api_routes", "mcp_inference_routes"];

/// Whether a key's `allowed_routes` let it reach MCP routes: empty (no restriction), one of LiteLLM's route
/// groups that include them ([`MCP_ROUTE_GROUPS`]), or a route under `/mcp`.
fn allows_mcp_routes(routes: &[String]) -> bool {
    routes.is_empty()
        || routes.iter().any(|route| {
            MCP_ROUTE_GROUPS.contains(&route.as_str())
                || route == "/mcp"
                || route.starts_with("/mcp/")
                || route.starts_with("/mcp*")
        })
}

/// One row of `"LiteLLM_MCPServerTable"`.
#[derive(Clone, Debug)]
pub(super) struct Server {
    id: String,
    name: Option<String>,
    alias: Option<String>,
    groups: Vec<String>,
    allow_all_keys: bool,
}

impl Server {
    pub(super) fn read(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("server_id")?,
            name: row.try_get("server_name")?,
            alias: row.try_get("alias")?,
            groups: row
                .try_get::<Option<Vec<String>>, _>("mcp_access_groups")?
                .unwrap_or_default(),
            allow_all_keys: row
                .try_get::<Option<bool>, _>("allow_all_keys")?
                .unwrap_or(false),
        })
    }

    /// The names a gateway may give this server: its alias and its name, in lower case.
    fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.alias
            .iter()
            .chain(self.name.iter())
            .map(|n| n.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(servers: &[&str], groups: &[&str]) -> Grants {
        Grants {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Grants::default()
        }
    }

    fn tool_grants(tools: &[(&str, &[&str])], blocked: &[&str]) -> Grants {
        Grants {
            tools: tools
                .iter()
                .map(|(s, t)| (s.to_string(), t.iter().map(|t| t.to_string()).collect()))
                .collect(),
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
            ..Grants::default()
        }
    }

    #[test]
    fn tool_permissions_combine_as_litellm_does() {
        let servers = [
            server("id-atl", "atl", &[], false),
            server("id-priv", "priv", &[], false),
        ];
        let none = Upstreams::only::<_, &str>([]);
        // A server named in the tool permissions is granted, with those tools only (by id or by name).
        let a = access(tool_grants(&[("id-atl", &["echo", "add"])], &[]), None);
        let u = a.upstreams(&servers, &ConfigServers::new(), &none);
        assert!(u.may_call("atl", "echo") && !u.may_call("atl", "rm") && !u.allows("priv"));
        // Key and team both list tools: those in both.
        let a = access(
            tool_grants(&[("atl", &["echo", "add"])], &[]),
            Some(tool_grants(&[("id-atl", &["add", "rm"])], &[])),
        );
        assert_eq!(
            a.upstreams(&servers, &ConfigServers::new(), &none)
                .tools("atl"),
            Some(&Tools::only(["add"]))
        );
        // Only the team lists tools: the key inherits them.
        let mut key = grants(&["atl"], &[]);
        key.blocked = vec!["rm".to_owned()];
        let a = access(key, Some(tool_grants(&[("atl", &["echo", "rm"])], &[])));
        // ...and `blocked_tools` of either level holds on every server.
        assert_eq!(
            a.upstreams(&servers, &ConfigServers::new(), &none)
                .tools("atl"),
            Some(&Tools::only(["echo"]))
        );
        // An empty list of the key's allows no tool; an empty team list restricts nothing.
        let a = access(tool_grants(&[("atl", &[])], &[]), None);
        assert!(!a
            .upstreams(&servers, &ConfigServers::new(), &none)
            .may_call("atl", "echo"));
        let a = access(
            grants(&["atl"], &[]),
            Some(tool_grants(&[("atl", &[])], &["rm"])),
        );
        let u = a.upstreams(&servers, &ConfigServers::new(), &none);
        assert!(u.may_call("atl", "echo") && !u.may_call("atl", "rm"));
        // Malformed permissions allow nothing of their server.
        let map = tool_permissions(Some(serde_json::json!({"atl": "echo", "priv": ["a", 1]})));
        assert_eq!(map["atl"], Vec::<String>::new());
        assert_eq!(map["priv"], Vec::<String>::new());
    }

    fn access(key: Grants, team: Option<Grants>) -> Access {
        Access {
            allowed_routes: Vec::new(),
            key,
            team: match team {
                Some(grants) => Team::Found {
                    blocked: false,
                    spend: 0.0,
                    max_budget: None,
                    grants,
                },
                None => Team::None,
            },
        }
    }

    fn server(id: &str, name: &str, groups: &[&str], allow_all_keys: bool) -> Server {
        Server {
            id: id.to_owned(),
            name: Some(name.to_owned()),
            alias: None,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            allow_all_keys,
        }
    }

    #[test]
    fn litellm_inheritance_and_intersection() {
        let servers = [
            server("id-atl", "atl", &["dev"], false),
            server("id-priv", "priv", &[], false),
            server("id-docs", "docs", &[], true),
        ];
        let none = Upstreams::only::<_, &str>([]);
        let names = |u: Upstreams| u.names().map(|n| n.collect::<Vec<_>>().join(","));
        // Key only: its own servers (by id or by name), plus the servers open to every key.
        let a = access(grants(&["id-atl"], &[]), None);
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "atl,docs"
        );
        // Key without a list inherits the team's.
        let a = access(Grants::default(), Some(grants(&["priv"], &[])));
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "docs,priv"
        );
        // Both list: the intersection.
        let a = access(grants(&["atl", "priv"], &[]), Some(grants(&["priv"], &[])));
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "docs,priv"
        );
        // Access groups expand to the servers carrying them.
        let a = access(grants(&[], &["dev"]), None);
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "atl,docs"
        );
        // Nothing anywhere: only the open servers.
        let a = access(Grants::default(), None);
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "docs"
        );
        // The team's "every proxy server" lets the key's own list stand.
        let a = access(
            grants(&["atl"], &[]),
            Some(grants(&[ALL_PROXY_SERVERS], &[])),
        );
        assert_eq!(
            names(a.upstreams(&servers, &ConfigServers::new(), &none)).unwrap(),
            "atl,docs"
        );
        let a = access(Grants::default(), Some(grants(&[ALL_PROXY_SERVERS], &[])));
        assert!(a.upstreams(&servers, &ConfigServers::new(), &none).is_all());
    }

    #[test]
    fn config_file_server_ids_resolve_to_the_gateway_names() {
        let config = ConfigServers::from([(
            "3f1c0e1b5a9d4c7e8f6a2b0d9c8e7f6a".to_owned(),
            "GitHub".to_owned(),
        )]);
        let none = Upstreams::only::<_, &str>([]);
        let a = access(grants(&["3f1c0e1b5a9d4c7e8f6a2b0d9c8e7f6a"], &[]), None);
        let upstreams = a.upstreams(&[], &config, &none);
        assert!(upstreams.allows("github") && !upstreams.allows("atl"));
        // Without the mapping the id names no upstream.
        assert!(!a
            .upstreams(&[], &ConfigServers::new(), &none)
            .allows("github"));
    }

    #[test]
    fn routes() {
        assert!(allows_mcp_routes(&[]));
        for allowed in [
            "mcp_routes",
            "llm_api_routes",
            "mcp_inference_routes",
            "/mcp",
            "/mcp/atl",
            "/mcp*",
        ] {
            assert!(allows_mcp_routes(&[allowed.to_owned()]), "{allowed}");
        }
        for refused in [
            "management_routes",
            "info_routes",
            "/chat/completions",
            "/mcpx",
        ] {
            assert!(!allows_mcp_routes(&[refused.to_owned()]), "{refused}");
        }
    }
}
