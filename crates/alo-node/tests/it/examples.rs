//! The deployment examples (`examples/kubernetes/`, `examples/docker/`) pass alo-node only
//! flags and environment variables it accepts, with values it accepts, so they cannot rot
//! silently when a flag changes.

use std::path::{Path, PathBuf};

use alo_node::Config;
use clap::{ArgAction, CommandFactory as _, Parser as _};
use yaml_rust2::{Yaml, YamlLoader};

/// What one container, service or image passes to alo-node.
#[derive(Debug)]
struct Invocation {
    /// Where it is: the file and the container or service.
    place: String,
    /// Arguments after the binary's name.
    args: Vec<String>,
    /// Environment variables, as name and value.
    env: Vec<(String, String)>,
}

/// Values Kubernetes fills in from the pod (`valueFrom.fieldRef`), for the check.
const POD_FIELDS: [(&str, &str); 3] = [
    ("status.podIP", "10.1.2.3"),
    ("metadata.namespace", "default"),
    ("metadata.name", "alo-0"),
];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of a scalar (`8001` and `true` too).
fn text(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .map_or_else(Vec::new, |items| items.iter().map(text).collect())
}

/// The alo-node containers of the Kubernetes manifests.
fn kubernetes(found: &mut Vec<Invocation>) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples().join("kubernetes"))
        .expect("examples/kubernetes")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let before = found.len();
    for file in &files {
        for doc in yaml(file) {
            assert!(
                !doc["kind"].is_badvalue(),
                "{}: a manifest without a kind",
                file.display()
            );
            let pod = match doc["kind"].as_str() {
                Some("Pod") => &doc["spec"],
                Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job") => {
                    &doc["spec"]["template"]["spec"]
                }
                _ => continue,
            };
            for container in pod["containers"].as_vec().into_iter().flatten() {
                if !text(&container["image"]).starts_with("alo-node") {
                    continue;
                }
                let place = format!("{}: container {}", file.display(), text(&container["name"]));
                // A `command` names the binary first; `args` follow it.
                let mut args: Vec<String> =
                    strings(&container["command"]).into_iter().skip(1).collect();
                args.extend(strings(&container["args"]));
                let env = container["env"]
                    .as_vec()
                    .into_iter()
                    .flatten()
                    .map(|var| {
                        let value = if var["valueFrom"].is_badvalue() {
                            text(&var["value"])
                        } else {
                            let field = text(&var["valueFrom"]["fieldRef"]["fieldPath"]);
                            let (_, value) = POD_FIELDS
                                .iter()
                                .find(|(path, _)| *path == field)
                                .unwrap_or_else(|| panic!("{place}: add {field} to POD_FIELDS"));
                            value.to_string()
                        };
                        (text(&var["name"]), value)
                    })
                    .collect();
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"].as_str(),
                    Some("/healthz"),
                    "{place}"
                );
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["path"].as_str(),
                    Some("/readyz"),
                    "{place}"
                );
                found.push(Invocation { place, args, env });
            }
        }
    }
    found.len() - before
}

/// A mapping with its `<<` merge keys applied (compose files share settings that way).
fn merged(value: &Yaml) -> Yaml {
    let Yaml::Hash(hash) = value else {
        return value.clone();
    };
    let mut out = match hash.get(&Yaml::String("<<".into())) {
        Some(base) => match merged(base) {
            Yaml::Hash(base) => base,
            other => panic!("a merge of a non-mapping: {other:?}"),
        },
        None => Default::default(),
    };
    for (key, value) in hash {
        if key.as_str() != Some("<<") {
            out.insert(key.clone(), merged(value));
        }
    }
    Yaml::Hash(out)
}

/// The alo-node services of the compose file.
fn compose(found: &mut Vec<Invocation>) -> usize {
    let file = examples().join("docker/compose.yaml");
    let doc = merged(&yaml(&file)[0]);
    let before = found.len();
    for (name, service) in doc["services"].as_hash().expect("services") {
        let image = service["image"].as_str().unwrap_or_default();
        if !image.starts_with("alo-node") && service["build"].is_badvalue() {
            continue;
        }
        let place = format!("{}: service {}", file.display(), text(name));
        let args = match &service["command"] {
            Yaml::String(line) => line.split_whitespace().map(str::to_string).collect(),
            list => strings(list),
        };
        let env = match &service["environment"] {
            Yaml::Hash(vars) => vars.iter().map(|(k, v)| (text(k), text(v))).collect(),
            Yaml::Array(vars) => vars
                .iter()
                .map(|var| {
                    let var = text(var);
                    let (k, v) = var.split_once('=').unwrap_or((&var, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            _ => Vec::new(),
        };
        found.push(Invocation { place, args, env });
    }
    found.len() - before
}

/// What the Dockerfile's `ENV` and `CMD` pass.
fn dockerfile(found: &mut Vec<Invocation>) {
    let file = examples().join("docker/Dockerfile");
    let text = read(&file).replace("\\\n", " ");
    let mut env = Vec::new();
    let mut args = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(vars) = line.strip_prefix("ENV ") {
            for var in vars.split_whitespace() {
                let (k, v) = var.split_once('=').expect("ENV NAME=value");
                env.push((k.to_string(), v.to_string()));
            }
        } else if let Some(list) = line.strip_prefix("CMD ") {
            args = serde_json::from_str(list).expect("CMD as a JSON list");
        } else if let Some(list) = line.strip_prefix("ENTRYPOINT ") {
            let list: Vec<String> = serde_json::from_str(list).expect("ENTRYPOINT as a JSON list");
            assert!(list[0].ends_with("/alo-node"), "{list:?}");
            args.splice(0..0, list.into_iter().skip(1));
        }
    }
    let place = file.display().to_string();
    found.push(Invocation { place, args, env });
}

/// `$(NAME)` in `arg` replaced by the value of `NAME` in `env`, as Kubernetes does.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut arg = arg.to_string();
    for (name, value) in env {
        arg = arg.replace(&format!("$({name})"), value);
    }
    assert!(!arg.contains("$("), "{arg}: a variable that is not set");
    arg
}

/// Checks one invocation: each flag and `ALO_` variable is the binary's, and all of them
/// together parse.
fn check(invocation: &Invocation) {
    let command = Config::command();
    let Invocation { place, args, env } = invocation;
    let mut argv = vec!["alo-node".to_string()];
    for arg in args {
        if let Some(flag) = arg.strip_prefix("--") {
            let name = flag.split('=').next().unwrap_or(flag);
            assert!(
                command.get_arguments().any(|a| a.get_long() == Some(name)),
                "{place}: alo-node has no flag --{name}"
            );
        }
        argv.push(expand(arg, env));
    }
    for (name, value) in env.iter().filter(|(name, _)| name.starts_with("ALO_")) {
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("{place}: alo-node reads no variable {name}"));
        let long = arg.get_long().expect("every flag is long");
        match arg.get_action() {
            ArgAction::SetTrue if matches!(value.as_str(), "" | "0" | "false" | "no" | "off") => {}
            ArgAction::SetTrue => argv.push(format!("--{long}")),
            _ => argv.push(format!("--{long}={}", expand(value, env))),
        }
    }
    if let Err(e) = Config::try_parse_from(&argv) {
        panic!("{place}: alo-node refuses {argv:?}:\n{e}");
    }
}

#[test]
fn every_flag_and_variable_in_the_examples_is_one_alo_node_takes() {
    let mut found = Vec::new();
    assert_eq!(kubernetes(&mut found), 1, "the StatefulSet's container");
    assert_eq!(compose(&mut found), 3, "three nodes");
    dockerfile(&mut found);
    for invocation in &found {
        check(invocation);
    }
    // The check itself: a flag or a variable alo-node does not know is caught.
    for (args, env) in [
        (vec!["--peers-dns-intervall=5000".to_string()], vec![]),
        (
            vec![],
            vec![("ALO_PEER_DNS".to_string(), "alo:8001".to_string())],
        ),
        (
            vec![],
            vec![("ALO_CACHE_BYTES".to_string(), "lots".to_string())],
        ),
    ] {
        let invocation = Invocation {
            place: "a bad example".into(),
            args,
            env,
        };
        let caught = std::panic::catch_unwind(|| check(&invocation));
        assert!(caught.is_err(), "{invocation:?} passed");
    }
}

#[test]
fn the_examples_peer_secrets_are_usable() {
    let compose = examples().join("docker/compose.yaml");
    let file = yaml(&compose)[0]["secrets"]["peer-secret"]["file"].clone();
    let file = examples().join("docker").join(text(&file));
    let secret =
        yaml(&examples().join("kubernetes/secret.yaml"))[0]["stringData"]["peer-secret"].clone();
    for (place, secret) in [
        (file.display().to_string(), read(&file)),
        ("secret.yaml".into(), text(&secret)),
    ] {
        if let Err(e) = alo_http::PeerSecrets::from_lines(&secret) {
            panic!("{place}: {e}");
        }
    }
}
