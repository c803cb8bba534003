//! systemd's readiness protocol (`sd_notify`, `Type=notify`): one datagram
//! to the socket in `NOTIFY_SOCKET` (a path, or `@` for an abstract name)
//! per state change. Without `NOTIFY_SOCKET` (not under systemd) nothing is
//! sent. Failures are logged, never fatal: readiness is a courtesy to the
//! service manager, not a condition of serving.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`,
/// newline-separated) to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let target = target.to_string_lossy();
        match target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                socket.send_to_addr(state.as_bytes(), &address)
            }
            None => socket.send_to(state.as_bytes(), target.as_ref()),
        }
    });
    match sent {
        Ok(_) => tracing::debug!(state, "told the service manager"),
        Err(e) => tracing::warn!(error = %e, state, "cannot notify the service manager (NOTIFY_SOCKET)"),
    }
}
