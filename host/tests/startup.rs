//! Start-up errors: every bad component file and bad setting stops the real
//! binary before it listens, with a message that names the culprit and the
//! fix.

mod support;

use std::path::Path;

use support::{Burrow, guest};

fn fails_with(builder: support::BurrowBuilder, needles: &[&str]) -> String {
    let (code, out) = builder.run_to_failure();
    assert_ne!(code, 0, "expected a start-up failure:\n{out}");
    assert!(
        !out.contains("listening on"),
        "must fail before listening:\n{out}"
    );
    for needle in needles {
        assert!(out.contains(needle), "expected `{needle}` in:\n{out}");
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn a_missing_component_file_is_named() {
    fails_with(
        Burrow::builder().arg("--route").arg("/=/nowhere/app.wasm"),
        &[
            "cannot read component file `/nowhere/app.wasm`",
            "No such file",
        ],
    );
}

#[test]
fn a_file_that_is_not_wasm_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "notes.wasm", b"just some text, not wasm");
    fails_with(
        Burrow::builder().arg("--route").arg(format!("/={file}")),
        &[&file, "not a WebAssembly binary", "wasm32-wasip2"],
    );
}

#[test]
fn a_core_module_is_told_apart_from_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "core.wasm",
        &wat::parse_str("(module)").unwrap(),
    );
    fails_with(
        Burrow::builder().arg("--route").arg(format!("/={file}")),
        &[&file, "core WebAssembly module, not a component"],
    );
}

#[test]
fn a_truncated_component_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guest("burrow-guest")).unwrap();
    let file = write(dir.path(), "cut.wasm", &bytes[..bytes.len() / 2]);
    fails_with(
        Burrow::builder().arg("--route").arg(format!("/={file}")),
        &[&file, "does not compile"],
    );
}

#[test]
fn a_component_without_the_http_handler_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "empty.wasm",
        &wat::parse_str("(component)").unwrap(),
    );
    fails_with(
        Burrow::builder().arg("--route").arg(format!("/={file}")),
        &[&file, "does not export `wasi:http/incoming-handler"],
    );
}

#[test]
fn a_component_importing_what_the_host_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(component (import "acme:secret/vault@1.0.0" (instance (export "open" (func)))))"#,
    )
    .unwrap();
    let file = write(dir.path(), "greedy.wasm", &wasm);
    fails_with(
        Burrow::builder().arg("--route").arg(format!("/={file}")),
        &[
            &file,
            "imports something burrow does not provide",
            "acme:secret/vault",
        ],
    );
}

#[test]
fn bad_settings_name_the_setting_and_the_expected_form() {
    let app = guest("burrow-guest").display().to_string();
    fails_with(
        Burrow::builder().arg("--route").arg(&app),
        &["--route", "PREFIX=FILE.wasm"],
    );
    fails_with(
        Burrow::builder()
            .arg("--route")
            .arg(format!("/={app}"))
            .env("DJANGO_DEBUG", "perhaps"),
        &["DJANGO_DEBUG", "`perhaps`", "true or false"],
    );
    fails_with(
        Burrow::builder()
            .arg("--route")
            .arg(format!("/={app}"))
            .arg("--listen")
            .arg("localhost"),
        &["listen address `localhost`", "IP:PORT"],
    );
    let (_dir, cfg) = support::config_file(
        "[[route]]\nprefix = \"/\"\ncomponent = \"a.wasm\"\nmemory = \"huge\"\n",
    );
    fails_with(
        Burrow::builder()
            .arg("--config")
            .arg(cfg.display().to_string()),
        &["route[0].memory", "`huge`", "64MiB"],
    );
    fails_with(
        Burrow::builder(),
        &["no routes are configured", "--route /=app.wasm"],
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails_with(
        Burrow::builder()
            .route("/", &guest("burrow-guest"))
            .arg("--listen")
            .arg(&addr),
        &[&format!("cannot listen on `{addr}`")],
    );
}
