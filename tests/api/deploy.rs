//! The files in `deploy/`, checked as files: no cluster, container engine or Bicep compiler runs on
//! these machines, so the tests parse what can be parsed and check the promises an operator relies on
//! (replicas, probes, limits, non-root, pinned images, no secret written into a file).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn only_doc(rel: &str, kind: &str) -> Yaml {
    let docs = yaml(rel);
    assert_eq!(docs.len(), 1, "{rel} holds one document");
    let doc = docs.into_iter().next().unwrap();
    assert_eq!(doc["kind"].as_str(), Some(kind), "{rel}");
    doc
}

fn strings(node: &Yaml) -> Vec<&str> {
    node.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

/// Environment variable names whose value is a credential, or holds one (the database URL).
fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "SESSION_KEY", "TOKEN", "STORE__URL"]
        .iter()
        .any(|needle| upper.contains(needle))
}

// ------------------------------------------------------------------------------------------------
// Kubernetes
// ------------------------------------------------------------------------------------------------

const K8S: &str = "deploy/k8s";

#[test]
fn kubernetes_files_parse_and_kustomization_applies_no_secret() {
    let dir = root().join(K8S);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        for doc in yaml(&format!("{K8S}/{file}")) {
            assert!(doc["kind"].as_str().is_some(), "{file}: a kind");
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{file}: an apiVersion"
            );
        }
    }

    let kustomization = only_doc(&format!("{K8S}/kustomization.yaml"), "Kustomization");
    let resources = strings(&kustomization["resources"]);
    for wanted in ["deployment.yaml", "service.yaml", "pdb.yaml"] {
        assert!(resources.contains(&wanted), "{wanted} in {resources:?}");
    }
    for resource in &resources {
        assert!(dir.join(resource).is_file(), "{resource} exists");
        for doc in yaml(&format!("{K8S}/{resource}")) {
            assert_ne!(
                doc["kind"].as_str(),
                Some("Secret"),
                "{resource}: applying the directory must not create or overwrite a Secret"
            );
        }
    }
    assert!(!resources.contains(&"secret.example.yaml"));
    let example = only_doc(&format!("{K8S}/secret.example.yaml"), "Secret");
    for (key, value) in example["stringData"].as_hash().unwrap() {
        let value = value.as_str().unwrap();
        assert!(
            value.contains('<') && value.contains('>'),
            "{key:?}: the example holds placeholders only, got {value:?}"
        );
    }
}

fn deployment() -> Yaml {
    only_doc(&format!("{K8S}/deployment.yaml"), "Deployment")
}

fn container(deployment: &Yaml) -> &Yaml {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

#[test]
fn deployment_runs_two_probed_limited_non_root_replicas() {
    let d = deployment();
    assert_eq!(d["spec"]["replicas"].as_i64(), Some(2));
    let c = container(&d);
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    let port = &c["ports"][0];
    assert_eq!(port["containerPort"].as_i64(), Some(3978));
    for probe in ["readinessProbe", "livenessProbe"] {
        let probe_port = &c[probe]["httpGet"]["port"];
        assert!(
            probe_port.as_i64() == Some(3978) || probe_port.as_str() == port["name"].as_str(),
            "{probe} targets the container port"
        );
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !c["resources"][kind][resource].is_badvalue(),
                "resources.{kind}.{resource}"
            );
        }
    }
    let pod = &d["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod["runAsNonRoot"].as_bool(), Some(true));
    assert_ne!(pod["runAsUser"].as_i64(), Some(0));
    let own = &c["securityContext"];
    assert_eq!(own["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(own["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_ne!(own["runAsNonRoot"].as_bool(), Some(false));
    assert_eq!(strings(&own["capabilities"]["drop"]), ["ALL"]);
}

/// The wire log sits on a writable volume that outlives a container restart, in both the Deployment and
/// Compose (the root filesystem is read-only in both).
#[test]
fn the_wire_log_is_kept_on_a_volume_that_outlives_a_restart() {
    let config = only_doc(&format!("{K8S}/configmap.yaml"), "ConfigMap");
    let dir = config["data"]["FIELDBOT__JOBS__WIRE_LOG_DIR"]
        .as_str()
        .expect("the ConfigMap sets the wire log folder");
    let d = deployment();
    let mount = container(&d)["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| {
            dir.starts_with(m["mountPath"].as_str().unwrap())
                && m["mountPath"].as_str() != Some("/tmp")
        })
        .expect("a volume holds the wire log");
    assert_ne!(mount["readOnly"].as_bool(), Some(true));
    let volume = d["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str() == mount["name"].as_str())
        .unwrap();
    assert!(
        !volume["emptyDir"].is_badvalue(),
        "an emptyDir outlives a container restart"
    );

    let compose = &yaml("deploy/docker-compose.yml")[0];
    let fieldbot = &compose["services"]["fieldbot"];
    let env = env_pairs(&fieldbot["environment"]);
    let (_, dir) = env
        .iter()
        .find(|(k, _)| k == "FIELDBOT__JOBS__WIRE_LOG_DIR")
        .expect("Compose sets the wire log folder");
    let named = strings(&fieldbot["volumes"])
        .into_iter()
        .find_map(|v| {
            let (name, path) = v.split_once(':')?;
            dir.starts_with(path).then_some(name)
        })
        .expect("a volume holds the wire log (tmpfs does not outlive a restart)");
    assert!(compose["volumes"][named].as_hash().is_some() || compose["volumes"][named].is_null());
    assert!(
        read("deploy/Dockerfile").contains("chown 10001:10001 /app/data"),
        "the volume starts owned by the user fieldbot runs as"
    );
}

#[test]
fn deployment_takes_secrets_from_a_secret_only() {
    let d = deployment();
    let c = container(&d);
    let env_from = c["envFrom"].as_vec().unwrap();
    assert!(
        env_from
            .iter()
            .any(|e| e["secretRef"]["name"].as_str().is_some()),
        "envFrom includes a Secret"
    );
    let mut from_secret = BTreeSet::new();
    for entry in c["env"].as_vec().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap();
        if let Some(value) = entry["value"].as_str() {
            assert!(
                !is_secret_name(name),
                "{name} is inlined as {value:?}: take it from the Secret"
            );
        } else {
            let source = entry["valueFrom"].as_hash().unwrap();
            let kinds: Vec<&str> = source.keys().filter_map(Yaml::as_str).collect();
            assert!(
                kinds
                    .iter()
                    .all(|k| ["secretKeyRef", "configMapKeyRef", "fieldRef"].contains(k)),
                "{name}: {kinds:?}"
            );
            if kinds.contains(&"secretKeyRef") {
                from_secret.insert(name);
            }
        }
    }
    for required in [
        "FIELDBOT__BOT__APP_ID",
        "FIELDBOT__BOT__APP_PASSWORD",
        "FIELDBOT__BOT__TENANT_ID",
        "FIELDBOT__STORE__URL",
    ] {
        assert!(
            from_secret.contains(required),
            "{required} from secretKeyRef"
        );
    }
    let text = read(&format!("{K8S}/deployment.yaml"));
    assert!(!text.contains("stringData") && !text.contains("\ndata:"));

    let config = only_doc(&format!("{K8S}/configmap.yaml"), "ConfigMap");
    for key in config["data"].as_hash().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(!is_secret_name(key), "{key} belongs in the Secret");
    }
}

#[test]
fn pdb_and_service_select_the_deployment_pods() {
    let d = deployment();
    let labels = d["spec"]["template"]["metadata"]["labels"]
        .as_hash()
        .unwrap();
    let selects_pods = |selector: &Yaml, what: &str| {
        let selector = selector.as_hash().unwrap();
        assert!(!selector.is_empty(), "{what}");
        for (key, value) in selector {
            assert_eq!(labels.get(key), Some(value), "{what} selects {key:?}");
        }
    };

    let pdb = only_doc(&format!("{K8S}/pdb.yaml"), "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1));
    selects_pods(&pdb["spec"]["selector"]["matchLabels"], "the PDB");
    selects_pods(&d["spec"]["selector"]["matchLabels"], "the Deployment");

    let service = only_doc(&format!("{K8S}/service.yaml"), "Service");
    selects_pods(&service["spec"]["selector"], "the Service");
    let target = &service["spec"]["ports"][0]["targetPort"];
    let port = &container(&d)["ports"][0];
    assert!(
        target.as_i64() == Some(3978) || target.as_str() == port["name"].as_str(),
        "the Service reaches port 3978"
    );
}

// ------------------------------------------------------------------------------------------------
// Dockerfile
// ------------------------------------------------------------------------------------------------

/// Instructions with line continuations joined and comments dropped: (KEYWORD, arguments).
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let full = std::mem::take(&mut pending);
                let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
                out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
            }
        }
    }
    out
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(args)
        .unwrap_or_else(|_| panic!("{args} is not exec (JSON array) form"))
}

#[test]
fn dockerfile_pins_bases_runs_unprivileged_and_checks_health() {
    let instructions = dockerfile_instructions(&read("deploy/Dockerfile"));
    let mut stages: Vec<String> = Vec::new();
    let mut final_stage = Vec::new();
    for (keyword, args) in &instructions {
        if keyword == "FROM" {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let image = words[0];
            if !stages.iter().any(|s| s == image) {
                let reference = image.split('@').next().unwrap();
                let (name, tag) = reference
                    .rsplit_once(':')
                    .filter(|(_, tag)| !tag.contains('/'))
                    .unwrap_or_else(|| panic!("FROM {image} has no tag"));
                assert!(!name.is_empty());
                assert_ne!(tag, "latest", "FROM {image}");
                assert!(
                    tag.chars().any(|c| c.is_ascii_digit()),
                    "FROM {image}: the tag names a version"
                );
            }
            if let [_, as_kw, stage] = words[..] {
                assert!(as_kw.eq_ignore_ascii_case("as"));
                stages.push(stage.to_owned());
            }
            final_stage.clear();
        }
        final_stage.push((keyword.clone(), args.clone()));
    }
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");

    let last = |kw: &str| {
        final_stage
            .iter()
            .rev()
            .find(|(k, _)| k == kw)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("the runtime stage has no {kw}"))
    };
    let user = last("USER");
    let user_part = user.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&user_part),
        "USER {user} is not root"
    );
    let health = last("HEALTHCHECK");
    assert!(health.contains("CMD") && !health.eq_ignore_ascii_case("NONE"));
    assert!(
        health.contains("/healthz") || health.contains("/readyz"),
        "{health}"
    );
    assert!(last("EXPOSE").split_whitespace().any(|p| p == "3978"));

    let mut argv = exec_form(&last("ENTRYPOINT"));
    argv.extend(exec_form(&last("CMD")));
    let program = Path::new(&argv[0]).file_name().unwrap().to_str().unwrap();
    assert_eq!(
        (program, argv.get(1).map(String::as_str)),
        ("fieldbot", Some("serve"))
    );
    assert!(
        final_stage
            .iter()
            .any(|(k, a)| k == "ENV" && a.contains("FIELDBOT_ENV=production"))
    );

    // Every path copied from the build context exists, and the dockerignore lets it through.
    let ignore = read("deploy/Dockerfile.dockerignore");
    for (keyword, args) in &instructions {
        if keyword != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(root().join(source).exists(), "COPY {source}: missing");
            let top = source.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_end_matches('/') == format!("!{top}")),
                "{source} is re-included in deploy/Dockerfile.dockerignore"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// docker compose
// ------------------------------------------------------------------------------------------------

fn env_pairs(environment: &Yaml) -> Vec<(String, String)> {
    if let Some(map) = environment.as_hash() {
        return map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                (k.as_str().unwrap().to_owned(), value)
            })
            .collect();
    }
    strings(environment)
        .into_iter()
        .map(|item| {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn compose_runs_fieldbot_after_a_healthy_pinned_postgres_without_inline_secrets() {
    let docs = yaml("deploy/docker-compose.yml");
    let services = &docs[0]["services"];
    let postgres = &services["postgres"];
    let image = postgres["image"].as_str().unwrap();
    let (name, tag) = image.split_once(':').expect("a tag");
    assert_eq!(name, "postgres");
    assert!(
        tag.starts_with("15."),
        "PostgreSQL 15 with a minor version: {image}"
    );
    assert!(!postgres["healthcheck"]["test"].is_badvalue());

    let fieldbot = &services["fieldbot"];
    assert_eq!(
        fieldbot["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(!fieldbot["healthcheck"]["test"].is_badvalue());
    assert_eq!(
        fieldbot["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert!(strings(&fieldbot["env_file"]).contains(&".env"));

    for (service_name, service) in services.as_hash().unwrap() {
        let service_name = service_name.as_str().unwrap();
        if let Some(image) = service["image"].as_str() {
            assert!(!image.ends_with(":latest"), "{service_name}: {image}");
        }
        for (key, value) in env_pairs(&service["environment"]) {
            // A URL may carry its password as ${VAR} (checked below); anything else secret is ${VAR}.
            if is_secret_name(&key) && !value.contains("://") {
                assert!(
                    value.starts_with("${") && value.ends_with('}'),
                    "{service_name}.{key} must come from .env, not {value:?}"
                );
            }
            if let Some((_, after_scheme)) = value.split_once("://")
                && let Some((credentials, _)) = after_scheme.split_once('@')
                && let Some((_, password)) = credentials.split_once(':')
            {
                assert!(
                    password.starts_with("${"),
                    "{service_name}.{key} has a literal password"
                );
            }
        }
    }
    assert!(
        read("deploy/.gitignore")
            .lines()
            .any(|l| l.trim() == ".env")
    );
    assert!(root().join("deploy/.env.example").is_file());
}

// ------------------------------------------------------------------------------------------------
// Bicep
// ------------------------------------------------------------------------------------------------

/// Checks that `( [ {` balance outside strings and comments (string interpolations `${…}` included)
/// and returns the source without its comments.
fn bicep_code(src: &str) -> Result<String, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    // Open delimiters; '$' marks a string interpolation whose `}` returns into the string.
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut in_string = false;
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
        }
        if in_string {
            out.push(c);
            match (c, next) {
                ('\\', Some(escaped)) => {
                    out.push(escaped);
                    i += 1;
                }
                ('\'', _) => in_string = false,
                ('$', Some('{')) => {
                    out.push('{');
                    stack.push(('$', line));
                    in_string = false;
                    i += 1;
                }
                ('\n', _) => return Err(format!("line {line}: newline in a '…' string")),
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == '\'' && next == Some('\'') && chars.get(i + 2) == Some(&'\'') {
            let rest: String = chars[i + 3..].iter().collect();
            let end = rest
                .find("'''")
                .ok_or_else(|| format!("line {line}: unterminated ''' string"))?;
            let body = &rest[..end];
            line += body.matches('\n').count();
            out.push_str("'''");
            out.push_str(body);
            out.push_str("'''");
            i += 3 + body.chars().count() + 3;
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            ('/', Some('*')) => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    if chars[i] == '\n' {
                        line += 1;
                        out.push('\n');
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(format!("line {line}: unterminated /* comment"));
                }
                i += 2;
                continue;
            }
            ('\'', _) => in_string = true,
            ('(' | '[' | '{', _) => stack.push((c, line)),
            (')' | ']' | '}', _) => {
                let (open, opened_at) = stack
                    .pop()
                    .ok_or_else(|| format!("line {line}: {c} closes nothing"))?;
                let expected = match open {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                if c != expected {
                    return Err(format!(
                        "line {line}: {c} closes {open} from line {opened_at}"
                    ));
                }
                if open == '$' {
                    in_string = true;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    if in_string {
        return Err("unterminated string at the end".into());
    }
    if let Some((open, opened_at)) = stack.pop() {
        return Err(format!("{open} from line {opened_at} is never closed"));
    }
    Ok(out)
}

/// `param` declarations with the decorators above them: (name, declaration line, decorators).
fn bicep_params(code: &str) -> Vec<(String, String, String)> {
    let mut params = Vec::new();
    let mut decorators = String::new();
    for line in code.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            decorators.clear();
        } else if let Some(rest) = trimmed.strip_prefix("param ") {
            let name = rest.split_whitespace().next().unwrap().to_owned();
            params.push((name, trimmed.to_owned(), std::mem::take(&mut decorators)));
        } else {
            decorators.push_str(trimmed);
            decorators.push('\n');
        }
    }
    params
}

fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "sessionkey",
        "token",
        "connectionstring",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// `key: 'literal'` where the key names a credential and the literal interpolates nothing.
fn secret_literals(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let trimmed = line.trim();
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        let names_credential = ["password", "secret", "sessionkey", "token"]
            .iter()
            .any(|suffix| key.ends_with(suffix));
        if names_credential && value.starts_with('\'') && !value.contains("${") {
            found.push(trimmed.to_owned());
        }
    }
    found
}

#[test]
fn bicep_checker_catches_what_it_claims_to() {
    assert!(bicep_code("var a = { b: [ 'x}' ] } // ]\n/* ( */").is_ok());
    assert!(bicep_code("var a = 'https://${b.c[0]}/x'\nvar d = '''{'''").is_ok());
    assert!(bicep_code("var a = { b: [ }").is_err());
    assert!(bicep_code("var a = 'unterminated").is_err());
    assert!(bicep_code("var a = '${b'").is_err());
    let params = bicep_params("@secure()\nparam pw string\n\nparam name string = 'x'\n");
    assert_eq!(params[0].0, "pw");
    assert!(params[0].2.contains("@secure()"));
    assert!(params[1].2.is_empty());
    assert_eq!(
        secret_literals("administratorLoginPassword: 'hunter2'\nsecretRef: 'a'\nvalue: x"),
        ["administratorLoginPassword: 'hunter2'"]
    );
}

#[test]
fn bicep_declares_the_bot_hosting_database_and_vault_without_secrets() {
    let src = read("deploy/azure/main.bicep");
    let code = bicep_code(&src).unwrap_or_else(|e| panic!("main.bicep: {e}"));

    let declared: BTreeSet<String> = code
        .lines()
        .filter_map(|l| l.trim().strip_prefix("resource "))
        .filter_map(|rest| rest.split('\'').nth(1))
        .map(|type_at| {
            let (kind, api) = type_at.split_once('@').unwrap();
            assert!(
                api.len() >= 10 && api[..10].chars().filter(|c| *c == '-').count() == 2,
                "{type_at}: an API version date"
            );
            kind.to_owned()
        })
        .collect();
    for kind in [
        "Microsoft.BotService/botServices",
        "Microsoft.BotService/botServices/channels",
        "Microsoft.App/managedEnvironments",
        "Microsoft.App/containerApps",
        "Microsoft.DBforPostgreSQL/flexibleServers",
        "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        "Microsoft.KeyVault/vaults",
        "Microsoft.KeyVault/vaults/secrets",
    ] {
        assert!(declared.contains(kind), "{kind} in {declared:?}");
    }
    for needle in [
        "name: 'MsTeamsChannel'",
        "channelName: 'MsTeamsChannel'",
        "msaAppType: 'SingleTenant'",
        "msaAppTenantId: botTenantId",
        "endpoint: '${publicBaseUrl}/api/messages'",
        "targetPort: 3978",
        "path: '/readyz'",
        "path: '/healthz'",
        "name: 'require_secure_transport'",
        "param minReplicas int = 2",
    ] {
        assert!(code.contains(needle), "main.bicep: {needle}");
    }

    for (name, declaration, decorators) in bicep_params(&code) {
        if is_secret_param(&name) {
            assert!(decorators.contains("@secure()"), "{name} is @secure()");
            assert!(!declaration.contains('='), "{name} has no default value");
        }
    }
    assert_eq!(secret_literals(&code), Vec::<String>::new());

    // Secret environment variables reference container app secrets backed by Key Vault.
    for env_name in [
        "FIELDBOT__BOT__APP_PASSWORD",
        "FIELDBOT__STORE__URL",
        "FIELDBOT__SIGNIN__SESSION_KEY",
    ] {
        let at = code
            .find(&format!("name: '{env_name}'"))
            .unwrap_or_else(|| panic!("{env_name} is set"));
        let entry = &code[at..at + code[at..].find('}').unwrap()];
        let secret = entry
            .split("secretRef: '")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .unwrap_or_else(|| panic!("{env_name} uses secretRef, not a value: {entry}"));
        assert!(!entry.contains("value:"), "{entry}");
        let is_key_vault_reference =
            code.match_indices(&format!("name: '{secret}'\n"))
                .any(|(d, _)| {
                    let object = &code[d..d + code[d..].find('}').unwrap()];
                    object.contains("keyVaultUrl:") && object.contains("identity:")
                });
        assert!(
            is_key_vault_reference,
            "secret {secret} is a Key Vault reference"
        );
    }

    let params = read("deploy/azure/main.example.bicepparam");
    let params_code = bicep_code(&params).unwrap_or_else(|e| panic!("bicepparam: {e}"));
    assert!(params_code.contains("using 'main.bicep'"));
    for line in params_code.lines() {
        if let Some((name, value)) = line
            .trim()
            .strip_prefix("param ")
            .and_then(|r| r.split_once('='))
            && is_secret_param(name.trim())
        {
            assert!(
                value.trim().starts_with("readEnvironmentVariable("),
                "{name} is read from the environment, not written down"
            );
        }
    }
}
