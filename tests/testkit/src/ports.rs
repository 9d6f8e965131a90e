//! Free TCP ports on 127.0.0.1.
//!
//! The port is released before the server binds it, so another process could take it in
//! between; servers started by testkit retry with fresh ports when binding fails. Within this
//! test process a port is never handed out twice.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(l) = TcpListener::bind(("127.0.0.1", 0)) else {
            continue;
        };
        let Ok(addr) = l.local_addr() else {
            continue;
        };
        let port = addr.port();
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("testkit: no free port on 127.0.0.1 after 100 attempts");
}
