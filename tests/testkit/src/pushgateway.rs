//! A real Prometheus Pushgateway (Debian's `prometheus-pushgateway`, linked as
//! `.deps/bin/pushgateway`) on 127.0.0.1, for the tests of `--pushgateway`.

use std::process::Command;

use crate::deps::require;
use crate::objstore::{http, wait_http};
use crate::ports::free_port;
use crate::process::ManagedProcess;
use crate::{Error, Result};

pub struct PushgatewayServer {
    proc: ManagedProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PushgatewayServer {
    /// `Ok(None)`: not installed (the SKIP line is printed, or the test panicked if required).
    pub fn start() -> Result<Option<PushgatewayServer>> {
        let Some(bin) = require("pushgateway", "bin/pushgateway") else {
            return Ok(None);
        };
        let dir = tempfile::tempdir().map_err(|e| Error::io("create temp dir", "/tmp", e))?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // In memory only: nothing survives the test.
            .arg("--persistence.file=");
        let log = dir.path().join("pushgateway.log");
        let mut proc = ManagedProcess::spawn(cmd, &format!("pushgateway 127.0.0.1:{port}"), &log)?;
        if let Err(e) = wait_http(&mut proc, port, "/-/ready") {
            proc.stop()?;
            return Err(e);
        }
        Ok(Some(PushgatewayServer {
            proc,
            port,
            _dir: dir,
        }))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What Prometheus would scrape from the gateway.
    pub fn scrape(&self) -> Result<String> {
        let (status, body) = http(self.port, "GET", "/metrics", b"")
            .map_err(|e| Error::io("scrape", "/metrics", e))?;
        if status != 200 {
            return Err(Error::parse(
                "pushgateway /metrics",
                format!("status {status}"),
            ));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub fn stop(mut self) -> Result<()> {
        self.proc.stop().map(|_| ())
    }
}
