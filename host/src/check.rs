//! `check.rs` is `burrow check`: every start-up check, run in order and
//! printed as a checklist (✓ or ✗ with the fix), without serving anything.
//! It owns only the order and the wording; each check is the real code
//! path `serve` uses (the tunnel, the pool, the runtime), so a ✓ here
//! means the same step will work at start-up.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::Result;

use crate::config::{Config, TunnelConfig};
use crate::db::Db;
use crate::runtime::Runtime;
use crate::tunnel::{self, Tunnel, known_hosts};

/// The checklist as it is printed.
#[derive(Default)]
pub struct Checklist {
    failed: usize,
}

impl Checklist {
    pub fn pass(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("✓ {what}: {}", detail.as_ref());
    }

    pub fn fail(&mut self, what: &str, problem: impl std::fmt::Display, fix: &str) {
        self.failed += 1;
        println!("✗ {what}: {problem}");
        if !fix.is_empty() {
            println!("    fix: {fix}");
        }
    }

    pub fn skip(&mut self, what: &str, why: &str) {
        println!("- {what}: skipped ({why})");
    }

    pub fn failed(&self) -> usize {
        self.failed
    }
}

/// Runs every check; returns how many failed.
pub async fn run(config: Config) -> Result<usize> {
    let mut list = Checklist::default();
    list.pass(
        "configuration",
        format!(
            "valid ({} route(s), listen {}, tunnel {}, database {})",
            config.routes.len(),
            config.listen,
            if config.tunnel.is_some() { "on" } else { "off" },
            if config.database.is_some() {
                "on"
            } else {
                "off"
            },
        ),
    );

    let tunnel = match &config.tunnel {
        Some(settings) => check_tunnel(&mut list, settings).await,
        None => {
            list.skip("SSH tunnel", "SSH_HOST is not set");
            None
        }
    };

    match &config.database {
        Some(settings) => {
            let (host, port) = settings.address(tunnel.as_ref().map(|t| t.local_addr()));
            let db = Db::new(settings.clone(), host.clone(), port);
            let what = format!("database `{}` as `{}`", settings.name, settings.user);
            match db.ping().await {
                Ok(()) => list.pass(&what, format!("logged in at {host}:{port}, SELECT 1 ok")),
                Err(e) => list.fail(
                    &what,
                    format!("{e:?}"),
                    "check DB_NAME, DB_USER and DB_PASSWORD, that the user may connect from the \
                     bastion's address, and that SSH_FORWARD's target is the database server",
                ),
            }
        }
        None => list.skip("database", "DB_NAME is not set"),
    }

    match Runtime::new(
        1,
        config.max_memory_limit(),
        config.cache_dir.clone(),
        wasmtime_wasi_config::WasiConfigVariables::new(),
        None,
    ) {
        Ok(runtime) => {
            let runtime = Arc::new(runtime);
            for route in &config.routes {
                let what = format!("route `{}` ({})", route.name, route.prefix);
                match runtime.load(&route.name, &route.component).await {
                    Ok(c) => list.pass(
                        &what,
                        format!(
                            "`{}` compiles and links (sha256 {})",
                            route.component.display(),
                            &c.sha256[..12]
                        ),
                    ),
                    Err(e) => list.fail(
                        &what,
                        format!("{e:#}"),
                        "rebuild the component with `cargo build --target wasm32-wasip2 --release`, \
                         or point the route at the right file",
                    ),
                }
            }
            if config.routes.is_empty() {
                list.fail(
                    "routes",
                    "none configured",
                    "pass `--route /=app.wasm` or add a [[route]] to burrow.toml",
                );
            }
        }
        Err(e) => list.fail("wasmtime engine", format!("{e:#}"), ""),
    }

    if let Some(tunnel) = tunnel {
        tunnel.close().await;
    }
    if list.failed() == 0 {
        println!("all checks passed");
    } else {
        println!("{} check(s) failed", list.failed());
    }
    Ok(list.failed())
}

/// The key, known_hosts, login and forward checks; returns the tunnel
/// (on a free local port, so a running server is not disturbed) when it
/// is up, for the database check to use.
async fn check_tunnel(list: &mut Checklist, settings: &TunnelConfig) -> Option<Tunnel> {
    let bastion = format!("{}@{}:{}", settings.user, settings.host, settings.port);
    let mut key_ok = true;
    match &settings.key {
        Some(path) => match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    key_ok = false;
                    list.fail(
                        "SSH key permissions",
                        format!(
                            "`{}` has mode {mode:04o}: others can read it",
                            path.display()
                        ),
                        &format!("chmod 600 {}", path.display()),
                    );
                } else {
                    list.pass(
                        "SSH key permissions",
                        format!("`{}` mode {mode:04o}", path.display()),
                    );
                }
            }
            Err(e) => {
                key_ok = false;
                list.fail(
                    "SSH key",
                    format!("cannot read `{}`: {e}", path.display()),
                    "set SSH_KEY to the private key file, or put it at ssh_keys/id_ed25519",
                );
            }
        },
        None => list.pass("SSH key", "none; the ssh-agent at SSH_AUTH_SOCK is used"),
    }
    match tunnel::load_credentials(settings) {
        Ok(described) => list.pass("SSH key loads", described),
        Err(e) => {
            key_ok = false;
            list.fail("SSH key loads", format!("{e:#}"), "");
        }
    }

    let known = std::fs::read_to_string(&settings.known_hosts);
    match &known {
        Ok(text) if known_hosts::entries_for(text, &settings.host, settings.port) > 0 => list.pass(
            "known_hosts",
            format!(
                "`{}` has {} key(s) for {}",
                settings.known_hosts.display(),
                known_hosts::entries_for(text, &settings.host, settings.port),
                known_hosts::host_pattern(&settings.host, settings.port)
            ),
        ),
        Ok(_) | Err(_) => list.fail(
            "known_hosts",
            format!(
                "`{}` has no line for {}",
                settings.known_hosts.display(),
                known_hosts::host_pattern(&settings.host, settings.port)
            ),
            "ask the bastion's administrator for its host key (`ssh-keygen -lf \
             /etc/ssh/ssh_host_ed25519_key.pub` there) and add its line; the connect check below \
             prints the exact line for the key the bastion presents",
        ),
    }
    if !key_ok {
        list.skip("SSH login", "the key is not usable");
        list.skip("forward", "no SSH session");
        return None;
    }

    // A free local port: the check must work beside a running server.
    let mut probe = settings.clone();
    probe.forward.port = 0;
    let tunnel = match Tunnel::start(probe).await {
        Ok(t) => {
            list.pass(
                "SSH login",
                format!("connected and authenticated as {bastion}"),
            );
            t
        }
        Err(e) => {
            list.fail(
                "SSH login",
                format!("{e:#}"),
                "check SSH_HOST, SSH_PORT, SSH_USER and that the key's public half is in the \
                 bastion's authorized_keys",
            );
            list.skip("forward", "no SSH session");
            return None;
        }
    };
    let target = format!(
        "{}:{}",
        settings.forward.target_host, settings.forward.target_port
    );
    match tunnel.probe_forward().await {
        Ok(()) => list.pass(
            "forward",
            format!("the bastion opened a channel to {target}"),
        ),
        Err(e) => list.fail(
            "forward",
            format!("{e:#}"),
            "check SSH_FORWARD's host and port (resolved by the bastion), that the database \
             listens there, and that the bastion allows TCP forwarding",
        ),
    }
    Some(tunnel)
}
