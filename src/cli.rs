//! Command-line surface of the one `switchboard` binary.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Default admin/discovery address of the control plane.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:18000";

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "An Envoy-style gateway for the Model Context Protocol"
)]
pub struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `switchboard=debug`.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, global = true, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub otlp: TelemetryGlobal,
    #[command(subcommand)]
    pub command: Command,
}

/// Trace export: off unless an endpoint is given.
#[derive(Debug, Clone, Args)]
pub struct TelemetryGlobal {
    /// Export traces to this OTLP endpoint (e.g. http://127.0.0.1:4317 for gRPC,
    /// http://127.0.0.1:4318 for HTTP).
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,
}

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OtlpProtocol {
    #[value(name = "grpc")]
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check YAML files offline and print every error with its position.
    Validate(ValidateArgs),
    /// Print the version of this build.
    Version(OutputArgs),
    /// Run a control plane (registry, snapshot builder, discovery and admin gRPC).
    Controlplane(ControlplaneArgs),
    /// Run a data plane (the MCP gateway) fed by a control plane or a snapshot file.
    Dataplane(DataplaneArgs),
    /// Run a control plane with the embedded store and one data plane in one process.
    Up(UpArgs),
    /// Create or update resources from YAML files (all documents land or none).
    Apply(ApplyArgs),
    /// List or show resources, upstreams with their health (`get upstreams`), or connected
    /// data planes (`get dataplanes`).
    Get(GetArgs),
    /// Delete a resource.
    Delete(DeleteArgs),
    /// List an upstream's catalog now (`refresh upstream NAME`) and show the result.
    Refresh(RefreshArgs),
    /// Print the tools the REST and OpenAPI Upstreams in YAML files would serve, without
    /// applying them (OpenAPI documents are fetched or read now): a dry run for specs.
    Preview(PreviewArgs),
    /// Serve a stdio MCP server over streamable HTTP (e.g. as an Upstream's URL).
    Bridge(BridgeArgs),
    /// Print the SHA-256 of an API key read from standard input, for `apiKeys.keys[].sha256`.
    HashKey,
    /// Be a stdio MCP server that forwards to a gateway URL (for clients that only speak stdio).
    Connect(ConnectArgs),
    /// Make a development CA and certificates for control planes, data planes (by cluster)
    /// and operators (by role).
    Certs(CertsArgs),
    /// Create or revoke an operator's bearer token for the admin API (admins only).
    Token(TokenArgs),
    /// Save, choose and list named control planes with their credentials (like kubeconfig).
    Context(ContextArgs),
}

/// `switchboard context set|use|list`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    #[command(subcommand)]
    pub action: ContextAction,
}

/// What to do with contexts.
#[derive(Debug, Subcommand)]
pub enum ContextAction {
    /// Save context NAME (the first one saved becomes current).
    Set {
        name: String,
        #[arg(long)]
        server: String,
        /// CA (PEM) of the control plane's certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Client certificate and key (PEM).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        /// A file holding an operator token (or the control token).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Make NAME the current context.
    Use { name: String },
    /// List the contexts (`*` marks the current one).
    List,
}

/// `switchboard token create|revoke`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What to do with a token.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make a token for operator NAME with `--role` viewer, editor or admin, and print it
    /// once (callers send it as SWITCHBOARD_TOKEN).
    Create {
        name: String,
        #[arg(long)]
        role: String,
    },
    /// Revoke operator NAME's token.
    Revoke { name: String },
}

/// `switchboard certs KIND ...`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Where the CA (ca.crt, ca.key; made on first use) and the certificates go.
    #[arg(long, default_value = "./switchboard-certs", global = true)]
    pub dir: PathBuf,
    /// Days the certificate is valid.
    #[arg(
        long,
        default_value_t = 365,
        global = true,
        allow_negative_numbers = true
    )]
    pub days: i64,
    #[command(subcommand)]
    pub kind: CertKind,
}

/// Which certificate to make.
#[derive(Debug, Subcommand)]
pub enum CertKind {
    /// Only the CA.
    Ca,
    /// A control plane's server certificate.
    Controlplane {
        #[arg(default_value = "controlplane")]
        name: String,
        /// Names and addresses it is reached at (repeatable).
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
    },
    /// A data plane's client certificate: it may join `--cluster` only.
    Dataplane {
        name: String,
        #[arg(long)]
        cluster: String,
    },
    /// An operator's client certificate with `--role` viewer, editor or admin.
    Operator {
        name: String,
        #[arg(long)]
        role: String,
    },
}

/// `switchboard bridge --stdio CMD [-- ARGS...]`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// The stdio MCP server to run (found on PATH or a path).
    #[arg(long)]
    pub stdio: String,
    /// Arguments for the stdio server, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:3002")]
    pub listen: String,
    /// Path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    pub path: String,
    /// Require `Authorization: Bearer <value of this environment variable>` on every MCP
    /// request (the token itself never goes on the command line).
    #[arg(long)]
    pub bearer_env: Option<String>,
    /// One child per HTTP session instead of one shared by all.
    #[arg(long)]
    pub per_session: bool,
    /// With --per-session: most children at once.
    #[arg(long, default_value_t = 16)]
    pub max_sessions: usize,
    /// With --per-session: stop a child whose session sent nothing for this long.
    #[arg(long, default_value = "10m")]
    pub idle_timeout: humantime::Duration,
    /// Origins browsers may send MCP requests from (comma-separated, `*` for any); without
    /// it only loopback origins are accepted (403 otherwise).
    /// On a loopback address the `Host` must name this machine too.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

/// `switchboard connect URL`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The gateway's MCP endpoint, e.g. http://127.0.0.1:8080/servers/demo/mcp.
    pub url: String,
    /// Extra header on every request, `Name: value` or `Name=value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Send `Authorization: Bearer <value of this environment variable>` (the token never
    /// goes on the command line).
    #[arg(long)]
    pub bearer_env: Option<String>,
}

/// Files to read: paths, directories of *.yaml, or `-` for stdin.
#[derive(Debug, Args)]
pub struct FileArgs {
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Only this Upstream.
    #[arg(long)]
    pub upstream: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Control-plane admin address (`https://…` when it serves TLS).
    /// (Default: the current context's, else http://127.0.0.1:18000.)
    #[arg(long, env = "SWITCHBOARD_SERVER", global = true)]
    pub server: Option<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// How a caller checks a control plane that serves TLS, and proves who it is (certificates
/// from `switchboard certs`).
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// CA (PEM) of the control plane's certificate; turns TLS on.
    #[arg(long = "ca", env = "SWITCHBOARD_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// This caller's client certificate (PEM): an operator's for admin calls, a data
    /// plane's (naming its cluster) for discovery.
    #[arg(
        long = "cert",
        env = "SWITCHBOARD_CERT",
        requires = "key",
        global = true
    )]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long = "key", env = "SWITCHBOARD_KEY", global = true)]
    pub key: Option<PathBuf>,
}

impl IdentityArgs {
    /// The TLS settings these name (`None` without --ca).
    pub fn tls(&self) -> anyhow::Result<Option<switchboard_dataplane::discovery::ControlPlaneTls>> {
        use anyhow::Context;
        let Some(ca) = &self.ca else {
            if self.cert.is_some() {
                anyhow::bail!("--cert needs --ca: a client certificate goes only to a control plane whose certificate is checked");
            }
            return Ok(None);
        };
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        Ok(Some(switchboard_dataplane::discovery::ControlPlaneTls {
            ca_pem: read(ca)?,
            identity,
        }))
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Validate against the stored state and show what would change, without writing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind (`upstreams`, `vs`, `prompt`, ...) or `dataplanes`.
    pub kind: String,
    /// One resource's name; all of the kind when omitted.
    pub name: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// `upstream`.
    pub kind: String,
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub kind: String,
    pub name: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ControlplaneArgs {
    /// Address for the discovery and admin gRPC services.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub listen: String,
    /// etcd endpoints (comma-separated); the embedded store is used when none is given.
    #[arg(long, env = "SWITCHBOARD_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Key prefix for everything this control plane stores in etcd.
    #[arg(long, default_value = "/switchboard")]
    pub etcd_prefix: String,
    /// CA (PEM) of etcd's certificate: reach etcd over TLS (`https://` endpoints).
    #[arg(long, env = "SWITCHBOARD_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcds started with --client-cert-auth.
    #[arg(long, env = "SWITCHBOARD_ETCD_CERT", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, env = "SWITCHBOARD_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (etcd auth); the password is read from SWITCHBOARD_ETCD_PASSWORD, never
    /// from the command line.
    #[arg(long, env = "SWITCHBOARD_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// Directory of the embedded store (used without --etcd).
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    /// Certificate chain (PEM) to serve the admin and discovery API over TLS.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires_all = ["tls_cert", "client_ca"])]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of the client certificates every caller must show: data planes (which may
    /// join the cluster their certificate names) and operators (with a role). Made by
    /// `switchboard certs`.
    #[arg(long, env = "SWITCHBOARD_CLIENT_CA", requires_all = ["tls_cert", "tls_key"])]
    pub client_ca: Option<PathBuf>,
    /// Serve the admin and discovery API in plain text beyond loopback (no caller is
    /// checked then, so only on a network you trust); without it, or TLS, such a listener
    /// refuses to start.
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Where metrics are served and traces sent.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Serve /metrics, /healthz and /readyz (HTTP) on this address too; a data plane then
    /// stops serving /metrics on its MCP address.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct DataplaneArgs {
    /// Address MCP clients connect to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Control planes to receive snapshots from (comma-separated, tried in turn).
    #[arg(long, env = "SWITCHBOARD_CONTROL_PLANE", value_delimiter = ',')]
    pub control_plane: Vec<String>,
    /// Serve these YAML files directly, without a control plane (standalone mode).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub node: NodeArgs,
    /// How this data plane checks its control planes and proves its cluster.
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub tls: ListenTlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Who this data plane is, for the control plane's snapshot groups.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Unique id of this replica (default: host name and process id).
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "SWITCHBOARD_CLUSTER", default_value = "default")]
    pub cluster: String,
    #[arg(long, env = "SWITCHBOARD_ZONE", default_value = "")]
    pub zone: String,
    /// Node labels, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Where the last good snapshot is kept, to start from it when no control plane answers.
    #[arg(
        long,
        env = "SWITCHBOARD_STATE_DIR",
        default_value = "./switchboard-state"
    )]
    pub state_dir: PathBuf,
}

/// Request limits and checks enforced before anything is parsed.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Largest request body accepted (bigger ones get 413); a virtual server's
    /// `limits.maxBodyBytes` overrides it.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Largest total of request header names and values (bigger ones get 431).
    #[arg(long, default_value_t = 64 << 10)]
    pub max_header_bytes: usize,
    /// Read buffer of each client connection. Every open connection (an idle stream
    /// included) holds one, so it sets most of what a connection costs; MCP requests are
    /// small, so the default is small.
    #[arg(long, env = "SWITCHBOARD_READ_BUFFER_BYTES", default_value_t = 4 << 10)]
    pub read_buffer_bytes: usize,
    /// Origins browsers may send MCP requests from (comma-separated, `*` for any); without
    /// it only loopback origins and hosts a virtual server claims are accepted (403
    /// otherwise).
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Longest a client may take to send a whole request body (408 after it), so a slow
    /// client cannot hold a connection and its buffer for ever.
    #[arg(long, env = "SWITCHBOARD_BODY_TIMEOUT", default_value = "30s")]
    pub body_timeout: humantime::Duration,
    /// Most connections one client address may keep open (503 and closed past it; 0: no
    /// cap). `--trusted-proxies` are exempt: every client behind one shares its address.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 512
    )]
    pub max_connections_per_address: usize,
    /// How long an idle keep-alive connection waits for its next request before it is
    /// closed.
    #[arg(long, env = "SWITCHBOARD_KEEPALIVE_TIMEOUT", default_value = "60s")]
    pub keepalive_timeout: humantime::Duration,
    /// Proxies in front of the data plane whose `X-Forwarded-For` names the client, for
    /// rate limits by `clientIp` (comma-separated addresses or CIDRs); without it the TCP
    /// peer is the client.
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
}

/// TLS on the MCP listener, and permission to serve plain HTTP beyond loopback.
#[derive(Debug, Clone, Args)]
pub struct ListenTlsArgs {
    /// Certificate chain (PEM) to serve MCP clients over TLS (h2 and http/1.1); repeat with
    /// --tls-key for more names, chosen by SNI (the first is the default). Reloaded when
    /// the file changes, without dropping connections.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_delimiter = ',')]
    pub tls_cert: Vec<PathBuf>,
    /// Private key (PEM) of the --tls-cert at the same position.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_delimiter = ',')]
    pub tls_key: Vec<PathBuf>,
    /// Serve TLS with the `tls.crt`/`tls.key` of this Secret, which the control plane sends
    /// to data planes its `servedBy` places (repeatable; follows every change).
    #[arg(long, env = "SWITCHBOARD_TLS_SECRET", value_delimiter = ',')]
    pub tls_secret: Vec<String>,
    /// Serve plain HTTP on addresses beyond loopback (only behind something that
    /// terminates TLS); without it such a listener refuses to start.
    #[arg(long)]
    pub insecure: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub files: FileArgs,
    /// Address MCP clients connect to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the control plane (admin API and discovery).
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub admin_listen: String,
    /// Directory of the embedded store.
    #[arg(long, default_value = "./switchboard-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub tls: ListenTlsArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}
