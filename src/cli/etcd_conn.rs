//! etcdbrctl's etcd connection flags (`pkg/types/etcdconnection.go` `AddFlags`), with the
//! names and defaults etcd-druid passes (`internal/component/statefulset/builder.go`), and
//! the re-election period the learner promotion runs at (`pkg/types/leaderelection.go`).

use std::path::PathBuf;
use std::time::Duration;

use etcd_restore::etcdclient::{Client, Connection, TlsFiles};

fn parse_positive(s: &str) -> Result<Duration, String> {
    match super::duration::parse_go_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: must be more than 0")),
        d => Ok(d),
    }
}

#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "etcd connection (member bootstrap in a multi-member cluster)")]
pub struct EtcdConnArgs {
    /// This member's etcd, comma-separated (druid: `https://<etcd>-local:<client port>`).
    #[arg(
        short = 'e',
        long,
        value_name = "URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,

    /// The cluster's client service, comma-separated; membership changes go there (default:
    /// every member's advertise-client-urls from the etcd config).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub service_endpoints: Vec<String>,

    /// Client certificate for etcd (druid: /var/etcd/ssl/client/tls.crt).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Its key (druid: /var/etcd/ssl/client/tls.key).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// CA bundle etcd's server certificate is verified with (druid: /var/etcd/ssl/ca/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Endpoints without a scheme use plain HTTP/2 (etcdbrctl's default).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub insecure_transport: bool,

    /// Accepted for etcdbrctl compatibility; etcd's certificate is always verified
    /// against --cacert.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub insecure_skip_tls_verify: bool,

    /// etcd user, when etcd has authentication enabled.
    #[arg(long, value_name = "USER", requires = "etcd_password")]
    pub etcd_username: Option<String>,

    /// Its password.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ETCD_PASSWORD",
        hide_env_values = true
    )]
    pub etcd_password: Option<String>,

    /// Accepted for etcdbrctl compatibility (druid passes 5m0s): etcdbrctl bounds its
    /// snapshot, defragmentation and probe calls with it, which this server does not make;
    /// membership calls use etcdbrctl's fixed timeouts (5 s, 30 s).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    pub etcd_connection_timeout: Duration,

    /// How often this member's etcd is asked whether it is a learner, which is then promoted.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive)]
    pub reelection_period: Duration,
}

impl EtcdConnArgs {
    fn connection(&self, endpoints: &[String]) -> Connection {
        Connection {
            endpoints: endpoints.to_vec(),
            tls: TlsFiles {
                ca: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            insecure_transport: self.insecure_transport,
            auth: self.etcd_username.clone().zip(self.etcd_password.clone()),
        }
    }

    /// Clients for `--endpoints` and, when given, `--service-endpoints`.
    pub fn clients(&self) -> anyhow::Result<(Client, Option<Client>)> {
        let local = Client::new(&self.connection(&self.endpoints))?;
        let service = if self.service_endpoints.is_empty() {
            None
        } else {
            Some(Client::new(&self.connection(&self.service_endpoints))?)
        };
        Ok((local, service))
    }
}
