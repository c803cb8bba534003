//! The floor any Rust proxy-wasm HTTP filter pays on Envoy: a root context
//! that creates one HTTP context per stream, and an HTTP context that
//! overrides no callback. `make bench` compares the proxy-acme filter with
//! this one on every route (docs/benchmarks.md); it is never deployed.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
}}

#[derive(Debug)]
struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Empty))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Debug)]
struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {}
