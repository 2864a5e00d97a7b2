//! `tunnel/` is burrow's `ssh -N -L [bind:]port:host:hostport user@bastion`.
//! It owns the SSH session to the bastion, its reconnect loop and the local
//! listener whose connections become `direct-tcpip` channels. It knows
//! nothing of MySQL: whatever connects to the local end is forwarded.
//!
//! Layout:
//! - `mod.rs`: [`Tunnel`] (bind, first connect, supervisor, acceptor,
//!   bridges) and its [`TunnelStatus`];
//! - `auth.rs`: key loading and login;
//! - `known_hosts.rs`: the bastion's host key against known_hosts.
//!
//! It fails closed: the local port is bound before anything else starts
//! (a taken port is a start-up error, like `ExitOnForwardFailure=yes`),
//! and the first connection must succeed. Afterwards it never dies
//! silently: keepalives detect a dead or frozen session, every bridged
//! socket is then closed at once (so a pool sees EOF, not a hang), new
//! local connections are closed immediately while the session is down, and
//! the supervisor reconnects forever with capped, jittered backoff.

mod auth;
pub mod known_hosts;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use russh::client::{self, DisconnectReason, Handle};
use russh::keys::PublicKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{HostKeyPolicy, TunnelConfig};
use auth::Credentials;
use known_hosts::Verdict;

/// First reconnect delay; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Copy buffer per direction per bridged connection.
const BRIDGE_BUFFER: usize = 64 * 1024;
/// SSH channel window: enough in flight to keep a LAN-to-bastion link busy.
const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// Whether the session is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A connection attempt is under way.
    Connecting,
    /// Logged in; channels can be opened.
    Up,
    /// No session; local connections are closed at once.
    Down,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Connecting => "connecting",
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// A snapshot of the tunnel for health checks, metrics and logs.
#[derive(Debug, Clone)]
pub struct TunnelStatus {
    pub state: State,
    /// When `state` last changed.
    pub since: SystemTime,
    /// Why the last session or attempt failed.
    pub last_error: Option<String>,
    /// Successful reconnects since start-up.
    pub reconnects: u64,
    /// Bridged connections open now.
    pub open_channels: u64,
    /// Bytes sent to the target through closed channels.
    pub bytes_out: u64,
    /// Bytes received from the target through closed channels.
    pub bytes_in: u64,
}

/// Loads and decrypts the configured key (and notes the agent) without
/// connecting; returns what the tunnel would log in with.
pub fn load_credentials(config: &TunnelConfig) -> Result<String> {
    Ok(Credentials::load(config)?.describe())
}

/// Reads a tunnel's status from elsewhere (readiness, metrics); cheap to
/// clone, and harmless once the tunnel is closed.
#[derive(Clone)]
pub struct TunnelMonitor(Arc<Shared>);

impl TunnelMonitor {
    pub fn status(&self) -> TunnelStatus {
        self.0.status.lock().unwrap().clone()
    }

    /// Appends the tunnel's metrics to `out`.
    pub fn render_metrics(&self, out: &mut crate::metrics::Exposition) {
        let status = self.status();
        out.header(
            "burrow_tunnel_state",
            "gauge",
            "1 for the tunnel's current state (connecting, up, down).",
        );
        for state in [State::Connecting, State::Up, State::Down] {
            let value = if state == status.state { 1.0 } else { 0.0 };
            out.sample(
                "burrow_tunnel_state",
                &[("state", &state.to_string())],
                value,
            );
        }
        out.gauge(
            "burrow_tunnel_up",
            "1 while the SSH session is up.",
            if status.state == State::Up { 1.0 } else { 0.0 },
        );
        out.counter(
            "burrow_tunnel_reconnects_total",
            "Sessions re-established after the first.",
            status.reconnects as f64,
        );
        out.gauge(
            "burrow_tunnel_channels_open",
            "Forwarded connections open now.",
            status.open_channels as f64,
        );
        out.header(
            "burrow_tunnel_bytes_total",
            "counter",
            "Bytes carried by forwarded connections that have closed, by direction.",
        );
        out.sample(
            "burrow_tunnel_bytes_total",
            &[("direction", "out")],
            status.bytes_out as f64,
        );
        out.sample(
            "burrow_tunnel_bytes_total",
            &[("direction", "in")],
            status.bytes_in as f64,
        );
    }
}

/// A running tunnel. Dropping it stops the supervisor and the listener and
/// ends the session.
pub struct Tunnel {
    /// State shared with the supervisor, the acceptor and the bridges.
    shared: Arc<Shared>,
    /// The bound local end (the real port when the config said 0).
    local_addr: SocketAddr,
    /// The supervisor and acceptor tasks, aborted on drop.
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    config: TunnelConfig,
    creds: Credentials,
    /// The live session, if any; bridges clone it.
    current: Mutex<Option<Arc<LiveSession>>>,
    status: Mutex<TunnelStatus>,
}

struct LiveSession {
    handle: Handle<Client>,
    /// Set to true when the session ends; every bridge on it watches this.
    dead: watch::Sender<bool>,
}

impl Tunnel {
    /// Binds the local end, connects and logs in, then starts supervising.
    /// Any failure here is a start-up error that says what to fix.
    pub async fn start(config: TunnelConfig) -> Result<Tunnel> {
        let forward = config.forward.clone();
        let listener = TcpListener::bind(forward.local_addr())
            .await
            .with_context(|| {
                format!(
                    "cannot listen on the tunnel's local end `{}`: is the port taken (by another \
                 burrow or an `ssh -L`)? Change the port in SSH_FORWARD",
                    forward.local_addr()
                )
            })?;
        let local_addr = listener.local_addr()?;
        let creds = Credentials::load(&config)?;
        let shared = Arc::new(Shared {
            current: Mutex::new(None),
            status: Mutex::new(TunnelStatus {
                state: State::Connecting,
                since: SystemTime::now(),
                last_error: None,
                reconnects: 0,
                open_channels: 0,
                bytes_out: 0,
                bytes_in: 0,
            }),
            config,
            creds,
        });
        tracing::info!(
            "tunnel connecting to {}@{}:{} with {}",
            shared.config.user,
            shared.config.host,
            shared.config.port,
            shared.creds.describe()
        );
        let ended = connect(&shared).await?;
        shared.set_state(State::Up, None);
        tracing::info!(
            "tunnel forwarding {local_addr} → {}:{} via {}@{}:{}",
            forward.target_host,
            forward.target_port,
            shared.config.user,
            shared.config.host,
            shared.config.port
        );
        let tasks = vec![
            tokio::spawn(supervise(Arc::clone(&shared), ended)),
            tokio::spawn(accept_loop(listener, Arc::clone(&shared))),
        ];
        Ok(Tunnel {
            shared,
            local_addr,
            tasks,
        })
    }

    /// The local address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn status(&self) -> TunnelStatus {
        self.shared.status.lock().unwrap().clone()
    }

    /// Asks the bastion for one channel to the forward's target and closes
    /// it again: proves the forward works without a client (`burrow check`).
    pub async fn probe_forward(&self) -> Result<()> {
        let session = self
            .shared
            .current
            .lock()
            .unwrap()
            .clone()
            .context("the SSH session is down")?;
        let forward = &self.shared.config.forward;
        let open = session.handle.channel_open_direct_tcpip(
            forward.target_host.clone(),
            u32::from(forward.target_port),
            "127.0.0.1".to_string(),
            0,
        );
        match tokio::time::timeout(self.shared.config.channel_open_timeout, open).await {
            Ok(Ok(channel)) => {
                let _ = channel.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow!(
                "the bastion refused a channel to {}:{}: {e}",
                forward.target_host,
                forward.target_port
            )),
            Err(_) => Err(anyhow!(
                "the bastion did not open a channel to {}:{} within {} s",
                forward.target_host,
                forward.target_port,
                self.shared.config.channel_open_timeout.as_secs()
            )),
        }
    }

    /// A handle that reads the tunnel's status, for health and metrics.
    pub fn monitor(&self) -> TunnelMonitor {
        TunnelMonitor(Arc::clone(&self.shared))
    }

    /// Ends the session politely and stops every task.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        let session = self.shared.current.lock().unwrap().take();
        if let Some(session) = session {
            let _ = session.dead.send(true);
            let _ = session
                .handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    "burrow shutting down",
                    "en",
                )
                .await;
        }
        tracing::info!("tunnel closed");
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(session) = self.shared.current.lock().unwrap().take() {
            let _ = session.dead.send(true);
        }
    }
}

impl Shared {
    fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.status.lock().unwrap();
        if status.state != state {
            status.since = SystemTime::now();
        }
        status.state = state;
        if error.is_some() {
            status.last_error = error;
        }
    }

    fn forward_text(&self) -> String {
        self.config.forward.to_string()
    }
}

/// Connects, verifies the host key, logs in and installs the session.
/// Returns the receiver that fires when the session ends.
async fn connect(shared: &Arc<Shared>) -> Result<oneshot::Receiver<String>> {
    let config = &shared.config;
    let problem = Arc::new(Mutex::new(None));
    let (ended_tx, ended_rx) = oneshot::channel();
    let client = Client {
        host: config.host.clone(),
        port: config.port,
        known_hosts: config.known_hosts.clone(),
        policy: config.host_key_policy,
        problem: Arc::clone(&problem),
        ended: Some(ended_tx),
    };
    let ssh_config = Arc::new(client::Config {
        keepalive_interval: Some(config.keepalive_interval),
        keepalive_max: config.keepalive_max,
        nodelay: true,
        window_size: WINDOW_SIZE,
        ..Default::default()
    });
    let target = format!("{}:{}", config.host, config.port);
    let attempt = async {
        let mut handle = client::connect(ssh_config, (config.host.as_str(), config.port), client)
            .await
            .map_err(|e| match problem.lock().unwrap().take() {
                // The host key check failed: its message says why and how to fix it.
                Some(problem) => problem,
                None => anyhow!("cannot connect to the bastion `{target}`: {e}"),
            })?;
        shared.creds.authenticate(&mut handle, &config.user).await?;
        Ok::<_, anyhow::Error>(handle)
    };
    let handle = tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| {
            anyhow!(
                "timed out after {} s connecting to the bastion `{target}`: check SSH_HOST/SSH_PORT \
                 and that the bastion is reachable",
                config.connect_timeout.as_secs()
            )
        })??;
    let (dead, _) = watch::channel(false);
    *shared.current.lock().unwrap() = Some(Arc::new(LiveSession { handle, dead }));
    Ok(ended_rx)
}

/// Waits for the session to end, tears it down, reconnects; forever.
async fn supervise(shared: Arc<Shared>, mut ended: oneshot::Receiver<String>) {
    loop {
        let reason = (&mut ended)
            .await
            .unwrap_or_else(|_| "the SSH session ended".to_string());
        let session = shared.current.lock().unwrap().take();
        if let Some(session) = session {
            // Wake every bridge on the dead session: their sockets close now.
            let _ = session.dead.send(true);
        }
        let open = shared.status.lock().unwrap().open_channels;
        shared.set_state(State::Down, Some(reason.clone()));
        tracing::warn!(
            "tunnel down: {reason}; closed {open} forwarded connection(s); new ones are refused until it is back"
        );

        let mut failures: u32 = 0;
        loop {
            let delay = backoff(failures);
            tracing::info!("tunnel reconnecting in {} ms", delay.as_millis());
            tokio::time::sleep(delay).await;
            shared.set_state(State::Connecting, None);
            match connect(&shared).await {
                Ok(next) => {
                    ended = next;
                    shared.status.lock().unwrap().reconnects += 1;
                    shared.set_state(State::Up, None);
                    tracing::info!("tunnel up again: forwarding {}", shared.forward_text());
                    break;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    shared.set_state(State::Down, Some(format!("{e:#}")));
                    tracing::warn!("tunnel reconnect failed: {e:#}");
                }
            }
        }
    }
}

/// 0.5 s, 1 s, 2 s … capped at 30 s, each ±20 % so that replicas do not
/// reconnect in lockstep.
fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_START
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_MAX);
    let jitter = {
        use std::hash::{BuildHasher, RandomState};
        let r = RandomState::new().hash_one(failures) % 401; // 0..=400
        r as f64 / 1000.0 - 0.2 // -0.2..=0.2
    };
    base.mul_f64(1.0 + jitter)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("tunnel accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let session = shared.current.lock().unwrap().clone();
        match session {
            Some(session) => {
                tokio::spawn(bridge(Arc::clone(&shared), session, socket, peer));
            }
            None => {
                // Fail fast: the caller sees the connection close now rather
                // than waiting on a tunnel that is not there.
                tracing::debug!(%peer, "tunnel is down; closing the new connection");
                drop(socket);
            }
        }
    }
}

/// Pumps one local connection through one channel, both ways, with
/// backpressure, until either side closes or the session dies.
async fn bridge(
    shared: Arc<Shared>,
    session: Arc<LiveSession>,
    mut socket: TcpStream,
    peer: SocketAddr,
) {
    let _ = socket.set_nodelay(true);
    let mut dead = session.dead.subscribe();
    let forward = &shared.config.forward;
    let open = session.handle.channel_open_direct_tcpip(
        forward.target_host.clone(),
        u32::from(forward.target_port),
        peer.ip().to_string(),
        u32::from(peer.port()),
    );
    let channel = match tokio::time::timeout(shared.config.channel_open_timeout, open).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            tracing::warn!(
                "the bastion could not open a channel to {}:{}: {e}; closing the connection from {peer}",
                forward.target_host,
                forward.target_port
            );
            return;
        }
        Err(_) => {
            tracing::warn!(
                "the bastion did not open a channel to {}:{} within {} s; closing the connection from {peer}",
                forward.target_host,
                forward.target_port,
                shared.config.channel_open_timeout.as_secs()
            );
            return;
        }
    };
    drop(session); // the bridge must not keep a dead session's handle alive
    shared.status.lock().unwrap().open_channels += 1;
    let mut stream = channel.into_stream();
    let copied = tokio::select! {
        result = tokio::io::copy_bidirectional_with_sizes(&mut socket, &mut stream, BRIDGE_BUFFER, BRIDGE_BUFFER) => result.ok(),
        _ = dead.wait_for(|dead| *dead) => None,
    };
    let mut status = shared.status.lock().unwrap();
    status.open_channels -= 1;
    if let Some((out, back)) = copied {
        status.bytes_out += out;
        status.bytes_in += back;
    }
}

/// The russh event handler for one session: checks the host key and
/// reports the end of the session.
struct Client {
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    policy: HostKeyPolicy,
    /// Why the host key was refused, for the connect error.
    problem: Arc<Mutex<Option<anyhow::Error>>>,
    /// Fired (or dropped) when the session ends.
    ended: Option<oneshot::Sender<String>>,
}

impl Client {
    fn verify(&self, key: &PublicKey) -> Result<()> {
        let (host, port, path) = (&self.host, self.port, &self.known_hosts);
        let fingerprint = known_hosts::fingerprint(key);
        let kind = key.algorithm();
        match known_hosts::check_file(path, host, port, key)? {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked => Err(anyhow!(
                "the bastion `{host}:{port}` presented {kind} key {fingerprint}, which `{}` marks \
                 @revoked: refusing to connect",
                path.display()
            )),
            Verdict::Changed(expected) => Err(anyhow!(
                "HOST KEY CHANGED for the bastion `{host}:{port}`: it presented {kind} key {fingerprint}, \
                 but `{}` expects {}. This may be an attack (someone in the middle) or a reinstalled \
                 bastion: verify the new key with its administrator, then replace the line in `{}`",
                path.display(),
                expected.join(" or "),
                path.display()
            )),
            Verdict::Unknown if self.policy == HostKeyPolicy::AcceptNew => {
                known_hosts::append(path, host, port, key)?;
                tracing::warn!(
                    "accept-new: recorded the bastion `{host}:{port}` {kind} key {fingerprint} in `{}`",
                    path.display()
                );
                Ok(())
            }
            Verdict::Unknown => Err(anyhow!(
                "the bastion `{host}:{port}` is not in `{}`; it presented {kind} key {fingerprint}. \
                 After checking that fingerprint with the bastion's administrator (`ssh-keygen -lf \
                 /etc/ssh/ssh_host_{}_key.pub` there), add this line to `{}`:\n{}",
                path.display(),
                key_file_kind(key),
                path.display(),
                known_hosts::line_for(host, port, key)?
            )),
        }
    }
}

fn key_file_kind(key: &PublicKey) -> &'static str {
    match key.algorithm() {
        russh::keys::Algorithm::Ed25519 => "ed25519",
        russh::keys::Algorithm::Rsa { .. } => "rsa",
        russh::keys::Algorithm::Ecdsa { .. } => "ecdsa",
        _ => "*",
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let result = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.verify(key),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => Err(anyhow!(
                "the bastion `{}:{}` presented a host certificate; burrow checks plain host keys \
                 against known_hosts only",
                self.host,
                self.port
            )),
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.problem.lock().unwrap() = Some(e);
                Ok(false)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!(
                    "the bastion closed the session ({:?}: {})",
                    info.reason_code, info.message
                )
            }
            DisconnectReason::Error(russh::Error::KeepaliveTimeout) => {
                "the bastion stopped answering keepalives".to_string()
            }
            DisconnectReason::Error(e) => format!("the SSH session failed: {e}"),
        };
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(text);
        }
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_capped_and_jittered() {
        for failures in 0..40 {
            let d = backoff(failures);
            let base = BACKOFF_START
                .saturating_mul(2u32.saturating_pow(failures.min(16)))
                .min(BACKOFF_MAX);
            assert!(
                d >= base.mul_f64(0.79) && d <= base.mul_f64(1.21),
                "{failures}: {d:?}"
            );
        }
        assert!(backoff(0) < Duration::from_millis(700));
        assert!(backoff(30) <= Duration::from_secs(37));
    }
}
