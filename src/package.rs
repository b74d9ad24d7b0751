//! `fieldbot package`: the Teams app package (`manifest.json`, `color.png`, `outline.png` in one zip).
//!
//! The manifest is built from three sources so that nothing is typed twice: the tenant-specific ids from
//! the configuration (`bot.app_id`, `signin.public_base_url`), the product texts from `manifest/app.toml`,
//! and the command list from [`crate::commands::COMMANDS`], the same table the help card uses. It is
//! validated against the embedded Teams manifest schema v1.25 before anything is written, so a bad
//! configuration ends in a sentence naming the problem rather than in a zip that Teams rejects on upload.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::{COMMANDS, CommandSpec};
use crate::config::Settings;

/// The manifest schema version this package is built for.
pub const MANIFEST_VERSION: &str = "1.25";
pub const SCHEMA_URL: &str =
    "https://developer.microsoft.com/json-schemas/teams/v1.25/MicrosoftTeams.schema.json";
/// `bots[].commandLists[].commands` `maxItems` in the v1.25 schema (a test reads it back from the schema).
pub const MAX_COMMANDS: usize = 12;
/// Where `package` looks for operator-edited metadata, relative to the working directory.
pub const APP_TOML_PATH: &str = "manifest/app.toml";
pub const DEFAULT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The metadata template; the binary falls back to it when `manifest/app.toml` is not on disk.
pub const APP_TOML: &str = include_str!("../manifest/app.toml");
pub const COLOR_PNG: &[u8] = include_bytes!("../manifest/color.png");
pub const OUTLINE_PNG: &[u8] = include_bytes!("../manifest/outline.png");
const SCHEMA: &str = include_str!("../manifest/schema/teams-manifest-1.25.schema.json");

const COLOR_FILE: &str = "color.png";
const OUTLINE_FILE: &str = "outline.png";
const MANIFEST_FILE: &str = "manifest.json";
const SCOPES: [&str; 3] = ["team", "personal", "groupChat"];

/// Namespace of the derived Teams app ids (UUID v5). Changing it would make every tenant's next upload
/// a new app beside the old one, so it is fixed forever.
const APP_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x8b73a7f4_31d8_4fe7_9f54_2210b6f85803);

#[derive(Debug, Clone)]
pub struct PackageOptions {
    pub out: PathBuf,
    /// The app version in the manifest; Teams wants `MAJOR.MINOR.PATCH` and a higher one for every
    /// update of an uploaded app.
    pub version: String,
    /// The Teams app id; `None` derives it from `bot.app_id`, so re-packaging updates the same app.
    pub app_id: Option<String>,
}

impl PackageOptions {
    pub fn new(out: impl Into<PathBuf>) -> PackageOptions {
        PackageOptions {
            out: out.into(),
            version: DEFAULT_VERSION.to_owned(),
            app_id: None,
        }
    }
}

#[derive(Debug)]
pub struct PackageSummary {
    pub path: PathBuf,
    pub app_id: String,
    pub commands: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{0}")]
    Config(String),
    #[error("the Teams manifest is invalid:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error("could not write the package: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not build the zip: {0}")]
    Zip(String),
}

/// `manifest/app.toml`: what an operator may change without a rebuild.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppMetadata {
    pub name_short: String,
    pub name_full: String,
    pub description_short: String,
    pub description_full: String,
    pub accent_color: String,
    pub developer: Developer,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Developer {
    pub name: String,
    pub website_url: String,
    pub privacy_url: String,
    pub terms_of_use_url: String,
}

impl AppMetadata {
    pub fn parse(text: &str, origin: &str) -> Result<AppMetadata, PackageError> {
        toml::from_str(text).map_err(|e| PackageError::Config(format!("{origin}: {e}")))
    }

    /// `manifest/app.toml` from the working directory when present, else the embedded template.
    pub fn load() -> Result<AppMetadata, PackageError> {
        let path = Path::new(APP_TOML_PATH);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| {
                PackageError::Config(format!("cannot read {}: {e}", path.display()))
            })?;
            AppMetadata::parse(&text, APP_TOML_PATH)
        } else {
            AppMetadata::parse(APP_TOML, "the embedded manifest/app.toml")
        }
    }
}

/// The commands the manifest lists: the head of the command table, because the schema caps a list at
/// [`MAX_COMMANDS`] and the table is ordered most-used first (what follows the cap are the text forms
/// of the FTA card buttons, which people reach from the cards).
pub fn manifest_commands() -> &'static [CommandSpec] {
    COMMANDS.get(..MAX_COMMANDS).unwrap_or(COMMANDS)
}

pub fn build_manifest(settings: &Settings, opts: &PackageOptions) -> Result<Value, PackageError> {
    manifest_with(settings, opts, &AppMetadata::load()?)
}

/// [`build_manifest`] with the metadata given, so tests need not touch the working directory.
pub fn manifest_with(
    settings: &Settings,
    opts: &PackageOptions,
    app: &AppMetadata,
) -> Result<Value, PackageError> {
    let bot_id = settings.bot.app_id.trim();
    if bot_id.is_empty() {
        return Err(PackageError::Config(
            "bot.app_id is empty: the Teams package needs the bot's Entra app id (a GUID). Set \
             FIELDBOT__BOT__APP_ID or pass --bot-app-id"
                .into(),
        ));
    }
    if !is_guid(bot_id) {
        return Err(PackageError::Config(format!(
            "bot.app_id {bot_id:?} is not a GUID such as 00000000-0000-0000-0000-000000000000: use the \
             Application (client) ID of the bot's Entra app registration"
        )));
    }
    let app_id = match opts.app_id.as_deref().map(str::trim) {
        Some(id) if is_guid(id) => id.to_owned(),
        Some(id) => {
            return Err(PackageError::Config(format!(
                "the Teams app id {id:?} is not a GUID such as 00000000-0000-0000-0000-000000000000"
            )));
        }
        None => derived_app_id(bot_id),
    };
    let commands: Vec<Value> = manifest_commands()
        .iter()
        .map(|spec| json!({ "title": spec.name, "description": spec.summary }))
        .collect();
    Ok(json!({
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": opts.version,
        "id": app_id,
        "developer": {
            "name": app.developer.name,
            "websiteUrl": app.developer.website_url,
            "privacyUrl": app.developer.privacy_url,
            "termsOfUseUrl": app.developer.terms_of_use_url,
        },
        "name": { "short": app.name_short, "full": app.name_full },
        "description": { "short": app.description_short, "full": app.description_full },
        "icons": { "color": COLOR_FILE, "outline": OUTLINE_FILE },
        "accentColor": app.accent_color,
        "bots": [{
            "botId": bot_id,
            "scopes": SCOPES,
            "isNotificationOnly": false,
            "supportsFiles": false,
            "commandLists": [{ "scopes": SCOPES, "commands": commands }],
        }],
        "validDomains": valid_domains(&settings.signin.public_base_url)?,
        "webApplicationInfo": { "id": bot_id, "resource": format!("api://botid-{bot_id}") },
    }))
}

/// The Teams app id for a bot: stable across runs and machines, distinct per bot registration.
pub fn derived_app_id(bot_app_id: &str) -> String {
    let name = format!(
        "fieldbot-teams-app:{}",
        bot_app_id.trim().to_ascii_lowercase()
    );
    uuid::Uuid::new_v5(&APP_ID_NAMESPACE, name.as_bytes()).to_string()
}

fn valid_domains(public_base_url: &str) -> Result<Vec<String>, PackageError> {
    let raw = public_base_url.trim();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let url = url::Url::parse(raw).map_err(|e| {
        PackageError::Config(format!(
            "signin.public_base_url {raw:?} is not a URL such as https://fieldbot.contoso.com: {e}"
        ))
    })?;
    match url.host_str() {
        Some(host) if matches!(url.scheme(), "https" | "http") => Ok(vec![host.to_owned()]),
        _ => Err(PackageError::Config(format!(
            "signin.public_base_url {raw:?} is not an http(s) URL with a host, such as https://fieldbot.contoso.com"
        ))),
    }
}

/// The hyphenated form the manifest schema's `guid` pattern accepts (not braces, URNs or bare hex).
fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).map_err(|e| e.to_string())?;
    jsonschema::draft4::new(&schema).map_err(|e| e.to_string())
});

/// The schema (draft-04, as it declares) plus what draft-04 cannot say: its `const` on
/// `manifestVersion` is a draft-06 keyword that a draft-04 validator ignores, Teams wants a
/// three-part version, and the icon paths must be the files the zip holds.
pub fn validate_manifest(manifest: &Value) -> Result<(), PackageError> {
    let validator = VALIDATOR.as_ref().map_err(|e| {
        PackageError::Config(format!(
            "the embedded Teams manifest schema does not load: {e}"
        ))
    })?;
    let mut problems: Vec<String> = validator
        .iter_errors(manifest)
        .map(|e| {
            let path = e.instance_path().to_string();
            format!("{}: {e}", if path.is_empty() { "/" } else { &path })
        })
        .collect();
    match manifest.get("manifestVersion").and_then(Value::as_str) {
        Some(MANIFEST_VERSION) => {}
        other => problems.push(format!(
            "/manifestVersion: must be \"{MANIFEST_VERSION}\" (the schema this package is validated \
             against), got {}",
            other.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
        )),
    }
    if manifest.get("$schema").and_then(Value::as_str) != Some(SCHEMA_URL) {
        problems.push(format!("/$schema: must be {SCHEMA_URL}"));
    }
    match manifest.get("version").and_then(Value::as_str) {
        Some(v) if is_three_part_version(v) => {}
        other => problems.push(format!(
            "/version: Teams needs MAJOR.MINOR.PATCH such as 1.0.0, got {}",
            other.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
        )),
    }
    for (key, file) in [("color", COLOR_FILE), ("outline", OUTLINE_FILE)] {
        if manifest
            .pointer(&format!("/icons/{key}"))
            .and_then(Value::as_str)
            != Some(file)
        {
            problems.push(format!(
                "/icons/{key}: must be {file}, the file the package contains"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PackageError::Invalid(problems))
    }
}

fn is_three_part_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.chars().all(|c| c.is_ascii_digit()))
}

/// Builds, validates and writes the package. Nothing is written unless the manifest is valid, and the
/// zip appears under its name only once complete.
pub fn package(settings: &Settings, opts: &PackageOptions) -> Result<PackageSummary, PackageError> {
    let manifest = build_manifest(settings, opts)?;
    validate_manifest(&manifest)?;
    let bytes = zip_bytes(&manifest)?;
    write_atomically(&opts.out, &bytes)?;
    Ok(PackageSummary {
        path: opts.out.clone(),
        app_id: manifest
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        commands: manifest_commands().len(),
    })
}

fn zip_bytes(manifest: &Value) -> Result<Vec<u8>, PackageError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| PackageError::Zip(e.to_string()))?;
    let zip_err = |e: zip::result::ZipError| PackageError::Zip(e.to_string());
    // A fixed timestamp makes the same inputs give the same bytes, so a rebuilt package is comparable.
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in [
        (MANIFEST_FILE, json.as_slice()),
        (COLOR_FILE, COLOR_PNG),
        (OUTLINE_FILE, OUTLINE_PNG),
    ] {
        zip.start_file(name, options).map_err(zip_err)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish().map_err(zip_err)?.into_inner())
}

fn write_atomically(out: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, out));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::io::Read;

    use super::*;

    const BOT_ID: &str = "11111111-2222-3333-4444-555555555555";

    fn settings(app_id: &str, public_base_url: &str) -> Settings {
        let mut s = Settings::load_from(None, Path::new("config"), Vec::new()).unwrap();
        s.bot.app_id = app_id.to_owned();
        s.signin.public_base_url = public_base_url.to_owned();
        s
    }

    fn embedded_app() -> AppMetadata {
        AppMetadata::parse(APP_TOML, "embedded").unwrap()
    }

    fn manifest(s: &Settings, opts: &PackageOptions) -> Value {
        manifest_with(s, opts, &embedded_app()).unwrap()
    }

    fn schema() -> Value {
        serde_json::from_str(SCHEMA).unwrap()
    }

    fn problems(result: Result<(), PackageError>) -> Vec<String> {
        match result {
            Err(PackageError::Invalid(problems)) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn manifest_validates_and_carries_the_configured_ids() {
        let s = settings(BOT_ID, "https://fieldbot.contoso.com:8443/base/");
        let m = manifest(&s, &PackageOptions::new("x.zip"));
        validate_manifest(&m).unwrap();
        assert_eq!(m["$schema"], SCHEMA_URL);
        assert_eq!(m["manifestVersion"], "1.25");
        assert_eq!(m["version"], DEFAULT_VERSION);
        assert_eq!(m["bots"][0]["botId"], BOT_ID);
        assert_eq!(
            m["bots"][0]["scopes"],
            json!(["team", "personal", "groupChat"])
        );
        assert_eq!(m["webApplicationInfo"]["id"], BOT_ID);
        assert_eq!(m["validDomains"], json!(["fieldbot.contoso.com"]));
        assert_eq!(
            m["icons"],
            json!({"color": "color.png", "outline": "outline.png"})
        );

        let id = m["id"].as_str().unwrap();
        assert!(is_guid(id), "{id}");
        assert_ne!(id, BOT_ID, "the Teams app id is its own GUID");
        let again = manifest(&s, &PackageOptions::new("y.zip"));
        assert_eq!(again["id"], id, "re-packaging keeps the same Teams app");
        let other_bot = manifest(
            &settings("aaaaaaaa-2222-3333-4444-555555555555", ""),
            &PackageOptions::new("z.zip"),
        );
        assert_ne!(other_bot["id"], id);
        assert_eq!(other_bot["validDomains"], json!([]));

        let chosen = "0a0b0c0d-1111-4222-8333-444455556666";
        let opts = PackageOptions {
            app_id: Some(chosen.into()),
            ..PackageOptions::new("x.zip")
        };
        assert_eq!(manifest(&s, &opts)["id"], chosen);
    }

    #[test]
    fn command_list_is_the_head_of_the_command_table() {
        let schema = schema();
        let max = schema.pointer(
            "/properties/bots/items/properties/commandLists/items/properties/commands/maxItems",
        );
        assert_eq!(max, Some(&json!(MAX_COMMANDS)), "the schema's cap");

        let m = manifest(&settings(BOT_ID, ""), &PackageOptions::new("x.zip"));
        let lists = m["bots"][0]["commandLists"].as_array().unwrap();
        assert_eq!(lists.len(), 1);
        assert_eq!(lists[0]["scopes"], m["bots"][0]["scopes"]);
        let listed: Vec<(&str, &str)> = lists[0]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["title"].as_str().unwrap(),
                    c["description"].as_str().unwrap(),
                )
            })
            .collect();
        let table: Vec<(&str, &str)> = COMMANDS
            .iter()
            .take(MAX_COMMANDS)
            .map(|c| (c.name, c.summary))
            .collect();
        assert_eq!(listed, table);
        assert_eq!(listed.len(), COMMANDS.len().min(MAX_COMMANDS));
        assert_eq!(listed[0].0, "help");
    }

    #[test]
    fn every_row_of_the_command_table_is_a_valid_manifest_command() {
        // The manifest lists only the head of the table; the rows past the cap are checked too, so the
        // table can be reordered without producing an invalid manifest.
        let base = manifest(&settings(BOT_ID, ""), &PackageOptions::new("x.zip"));
        for chunk in COMMANDS.chunks(MAX_COMMANDS) {
            let mut m = base.clone();
            m["bots"][0]["commandLists"][0]["commands"] = chunk
                .iter()
                .map(|c| json!({ "title": c.name, "description": c.summary }))
                .collect();
            validate_manifest(&m).unwrap();
        }
    }

    #[test]
    fn a_wrong_manifest_version_is_refused_though_draft_04_ignores_const() {
        let mut m = manifest(&settings(BOT_ID, ""), &PackageOptions::new("x.zip"));
        m["manifestVersion"] = json!("9.99");
        let found = problems(validate_manifest(&m));
        assert!(
            found.iter().any(|p| p.starts_with("/manifestVersion:")
                && p.contains("\"1.25\"")
                && p.contains("9.99")),
            "{found:?}"
        );
        // Why the explicit check exists: the schema's own `const` is invisible to draft-04.
        let schema_only = jsonschema::draft4::new(&schema()).unwrap();
        assert!(schema_only.is_valid(&m));

        m.as_object_mut().unwrap().remove("manifestVersion");
        let found = problems(validate_manifest(&m));
        assert!(
            found.iter().any(|p| p.starts_with("/manifestVersion:")),
            "{found:?}"
        );
    }

    #[test]
    fn schema_problems_are_listed_with_their_paths() {
        let mut app = embedded_app();
        app.name_short = "a name far longer than thirty characters".into();
        app.accent_color = "blue".into();
        let opts = PackageOptions {
            version: "1.0".into(),
            ..PackageOptions::new("x.zip")
        };
        let m = manifest_with(&settings(BOT_ID, ""), &opts, &app).unwrap();
        let found = problems(validate_manifest(&m));
        for path in ["/name/short:", "/accentColor:", "/version:"] {
            assert!(
                found.iter().any(|p| p.starts_with(path)),
                "{path} in {found:?}"
            );
        }
        let text = PackageError::Invalid(found).to_string();
        assert!(text.starts_with("the Teams manifest is invalid:"), "{text}");
    }

    #[test]
    fn a_missing_or_malformed_bot_app_id_refuses_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fieldbot-teams.zip");
        for (app_id, needle) in [
            ("", "bot.app_id is empty"),
            ("   ", "bot.app_id is empty"),
            ("not-a-guid", "is not a GUID"),
            ("{11111111-2222-3333-4444-555555555555}", "is not a GUID"),
            ("11111111222233334444555555555555", "is not a GUID"),
        ] {
            let err = package(&settings(app_id, ""), &PackageOptions::new(&out)).unwrap_err();
            assert!(
                matches!(err, PackageError::Config(_)),
                "{app_id:?}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(needle), "{app_id:?}: {text}");
            assert!(text.contains("bot"), "{text}");
        }
        let bad_app_id = PackageOptions {
            app_id: Some("teams-app".into()),
            ..PackageOptions::new(&out)
        };
        let err = package(&settings(BOT_ID, ""), &bad_app_id).unwrap_err();
        assert!(err.to_string().contains("Teams app id"), "{err}");
        let err = package(&settings(BOT_ID, "not a url"), &PackageOptions::new(&out)).unwrap_err();
        assert!(err.to_string().contains("signin.public_base_url"), "{err}");
        let bad_version = PackageOptions {
            version: "v1".into(),
            ..PackageOptions::new(&out)
        };
        let err = package(&settings(BOT_ID, ""), &bad_version).unwrap_err();
        assert!(matches!(err, PackageError::Invalid(_)), "{err:?}");

        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_zip_holds_exactly_the_manifest_and_the_two_icons() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/fieldbot-teams.zip");
        let s = settings(BOT_ID, "https://fieldbot.contoso.com");
        let opts = PackageOptions::new(&out);
        let summary = package(&s, &opts).unwrap();
        assert_eq!(summary.path, out);
        assert_eq!(summary.commands, COMMANDS.len().min(MAX_COMMANDS));
        assert_eq!(summary.app_id, derived_app_id(BOT_ID));
        assert_eq!(
            std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
            1,
            "no partial file left behind"
        );

        let bytes = std::fs::read(&out).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["color.png", "manifest.json", "outline.png"]);

        let mut text = String::new();
        zip.by_name("manifest.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(written, build_manifest(&s, &opts).unwrap());
        validate_manifest(&written).unwrap();
        for (name, embedded) in [("color.png", COLOR_PNG), ("outline.png", OUTLINE_PNG)] {
            let mut data = Vec::new();
            zip.by_name(name).unwrap().read_to_end(&mut data).unwrap();
            assert_eq!(data, embedded, "{name}");
        }

        package(&s, &opts).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            bytes,
            "same inputs, same bytes"
        );
    }

    fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn the_colour_icon_is_192_square_on_the_accent_colour() {
        let (info, pixels) = decode(COLOR_PNG);
        assert_eq!((info.width, info.height), (192, 192));
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let channels = info.color_type.samples();
        assert!(channels >= 3, "full colour, got {:?}", info.color_type);
        let accent = embedded_app().accent_color;
        let corner = format!("#{:02X}{:02X}{:02X}", pixels[0], pixels[1], pixels[2]);
        assert!(
            corner.eq_ignore_ascii_case(&accent),
            "the background {corner} is accent_color {accent}: re-run manifest/icons.py after changing it"
        );
    }

    #[test]
    fn the_outline_icon_is_32_square_white_on_transparent() {
        let (info, pixels) = decode(OUTLINE_PNG);
        assert_eq!((info.width, info.height), (32, 32));
        assert_eq!(
            info.color_type,
            png::ColorType::Rgba,
            "needs an alpha channel"
        );
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let (mut transparent, mut opaque) = (0, 0);
        for (i, px) in pixels.chunks_exact(4).enumerate() {
            let (x, y) = (i % 32, i / 32);
            match px {
                [_, _, _, 0] => transparent += 1,
                [255, 255, 255, alpha] => opaque += usize::from(*alpha == 255),
                _ => panic!("pixel ({x}, {y}) is {px:?}: neither transparent nor white"),
            }
        }
        assert!(opaque > 100, "a visible glyph ({opaque} opaque pixels)");
        assert!(
            transparent > 300,
            "a transparent background ({transparent})"
        );
        for corner in [0, 31, 32 * 31, 32 * 32 - 1] {
            assert_eq!(pixels[corner * 4 + 3], 0, "corner {corner} is transparent");
        }
    }

    #[test]
    fn the_template_metadata_loads_and_the_disk_copy_wins() {
        let app = embedded_app();
        assert_eq!(app.name_short, "fieldbot");
        let loaded = AppMetadata::load().unwrap();
        let on_disk = std::fs::read_to_string(APP_TOML_PATH).ok();
        let expected = on_disk.as_deref().unwrap_or(APP_TOML);
        assert_eq!(
            loaded.description_full,
            AppMetadata::parse(expected, "x").unwrap().description_full
        );
        let err = AppMetadata::parse("name_short = 1", "manifest/app.toml").unwrap_err();
        assert!(err.to_string().starts_with("manifest/app.toml:"), "{err}");
    }
}
