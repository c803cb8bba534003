//! The floor any Rust proxy-wasm HTTP filter pays on Envoy: a root context
//! that creates one HTTP context per stream, and an HTTP context that
//! overrides no callback. `make bench` compares the proxy-acme filter with
//! this one on every route (docs/benchmarks.md); it is never deployed.
//!
//! With the plugin configuration `read_path`, the HTTP context instead reads
//! `:path` once in `on_http_request_headers` and continues: the floor of a
//! filter that must look at the path at all (one host call, which has Envoy
//! allocate the value in the module's memory).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot { read_path: false }) });
}}

#[derive(Debug)]
struct EmptyRoot {
    read_path: bool,
}

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX);
        self.read_path = matches!(configuration, Ok(Some(bytes)) if bytes == b"read_path");
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.read_path {
            Some(Box::new(PathReader))
        } else {
            Some(Box::new(Empty))
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Debug)]
struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {}

#[derive(Debug)]
struct PathReader;

impl Context for PathReader {}

impl HttpContext for PathReader {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path");
        std::hint::black_box(path.ok().flatten().map(|p| p.len()));
        Action::Continue
    }
}
