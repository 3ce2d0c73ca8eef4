//! docker-compose.yml and the Dockerfile, checked without a container engine:
//! the compose file against the Compose Specification JSON schema (the copy
//! bundled in the `dclint` npm package, run by tests/compose-schema with Node),
//! its structure, and its agreement with config/kafka.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use adrec::config::{Config, StoreKind};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("read docker-compose.yml");
    serde_norway::from_str(&text).expect("docker-compose.yml is YAML")
}

fn kafka_config() -> Config {
    let text = std::fs::read_to_string(repo().join("config/kafka.toml")).expect("read config/kafka.toml");
    let config: Config = toml::from_str(&text).expect("config/kafka.toml parses");
    config.validate().expect("config/kafka.toml is valid");
    config
}

fn services(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["services"].as_object().expect("services is a map")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    services(doc).get(name).unwrap_or_else(|| panic!("no service {name:?}"))
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// `environment` as a map, whichever of the two compose forms it uses.
fn environment(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Published ports as (host, container).
fn ports(svc: &Value) -> Vec<(u16, u16)> {
    str_list(&svc["ports"])
        .iter()
        .map(|p| {
            let (host, container) = p.split_once(':').unwrap_or_else(|| panic!("port {p:?} is not host:container"));
            (host.parse().expect("numeric host port"), container.parse().expect("numeric container port"))
        })
        .collect()
}

/// Service names in `depends_on` with their conditions.
fn depends_on(svc: &Value) -> BTreeMap<String, String> {
    match &svc["depends_on"] {
        Value::Array(_) => str_list(&svc["depends_on"]).into_iter().map(|s| (s, "service_started".into())).collect(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v["condition"].as_str().unwrap_or("service_started").to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn host_port(addr: &str) -> (String, u16) {
    let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr:?} has no port"));
    (host.to_string(), port.parse().unwrap_or_else(|_| panic!("{addr:?}: bad port")))
}

fn image(svc: &Value) -> &str {
    svc["image"].as_str().unwrap_or_default()
}

#[test]
fn compose_file_matches_the_compose_specification_schema() {
    let dir = repo().join("tests/compose-schema");
    if !dir.join("node_modules/dclint/schemas/compose.schema.json").exists() {
        // Pinned in package-lock.json; the npm registry is reachable from CI.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed to validate docker-compose.yml against the compose schema");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    let out = Command::new("node")
        .arg(dir.join("validate.mjs"))
        .arg(repo().join("docker-compose.yml"))
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-compose.yml does not match the schema:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("valid:"), "{text}");
}

#[test]
fn the_schema_check_catches_an_invalid_file() {
    // The validator itself must be able to fail (a wrong condition, a scalar port list).
    let dir = repo().join("tests/compose-schema");
    if !dir.join("node_modules").exists() {
        compose_file_matches_the_compose_specification_schema();
    }
    let bad = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        bad.path(),
        "services:\n  a:\n    image: x\n    ports: 5\n    depends_on: {b: {condition: bogus}}\n",
    )
    .expect("write");
    let out = Command::new("node").arg(dir.join("validate.mjs")).arg(bad.path()).output().expect("run node");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/services/a/ports") && text.contains("condition"), "{text}");
}

#[test]
fn services_images_builds_and_volumes_are_complete() {
    let doc = compose();
    let names: BTreeSet<&str> = services(&doc).keys().map(String::as_str).collect();
    for required in ["kafka", "qdrant", "kafka-topics", "adrec"] {
        assert!(names.contains(required), "service {required:?} missing: {names:?}");
    }
    let declared: BTreeSet<String> =
        doc["volumes"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for (name, svc) in services(&doc) {
        assert!(
            svc["image"].is_string() || svc["build"].is_object() || svc["build"].is_string(),
            "{name}: needs an image or a build"
        );
        // Images are pinned: a tag that is neither empty nor `latest`.
        if let Some(img) = svc["image"].as_str() {
            let tag = img.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(!tag.is_empty() && tag != "latest", "{name}: pin the image tag ({img})");
        }
        for v in str_list(&svc["volumes"]) {
            let source = v.split(':').next().unwrap_or_default();
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(declared.contains(source), "{name}: named volume {source:?} is not declared");
            }
        }
    }
    assert!(image(service(&doc, "kafka")).starts_with("apache/kafka:"));
    assert!(image(service(&doc, "qdrant")).starts_with("qdrant/qdrant:"));
    let build = &service(&doc, "adrec")["build"];
    assert_eq!(build["context"], ".");
    let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
    assert!(repo().join(dockerfile).is_file(), "{dockerfile} missing");
}

#[test]
fn dependencies_exist_are_acyclic_and_wait_for_health() {
    let doc = compose();
    let all = services(&doc);
    for (name, svc) in all {
        for (dep, condition) in depends_on(svc) {
            let target = all.get(&dep).unwrap_or_else(|| panic!("{name} depends on unknown service {dep}"));
            match condition.as_str() {
                "service_healthy" => assert!(
                    target["healthcheck"].is_object(),
                    "{name} waits for {dep}'s health, which has no healthcheck"
                ),
                "service_completed_successfully" => {
                    assert!(
                        target["restart"].as_str().is_none_or(|r| r == "no"),
                        "{dep} is a one-shot job: it must not restart"
                    )
                }
                "service_started" => {}
                other => panic!("{name}: unknown condition {other}"),
            }
        }
    }
    // No cycles: repeatedly remove services whose dependencies are all removed.
    let mut left: BTreeMap<&str, BTreeSet<String>> =
        all.iter().map(|(n, s)| (n.as_str(), depends_on(s).into_keys().collect())).collect();
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d.as_str())))
            .map(|(n, _)| *n)
            .collect();
        assert!(!ready.is_empty(), "dependency cycle among {:?}", left.keys());
        for n in ready {
            left.remove(n);
        }
    }
    // The worker starts after the broker and Qdrant are healthy and the topics exist.
    let worker = depends_on(service(&doc, "adrec"));
    assert_eq!(worker.get("kafka").map(String::as_str), Some("service_healthy"));
    assert_eq!(worker.get("qdrant").map(String::as_str), Some("service_healthy"));
    assert_eq!(worker.get("kafka-topics").map(String::as_str), Some("service_completed_successfully"));
    assert_eq!(depends_on(service(&doc, "kafka-topics")).get("kafka").map(String::as_str), Some("service_healthy"));
}

#[test]
fn healthchecks_are_well_formed() {
    let doc = compose();
    for name in ["kafka", "qdrant"] {
        let hc = &service(&doc, name)["healthcheck"];
        let test = str_list(&hc["test"]);
        assert!(
            matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")),
            "{name}: healthcheck test {test:?}"
        );
        assert!(test.len() >= 2, "{name}: healthcheck runs nothing");
        for key in ["interval", "timeout"] {
            let d = hc[key].as_str().unwrap_or_else(|| panic!("{name}: healthcheck {key} missing"));
            let digits = d.trim_end_matches(['s', 'm']);
            assert!(!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()), "{name}: {key} {d:?}");
        }
        assert!(hc["retries"].as_u64().is_some_and(|r| r > 0), "{name}: retries");
    }
    // Qdrant is ready when /readyz answers on its HTTP port.
    let qdrant = str_list(&service(&doc, "qdrant")["healthcheck"]["test"]).join(" ");
    assert!(qdrant.contains("/readyz") && qdrant.contains("6333"), "{qdrant}");
}

#[test]
fn ports_are_numeric_and_not_published_twice() {
    let doc = compose();
    let mut seen = BTreeMap::new();
    for (name, svc) in services(&doc) {
        for (host, _) in ports(svc) {
            if let Some(other) = seen.insert(host, name.clone()) {
                panic!("host port {host} published by both {other} and {name}");
            }
        }
    }
}

#[test]
fn kafka_toml_points_at_the_compose_services() {
    let doc = compose();
    let config = kafka_config();
    let k = &config.kafka;

    // Brokers: every bootstrap address is a Kafka service's advertised listener.
    for addr in k.bootstrap_servers.split(',') {
        let (host, port) = host_port(addr.trim());
        let svc = service(&doc, &host);
        assert!(image(svc).starts_with("apache/kafka:"), "{host} is not a Kafka service");
        let advertised = environment(svc).get("KAFKA_ADVERTISED_LISTENERS").cloned().unwrap_or_default();
        assert!(
            advertised.split(',').any(|l| l.ends_with(&format!("//{host}:{port}"))),
            "{addr} is not advertised: {advertised}"
        );
    }

    // Qdrant: the store is the Qdrant service's gRPC port.
    assert_eq!(config.store.kind, StoreKind::Qdrant);
    let url = url::Url::parse(&config.store.url).expect("store.url");
    let host = url.host_str().expect("host");
    let qdrant = service(&doc, host);
    assert!(image(qdrant).starts_with("qdrant/qdrant:"), "{host} is not a Qdrant service");
    let grpc = url.port().expect("explicit port");
    assert_eq!(grpc, 6334, "Qdrant serves gRPC on 6334");
    assert!(ports(qdrant).iter().any(|(_, c)| *c == grpc), "Qdrant's gRPC port is not published");

    // Topics: the creation job makes exactly the topics the worker uses.
    let job = service(&doc, "kafka-topics");
    let env = environment(job);
    assert_eq!(env.get("PRODUCTS_TOPIC"), Some(&k.products_topic));
    assert_eq!(env.get("ADS_TOPIC"), Some(&k.ads_topic));
    assert_eq!(env.get("OUTPUT_TOPIC"), Some(&k.output_topic));
    assert_eq!(env.get("DLQ_TOPIC"), Some(&k.dlq_topic));
    let (bootstrap_host, _) = host_port(env.get("BOOTSTRAP").expect("BOOTSTRAP"));
    assert!(services(&doc).contains_key(&bootstrap_host));
    assert!(env.get("PARTITIONS").is_some_and(|p| p.contains("ADREC_PARTITIONS")), "partitions are configurable");
    let script = str_list(&job["command"]).join("\n");
    for var in ["PRODUCTS_TOPIC", "ADS_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC"] {
        let line = script
            .lines()
            .find(|l| l.contains(&format!("--topic \"$${var}\"")) && l.trim_start().starts_with("create "))
            .unwrap_or_else(|| panic!("the job does not create ${var}:\n{script}"));
        let compacted = line.contains("cleanup.policy=compact");
        // Lists and ads are tables (one value per key): compacted.
        assert_eq!(compacted, var == "OUTPUT_TOPIC" || var == "ADS_TOPIC", "{line}");
    }
    assert!(script.contains("--partitions \"$$PARTITIONS\""), "{script}");

    // The worker: built image, this config, same partition setting, metrics published.
    let worker = service(&doc, "adrec");
    let command = str_list(&worker["command"]);
    assert!(command.windows(2).any(|w| w == ["--config", "config/kafka.toml"]), "{command:?}");
    let wenv = environment(worker);
    assert!(wenv.get("ADREC_KAFKA__CREATE_PARTITIONS").is_some_and(|p| p.contains("ADREC_PARTITIONS")));
    let (_, http_port) = host_port(&config.http.listen);
    assert!(ports(worker).iter().any(|(_, c)| *c == http_port), "/metrics port {http_port} not published");
    // Every ADREC_* override names a real config key.
    let defaults = serde_json::to_value(Config::default()).expect("config as JSON");
    for key in wenv.keys().filter(|k| k.starts_with("ADREC_")) {
        let mut node = &defaults;
        for part in key.trim_start_matches("ADREC_").split("__") {
            node = node.get(part.to_lowercase()).unwrap_or_else(|| panic!("{key} is not a config key"));
        }
    }
}

#[test]
fn dockerfile_is_multi_stage_and_downloads_only_through_models_fetch_and_cargo() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let code: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let stages = code.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "a build stage and a slim runtime stage");
    let joined = code.join("\n");
    assert!(joined.contains("models/fetch"), "the model and ONNX Runtime come from models/fetch (PyPI, sha256-pinned)");
    assert!(joined.contains("cargo build --release --locked"));
    for forbidden in ["curl ", "wget ", "ADD http", "git clone"] {
        assert!(!joined.contains(forbidden), "no other downloads: found {forbidden:?}");
    }
    // The runtime stage has everything the configs point at.
    let config = kafka_config();
    for path in [&config.model.manifest, &config.model.path] {
        let name = path.file_name().and_then(|n| n.to_str()).expect("file name");
        assert!(joined.contains(name), "{} is not copied into the image", path.display());
    }
    assert!(joined.contains("models/onnxruntime/"), "the ONNX Runtime library is not copied");
    assert!(joined.contains("COPY config/ config/"));
    assert!(Path::new(&repo().join(".dockerignore")).is_file());
}
