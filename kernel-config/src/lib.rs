//! The kernel options Cairn needs (`required.txt`, compiled in) and a checker that
//! reads a kernel's `.config` and names every option that is missing.
//!
//! The same table tells the image builder which modules to ship and which of
//! them `cairn-init` loads at every boot, so the list lives in one place.

use std::collections::BTreeMap;
use std::path::Path;

/// The table shipped with this crate.
pub const REQUIRED: &str = include_str!("../required.txt");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("Cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A row of the requirements table is malformed.
    #[error("{origin}:{line}: {problem}")]
    Table {
        origin: String,
        line: usize,
        problem: String,
    },
}

/// When `cairn-init` loads a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Early, at every boot.
    Boot,
    /// By stage 1, to mount the verified root.
    Root,
    /// By stage 1's coldplug, where a device matches one of its aliases: the
    /// controllers the root disk may sit behind. Ships in the initramfs too.
    Disk,
    /// By stage 2's coldplug, where a device matches one of its aliases
    /// (NICs first among them, the rest of the hardware).
    Device,
    /// By cairn-init before it starts dockerd, where the machine config
    /// enables the Docker engine.
    Docker,
    /// Shipped, loaded by whatever needs it.
    Later,
}

impl Load {
    /// Whether the module comes by its device's modalias rather than by name.
    pub fn by_alias(self) -> bool {
        matches!(self, Load::Disk | Load::Device)
    }
}

/// Which of Debian's two amd64 kernels: the cloud one (virtual hardware
/// only) or the generic one, which also drives real disks and NICs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Cloud,
    Metal,
}

impl Flavour {
    /// From a Debian kernel release (`6.1.0-50-cloud-amd64` is the cloud
    /// kernel; `6.1.0-50-amd64` the generic one).
    pub fn of_release(release: &str) -> Flavour {
        if release.contains("-cloud-") {
            Flavour::Cloud
        } else {
            Flavour::Metal
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::Metal => "metal",
        }
    }
}

/// One row of the requirements table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub option: String,
    /// The module that provides the option when the kernel builds it as one;
    /// `None` means the option must be built in.
    pub module: Option<String>,
    pub load: Option<Load>,
    /// `Some(flavour)`: only that kernel must have it (`when@metal`).
    pub only: Option<Flavour>,
    pub why: String,
}

/// Parses a requirements table (the format of `required.txt`).
pub fn parse_requirements(text: &str, origin: &str) -> Result<Vec<Requirement>, Error> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: String| Error::Table {
            origin: origin.to_string(),
            line: idx + 1,
            problem,
        };
        let mut cols = line.split_whitespace();
        let (Some(option), Some(module), Some(when)) = (cols.next(), cols.next(), cols.next())
        else {
            return Err(bad("expected `option module when why`".into()));
        };
        if !option.starts_with("CONFIG_") {
            return Err(bad(format!("`{option}` does not start with CONFIG_")));
        }
        let module = (module != "-").then(|| normalize_module(module));
        let (when, only) = match when.split_once('@') {
            Some((w, "metal")) => (w, Some(Flavour::Metal)),
            Some((w, "cloud")) => (w, Some(Flavour::Cloud)),
            Some((_, f)) => return Err(bad(format!("unknown kernel flavour `{f}` (cloud or metal)"))),
            None => (when, None),
        };
        let load = match (when, &module) {
            ("-", None) => None,
            ("boot", Some(_)) => Some(Load::Boot),
            ("later", Some(_)) => Some(Load::Later),
            ("docker", Some(_)) => Some(Load::Docker),
            ("root", Some(_)) => Some(Load::Root),
            ("disk", Some(_)) => Some(Load::Disk),
            ("device", Some(_)) => Some(Load::Device),
            ("-", Some(m)) => return Err(bad(format!("module `{m}` needs `boot`, `root`, `disk`, `device`, `docker` or `later`"))),
            (w, None) => return Err(bad(format!("`{w}` given for a built-in-only option"))),
            (w, Some(_)) => return Err(bad(format!("unknown load time `{w}`"))),
        };
        out.push(Requirement {
            option: option.to_string(),
            module,
            load,
            only,
            why: cols.collect::<Vec<_>>().join(" "),
        });
    }
    Ok(out)
}

/// The table compiled into this crate.
pub fn requirements() -> Vec<Requirement> {
    // The table is part of the source and covered by a unit test.
    parse_requirements(REQUIRED, "kernel-config/required.txt").unwrap_or_default()
}

/// Module names compare with `-` and `_` alike, as the kernel does.
pub fn normalize_module(name: &str) -> String {
    name.replace('-', "_")
}

/// What a kernel's `.config` says about one option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    BuiltIn,
    Module,
    Off,
}

/// Parses a kernel `.config` into option → setting. Options set to strings or
/// numbers count as built in.
pub fn parse_config(text: &str) -> BTreeMap<String, Setting> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(opt) = rest.strip_suffix(" is not set") {
                map.insert(opt.to_string(), Setting::Off);
            }
        } else if let Some((opt, val)) = line.split_once('=') {
            let setting = match val {
                "m" => Setting::Module,
                "n" => Setting::Off,
                _ => Setting::BuiltIn,
            };
            map.insert(opt.to_string(), setting);
        }
    }
    map
}

/// One option the kernel lacks, with the reason Cairn needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub option: String,
    pub found: &'static str,
    pub why: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {} ({})", self.option, self.found, self.why)
    }
}

/// The rows that apply to a kernel of this flavour.
pub fn for_flavour(reqs: &[Requirement], flavour: Flavour) -> Vec<Requirement> {
    reqs.iter().filter(|r| r.only.is_none_or(|f| f == flavour)).cloned().collect()
}

/// Every requirement the config does not meet, in table order.
pub fn check(reqs: &[Requirement], config: &BTreeMap<String, Setting>) -> Vec<Missing> {
    let mut missing = Vec::new();
    for req in reqs {
        let found = match (config.get(&req.option), &req.module) {
            (Some(Setting::BuiltIn), _) | (Some(Setting::Module), Some(_)) => continue,
            (Some(Setting::Module), None) => "a module but must be built in",
            (Some(Setting::Off), _) => "not set",
            (None, _) => "absent",
        };
        missing.push(Missing {
            option: req.option.clone(),
            found,
            why: req.why.clone(),
        });
    }
    missing
}

/// The modules to ship for this kernel: every required option the kernel builds
/// as a module, with its load time.
pub fn modules_for(
    reqs: &[Requirement],
    config: &BTreeMap<String, Setting>,
) -> Vec<(String, Load)> {
    reqs.iter()
        .filter(|r| config.get(&r.option) == Some(&Setting::Module))
        .filter_map(|r| Some((r.module.clone()?, r.load?)))
        .collect()
}

/// The release a bzImage names in its setup header: the first word of the
/// version string (`6.1.0-50-amd64 (debian-kernel@...) #1 SMP ...`) that
/// the boot protocol points to from offset 0x20e, counted from 0x200.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let at = 0x200 + u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    let text = image.get(at..)?;
    let end = text.iter().take(256).position(|&b| b == b' ' || b == 0)?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_string())
}

/// Reads and parses a kernel `.config` file.
pub fn read_config(path: &Path) -> Result<BTreeMap<String, Setting>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_config(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_table_parses_and_is_not_empty() {
        let reqs = parse_requirements(REQUIRED, "required.txt").unwrap();
        assert!(reqs.len() > 40);
        assert!(reqs.iter().any(|r| r.option == "CONFIG_DM_VERITY"
            && r.module.as_deref() == Some("dm_verity")));
    }

    #[test]
    fn check_names_every_missing_option() {
        let reqs = parse_requirements(
            "CONFIG_A - - built in\nCONFIG_B b later mod ok\nCONFIG_C - - must be y\nCONFIG_D d boot x\n",
            "t",
        )
        .unwrap();
        let cfg = parse_config("CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=m\n# CONFIG_D is not set\n");
        let missing = check(&reqs, &cfg);
        let names: Vec<_> = missing.iter().map(|m| m.option.as_str()).collect();
        assert_eq!(names, ["CONFIG_C", "CONFIG_D"]);
        assert_eq!(missing[0].found, "a module but must be built in");
        assert_eq!(missing[1].to_string(), "CONFIG_D is not set (x)");
    }

    #[test]
    fn absent_option_is_reported() {
        let reqs = parse_requirements("CONFIG_X - - why\n", "t").unwrap();
        let missing = check(&reqs, &parse_config(""));
        assert_eq!(missing[0].found, "absent");
    }

    #[test]
    fn bad_rows_name_line_and_problem() {
        let err = parse_requirements("# c\nCONFIG_A x\n", "req.txt").unwrap_err();
        assert_eq!(err.to_string(), "req.txt:2: expected `option module when why`");
        let err = parse_requirements("FOO - - x\n", "req.txt").unwrap_err();
        assert!(err.to_string().contains("does not start with CONFIG_"));
        let err = parse_requirements("CONFIG_A a soon x\n", "r").unwrap_err();
        assert!(err.to_string().contains("unknown load time `soon`"));
    }

    #[test]
    fn the_pinned_kernel_names_its_release() {
        // `make unit-test` unpacks it first (make kernel).
        let boot = std::fs::read_dir("../build/kernel/boot").expect("build/kernel holds the pinned kernel: run make kernel");
        let vmlinuz = boot.filter_map(Result::ok).find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")).unwrap();
        let name = vmlinuz.file_name().to_string_lossy().to_string();
        let release = bzimage_release(&std::fs::read(vmlinuz.path()).unwrap());
        assert_eq!(release.as_deref(), name.strip_prefix("vmlinuz-"));
        assert_eq!(bzimage_release(b"not a kernel"), None);
    }

    #[test]
    fn flavoured_rows_apply_to_their_kernel_only() {
        let reqs = parse_requirements("CONFIG_A a disk x\nCONFIG_B b device@metal y\n", "t").unwrap();
        assert_eq!(reqs[1].only, Some(Flavour::Metal));
        assert_eq!(reqs[1].load, Some(Load::Device));
        let cfg = parse_config("CONFIG_A=m\n# CONFIG_B is not set\n");
        assert!(check(&for_flavour(&reqs, Flavour::Cloud), &cfg).is_empty());
        let missing = check(&for_flavour(&reqs, Flavour::Metal), &cfg);
        assert_eq!(missing[0].option, "CONFIG_B");
        let err = parse_requirements("CONFIG_A a disk@arm x\n", "r").unwrap_err();
        assert_eq!(err.to_string(), "r:1: unknown kernel flavour `arm` (cloud or metal)");
        assert_eq!(Flavour::of_release("6.1.0-50-cloud-amd64"), Flavour::Cloud);
        assert_eq!(Flavour::of_release("6.1.0-50-amd64"), Flavour::Metal);
    }

    #[test]
    fn docker_modules_have_their_own_load_time() {
        let reqs = parse_requirements("CONFIG_BRIDGE bridge docker x\n", "t").unwrap();
        assert_eq!(reqs[0].load, Some(Load::Docker));
        let err = parse_requirements("CONFIG_A - docker x\n", "r").unwrap_err();
        assert_eq!(err.to_string(), "r:1: `docker` given for a built-in-only option");
    }

    #[test]
    fn modules_only_for_options_built_as_modules() {
        let reqs = parse_requirements(
            "CONFIG_A a-b boot x\nCONFIG_B b later x\nCONFIG_C - - x\n",
            "t",
        )
        .unwrap();
        let cfg = parse_config("CONFIG_A=m\nCONFIG_B=y\nCONFIG_C=y\n");
        assert_eq!(modules_for(&reqs, &cfg), vec![("a_b".to_string(), Load::Boot)]);
    }
}
