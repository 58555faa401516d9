//! An rmcp upstream with three tools (`echo`, `add`, `secret`) that counts every call of each: what tests of
//! per-tool permissions check to prove a refused call never ran.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{ServerCapabilities, ServerConfig},
    schemars, tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServerHandler,
};
use tokio::net::TcpListener;

/// How often each tool ran, per upstream.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<HashMap<String, usize>>>);

impl Calls {
    /// How often `tool` ran.
    pub fn of(&self, tool: &str) -> usize {
        self.0.lock().unwrap().get(tool).copied().unwrap_or(0)
    }

    fn count(&self, tool: &str) {
        *self.0.lock().unwrap().entry(tool.to_owned()).or_default() += 1;
    }
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Text {
    /// Any text.
    text: String,
}

#[derive(Clone)]
struct Counted {
    calls: Calls,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Counted {
    #[tool(description = "Send the text back")]
    fn echo(&self, Parameters(Text { text }): Parameters<Text>) -> String {
        self.calls.count("echo");
        text
    }

    #[tool(description = "Add nothing")]
    fn add(&self, Parameters(Text { text }): Parameters<Text>) -> String {
        self.calls.count("add");
        text
    }

    #[tool(description = "A tool nobody may call")]
    fn secret(&self, Parameters(Text { text }): Parameters<Text>) -> String {
        self.calls.count("secret");
        text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Counted {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// An rmcp upstream counting its tool calls; `json` answers with JSON bodies where it can, else with event
/// streams.
pub async fn upstream(json: bool) -> (String, Calls) {
    let calls = Calls::default();
    let for_service = calls.clone();
    let mut config = StreamableHttpServerConfig::default();
    if json {
        config.legacy_session_mode = false;
        config.json_response = true;
    }
    let service = StreamableHttpService::new(
        move || {
            Ok(Counted {
                calls: for_service.clone(),
                tool_router: Counted::tool_router(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/mcp"), calls)
}
