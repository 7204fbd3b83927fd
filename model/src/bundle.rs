//! The OCI runtime config (`config.json`) crun runs a service from.
//!
//! Everything a container gets comes from here, so anything not set is
//! something the service does not get: no devices beyond crun's defaults,
//! no capabilities beyond its set, private namespaces except those it asks
//! to share.

use crate::seccomp;
use crate::service::{MountSpec, Seccomp, ServiceSpec, CPU_PERIOD_US};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;

/// The OCI runtime spec version the config claims; crun takes any 1.x.
pub const OCI_VERSION: &str = "1.0.2";

/// Paths hidden from the container (bind-mounted over with nothing), as
/// Docker does: they leak host details or offer kernel attack surface.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write, as Docker does: writing
/// them changes the host kernel, not the container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A service's spec could not be turned into an OCI config.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An oci-spec builder refused its input.
    #[error("{service}: building the OCI {part}: {source}")]
    Build {
        /// The service being built.
        service: String,
        /// Which part of the config (`process`, `linux`, ...).
        part: &'static str,
        /// What oci-spec said.
        source: OciSpecError,
    },
    /// A capability name oci-spec does not know (only possible for a
    /// [`ServiceSpec`] built by hand; [`crate::service::parse`] checks names).
    #[error("{service}: capabilities: unknown capability {name:?}")]
    Capability {
        /// The service being built.
        service: String,
        /// The name as given.
        name: String,
    },
    /// A limit too large for the config's signed 64-bit fields (only
    /// possible for a [`ServiceSpec`] built by hand).
    #[error("{service}: limits.{key}: {value} is too large")]
    Limit {
        /// The service being built.
        service: String,
        /// The limit's key in the spec.
        key: &'static str,
        /// Its value.
        value: u64,
    },
    /// The config could not be written as JSON.
    #[error("writing the OCI config as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The OCI config for `spec`, with `rootfs` (the directory crun mounts as
/// root; absolute, or relative to the bundle) and `cgroups_path` (passed
/// through to crun as `linux.cgroupsPath`).
pub fn oci_config(
    spec: &ServiceSpec,
    rootfs: &str,
    cgroups_path: &str,
) -> Result<Spec, BundleError> {
    let build = |part: &'static str| {
        let service = spec.name.clone();
        move |source: OciSpecError| BundleError::Build {
            service,
            part,
            source,
        }
    };

    let root = RootBuilder::default()
        .path(rootfs)
        .readonly(spec.read_only_rootfs)
        .build()
        .map_err(build("root"))?;

    let caps = capabilities(spec)?;
    // A process that is not root loses its permitted and effective sets at
    // execve unless they are ambient; the kernel only lets a capability be
    // ambient if it is also inheritable, and crun silently skips one that
    // is not. So for non-root services both get the whole set. That adds
    // nothing the process could not already pass on through ambient.
    let (ambient, inheritable) = if spec.user != 0 {
        (caps.clone(), caps.clone())
    } else {
        (Capabilities::new(), Capabilities::new())
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(inheritable)
        .ambient(ambient)
        .build()
        .map_err(build("capabilities"))?;

    let user = UserBuilder::default()
        .uid(spec.user)
        .gid(spec.group)
        .build()
        .map_err(build("user"))?;
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(1024u64)
        .build()
        .map_err(build("rlimits"))?;
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(spec.command.clone())
        .env(env)
        .cwd(spec.working_dir.as_str())
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        .no_new_privileges(spec.no_new_privileges)
        .build()
        .map_err(build("process"))?;

    let mut mounts = base_mounts().map_err(build("mounts"))?;
    for mount in &spec.mounts {
        mounts.push(service_mount(mount).map_err(build("mounts"))?);
    }

    let mut namespace_types = Vec::new();
    if !spec.host_pid {
        namespace_types.push(LinuxNamespaceType::Pid);
    }
    if !spec.host_network {
        namespace_types.push(LinuxNamespaceType::Network);
    }
    namespace_types.extend([
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]);
    let namespaces = namespace_types
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(build("namespaces"))?;

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(cgroups_path)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(build("linux"))?;
    // The builder starts from oci-spec's defaults, which include an empty
    // `resources`; no limits should mean no `resources` at all.
    linux.set_resources(resources(spec)?);
    linux.set_seccomp(match spec.seccomp {
        Seccomp::Default => Some(seccomp::default_profile(&spec.capabilities)),
        Seccomp::Unconfined => None,
    });

    let mut config = SpecBuilder::default()
        .version(OCI_VERSION)
        .root(root)
        .process(process)
        // The UTS namespace is always private, so the name is the service's
        // own and shows up in its logs.
        .hostname(spec.name.as_str())
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(build("config"))?;
    // Also defaulted by the builder; an empty map says nothing.
    config.set_annotations(None);
    Ok(config)
}

/// `config` as pretty JSON. Capability sets are sorted, so the same spec
/// always gives the same bytes (oci-spec keeps them in hash sets).
pub fn to_json(config: &Spec) -> Result<String, BundleError> {
    let mut value = serde_json::to_value(config)?;
    if let Some(sets) = value
        .get_mut("process")
        .and_then(|p| p.get_mut("capabilities"))
        .and_then(|c| c.as_object_mut())
    {
        for set in sets.values_mut() {
            if let Some(names) = set.as_array_mut() {
                names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    let mut json = serde_json::to_string_pretty(&value)?;
    json.push('\n');
    Ok(json)
}

fn capabilities(spec: &ServiceSpec) -> Result<Capabilities, BundleError> {
    spec.capabilities
        .iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(name.clone())).map_err(
                |_| BundleError::Capability {
                    service: spec.name.clone(),
                    name: name.clone(),
                },
            )
        })
        .collect()
}

fn resources(spec: &ServiceSpec) -> Result<Option<LinuxResources>, BundleError> {
    let limits = &spec.limits;
    if !limits.any() {
        return Ok(None);
    }
    let signed = |key: &'static str, value: u64| {
        i64::try_from(value).map_err(|_| BundleError::Limit {
            service: spec.name.clone(),
            key,
            value,
        })
    };
    let build = |source: OciSpecError| BundleError::Build {
        service: spec.name.clone(),
        part: "resources",
        source,
    };
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(bytes) = limits.memory_max {
        let memory = LinuxMemoryBuilder::default()
            .limit(signed("memory_max", bytes)?)
            .build()
            .map_err(build)?;
        resources = resources.memory(memory);
    }
    if let Some(quota) = limits.cpu_quota_us {
        let cpu = LinuxCpuBuilder::default()
            .quota(signed("cpu", quota)?)
            .period(CPU_PERIOD_US)
            .build()
            .map_err(build)?;
        resources = resources.cpu(cpu);
    }
    if let Some(pids) = limits.pids_max {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .map_err(build)?,
        );
    }
    let mut resources = resources.build().map_err(build)?;
    // The builder's default is an empty device list; leave devices to crun.
    resources.set_devices(None);
    Ok(Some(resources))
}

/// What every container gets, as in the runtime spec's example config.
fn base_mounts() -> Result<Vec<Mount>, OciSpecError> {
    let table: &[(&str, &str, &str, &[&str])] = &[
        ("/proc", "proc", "proc", &[]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    table
        .iter()
        .map(|(destination, typ, source, options)| {
            let builder = MountBuilder::default()
                .destination(*destination)
                .typ(*typ)
                .source(*source);
            let builder = if options.is_empty() {
                builder
            } else {
                builder.options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
            };
            builder.build()
        })
        .collect()
}

fn service_mount(mount: &MountSpec) -> Result<Mount, OciSpecError> {
    match mount {
        MountSpec::Bind {
            source,
            destination,
            read_only,
        } => MountBuilder::default()
            .destination(destination.as_str())
            // "none" plus the bind option is how the runtime spec asks for
            // a bind mount; rbind so mounts below the source come along.
            .typ("none")
            .source(source.as_str())
            .options(vec![
                "rbind".to_owned(),
                if *read_only { "ro" } else { "rw" }.to_owned(),
                "nosuid".to_owned(),
                "nodev".to_owned(),
            ])
            .build(),
        MountSpec::Tmpfs { destination, size } => MountBuilder::default()
            .destination(destination.as_str())
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_owned(),
                "nodev".to_owned(),
                "mode=755".to_owned(),
                format!("size={size}"),
            ])
            .build(),
    }
}

#[cfg(test)]
mod tests;
