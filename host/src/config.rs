//! `config.rs` turns `burrow.toml`, the environment and the command line
//! into one validated [`Config`]. It owns every default and every rule about
//! what a setting may hold; it does not open files other than the config
//! file, bind sockets or look at component contents.
//!
//! Precedence, lowest first: built-in defaults, `burrow.toml`, environment,
//! flags. The environment accepts the names the Django deployment used
//! (`DJANGO_DEBUG`, `DJANGO_SECRET_KEY`) unchanged, so the same `.env` file
//! keeps working. Every invalid value is an error that names the setting,
//! what it held and the form it must take.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Where the HTTP listener binds unless told otherwise (the port Django's
/// `runserver 0.0.0.0:8000` used).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
/// Linear memory one request's guest instance may grow to.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 * MIB;
/// Wall-clock time a guest has to produce its whole response.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Largest request body handed to a guest; larger ones get 413.
pub const DEFAULT_MAX_BODY: u64 = 16 * MIB;
/// Requests served at once; one more gets 503 with `Retry-After`.
pub const DEFAULT_MAX_REQUESTS: usize = 256;
/// Time a client has to send its request head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Where the admin API listens unless told otherwise: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8001";
/// How long a component file must stay unchanged before it is loaded.
pub const DEFAULT_WATCH_DEBOUNCE: Duration = Duration::from_millis(250);
/// Connections held open at once; one more is answered 503 and closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest request head (request line and headers); larger gets 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most headers in one request; more gets 431.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "burrow.toml";

/// SSH port when `SSH_PORT` is not set.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// Key files tried, in order, when `SSH_KEY` is not set.
pub const DEFAULT_SSH_KEYS: [&str; 3] = [
    "ssh_keys/dock_key",
    "ssh_keys/id_ed25519",
    "ssh_keys/id_rsa",
];
/// known_hosts used when `SSH_KNOWN_HOSTS` is not set.
pub const DEFAULT_KNOWN_HOSTS: &str = "ssh_keys/known_hosts";
/// Keepalive probe interval and how many may go unanswered (OpenSSH's
/// ServerAliveInterval / ServerAliveCountMax).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub const DEFAULT_KEEPALIVE_MAX: usize = 3;
/// Time to reach the bastion and finish the SSH handshake and login.
pub const DEFAULT_SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time for the bastion to open one forwarded channel.
pub const DEFAULT_CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Database pool defaults.
pub const DEFAULT_POOL_MIN: usize = 1;
pub const DEFAULT_POOL_MAX: usize = 16;
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest result a guest may receive, in rows and in bytes.
pub const DEFAULT_MAX_ROWS: usize = 10_000;
pub const DEFAULT_MAX_RESULT_BYTES: usize = 32 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// The whole validated configuration, built once at start-up and passed down.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the public HTTP listener (`BURROW_LISTEN`).
    pub listen: SocketAddr,
    /// Debug mode (`DJANGO_DEBUG`): error responses carry details.
    pub debug: bool,
    /// The application's signing key (`DJANGO_SECRET_KEY`), handed to guests.
    pub secret_key: Option<Secret>,
    /// Where compiled components are cached (`BURROW_CACHE_DIR`); `None`
    /// compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Server-wide limits.
    pub limits: Limits,
    /// Path prefixes and the components that serve them.
    pub routes: Vec<RouteConfig>,
    /// Application settings handed to guests through `wasi:config/store`.
    pub app: BTreeMap<String, String>,
    /// The SSH tunnel to the database; `None` when `SSH_HOST` is not set.
    pub tunnel: Option<TunnelConfig>,
    /// The database; `None` when `DB_NAME` is not set.
    pub database: Option<DbConfig>,
    /// The admin API; `listen` is `None` when it is turned off.
    pub admin: AdminConfig,
    /// Reloading components when their files change.
    pub watch: WatchConfig,
}

/// The admin listener (`BURROW_ADMIN_LISTEN`, `BURROW_ADMIN_TOKEN`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens; `None` (`off`) disables it.
    pub listen: Option<SocketAddr>,
    /// Bearer token required by every admin endpoint except health and
    /// readiness; mandatory when `listen` is not a loopback address.
    pub token: Option<Secret>,
}

/// The component file watcher (`BURROW_WATCH`, `BURROW_WATCH_DEBOUNCE`).
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub enabled: bool,
    /// Quiet time after the last change before the file is read.
    pub debounce: Duration,
}

/// The MySQL database, from the seed's `DB_*` settings.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `DB_NAME`.
    pub name: String,
    /// `DB_USER`.
    pub user: String,
    /// `DB_PASSWORD`.
    pub password: Option<Secret>,
    /// `DB_HOST` as a literal IP; `None` means the tunnel's local end.
    pub host: Option<String>,
    /// `DB_PORT`; `None` means the tunnel's local port (or 3306).
    pub port: Option<u16>,
    pub pool_min: usize,
    pub pool_max: usize,
    /// Time to get a connection before answering `unavailable`.
    pub acquire_timeout: Duration,
    /// Time one statement may run (routes may override).
    pub statement_timeout: Duration,
    /// Result limits before `too-large`.
    pub max_rows: usize,
    pub max_result_bytes: usize,
}

impl DbConfig {
    /// Where the pool connects: `DB_HOST`/`DB_PORT` when set, else the
    /// tunnel's local end (`tunnel`), else 127.0.0.1:3306.
    pub fn address(&self, tunnel: Option<SocketAddr>) -> (String, u16) {
        let host = self
            .host
            .clone()
            .or_else(|| tunnel.map(|a| a.ip().to_string()))
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let port = self.port.or(tunnel.map(|a| a.port())).unwrap_or(3306);
        (host, port)
    }
}

/// The SSH tunnel: like `ssh -N -L forward user@host -p port`.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The bastion (`SSH_HOST`).
    pub host: String,
    /// Its SSH port (`SSH_PORT`).
    pub port: u16,
    /// Login name on the bastion (`SSH_USER`).
    pub user: String,
    /// Private key file (`SSH_KEY`); `None` when only the agent is used.
    pub key: Option<PathBuf>,
    /// Passphrase of an encrypted key (`SSH_KEY_PASSPHRASE` or `_FILE`).
    pub passphrase: Option<Secret>,
    /// Use the ssh-agent at `SSH_AUTH_SOCK` too.
    pub agent: Option<PathBuf>,
    /// The known_hosts file (`SSH_KNOWN_HOSTS`).
    pub known_hosts: PathBuf,
    /// What to do about a bastion not in known_hosts.
    pub host_key_policy: HostKeyPolicy,
    /// The forward (`SSH_FORWARD`).
    pub forward: Forward,
    /// Keepalive probe interval (`SSH_KEEPALIVE_INTERVAL`).
    pub keepalive_interval: Duration,
    /// Unanswered probes before the session is declared dead (`SSH_KEEPALIVE_MAX`).
    pub keepalive_max: usize,
    /// Time to connect and log in.
    pub connect_timeout: Duration,
    /// Time to open one forwarded channel.
    pub channel_open_timeout: Duration,
}

/// `[bind_address:]port:host:hostport`, as `ssh -L` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Local address to listen on (default 127.0.0.1).
    pub bind: std::net::IpAddr,
    /// Local port; 0 picks a free one.
    pub port: u16,
    /// Target host, resolved by the bastion, never locally.
    pub target_host: String,
    /// Target port.
    pub target_port: u16,
}

impl Forward {
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} → {}:{}",
            self.local_addr(),
            self.target_host,
            self.target_port
        )
    }
}

/// OpenSSH's `StrictHostKeyChecking`: `yes` (the default) or `accept-new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The bastion's key must already be in known_hosts.
    Strict,
    /// An unknown bastion's key is recorded on first connect (development
    /// only); a changed key is still refused.
    AcceptNew,
}

/// Limits that apply to the listener as a whole.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once.
    pub max_requests: usize,
    /// Time allowed to receive a request head.
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
}

/// One entry of the route table.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Short name used in logs and (later) the admin API.
    pub name: String,
    /// Path prefix, always starting with `/`, matched on segment boundaries.
    pub prefix: String,
    /// The component file.
    pub component: PathBuf,
    /// Linear-memory cap for one request.
    pub memory_limit: u64,
    /// Wall-clock deadline for one request.
    pub deadline: Duration,
    /// Largest accepted request body.
    pub max_body: u64,
    /// Database statement timeout for this route; `None` uses the pool's.
    pub statement_timeout: Option<Duration>,
}

/// A value that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that hands it on.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// What the command line contributes; flags win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// Repeatable `--route PREFIX=FILE.wasm`.
    pub routes: Vec<String>,
}

/// `burrow.toml` as written; every field optional so that defaults and the
/// environment can fill in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    debug: Option<bool>,
    cache_dir: Option<PathBuf>,
    limits: Option<FileLimits>,
    #[serde(default, rename = "route")]
    routes: Vec<FileRoute>,
    #[serde(default)]
    app: BTreeMap<String, toml::Value>,
    tunnel: Option<FileTunnel>,
    database: Option<FileDatabase>,
    admin: Option<FileAdmin>,
    watch: Option<FileWatch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWatch {
    enabled: Option<bool>,
    debounce: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    name: Option<String>,
    user: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    pool_min: Option<usize>,
    pool_max: Option<usize>,
    acquire_timeout: Option<String>,
    statement_timeout: Option<String>,
    max_rows: Option<usize>,
    max_result_bytes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTunnel {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key: Option<PathBuf>,
    key_passphrase_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    strict_host_key_checking: Option<String>,
    forward: Option<String>,
    keepalive_interval: Option<String>,
    keepalive_max: Option<usize>,
    connect_timeout: Option<String>,
    channel_open_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_requests: Option<usize>,
    header_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_connections: Option<usize>,
    max_header_bytes: Option<String>,
    max_headers: Option<usize>,
    memory: Option<String>,
    deadline: Option<String>,
    max_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: Option<String>,
    prefix: String,
    component: PathBuf,
    memory: Option<String>,
    deadline: Option<String>,
    max_body: Option<String>,
    statement_timeout: Option<String>,
}

/// A source of environment variables; a map in tests, the process otherwise.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for BTreeMap<&str, &str> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.to_string())
    }
}

impl Config {
    /// Loads and validates the configuration. Nothing is bound or compiled.
    pub fn load(overrides: &Overrides, env: &impl Env) -> Result<Config> {
        let (file, base_dir) = match &overrides.config_file {
            Some(path) => (read_file(path)?, parent_dir(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => (
                read_file(Path::new(DEFAULT_CONFIG_FILE))?,
                PathBuf::from("."),
            ),
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        Self::build(file, &base_dir, overrides, env)
    }

    /// Parses a config file's text; `base_dir` anchors its relative paths.
    pub fn from_toml(
        text: &str,
        base_dir: &Path,
        overrides: &Overrides,
        env: &impl Env,
    ) -> Result<Config> {
        let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Self::build(file, base_dir, overrides, env)
    }

    fn build(
        file: FileConfig,
        base_dir: &Path,
        overrides: &Overrides,
        env: &impl Env,
    ) -> Result<Config> {
        let listen_text = overrides
            .listen
            .clone()
            .or_else(|| env.var("BURROW_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!(
                "listen address `{listen_text}` is not valid: expected IP:PORT, \
                 e.g. `0.0.0.0:8000` (set by --listen, BURROW_LISTEN or `listen` in burrow.toml)"
            )
        })?;

        let debug = match env.var("DJANGO_DEBUG") {
            Some(text) => parse_bool("DJANGO_DEBUG", &text)?,
            None => file.debug.unwrap_or(false),
        };
        let secret_key = env
            .var("DJANGO_SECRET_KEY")
            .filter(|s| !s.is_empty())
            .map(Secret::new);
        let cache_dir = env
            .var("BURROW_CACHE_DIR")
            .map(PathBuf::from)
            .or(file.cache_dir.map(|p| base_dir.join(p)))
            .or_else(|| default_cache_dir(env));

        let file_limits = file.limits.unwrap_or_default();
        let limits = Limits {
            max_requests: match env.var("BURROW_MAX_REQUESTS") {
                Some(text) => text.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "BURROW_MAX_REQUESTS `{text}` is not valid: expected a whole number, e.g. 256"
                    )
                })?,
                None => file_limits.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS),
            },
            header_timeout: opt_duration("limits.header_timeout", &file_limits.header_timeout)?
                .unwrap_or(DEFAULT_HEADER_TIMEOUT),
            shutdown_grace: opt_duration("limits.shutdown_grace", &file_limits.shutdown_grace)?
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            max_connections: match env.var("BURROW_MAX_CONNECTIONS") {
                Some(text) => text.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "BURROW_MAX_CONNECTIONS `{text}` is not valid: expected a whole number, e.g. 1024"
                    )
                })?,
                None => file_limits
                    .max_connections
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            },
            max_header_bytes: match opt_size("limits.max_header_bytes", &file_limits.max_header_bytes)? {
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => DEFAULT_MAX_HEADER_BYTES,
            },
            max_headers: file_limits.max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
        };
        if limits.max_requests == 0 {
            bail!("limits.max_requests must be at least 1");
        }
        if limits.max_connections == 0 {
            bail!("limits.max_connections must be at least 1");
        }
        if limits.max_header_bytes < 8192 {
            bail!(
                "limits.max_header_bytes `{}` is too small: hyper needs at least 8KiB",
                limits.max_header_bytes
            );
        }
        if limits.max_headers == 0 {
            bail!("limits.max_headers must be at least 1");
        }
        let default_memory =
            opt_size("limits.memory", &file_limits.memory)?.unwrap_or(DEFAULT_MEMORY_LIMIT);
        let default_deadline =
            opt_duration("limits.deadline", &file_limits.deadline)?.unwrap_or(DEFAULT_DEADLINE);
        let default_max_body =
            opt_size("limits.max_body", &file_limits.max_body)?.unwrap_or(DEFAULT_MAX_BODY);

        let mut routes = Vec::new();
        for (i, r) in file.routes.into_iter().enumerate() {
            let key = format!("route[{i}]");
            let prefix = normalize_prefix(&format!("{key}.prefix"), &r.prefix)?;
            let component = base_dir.join(&r.component);
            routes.push(RouteConfig {
                name: match r.name {
                    Some(name) => validate_name(&format!("{key}.name"), &name)?,
                    None => name_from_file(&component),
                },
                prefix,
                component,
                memory_limit: opt_size(&format!("{key}.memory"), &r.memory)?
                    .unwrap_or(default_memory),
                deadline: opt_duration(&format!("{key}.deadline"), &r.deadline)?
                    .unwrap_or(default_deadline),
                max_body: opt_size(&format!("{key}.max_body"), &r.max_body)?
                    .unwrap_or(default_max_body),
                statement_timeout: opt_duration(
                    &format!("{key}.statement_timeout"),
                    &r.statement_timeout,
                )?,
            });
        }
        for flag in &overrides.routes {
            let (prefix, file) = flag.split_once('=').ok_or_else(|| {
                anyhow::anyhow!(
                    "--route `{flag}` is not valid: expected PREFIX=FILE.wasm, e.g. `/=app.wasm`"
                )
            })?;
            let prefix = normalize_prefix("--route", prefix)?;
            if file.is_empty() {
                bail!("--route `{flag}` names no component file: expected PREFIX=FILE.wasm");
            }
            let component = PathBuf::from(file);
            let route = RouteConfig {
                name: name_from_file(&component),
                prefix,
                component,
                memory_limit: default_memory,
                deadline: default_deadline,
                max_body: default_max_body,
                statement_timeout: None,
            };
            // A flag replaces a file route with the same prefix.
            routes.retain(|r| r.prefix != route.prefix);
            routes.push(route);
        }
        check_unique(&routes)?;

        let mut app = BTreeMap::new();
        for (key, value) in file.app {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "app.{key} is a {}: app settings must be strings, numbers or booleans",
                    other.type_str()
                ),
            };
            app.insert(key, text);
        }

        let tunnel = tunnel_config(file.tunnel.unwrap_or_default(), base_dir, env)?;
        let database = database_config(file.database.unwrap_or_default(), env)?;
        let admin = admin_config(file.admin.unwrap_or_default(), base_dir, env)?;
        let file_watch = file.watch.unwrap_or_default();
        let watch = WatchConfig {
            enabled: match env.var("BURROW_WATCH") {
                Some(text) => parse_bool("BURROW_WATCH", &text)?,
                None => file_watch.enabled.unwrap_or(true),
            },
            debounce: match env.var("BURROW_WATCH_DEBOUNCE") {
                Some(text) => parse_duration("BURROW_WATCH_DEBOUNCE", &text)?,
                None => opt_duration("watch.debounce", &file_watch.debounce)?
                    .unwrap_or(DEFAULT_WATCH_DEBOUNCE),
            },
        };

        Ok(Config {
            listen,
            debug,
            secret_key,
            cache_dir,
            limits,
            routes,
            app,
            tunnel,
            database,
            admin,
            watch,
        })
    }

    /// The largest memory cap of any route, which sizes the engine's pool.
    pub fn max_memory_limit(&self) -> u64 {
        self.routes
            .iter()
            .map(|r| r.memory_limit)
            .max()
            .unwrap_or(DEFAULT_MEMORY_LIMIT)
    }
}

fn tunnel_config(
    file: FileTunnel,
    base_dir: &Path,
    env: &impl Env,
) -> Result<Option<TunnelConfig>> {
    let Some(host) = env
        .var("SSH_HOST")
        .or(file.host)
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(None);
    };
    let host = host.trim().to_string();
    let port = match env.var("SSH_PORT") {
        Some(text) => parse_port("SSH_PORT", &text, false)?,
        None => file.port.unwrap_or(DEFAULT_SSH_PORT),
    };
    let user = env
        .var("SSH_USER")
        .or(file.user)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("SSH_USER is not set: the tunnel to `{host}` needs a login name, e.g. SSH_USER=deploy")
        })?;
    let forward_text = env.var("SSH_FORWARD").or(file.forward).ok_or_else(|| {
        anyhow::anyhow!(
            "SSH_FORWARD is not set: the tunnel to `{host}` needs a forward in `ssh -L` form, \
             e.g. SSH_FORWARD=3307:sql.example.edu:3306"
        )
    })?;
    let forward = parse_forward("SSH_FORWARD", &forward_text)?;

    let agent = env
        .var("SSH_AUTH_SOCK")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let key = match env
        .var("SSH_KEY")
        .or(file.key.map(|k| base_dir.join(k).display().to_string()))
    {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => DEFAULT_SSH_KEYS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    };
    if key.is_none() && agent.is_none() {
        bail!(
            "no SSH key for the tunnel: set SSH_KEY to a private key file, put one at {} \
             (the first that exists is used), or run an ssh-agent (SSH_AUTH_SOCK)",
            DEFAULT_SSH_KEYS.join(", ")
        );
    }
    let passphrase = match (
        env.var("SSH_KEY_PASSPHRASE"),
        env.var("SSH_KEY_PASSPHRASE_FILE"),
    ) {
        (Some(p), _) if !p.is_empty() => Some(Secret::new(p)),
        (_, Some(path)) if !path.is_empty() => Some(read_secret_file(
            "SSH_KEY_PASSPHRASE_FILE",
            Path::new(&path),
        )?),
        _ => match file.key_passphrase_file {
            Some(path) => Some(read_secret_file(
                "tunnel.key_passphrase_file",
                &base_dir.join(path),
            )?),
            None => None,
        },
    };
    let known_hosts = env
        .var("SSH_KNOWN_HOSTS")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or(file.known_hosts.map(|p| base_dir.join(p)))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KNOWN_HOSTS));
    let policy_text = env
        .var("SSH_STRICT_HOST_KEY_CHECKING")
        .or(file.strict_host_key_checking)
        .unwrap_or_else(|| "yes".into());
    let host_key_policy = match policy_text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "strict" => HostKeyPolicy::Strict,
        "accept-new" => HostKeyPolicy::AcceptNew,
        _ => bail!(
            "SSH_STRICT_HOST_KEY_CHECKING `{policy_text}` is not valid: expected `yes` (the default) \
             or `accept-new` (record an unknown bastion's key on first connect; for development)"
        ),
    };
    let keepalive_interval = match env.var("SSH_KEEPALIVE_INTERVAL") {
        Some(t) => parse_duration("SSH_KEEPALIVE_INTERVAL", &t)?,
        None => opt_duration("tunnel.keepalive_interval", &file.keepalive_interval)?
            .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL),
    };
    let keepalive_max = match env.var("SSH_KEEPALIVE_MAX") {
        Some(t) => t.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            anyhow::anyhow!("SSH_KEEPALIVE_MAX `{t}` is not valid: expected a whole number of at least 1, e.g. 3")
        })?,
        None => file.keepalive_max.unwrap_or(DEFAULT_KEEPALIVE_MAX).max(1),
    };
    Ok(Some(TunnelConfig {
        host,
        port,
        user,
        key,
        passphrase,
        agent,
        known_hosts,
        host_key_policy,
        forward,
        keepalive_interval,
        keepalive_max,
        connect_timeout: opt_duration("tunnel.connect_timeout", &file.connect_timeout)?
            .unwrap_or(DEFAULT_SSH_CONNECT_TIMEOUT),
        channel_open_timeout: opt_duration(
            "tunnel.channel_open_timeout",
            &file.channel_open_timeout,
        )?
        .unwrap_or(DEFAULT_CHANNEL_OPEN_TIMEOUT),
    }))
}

fn database_config(file: FileDatabase, env: &impl Env) -> Result<Option<DbConfig>> {
    let Some(name) = env.var("DB_NAME").or(file.name).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let user = env
        .var("DB_USER")
        .or(file.user)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("DB_USER is not set: the database `{name}` needs a user name")
        })?;
    let host = match env.var("DB_HOST").or(file.host).filter(|h| !h.is_empty()) {
        // `localhost` would make MySQL drivers use a Unix socket: the
        // traffic must go through the tunnel, so use the loopback address.
        Some(h) if h == "localhost" => Some("127.0.0.1".to_string()),
        Some(h) => {
            if h.parse::<std::net::IpAddr>().is_err() {
                bail!(
                    "DB_HOST `{h}` is not valid: use an IP address such as 127.0.0.1 (the tunnel's \
                     local end); names are resolved by the bastion through SSH_FORWARD, not here"
                );
            }
            Some(h)
        }
        None => None,
    };
    let port = match env.var("DB_PORT") {
        Some(t) if !t.is_empty() => Some(parse_port("DB_PORT", &t, false)?),
        _ => file.port,
    };
    let pool_min = file.pool_min.unwrap_or(DEFAULT_POOL_MIN);
    let pool_max = match env.var("DB_POOL_MAX") {
        Some(t) => t.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            anyhow::anyhow!("DB_POOL_MAX `{t}` is not valid: expected a whole number of at least 1")
        })?,
        None => file.pool_max.unwrap_or(DEFAULT_POOL_MAX),
    };
    if pool_max == 0 || pool_min > pool_max {
        bail!(
            "database.pool_min ({pool_min}) must not exceed database.pool_max ({pool_max}), which must be at least 1"
        );
    }
    let max_result_bytes = opt_size("database.max_result_bytes", &file.max_result_bytes)?
        .map(|b| usize::try_from(b).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_MAX_RESULT_BYTES);
    Ok(Some(DbConfig {
        name,
        user,
        password: env
            .var("DB_PASSWORD")
            .filter(|p| !p.is_empty())
            .map(Secret::new),
        host,
        port,
        pool_min,
        pool_max,
        acquire_timeout: match env.var("DB_ACQUIRE_TIMEOUT") {
            Some(t) => parse_duration("DB_ACQUIRE_TIMEOUT", &t)?,
            None => opt_duration("database.acquire_timeout", &file.acquire_timeout)?
                .unwrap_or(DEFAULT_ACQUIRE_TIMEOUT),
        },
        statement_timeout: match env.var("DB_STATEMENT_TIMEOUT") {
            Some(t) => parse_duration("DB_STATEMENT_TIMEOUT", &t)?,
            None => opt_duration("database.statement_timeout", &file.statement_timeout)?
                .unwrap_or(DEFAULT_STATEMENT_TIMEOUT),
        },
        max_rows: file.max_rows.unwrap_or(DEFAULT_MAX_ROWS).max(1),
        max_result_bytes,
    }))
}

fn admin_config(file: FileAdmin, base_dir: &Path, env: &impl Env) -> Result<AdminConfig> {
    let (key, text) = match env.var("BURROW_ADMIN_LISTEN") {
        Some(text) => ("BURROW_ADMIN_LISTEN", text),
        None => (
            "admin.listen",
            file.listen
                .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string()),
        ),
    };
    let listen = match text.trim() {
        "off" | "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!(
                "{key} `{text}` is not valid: expected IP:PORT, e.g. `127.0.0.1:8001`, or `off`"
            )
        })?),
    };
    let token = match (
        env.var("BURROW_ADMIN_TOKEN").filter(|t| !t.is_empty()),
        env.var("BURROW_ADMIN_TOKEN_FILE"),
        file.token_file,
    ) {
        (Some(token), _, _) => Some(Secret::new(token)),
        (None, Some(path), _) => Some(read_secret_file(
            "BURROW_ADMIN_TOKEN_FILE",
            Path::new(&path),
        )?),
        (None, None, Some(path)) => {
            Some(read_secret_file("admin.token_file", &base_dir.join(path))?)
        }
        (None, None, None) => None,
    };
    if let Some(token) = &token
        && token.expose().len() < 16
    {
        bail!(
            "BURROW_ADMIN_TOKEN is too short: use at least 16 random characters, e.g. `openssl rand -hex 32`"
        );
    }
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        bail!(
            "{key} `{addr}` is not a loopback address, so the admin API needs a token: set \
             BURROW_ADMIN_TOKEN (e.g. `openssl rand -hex 32`), or listen on 127.0.0.1"
        );
    }
    Ok(AdminConfig { listen, token })
}

fn read_secret_file(key: &str, path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read `{}`", path.display()))?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}

fn parse_port(key: &str, text: &str, zero_ok: bool) -> Result<u16> {
    match text.trim().parse::<u16>() {
        Ok(0) if !zero_ok => bail!("{key} `{text}` is not valid: a port is 1 to 65535"),
        Ok(port) => Ok(port),
        Err(_) => bail!("{key} `{text}` is not valid: a port is a number from 1 to 65535"),
    }
}

/// Parses `[bind_address:]port:host:hostport` like `ssh -L`; IPv6
/// addresses go in brackets (`[::1]:3307:[fd00::5]:3306`).
pub fn parse_forward(key: &str, text: &str) -> Result<Forward> {
    let bad = || {
        anyhow::anyhow!(
            "{key} `{text}` is not valid: expected [bind_address:]port:host:hostport, \
             e.g. `3307:sql.example.edu:3306` or `127.0.0.1:3307:sql.example.edu:3306`"
        )
    };
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or_else(bad)?;
            parts.push(&inner[..end]);
            rest = &inner[end + 1..];
            if !rest.is_empty() {
                rest = rest.strip_prefix(':').ok_or_else(bad)?;
            }
        } else {
            match rest.find(':') {
                Some(i) => {
                    parts.push(&rest[..i]);
                    rest = &rest[i + 1..];
                    if rest.is_empty() {
                        return Err(bad());
                    }
                }
                None => {
                    parts.push(rest);
                    rest = "";
                }
            }
        }
    }
    let (bind, port, host, host_port) = match parts.as_slice() {
        [port, host, host_port] => ("127.0.0.1", *port, *host, *host_port),
        [bind, port, host, host_port] => (*bind, *port, *host, *host_port),
        _ => return Err(bad()),
    };
    let bind = match bind {
        "" | "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
        "*" => std::net::IpAddr::from([0, 0, 0, 0]),
        other => other.parse().map_err(|_| {
            anyhow::anyhow!(
                "{key} `{text}`: bind address `{other}` must be an IP address such as 127.0.0.1"
            )
        })?,
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Forward {
        bind,
        port: parse_port(key, port, true).map_err(|_| bad())?,
        target_host: host.to_string(),
        target_port: parse_port(key, host_port, false).map_err(|_| bad())?,
    })
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file `{}`", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file `{}`: {e}", path.display()))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn default_cache_dir(env: &impl Env) -> Option<PathBuf> {
    if let Some(xdg) = env.var("XDG_CACHE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(xdg).join("burrow"));
    }
    env.var("HOME")
        .filter(|s| !s.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("burrow"))
}

fn check_unique(routes: &[RouteConfig]) -> Result<()> {
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            if a.prefix == b.prefix {
                bail!(
                    "two routes share the prefix `{}` (`{}` and `{}`): each prefix may appear once",
                    a.prefix,
                    a.name,
                    b.name
                );
            }
            if a.name == b.name {
                bail!(
                    "two routes share the name `{}` (prefixes `{}` and `{}`): give one a distinct `name`",
                    a.name,
                    a.prefix,
                    b.prefix
                );
            }
        }
    }
    Ok(())
}

/// Route names appear in logs and URLs: keep them to a safe alphabet.
fn validate_name(key: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        bail!(
            "{key} `{name}` is not valid: use 1 to 64 letters, digits, `-`, `_` or `.`, e.g. `api`"
        );
    }
    Ok(name.to_string())
}

fn name_from_file(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "route".to_string()
    } else {
        cleaned
    }
}

/// A prefix is a path: `/`, `/api`, `/api/v1`. A trailing slash is dropped
/// (`/api/` serves `/api` and below) so that matching is on whole segments.
pub fn normalize_prefix(key: &str, prefix: &str) -> Result<String> {
    if !prefix.starts_with('/') {
        bail!("{key} `{prefix}` is not valid: a route prefix starts with `/`, e.g. `/api`");
    }
    if prefix.contains(['?', '#', ' ']) || prefix.contains("//") {
        bail!("{key} `{prefix}` is not valid: a route prefix is a plain path such as `/api/v1`");
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

/// Accepts what Django settings files commonly accept for a boolean.
pub fn parse_bool(key: &str, text: &str) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => {
            bail!("{key} `{text}` is not valid: expected true or false (also 1/0, yes/no, on/off)")
        }
    }
}

fn opt_duration(key: &str, text: &Option<String>) -> Result<Option<Duration>> {
    text.as_deref().map(|t| parse_duration(key, t)).transpose()
}

fn opt_size(key: &str, text: &Option<String>) -> Result<Option<u64>> {
    text.as_deref().map(|t| parse_size(key, t)).transpose()
}

/// `"250ms"`, `"30s"`, `"2m"`: a whole number and a unit.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad_duration(key, text))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => {
            Duration::from_secs(n.checked_mul(60).ok_or_else(|| bad_duration(key, text))?)
        }
        _ => return Err(bad_duration(key, text)),
    };
    if d.is_zero() {
        bail!("{key} `{text}` must be greater than zero");
    }
    Ok(d)
}

fn bad_duration(key: &str, text: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key} `{text}` is not valid: expected a whole number with a unit ms, s or m, e.g. `30s`"
    )
}

/// `"64MiB"`, `"512KiB"`, `"1GiB"`, or plain bytes.
pub fn parse_size(key: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad_size(key, text))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1024,
        "MiB" | "M" | "MB" => MIB,
        "GiB" | "G" | "GB" => 1024 * MIB,
        _ => return Err(bad_size(key, text)),
    };
    let size = n.checked_mul(mult).ok_or_else(|| bad_size(key, text))?;
    if size == 0 {
        bail!("{key} `{text}` must be greater than zero");
    }
    Ok(size)
}

fn bad_size(key: &str, text: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{key} `{text}` is not valid: expected a size such as `64MiB`, `512KiB` or a number of bytes"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn load(toml: &str, flags: &[&str], pairs: &[(&'static str, &'static str)]) -> Result<Config> {
        let overrides = Overrides {
            routes: flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Config::from_toml(toml, Path::new("/srv"), &overrides, &env(pairs))
    }

    fn err(toml: &str, flags: &[&str], pairs: &[(&'static str, &'static str)]) -> String {
        format!("{:#}", load(toml, flags, pairs).unwrap_err())
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let c = load("", &[], &[("HOME", "/home/u")]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(!c.debug);
        assert!(c.routes.is_empty());
        assert_eq!(c.cache_dir, Some(PathBuf::from("/home/u/.cache/burrow")));
        assert_eq!(c.limits.max_requests, DEFAULT_MAX_REQUESTS);
    }

    #[test]
    fn file_then_env_then_flags() {
        let toml = r#"
            listen = "127.0.0.1:9000"
            debug = true
            [limits]
            memory = "32MiB"
            deadline = "5s"
            [[route]]
            name = "api"
            prefix = "/api/"
            component = "api.wasm"
            deadline = "2s"
            [[route]]
            prefix = "/"
            component = "site.wasm"
            [app]
            greeting = "hi"
            page_size = 20
        "#;
        let c = load(
            toml,
            &["/api=other.wasm"],
            &[
                ("BURROW_LISTEN", "127.0.0.1:7000"),
                ("DJANGO_DEBUG", "False"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert!(!c.debug, "DJANGO_DEBUG=False overrides the file");
        assert_eq!(c.routes.len(), 2);
        let site = c.routes.iter().find(|r| r.prefix == "/").unwrap();
        assert_eq!(site.component, PathBuf::from("/srv/site.wasm"));
        assert_eq!(site.memory_limit, 32 * MIB);
        assert_eq!(site.deadline, Duration::from_secs(5));
        assert_eq!(site.name, "site");
        let api = c.routes.iter().find(|r| r.prefix == "/api").unwrap();
        assert_eq!(
            api.component,
            PathBuf::from("other.wasm"),
            "flag replaces file route"
        );
        assert_eq!(c.app.get("page_size").map(String::as_str), Some("20"));
    }

    #[test]
    fn secret_is_redacted_in_debug_output() {
        let c = load("", &[], &[("DJANGO_SECRET_KEY", "hunter2-very-secret")]).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(c.secret_key.unwrap().expose(), "hunter2-very-secret");
    }

    #[test]
    fn bad_values_name_the_setting_and_the_form() {
        let e = err("", &[], &[("DJANGO_DEBUG", "maybe")]);
        assert!(
            e.contains("DJANGO_DEBUG") && e.contains("true or false"),
            "{e}"
        );
        let e = err("", &[], &[("BURROW_LISTEN", "8000")]);
        assert!(e.contains("8000") && e.contains("IP:PORT"), "{e}");
        let e = err("", &["api.wasm"], &[]);
        assert!(e.contains("PREFIX=FILE.wasm"), "{e}");
        let e = err("", &["api=x.wasm"], &[]);
        assert!(e.contains("starts with `/`"), "{e}");
        let e = err("[limits]\nmemory = \"lots\"", &[], &[]);
        assert!(e.contains("limits.memory") && e.contains("64MiB"), "{e}");
        let e = err(
            "[[route]]\nprefix = \"/\"\ncomponent = \"a.wasm\"\ndeadline = \"10 parsecs\"",
            &[],
            &[],
        );
        assert!(e.contains("route[0].deadline") && e.contains("30s"), "{e}");
        let e = err("listen = 5", &[], &[]);
        assert!(e.contains("listen"), "{e}");
        let e = err("lisen = \"0.0.0.0:1\"", &[], &[]);
        assert!(e.contains("lisen"), "unknown keys are named: {e}");
        let c = load("", &["/=a.wasm", "/=b.wasm"], &[]).unwrap();
        assert_eq!(c.routes.len(), 1, "a later flag replaces an earlier one");
        assert_eq!(c.routes[0].component, PathBuf::from("b.wasm"));
        let e = err(
            "[[route]]\nprefix=\"/a\"\ncomponent=\"x.wasm\"\n[[route]]\nprefix=\"/b\"\ncomponent=\"x.wasm\"",
            &[],
            &[],
        );
        assert!(e.contains("share the name `x`"), "{e}");
    }

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_prefix("k", "/").unwrap(), "/");
        assert_eq!(normalize_prefix("k", "/api/").unwrap(), "/api");
        assert!(
            normalize_prefix("k", "///")
                .unwrap_err()
                .to_string()
                .contains("plain path")
        );
        assert!(normalize_prefix("k", "/a?b").is_err());
    }

    #[test]
    fn tunnel_settings_from_the_seed_environment() {
        let c = load(
            "",
            &[],
            &[
                ("SSH_HOST", "bastion.example.edu"),
                ("SSH_USER", "deploy"),
                ("SSH_KEY", "/keys/id"),
                ("SSH_FORWARD", "3307:sql.example.edu:3306"),
                ("SSH_KEY_PASSPHRASE", "pass-phrase-9"),
            ],
        )
        .unwrap();
        let t = c.tunnel.unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_str()),
            ("bastion.example.edu", 22, "deploy")
        );
        assert_eq!(t.key, Some(PathBuf::from("/keys/id")));
        assert_eq!(t.forward.local_addr(), "127.0.0.1:3307".parse().unwrap());
        assert_eq!(t.forward.target_host, "sql.example.edu");
        assert_eq!(t.host_key_policy, HostKeyPolicy::Strict);
        assert!(!format!("{t:?}").contains("pass-phrase-9"));
        assert!(
            load("", &[], &[]).unwrap().tunnel.is_none(),
            "no SSH_HOST, no tunnel"
        );
    }

    #[test]
    fn tunnel_errors_say_what_to_set() {
        let base = [("SSH_HOST", "b"), ("SSH_KEY", "/k")];
        let e = err("", &[], &[base[0], base[1], ("SSH_FORWARD", "1:h:2")]);
        assert!(e.contains("SSH_USER"), "{e}");
        let e = err("", &[], &[base[0], base[1], ("SSH_USER", "u")]);
        assert!(
            e.contains("SSH_FORWARD") && e.contains("3307:sql.example.edu:3306"),
            "{e}"
        );
        let e = err(
            "",
            &[],
            &[base[0], ("SSH_USER", "u"), ("SSH_FORWARD", "1:h:2")],
        );
        assert!(e.contains("no SSH key") && e.contains("SSH_KEY"), "{e}");
        let e = err(
            "",
            &[],
            &[
                base[0],
                base[1],
                ("SSH_USER", "u"),
                ("SSH_FORWARD", "1:h:2"),
                ("SSH_PORT", "0"),
            ],
        );
        assert!(e.contains("SSH_PORT"), "{e}");
        let e = err(
            "",
            &[],
            &[
                base[0],
                base[1],
                ("SSH_USER", "u"),
                ("SSH_FORWARD", "1:h:2"),
                ("SSH_STRICT_HOST_KEY_CHECKING", "no"),
            ],
        );
        assert!(e.contains("accept-new"), "{e}");
    }

    #[test]
    fn forwards_parse_like_ssh_dash_l() {
        let f = parse_forward("k", "3307:sql.example.edu:3306").unwrap();
        assert_eq!(
            (
                f.bind.to_string().as_str(),
                f.port,
                f.target_host.as_str(),
                f.target_port
            ),
            ("127.0.0.1", 3307, "sql.example.edu", 3306)
        );
        let f = parse_forward("k", "0.0.0.0:3307:db:3306").unwrap();
        assert_eq!(f.bind.to_string(), "0.0.0.0");
        let f = parse_forward("k", "[::1]:3307:[fd00::5]:3306").unwrap();
        assert_eq!(
            (f.bind.to_string().as_str(), f.target_host.as_str()),
            ("::1", "fd00::5")
        );
        let f = parse_forward("k", "0:localhost:22").unwrap();
        assert_eq!(f.port, 0);
        for bad in [
            "",
            "3307",
            "3307:db",
            "x:db:3306",
            "3307:db:0",
            "3307:db:70000",
            "a:b:c:d:e",
            "3307::3306",
            "db.host:3307:x:1",
            "3307:db:3306:",
        ] {
            let e = parse_forward("SSH_FORWARD", bad).unwrap_err().to_string();
            assert!(e.contains("SSH_FORWARD"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("k", "64MiB").unwrap(), 64 * MIB);
        assert_eq!(parse_size("k", "1024").unwrap(), 1024);
        assert!(parse_size("k", "0").is_err());
        assert!(parse_size("k", "99999999999999GiB").is_err());
        assert_eq!(
            parse_duration("k", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("k", "2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("k", "-1s").is_err());
        assert!(parse_duration("k", "s").is_err());
    }
}
